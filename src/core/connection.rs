//! TCP_CONTEXT: one connection endpoint and the requests waiting on it.
#![forbid(unsafe_code)]

use crate::core::events::ConnectionEvents;
use crate::core::sockets::SocketKey;
use crate::nt::NtStatus;
use crate::nt::irp::{IrpId, PendingIrp};
use crate::nt::pool;
use alloc::collections::VecDeque;

/// Why a connection ended, which smoltcp does not report (smoltcp #349): the core infers it by
/// watching the socket's state across polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent FIN: receives complete with success and 0 bytes.
    Fin,
    /// The peer reset the connection (or it was lost without FIN).
    Reset,
    /// The local side aborted it (TDI_DISCONNECT ABORT).
    Aborted,
    /// The peer stayed silent for `CoreConfig::data_timeout` while data waited for its
    /// acknowledgment.
    TimedOut,
}

impl CloseReason {
    /// The status that receives and sends fail with after the connection died this way.
    ///
    /// STATUS_FILE_CLOSED becomes WSAECONNRESET in msafd, what a Winsock program expects after
    /// a reset; STATUS_LOCAL_DISCONNECT becomes WSAECONNABORTED, Windows' error for a
    /// connection lost to a transmission timeout.
    pub fn error_status(self) -> NtStatus {
        match self {
            CloseReason::TimedOut => NtStatus::LOCAL_DISCONNECT,
            CloseReason::Fin | CloseReason::Reset | CloseReason::Aborted => NtStatus::FILE_CLOSED,
        }
    }
}

/// Where a connection endpoint is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Created, maybe associated; no protocol state yet.
    Idle,
    /// TDI_CONNECT is pending; the attempt gives up at `deadline` (µs).
    Connecting { deadline: i64 },
    /// TDI_LISTEN is pending on the address's listener.
    Listening,
    /// Established (or past it, while data remains to be read).
    Connected,
}

/// A pending TDI_SEND.
pub struct Send {
    pub irp: PendingIrp,
    /// `SendLength`, bounded by the MDL when the data is copied.
    pub length: u32,
}

/// A pending TDI_RECEIVE.
pub struct Receive {
    pub irp: PendingIrp,
    /// `ReceiveLength`, bounded by the MDL when the data is copied.
    pub length: u32,
    /// TDI_RECEIVE_PEEK: copy without consuming.
    pub peek: bool,
}

/// One TCP_CONTEXT.
pub struct Connection {
    /// The `ConnectionContext` EA value, kept for event callbacks.
    pub context: usize,
    /// The associated address file's index.
    pub address: Option<u32>,
    pub socket: Option<SocketKey>,
    pub phase: Phase,
    pub connect: Option<PendingIrp>,
    pub listen: Option<PendingIrp>,
    pub sends: VecDeque<Send>,
    pub receives: VecDeque<Receive>,
    /// The peer's FIN has been seen.
    pub fin_received: bool,
    /// Set once the connection is over; later requests fail with its status.
    pub closed: Option<CloseReason>,
    /// TDI_DISCONNECT RELEASE was requested: no more sends, FIN after the queued ones.
    pub send_shutdown: bool,
    pub no_delay: bool,
    /// TDI client events of this connection.
    pub events: ConnectionEvents,
}

impl Connection {
    /// A new endpoint with the given context value.
    pub fn new(context: usize) -> Self {
        Self {
            context,
            address: None,
            socket: None,
            phase: Phase::Idle,
            connect: None,
            listen: None,
            sends: VecDeque::new(),
            receives: VecDeque::new(),
            fin_received: false,
            closed: None,
            send_shutdown: false,
            no_delay: false,
            events: ConnectionEvents::default(),
        }
    }

    /// Queues a send, growing the queue fallibly (the IRP comes back on failure).
    pub fn queue_send(
        &mut self,
        irp: PendingIrp,
        length: u32,
    ) -> Result<(), (PendingIrp, NtStatus)> {
        match pool::try_reserve_deque(&mut self.sends, 1) {
            Ok(()) => {
                self.sends.push_back(Send { irp, length });
                Ok(())
            }
            Err(status) => Err((irp, status)),
        }
    }

    /// Queues a receive, growing the queue fallibly (the IRP comes back on failure).
    pub fn queue_receive(&mut self, receive: Receive) -> Result<(), (PendingIrp, NtStatus)> {
        match pool::try_reserve_deque(&mut self.receives, 1) {
            Ok(()) => {
                self.receives.push_back(receive);
                Ok(())
            }
            Err(status) => Err((receive.irp, status)),
        }
    }

    /// Removes the pending IRP `id` from this endpoint, wherever it waits.
    pub fn take_irp(&mut self, id: IrpId) -> Option<PendingIrp> {
        if self.connect.as_ref().is_some_and(|irp| irp.id() == id) {
            return self.connect.take();
        }
        if self.listen.as_ref().is_some_and(|irp| irp.id() == id) {
            return self.listen.take();
        }
        if let Some(index) = self.sends.iter().position(|s| s.irp.id() == id) {
            return self.sends.remove(index).map(|s| s.irp);
        }
        let index = self.receives.iter().position(|r| r.irp.id() == id)?;
        self.receives.remove(index).map(|r| r.irp)
    }

    /// Every pending IRP, for close: they complete with `STATUS_CANCELLED`.
    pub fn drain_irps(&mut self) -> impl Iterator<Item = PendingIrp> + '_ {
        self.connect
            .take()
            .into_iter()
            .chain(self.listen.take())
            .chain(self.drain_data_irps())
    }

    /// The pending sends and receives.
    pub fn drain_data_irps(&mut self) -> impl Iterator<Item = PendingIrp> + '_ {
        self.sends
            .drain(..)
            .map(|s| s.irp)
            .chain(self.receives.drain(..).map(|r| r.irp))
    }
}
