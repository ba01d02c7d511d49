//! Executive spin locks (`KSPIN_LOCK`).
//!
//! A real lock on the `KSPIN_LOCK` word: 0 when free, the owner thread's token when held. Waiters
//! spin with `yield_now`, so that a holder sharing a core with them still makes progress. Each
//! thread records the locks it holds, in acquisition order, which lets the verifier catch
//! recursion (a self-deadlock on NT: the model reports it and lets the thread continue), releases
//! out of order (legal on NT, forbidden here), releases of locks not held, and routines that
//! return holding a lock.

use super::context;
use super::irql::{self, DISPATCH_LEVEL};
use super::verifier::{self, Rule, Site};
use crate::nt::types::{KIRQL, KSPIN_LOCK};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A lock held by the current thread.
struct HeldLock {
    lock: usize,
    site: Site,
    /// A recursive acquisition the verifier let through: releasing it does not free the word.
    recursive: bool,
}

thread_local! {
    static HELD: RefCell<Vec<HeldLock>> = const { RefCell::new(Vec::new()) };
    /// The CPU time this thread has spent waiting for spin locks others held (see
    /// [`spun_nanos`]).
    static SPUN: Cell<u64> = const { Cell::new(0) };
}

/// The number of spin locks the current thread holds.
pub(crate) fn held_count() -> usize {
    HELD.with(|h| h.borrow().len())
}

/// Whether the current thread holds `lock`.
pub(crate) fn holds(lock: *mut KSPIN_LOCK) -> bool {
    HELD.with(|h| h.borrow().iter().any(|l| l.lock == lock as usize))
}

/// The lock word.
///
/// # Safety
/// `lock` points to a live, suitably aligned `KSPIN_LOCK` that is only accessed atomically
/// while the model uses it.
unsafe fn word<'a>(lock: *mut KSPIN_LOCK) -> &'a AtomicUsize {
    // SAFETY: forwarded caller contract; `KSPIN_LOCK` is a `usize`, as `AtomicUsize` needs.
    unsafe { AtomicUsize::from_ptr(lock) }
}

