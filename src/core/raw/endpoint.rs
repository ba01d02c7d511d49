//! One raw IP address file: its protocol, `IP_HDRINCL`, its receive side, and its sends
//! waiting for their link.
#![forbid(unsafe_code)]

use crate::core::inbox::Inbox;
use crate::core::udp::endpoint::Leg;
use crate::nt::NtStatus;
use crate::nt::irp::{IrpId, PendingIrp};
use crate::nt::pool;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// A TDI_SEND_DATAGRAM whose packet is built and waits for its turn.
pub struct PendingSend {
    pub irp: PendingIrp,
    pub packet: Vec<u8>,
    pub leg: Leg,
    /// The bytes of the caller's buffer the send completes with.
    pub length: usize,
}

/// One raw address file's state. Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
pub struct Endpoint {
    pub protocol: u8,
    /// `IP_HDRINCL`: the caller's data is the whole packet, IPv4 header included.
    pub header_include: bool,
    pub inbox: Inbox,
    sends: VecDeque<PendingSend>,
}

impl Endpoint {
    /// An endpoint for IP protocol `protocol`. Allocates nothing. Any IRQL.
    pub fn new(protocol: u8) -> Self {
        Self {
            protocol,
            header_include: false,
            inbox: Inbox::default(),
            sends: VecDeque::new(),
        }
    }

    /// Queues a send. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn queue_send(&mut self, send: PendingSend) -> Result<(), (PendingIrp, NtStatus)> {
        if let Err(status) = pool::try_reserve_deque(&mut self.sends, 1) {
            return Err((send.irp, status));
        }
        self.sends.push_back(send);
        Ok(())
    }

    /// The oldest send. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn next_send(&mut self) -> Option<PendingSend> {
        self.sends.pop_front()
    }

    /// Unlinks the pending IRP `id` (for its cancel routine).
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn take_irp(&mut self, id: IrpId) -> Option<PendingIrp> {
        if let Some(irp) = self.inbox.take_irp(id) {
            return Some(irp);
        }
        let index = self.sends.iter().position(|s| s.irp.id() == id)?;
        self.sends.remove(index).map(|s| s.irp)
    }

    /// Every pending IRP, for the file's close. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn drain_irps(&mut self) -> impl Iterator<Item = PendingIrp> + '_ {
        self.inbox
            .drain()
            .chain(self.sends.drain(..).map(|s| s.irp))
    }
}
