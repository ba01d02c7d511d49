//! Keeping one [`World`] between inputs (`crate::session`): what the setup leaves behind,
//! what an input may change, and the checks at the end of each input.
//!
//! An input leaves the world *intact* when, after it:
//! - it did nothing that changes the connections or the configuration for good
//!   ([`World::taint`]: segments aimed at the accepted or the connecting connection, ARP
//!   frames, TDI sends, receives, disconnects and closes, IOCTLs that set something and
//!   succeeded);
//! - the virtual clock has not moved (so no timer of the setup's connections has run);
//! - every request the input sent has completed;
//! - the setup's requests are still pending (the UDP and raw receives the input's
//!   datagrams completed are sent again first);
//! - the driver's pool is back to what it was after the setup, block for block and byte for
//!   byte (no half-open connection, reassembly, queued datagram or orphaned socket left),
//!   both measured with the socket ring lookaside flushed: blocks a closed socket left there
//!   are the driver's cache, not a leak, and a flushed cache also gives every input the same
//!   start (a hit or a miss would otherwise depend on the inputs before it);
//! - the verifier recorded no violation.
//!
//! Otherwise the world is torn down as before (everything closed, every request completed,
//! the driver unloaded with its leak check) and the next input gets a fresh one.

use super::{World, file};
use tcpip::host::PoolStats;

/// The setup's requests still pending: the UDP and raw receives, the accepted connection's
/// receive, the waiting listen and the connect, in that order.
const SETUP_PENDING: usize = 5;
/// The indices in `pending` of the datagram receives, and their files.
const DATAGRAM_RECEIVES: [(usize, usize); 2] = [(0, file::UDP), (1, file::RAW)];
/// How many times an input's datagrams may complete a setup receive before the world is
/// torn down (each completion sends the receive again).
const REPOSTS: usize = 4;

/// What the setup left: the driver's pool, and the input's state.
#[derive(Default)]
pub struct Baseline {
    /// Live blocks and bytes of the driver's pool after the setup.
    pool: (usize, usize),
    /// The virtual clock when the input started.
    clock: u64,
    /// Set by [`World::taint`].
    tainted: bool,
    /// Inputs run on this world.
    pub inputs: usize,
}

fn pool_of(stats: &PoolStats) -> (usize, usize) {
    (stats.live_blocks, stats.live_bytes)
}

impl World {
    /// Records the pool after the setup.
    pub(super) fn record_baseline(&mut self) {
        assert_eq!(self.pending.len(), SETUP_PENDING, "the setup's requests");
        self.keep.pool = self.pool();
    }

    /// The driver's live pool blocks and bytes, with its socket ring lookaside flushed first.
    fn pool(&self) -> (usize, usize) {
        self.stack.flush_lookaside();
        pool_of(&self.kernel.pool_stats())
    }

    /// The input changed the world for good: it is torn down after the input.
    pub fn taint(&mut self) {
        self.keep.tainted = true;
    }

    /// Inputs run on this world so far.
    pub fn inputs(&self) -> usize {
        self.keep.inputs
    }

    /// Before an input.
    pub fn begin_input(&mut self) {
        self.keep.clock = self.kernel.interrupt_time();
        self.keep.tainted = false;
        self.keep.inputs += 1;
    }

    /// After an input: closes the control channel and checks the input's requests and the
    /// verifier (panics on a violation, as at teardown). Returns whether the world is intact
    /// (see the module's documentation); if not, [`finish`](World::finish) tears it down.
    pub fn end_input(&mut self) -> bool {
        if let Some(control) = self.control.take() {
            assert_eq!(self.kernel.close(control), tcpip::nt::NtStatus::SUCCESS);
            self.settle();
        }
        let violations = self.kernel.take_violations();
        assert!(violations.is_empty(), "verifier: {violations:?}");
        if self.keep.tainted
            || self.kernel.interrupt_time() != self.keep.clock
            || self.handles.iter().any(Option::is_none)
            || self.pending[SETUP_PENDING..]
                .iter()
                .any(|p| !p.event.is_signaled())
        {
            return false;
        }
        self.pending.truncate(SETUP_PENDING);
        for (index, file) in DATAGRAM_RECEIVES {
            for _ in 0..REPOSTS {
                if !self.pending[index].event.is_signaled() {
                    break;
                }
                let Some(handle) = self.handle(file) else {
                    return false;
                };
                self.start_datagram_receive(handle, super::RECEIVE_ROOM);
                self.pending.swap_remove(index);
            }
        }
        if self.pending.iter().any(|p| p.event.is_signaled()) || self.pool() != self.keep.pool {
            return false;
        }
        self.sent.clear();
        self.half_open.clear();
        true
    }
}