/// Acquires `lock` at the current IRQL (`KeAcquireSpinLockAtDpcLevel` without the IRQL check).
///
/// # Safety
/// `lock` points to an initialised `KSPIN_LOCK` that outlives the hold.
pub(crate) unsafe fn acquire(lock: *mut KSPIN_LOCK, site: Site) {
    let token = context::thread_token();
    // SAFETY: forwarded caller contract.
    let word = unsafe { word(lock) };
    if word.load(Ordering::Relaxed) == token {
        let first = HELD.with(|h| {
            h.borrow()
                .iter()
                .find(|l| l.lock == lock as usize)
                .map(|l| l.site.to_string())
        });
        verifier::report(
            Rule::SpinLockRecursion,
            site,
            format!(
                "spin lock {lock:p} acquired by the thread that already holds it (acquired at \
                 {}): a deadlock on NT",
                first.as_deref().unwrap_or("?")
            ),
        );
        push(lock, site, true);
        return;
    }
    let taken = |word: &AtomicUsize| {
        word.compare_exchange_weak(0, token, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    };
    if !taken(word) {
        let started = super::thread::cpu_nanos();
        while !taken(word) {
            std::thread::yield_now();
        }
        let spun = super::thread::cpu_nanos().saturating_sub(started);
        SPUN.with(|total| total.set(total.get().saturating_add(spun)));
    }
    push(lock, site, false);
}

/// The CPU time the calling thread has spent waiting for spin locks held by other threads.
/// On NT a spin lock's holder runs at DISPATCH_LEVEL and is never descheduled, so such a wait
/// is short; in the model the holder is a host thread Linux may deschedule, and the waiter's
/// `sched_yield` loop then burns CPU for as long as that lasts. `nt::time::processor_nanos`
/// leaves it out of a core pass's time. Any IRQL.
pub(crate) fn spun_nanos() -> u64 {
    SPUN.with(Cell::get)
}

fn push(lock: *mut KSPIN_LOCK, site: Site, recursive: bool) {
    HELD.with(|h| {
        h.borrow_mut().push(HeldLock {
            lock: lock as usize,
            site,
            recursive,
        })
    });
}

/// Releases `lock` without changing the IRQL (`KeReleaseSpinLockFromDpcLevel` without the IRQL
/// check).
///
/// # Safety
/// `lock` points to a live `KSPIN_LOCK`.
pub(crate) unsafe fn release(lock: *mut KSPIN_LOCK, site: Site) {
    let released = HELD.with(|h| {
        let mut held = h.borrow_mut();
        let index = held.iter().rposition(|l| l.lock == lock as usize)?;
        let innermost = held.last().map(|l| l.site);
        let was_last = index + 1 == held.len();
        let entry = held.remove(index);
        Some((entry, was_last, innermost))
    });
    let Some((entry, was_last, innermost)) = released else {
        verifier::report(
            Rule::SpinLockNotHeld,
            site,
            format!("release of spin lock {lock:p}, which this thread does not hold"),
        );
        return;
    };
    if !was_last {
        verifier::report(
            Rule::SpinLockReleaseOrder,
            site,
            format!(
                "spin lock {lock:p} (acquired at {}) released while a lock acquired later (at {}) \
                 is still held",
                entry.site,
                innermost.map_or_else(|| "?".to_owned(), |s| s.to_string())
            ),
        );
    }
    if !entry.recursive {
        // SAFETY: forwarded caller contract.
        unsafe { word(lock) }.store(0, Ordering::Release);
    }
}

/// `KeAcquireSpinLockRaiseToDpc`: raises to DISPATCH_LEVEL and acquires; returns the old IRQL.
///
/// # Safety
/// As for [`acquire`].
pub(crate) unsafe fn acquire_raise_to_dpc(lock: *mut KSPIN_LOCK, site: Site) -> KIRQL {
    let old = irql::current_irql();
    if old > DISPATCH_LEVEL {
        verifier::report(
            Rule::SpinLockIrql,
            site,
            format!("spin lock {lock:p} acquired at IRQL {old}, above DISPATCH_LEVEL"),
        );
    } else {
        irql::set(DISPATCH_LEVEL);
    }
    // SAFETY: forwarded caller contract.
    unsafe { acquire(lock, site) };
    old
}

/// `KeReleaseSpinLock`: releases and lowers the IRQL to `old`.
///
/// # Safety
/// As for [`release`].
pub(crate) unsafe fn release_lower(lock: *mut KSPIN_LOCK, old: KIRQL, site: Site) {
    // SAFETY: forwarded caller contract.
    unsafe { release(lock, site) };
    irql::lower_to(old, site);
}

/// Checks that the current IRQL is DISPATCH_LEVEL, as the `…AtDpcLevel` functions require.
pub(crate) fn check_at_dispatch(lock: *mut KSPIN_LOCK, site: Site, what: &str) {
    let irql = irql::current_irql();
    if irql != DISPATCH_LEVEL {
        verifier::report(
            Rule::SpinLockIrql,
            site,
            format!("{what} of spin lock {lock:p} at IRQL {irql}; it requires DISPATCH_LEVEL"),
        );
    }
}

/// Releases the locks the current thread acquired beyond the first `depth`, innermost first,
/// and describes them. Used when a routine returns holding locks, so the test cannot hang.
pub(crate) fn release_held_above(depth: usize) -> Vec<String> {
    let extra: Vec<HeldLock> = HELD.with(|h| {
        let mut held = h.borrow_mut();
        let keep = depth.min(held.len());
        held.split_off(keep)
    });
    extra
        .iter()
        .rev()
        .map(|l| {
            if !l.recursive {
                // SAFETY: the thread held this lock, so the word is a live KSPIN_LOCK; the
                // routine that acquired it has returned and will not release it.
                unsafe { word(l.lock as *mut KSPIN_LOCK) }.store(0, Ordering::Release);
            }
            format!("{:#x} acquired at {}", l.lock, l.site)
        })
        .collect()
}
