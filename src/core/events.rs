//! TDI client events (issue 18): the handlers kernel clients register with
//! TDI_SET_EVENT_HANDLER, the events the core finds due, and their delivery with no lock held.
//!
//! The hand-off (ARCHITECTURE.md, "TDI events"): under the core lock the core only records an
//! event as values — [`Due`]: object keys, the connection context, lengths, flags, a copy of
//! the data to indicate — in the [`EventHub`]'s queue, and marks the connection *in flight*.
//! The core DPC takes the queue after it has dropped the core lock and [`deliver`]s each
//! event: it reads the handler and its context under the handler table's lock, drops that
//! lock, and calls the handler. What the client answered becomes an [`Outcome`] (bytes taken,
//! an IRP handed back, an accepted connection), which the DPC applies under the core lock
//! again ([`Core::apply_events`](crate::core::state::Core::apply_events)). A handler that calls
//! back into the driver (TDI_SEND, TDI_RECEIVE through `IoCallDriver`) reaches the dispatch
//! routine, which takes only the queue locks, none of which is held here.
#![forbid(unsafe_code)]

use crate::core::connection::Receive;
use crate::core::slab::Key;
use crate::core::sockets::SocketKey;
use crate::core::work::{Completion, Finish, Outbound};
use crate::nt::NtStatus;
use crate::nt::client::{ClientHandler, ConnectReply, ReceiveReply};
use crate::nt::irp::{Irp, PendingIrp};
use crate::nt::pool;
use crate::nt::sync::SpinLock;
use crate::nt::types::*;
use crate::tdi::TransportAddress;
use crate::tdi::request::{ReceiveDatagramParams, ReceiveParams};
use alloc::vec::Vec;
use core::net::SocketAddrV4;

/// The number of `TDI_EVENT_*` types (0 to `TDI_EVENT_CHAINED_RECEIVE_EXPEDITED`, 13).
pub const EVENT_TYPES: usize = 14;

/// The most bytes one receive indication copies (`BytesIndicated`); the rest of what is
/// buffered is `BytesAvailable`, and is indicated again once the client took what it was
/// shown, or goes to the client's receive IRP.
pub const LOOKAHEAD: usize = 8 * 1024;

/// The handlers registered on each address file, by address index and event type. Written by
/// the dispatch routine of TDI_SET_EVENT_HANDLER, cleared when the address file closes, read
/// by the core (whether a handler exists) and by [`deliver`] (which one to call).
#[derive(Default)]
pub struct Handlers {
    slots: Vec<[(usize, usize); EVENT_TYPES]>,
    /// Handler calls in progress, by address index (kept beside `slots`).
    calls: Vec<u32>,
}

