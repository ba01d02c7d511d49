//! The receive side of a datagram address file (UDP and raw IP): the pending
//! TDI_RECEIVE_DATAGRAMs, and the datagrams that arrived while none was pending, in a queue
//! bounded in datagrams and bytes. Beyond the bound a datagram is dropped, and the caller counts
//! it. A datagram larger than the receive's buffer is cut to the buffer and completed with
//! `STATUS_SUCCESS` (AFD stops receiving after any other status, contract §4.1).
#![forbid(unsafe_code)]

use crate::core::state::Completer;
use crate::core::work::Finish;
use crate::nt::NtStatus;
use crate::nt::irp::{IrpId, PendingIrp};
use crate::nt::pool;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::SocketAddrV4;

/// The bounds of the queue.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub datagrams: usize,
    pub bytes: usize,
}

/// What became of a datagram handed to [`Inbox::deliver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// It completed a pending receive (`truncated` if cut to its buffer).
    Received {
        truncated: bool,
    },
    Queued,
    /// The queue was full, or no memory was left to queue it.
    Dropped,
}

/// A TDI_RECEIVE_DATAGRAM waiting for a datagram.
struct PendingReceive {
    irp: PendingIrp,
    length: usize,
}

/// A datagram that arrived while no receive was pending.
struct Queued {
    from: SocketAddrV4,
    data: Vec<u8>,
}

/// One address file's receive side. Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
#[derive(Default)]
pub struct Inbox {
    receives: VecDeque<PendingReceive>,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
}

impl Inbox {
    /// A datagram from `from` arrived: it completes the oldest pending receive, or waits in
    /// the queue if `bounds` allow, or is dropped. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn deliver(
        &mut self,
        from: SocketAddrV4,
        payload: &[u8],
        bounds: Bounds,
        c: &Completer<'_>,
    ) -> Delivered {
        if let Some(receive) = self.receives.pop_front() {
            let truncated = complete_receive(receive, from, payload, c);
            return Delivered::Received { truncated };
        }
        let fits = self.queue.len() < bounds.datagrams
            && self.queued_bytes + payload.len() <= bounds.bytes;
        let queued = fits
            && pool::try_reserve_deque(&mut self.queue, 1).is_ok()
            && match pool::try_vec(payload.len()) {
                Ok(mut data) => {
                    data.extend_from_slice(payload);
                    self.queued_bytes += data.len();
                    self.queue.push_back(Queued { from, data });
                    true
                }
                Err(_) => false,
            };
        if queued {
            Delivered::Queued
        } else {
            Delivered::Dropped
        }
    }

    /// TDI_RECEIVE_DATAGRAM: takes the oldest queued datagram, or waits for one. Returns
    /// whether a queued datagram was cut to the receive's buffer.
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn receive(&mut self, irp: PendingIrp, length: usize, c: &Completer<'_>) -> bool {
        let receive = PendingReceive { irp, length };
        if let Some(queued) = self.queue.pop_front() {
            self.queued_bytes = self.queued_bytes.saturating_sub(queued.data.len());
            return complete_receive(receive, queued.from, &queued.data, c);
        }
        if let Err(status) = pool::try_reserve_deque(&mut self.receives, 1) {
            c.done(receive.irp, status, 0);
            return false;
        }
        self.receives.push_back(receive);
        false
    }

    /// Whether a receive waits. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn has_receives(&self) -> bool {
        !self.receives.is_empty()
    }

    /// Unlinks the pending receive `id` (for its cancel routine).
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn take_irp(&mut self, id: IrpId) -> Option<PendingIrp> {
        let index = self.receives.iter().position(|r| r.irp.id() == id)?;
        self.receives.remove(index).map(|r| r.irp)
    }

    /// Drops the queued datagrams and yields the pending receives (for the file's close).
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn drain(&mut self) -> impl Iterator<Item = PendingIrp> + '_ {
        self.queue.clear();
        self.queued_bytes = 0;
        self.receives.drain(..).map(|r| r.irp)
    }
}

/// Copies a datagram into a receive's buffer (cut to it) and completes the receive with the
/// sender, `STATUS_SUCCESS` and the bytes copied. Returns whether the datagram was cut.
/// IRQL ≤ DISPATCH_LEVEL, under the core lock.
fn complete_receive(
    receive: PendingReceive,
    from: SocketAddrV4,
    payload: &[u8],
    c: &Completer<'_>,
) -> bool {
    let room = receive
        .irp
        .irp()
        .mdl()
        .map_or(0, |mdl| mdl.len())
        .min(receive.length);
    let take = payload.len().min(room);
    let written = match (receive.irp.irp().mdl(), payload.get(..take)) {
        (Some(mdl), Some(bytes)) => mdl.write(bytes),
        _ => Ok(0),
    };
    match written {
        Ok(written) => c.finish(
            receive.irp,
            NtStatus::SUCCESS,
            written,
            Finish::ReturnPeer(from),
        ),
        Err(status) => c.done(receive.irp, status, 0),
    }
    take < payload.len()
}
