//! Who runs the core: the DPC or a dispatching thread (the fast path), never both, and no run
//! lost when they meet.
//!
//! The core's spin lock alone would exclude them, but a loser would spin at DISPATCH_LEVEL for
//! the whole of the other's run (a DPC on a second processor waiting out a fast-path run), and
//! ReactOS exports no try-lock for spin locks. So a runner first *claims* the core, and only
//! the claimant takes the lock:
//!
//! - a dispatching thread that cannot claim declines the fast path and queues the DPC;
//! - a DPC that cannot claim records that it *missed* and returns at once;
//! - a runner that releases its claim and finds a miss recorded queues the DPC again.
//!
//! The claim and the miss are two bits of one atomic word, and every step is one
//! read-modify-write of it: a DPC's failed claim and its miss are one step, and so are a
//! release and its look for a miss. So no interleaving loses a miss (there is no window between
//! "saw it taken" and "recorded the miss" for a release to slip into), under any memory
//! ordering model. `tests/loom_claim.rs` checks it under every interleaving loom explores (the
//! module is compiled into that test with loom's atomics).
//!
//! IRQL: every method is callable at any IRQL ≤ DISPATCH_LEVEL.

#[cfg(all(loom, test))]
use loom::sync::atomic::{AtomicU8, Ordering};

#[cfg(not(all(loom, test)))]
use core::sync::atomic::{AtomicU8, Ordering};

/// A runner has the core.
const CLAIMED: u8 = 1;
/// A DPC found the core claimed (only ever set together with [`CLAIMED`]).
const MISSED: u8 = 2;

/// The claim on the core and the record of a DPC that found it taken.
pub struct CoreClaim {
    state: AtomicU8,
}

impl Default for CoreClaim {
    fn default() -> Self {
        Self::new()
    }
}

impl CoreClaim {
    /// An unclaimed core.
    pub fn new() -> Self {
        Self {
            state: AtomicU8::new(0),
        }
    }

    /// The fast path's claim: `true` if the caller now runs the core.
    pub fn try_claim(&self) -> bool {
        self.state
            .compare_exchange(0, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The DPC's claim: `true` if the DPC now runs the core; `false` if another runner has
    /// it, which then queues the DPC again when it releases.
    pub fn claim_for_dpc(&self) -> bool {
        // One step: claim a free core, or record the miss on a claimed one.
        let update = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                Some(if state & CLAIMED != 0 {
                    state | MISSED
                } else {
                    CLAIMED
                })
            });
        // The closure never declines, so `update` is always `Ok(previous state)`.
        matches!(update, Ok(previous) if previous & CLAIMED == 0)
    }

    /// Ends a run: `true` if a DPC found the core taken meanwhile and must be queued again.
    pub fn release(&self) -> bool {
        self.state.swap(0, Ordering::AcqRel) & MISSED != 0
    }
}