impl Handlers {
    /// Registers (or with a null `handler`, clears) the handler of `event` on `address`.
    /// `STATUS_INVALID_PARAMETER` for an unknown event type. IRQL ≤ DISPATCH_LEVEL.
    pub fn set(
        &mut self,
        address: u32,
        event: usize,
        handler: usize,
        context: usize,
    ) -> Result<(), NtStatus> {
        if event >= EVENT_TYPES {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let index = address as usize;
        if index >= self.slots.len() {
            if handler == 0 {
                return Ok(());
            }
            let additional = (index + 1).saturating_sub(self.slots.len());
            pool::try_reserve(&mut self.slots, additional)?;
            pool::try_reserve(&mut self.calls, additional)?;
            self.slots.resize(index + 1, [(0, 0); EVENT_TYPES]);
            self.calls.resize(index + 1, 0);
        }
        if let Some(slot) = self.slots.get_mut(index).and_then(|s| s.get_mut(event)) {
            *slot = (handler, context);
        }
        Ok(())
    }

    /// The handler of `event` on `address`, if one is registered. IRQL ≤ DISPATCH_LEVEL.
    pub fn get(&self, address: u32, event: i32) -> Option<ClientHandler> {
        let event = usize::try_from(event).ok()?;
        let &(handler, context) = self.slots.get(address as usize)?.get(event)?;
        ClientHandler::new(handler, context)
    }

    /// The handler of `event` on `address`, counted as a call in progress until
    /// [`Handlers::end_call`]. IRQL ≤ DISPATCH_LEVEL.
    fn begin_call(&mut self, address: u32, event: i32) -> Option<ClientHandler> {
        let handler = self.get(address, event)?;
        let calls = self.calls.get_mut(address as usize)?;
        *calls += 1;
        Some(handler)
    }

    /// A call of a handler of `address` returned. IRQL ≤ DISPATCH_LEVEL.
    fn end_call(&mut self, address: u32) {
        if let Some(calls) = self.calls.get_mut(address as usize) {
            *calls = calls.saturating_sub(1);
        }
    }

    /// Forgets every handler of `address` (its file closed). IRQL ≤ DISPATCH_LEVEL.
    pub fn clear(&mut self, address: u32) {
        if let Some(slot) = self.slots.get_mut(address as usize) {
            *slot = [(0, 0); EVENT_TYPES];
        }
    }
}

/// The events state of one connection, kept by the core.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectionEvents {
    /// An event of this connection is being delivered: no other is raised, and its pending
    /// receives wait, until its outcome is applied (so data taken by the handler is consumed
    /// before any receive IRP sees the ring).
    pub in_flight: bool,
    /// Bytes the client was shown and left: not indicated again until more arrive.
    pub declined: usize,
    /// `TDI_DISCONNECT_RELEASE` (or an abort) was indicated.
    pub released: bool,
    /// `TDI_DISCONNECT_ABORT` was indicated.
    pub aborted: bool,
}

/// An event the core found due, as values.
pub enum Due {
    /// `ClientEventReceive`: `data` is the first bytes of the `available` buffered.
    Receive {
        connection: Key,
        context: usize,
        address: u32,
        data: Vec<u8>,
        available: usize,
    },
    /// `ClientEventDisconnect` with `flags`.
    Disconnect {
        connection: Key,
        context: usize,
        address: u32,
        flags: u32,
    },
    /// `ClientEventConnect`: an established connection waiting on `listener` (the address
    /// file's key) for the client to take it.
    Connect {
        listener: Key,
        socket: SocketKey,
        peer: SocketAddrV4,
        port: u16,
    },
    /// `ClientEventErrorEx`: an ICMP error about a datagram sent to `remote`.
    Error {
        address: u32,
        status: NtStatus,
        remote: SocketAddrV4,
    },
    /// `ClientEventReceiveDatagram`: one whole datagram.
    Datagram {
        address: u32,
        from: SocketAddrV4,
        data: Vec<u8>,
        broadcast: bool,
    },
}

/// What a connect handler decided.
pub enum Answer {
    /// No handler any more: the connection goes back to the accept queue.
    Unhandled,
    /// Refused (or an unusable accept IRP): the connection is reset.
    Refused,
    /// Accepted onto the connection endpoint of the TDI_ACCEPT IRP.
    Accept {
        context: usize,
        connection: Option<u32>,
        irp: PendingIrp,
    },
}

/// What became of a delivered event, for the core.
pub enum Outcome {
    Received {
        connection: Key,
        indicated: usize,
        available: usize,
        taken: usize,
        /// The receive IRP the handler returned, pending, its completion slot reserved.
        irp: Option<Receive>,
    },
    Disconnected {
        connection: Key,
    },
    Connect {
        listener: Key,
        socket: SocketKey,
        peer: SocketAddrV4,
        port: u16,
        answer: Answer,
    },
}

/// An entry of the event queue: due, then (after delivery, in place) its outcome.
pub enum Event {
    Due(Due),
    Outcome(Outcome),
    Done,
}

/// The handler table and the queue of due events, beside the core. Lock order: core →
/// handlers, core → queue; the dispatch routine and [`deliver`] take either alone.
pub struct EventHub {
    handlers: SpinLock<Handlers>,
    queue: SpinLock<Vec<Event>>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHub {
    /// An empty hub. PASSIVE_LEVEL.
    pub fn new() -> Self {
        Self {
            handlers: SpinLock::new(Handlers::default()),
            queue: SpinLock::new(Vec::new()),
        }
    }

    /// TDI_SET_EVENT_HANDLER: registers or clears a handler at once, so that a handler cleared
    /// (even from inside a handler) is not called by any delivery that starts afterwards.
    /// IRQL ≤ DISPATCH_LEVEL.
    pub fn set_handler(
        &self,
        address: u32,
        event: usize,
        handler: usize,
        context: usize,
    ) -> Result<(), NtStatus> {
        self.handlers.lock().set(address, event, handler, context)
    }

    /// Whether `address` has a handler for `event`. IRQL ≤ DISPATCH_LEVEL.
    pub fn has_handler(&self, address: u32, event: i32) -> bool {
        self.handlers.lock().get(address, event).is_some()
    }

    /// Calls `call` with the handler of `event` on `address`, if one is registered: read
    /// under the table's lock, called after it is released, and counted as in progress
    /// meanwhile (see [`EventHub::calls`]). DISPATCH_LEVEL, no lock held.
    fn with_handler<R>(
        &self,
        address: u32,
        event: i32,
        call: impl FnOnce(ClientHandler) -> R,
    ) -> Option<R> {
        let handler = self.handlers.lock().begin_call(address, event)?;
        let result = call(handler);
        self.handlers.lock().end_call(address);
        Some(result)
    }

    /// Handler calls of `address` in progress. A closed address file's handlers are cleared
    /// first, so once this is 0 none of them runs again: the file's close completes only
    /// then, as on Windows (the client may free the handlers' context). IRQL ≤ DISPATCH_LEVEL.
    pub fn calls(&self, address: u32) -> u32 {
        let handlers = self.handlers.lock();
        handlers.calls.get(address as usize).copied().unwrap_or(0)
    }

    /// Forgets the handlers of a closed address file. IRQL ≤ DISPATCH_LEVEL.
    pub fn clear_handlers(&self, address: u32) {
        self.handlers.lock().clear(address);
    }

    /// Queues an event; gives it back if no memory was left. IRQL ≤ DISPATCH_LEVEL.
    pub fn raise(&self, due: Due) -> Result<(), Due> {
        let mut queue = self.queue.lock();
        if pool::try_reserve(&mut queue, 1).is_err() {
            return Err(due);
        }
        queue.push(Event::Due(due));
        Ok(())
    }

    /// Whether events wait for delivery. IRQL ≤ DISPATCH_LEVEL.
    pub fn has_due(&self) -> bool {
        !self.queue.lock().is_empty()
    }

    /// Takes every queued event. IRQL ≤ DISPATCH_LEVEL.
    pub fn take(&self) -> Vec<Event> {
        core::mem::take(&mut *self.queue.lock())
    }
}

/// Delivers the events in order, replacing each with its outcome (in place: nothing is
/// allocated here). DISPATCH_LEVEL, with no lock of the driver held: each handler is read
/// under the handler table's lock and called after it is released.
pub fn deliver(hub: &EventHub, outbound: &SpinLock<Outbound>, events: &mut [Event]) {
    for event in events.iter_mut() {
        let Event::Due(due) = core::mem::replace(event, Event::Done) else {
            continue;
        };
        *event = match due {
            Due::Receive {
                connection,
                context,
                address,
                data,
                available,
            } => {
                let mut flags =
                    TDI_RECEIVE_NORMAL | TDI_RECEIVE_COPY_LOOKAHEAD | TDI_RECEIVE_AT_DISPATCH_LEVEL;
                if data.len() == available {
                    flags |= TDI_RECEIVE_ENTIRE_MESSAGE;
                }
                let reply = hub.with_handler(address, TDI_EVENT_RECEIVE, |handler| {
                    handler.receive(context, flags, &data, available)
                });
                let (taken, irp) = match reply {
                    Some(reply) => (
                        reply.taken,
                        reply.irp.and_then(|irp| adopt_receive(irp, outbound)),
                    ),
                    None => (0, None),
                };
                Event::Outcome(Outcome::Received {
                    connection,
                    indicated: data.len(),
                    available,
                    taken,
                    irp,
                })
            }
            Due::Disconnect {
                connection,
                context,
                address,
                flags,
            } => {
                hub.with_handler(address, TDI_EVENT_DISCONNECT, |handler| {
                    handler.disconnect(context, flags)
                });
                Event::Outcome(Outcome::Disconnected { connection })
            }
            Due::Connect {
                listener,
                socket,
                peer,
                port,
            } => {
                let reply = hub.with_handler(listener.index, TDI_EVENT_CONNECT, |handler| {
                    handler.connect(&ta_ip_address(peer))
                });
                let answer = match reply {
                    Some(reply) => accept(reply, outbound),
                    None => Answer::Unhandled,
                };
                Event::Outcome(Outcome::Connect {
                    listener,
                    socket,
                    peer,
                    port,
                    answer,
                })
            }
            Due::Error {
                address,
                status,
                remote,
            } => {
                hub.with_handler(address, TDI_EVENT_ERROR_EX, |handler| {
                    handler.error_ex(status, &ta_ip_address(remote))
                });
                Event::Done
            }
            Due::Datagram {
                address,
                from,
                data,
                broadcast,
            } => {
                let mut flags = TDI_RECEIVE_ENTIRE_MESSAGE | TDI_RECEIVE_COPY_LOOKAHEAD;
                if broadcast {
                    flags |= TDI_RECEIVE_BROADCAST;
                }
                let reply = hub.with_handler(address, TDI_EVENT_RECEIVE_DATAGRAM, |handler| {
                    handler.receive_datagram(&ta_ip_address(from), flags, &data)
                });
                if let Some(reply) = reply {
                    datagram(reply, from, &data, outbound);
                }
                Event::Done
            }
        };
    }
}

/// `TA_IP_ADDRESS` of `address`. Any IRQL.
fn ta_ip_address(address: SocketAddrV4) -> [u8; 22] {
    TransportAddress {
        ip: *address.ip(),
        port: address.port(),
    }
    .emit_ta_ip_address()
}

/// Makes a client's returned IRP a pending IRP of the driver with its completion slot
/// reserved, if it is the request `minor`; otherwise (or without memory for the slot) completes
/// it with the failure at once. DISPATCH_LEVEL, no lock held.
fn adopt(irp: Irp, minor: u8, outbound: &SpinLock<Outbound>) -> Option<PendingIrp> {
    let stack = irp.stack();
    if stack.major() != IRP_MJ_INTERNAL_DEVICE_CONTROL || stack.minor() != minor {
        let _ = irp.complete(NtStatus::INVALID_DEVICE_REQUEST, 0);
        return None;
    }
    if let Err(status) = outbound.lock().reserve_slot() {
        let _ = irp.complete(status, 0);
        return None;
    }
    let (_, pending) = irp.mark_pending();
    Some(pending)
}

/// A receive IRP a `ClientEventReceive` handler returned, as a pending TDI_RECEIVE.
/// DISPATCH_LEVEL, no lock held.
fn adopt_receive(irp: Irp, outbound: &SpinLock<Outbound>) -> Option<Receive> {
    let params = ReceiveParams::parse(&irp.stack().parameters());
    let irp = adopt(irp, TDI_RECEIVE, outbound)?;
    Some(Receive {
        irp,
        length: params.length,
        peek: params.flags.peek(),
    })
}

/// A connect handler's answer, with its accept IRP taken over. DISPATCH_LEVEL, no lock held.
fn accept(reply: ConnectReply, outbound: &SpinLock<Outbound>) -> Answer {
    let Some(irp) = reply.irp else {
        return Answer::Refused;
    };
    let connection = irp
        .stack()
        .file_object()
        .map(|file| file.context())
        .filter(|&(_, kind)| kind == TDI_CONNECTION_FILE as usize)
        .and_then(|(index, _)| index.checked_sub(1))
        .and_then(|index| u32::try_from(index).ok());
    match adopt(irp, TDI_ACCEPT, outbound) {
        Some(irp) => Answer::Accept {
            context: reply.context,
            connection,
            irp,
        },
        None => Answer::Refused,
    }
}

/// A receive-datagram handler's answer: a receive IRP it returned gets the rest of the
/// datagram (from `BytesTaken` on) and completes with the sender. What is not taken is
/// dropped, as on Windows. DISPATCH_LEVEL, no lock held.
fn datagram(reply: ReceiveReply, from: SocketAddrV4, data: &[u8], outbound: &SpinLock<Outbound>) {
    let Some(irp) = reply.irp else {
        return;
    };
    let length = ReceiveDatagramParams::parse(&irp.stack().parameters()).length as usize;
    let Some(irp) = adopt(irp, TDI_RECEIVE_DATAGRAM, outbound) else {
        return;
    };
    let rest = data.get(reply.taken..).unwrap_or_default();
    let written = match irp.irp().mdl() {
        Some(mdl) => {
            let take = rest.len().min(mdl.len()).min(length);
            mdl.write(rest.get(..take).unwrap_or_default())
        }
        None => Ok(0),
    };
    let (status, information) = match written {
        Ok(written) => (NtStatus::SUCCESS, written),
        Err(status) => (status, 0),
    };
    outbound.lock().push(Completion {
        irp,
        status,
        information,
        finish: Finish::ReturnPeer(from),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_are_set_cleared_and_forgotten_per_address() {
        let mut handlers = Handlers::default();
        assert_eq!(handlers.get(3, TDI_EVENT_RECEIVE), None);
        assert_eq!(handlers.set(3, 3, 0x1000, 0x2000), Ok(()));
        assert_eq!(
            handlers.get(3, TDI_EVENT_RECEIVE),
            ClientHandler::new(0x1000, 0x2000)
        );
        assert_eq!(handlers.get(3, TDI_EVENT_CONNECT), None);
        assert_eq!(handlers.get(2, TDI_EVENT_RECEIVE), None);
        // A null handler clears; an unknown event type is rejected.
        assert_eq!(handlers.set(3, 3, 0, 0), Ok(()));
        assert_eq!(handlers.get(3, TDI_EVENT_RECEIVE), None);
        assert_eq!(
            handlers.set(3, EVENT_TYPES, 0x1000, 0),
            Err(NtStatus::INVALID_PARAMETER)
        );
        assert_eq!(handlers.get(3, -1), None);
        // Clearing an address that never registered anything costs nothing.
        assert_eq!(handlers.set(100, 1, 0, 0), Ok(()));
        assert!(handlers.slots.len() < 100);
        // The file's close forgets everything.
        assert_eq!(handlers.set(3, 1, 0x3000, 7), Ok(()));
        handlers.clear(3);
        assert_eq!(handlers.get(3, TDI_EVENT_DISCONNECT), None);
    }

    #[test]
    fn calls_in_progress_are_counted_per_address() {
        let mut handlers = Handlers::default();
        assert_eq!(handlers.set(1, 3, 0x1000, 0), Ok(()));
        assert!(handlers.begin_call(1, TDI_EVENT_RECEIVE).is_some());
        assert!(handlers.begin_call(1, TDI_EVENT_RECEIVE).is_some());
        assert!(
            handlers.begin_call(1, TDI_EVENT_CONNECT).is_none(),
            "no handler: no call"
        );
        assert_eq!(handlers.calls.get(1), Some(&2));
        handlers.clear(1);
        assert!(
            handlers.begin_call(1, TDI_EVENT_RECEIVE).is_none(),
            "cleared: no new call"
        );
        handlers.end_call(1);
        handlers.end_call(1);
        handlers.end_call(1);
        assert_eq!(handlers.calls.get(1), Some(&0));
    }
}
