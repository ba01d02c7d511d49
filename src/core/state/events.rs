//! The core's side of TDI client events (see [`crate::core::events`]): which events are due on
//! a connection, a listener or a datagram address file, raised as values under the core lock,
//! and the outcomes of their delivery applied under the core lock again.
//!
//! Everything here runs with the core spin lock held, at DISPATCH_LEVEL, and never calls a
//! client.
#![forbid(unsafe_code)]

use super::{Completer, Core, RETRIES};
use crate::core::address::{Listener, Protocol};
use crate::core::connection::{CloseReason, Connection, Phase, Receive};
use crate::core::endpoint::State as EndpointState;
use crate::core::events::{Answer, Due, Event, LOOKAHEAD, Outcome};
use crate::core::icmp::UdpError;
use crate::core::slab::Key;
use crate::core::sockets::SocketKey;
use crate::nt::NtStatus;
use crate::nt::irp::CancelRoutine;
use crate::nt::pool;
use crate::nt::types::*;
use alloc::vec::Vec;
use core::net::SocketAddrV4;
use smoltcp::socket::tcp;

/// Raises the events due on connection `key`: `ClientEventReceive` for buffered data no
/// TDI_RECEIVE waits for and the client has not declined, then `ClientEventDisconnect`
/// (`TDI_DISCONNECT_ABORT` once it was reset or timed out, `TDI_DISCONNECT_RELEASE` once the
/// peer's FIN is reached, after the data before it). One event per connection is in flight at
/// a time. `Err` if no memory was left to raise one: the caller retries.
/// DISPATCH_LEVEL, under the core lock.
pub(super) fn raise(
    key: Key,
    entry: &mut Connection,
    socket: &mut tcp::Socket<'static>,
    c: &Completer<'_>,
) -> Result<(), NtStatus> {
    let Some(address) = entry.address else {
        return Ok(());
    };
    if entry.phase != Phase::Connected || entry.events.in_flight {
        return Ok(());
    }
    let available = socket.recv_queue();
    entry.events.declined = entry.events.declined.min(available);
    let readable = entry.receives.is_empty() && entry.closed != Some(CloseReason::Aborted);
    if readable
        && available > entry.events.declined
        && c.hub.has_handler(address, TDI_EVENT_RECEIVE)
    {
        let mut data = pool::try_vec(available.min(LOOKAHEAD))?;
        data.resize(available.min(LOOKAHEAD), 0);
        let copied = socket.peek_slice(&mut data).unwrap_or(0);
        data.truncate(copied);
        if copied > 0 {
            let due = Due::Receive {
                connection: key,
                context: entry.context,
                address,
                data,
                available,
            };
            c.hub
                .raise(due)
                .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
            entry.events.in_flight = true;
            return Ok(());
        }
    }
    let flags = if matches!(
        entry.closed,
        Some(CloseReason::Reset | CloseReason::TimedOut)
    ) && !entry.events.aborted
    {
        TDI_DISCONNECT_ABORT
    } else if (entry.fin_received || entry.closed == Some(CloseReason::Fin))
        && !entry.events.released
        && available == 0
    {
        TDI_DISCONNECT_RELEASE
    } else {
        return Ok(());
    };
    if !c.hub.has_handler(address, TDI_EVENT_DISCONNECT) {
        return Ok(());
    }
    let due = Due::Disconnect {
        connection: key,
        context: entry.context,
        address,
        flags,
    };
    c.hub
        .raise(due)
        .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
    entry.events.released = true;
    entry.events.aborted |= flags == TDI_DISCONNECT_ABORT;
    entry.events.in_flight = true;
    Ok(())
}

/// Offers `payload` to the `ClientEventReceiveDatagram` handler of `address` (no
/// TDI_RECEIVE_DATAGRAM waits on it): `Some(true)` if raised, `Some(false)` if dropped for
/// lack of memory, `None` if the address has no such handler. DISPATCH_LEVEL, under the core
/// lock.
pub(in crate::core) fn offer_datagram(
    c: &Completer<'_>,
    address: u32,
    from: SocketAddrV4,
    payload: &[u8],
    broadcast: bool,
) -> Option<bool> {
    if !c.hub.has_handler(address, TDI_EVENT_RECEIVE_DATAGRAM) {
        return None;
    }
    let Ok(mut data) = pool::try_vec(payload.len()) else {
        return Some(false);
    };
    data.extend_from_slice(payload);
    let due = Due::Datagram {
        address,
        from,
        data,
        broadcast,
    };
    Some(c.hub.raise(due).is_ok())
}

impl Completer<'_> {
    /// Remembers `socket` for another try at its events in the next pass. Any IRQL.
    pub(super) fn retry(&self, socket: SocketKey) {
        let mut retries = self.retries.get();
        if let Some(slot) = retries.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(socket);
        }
        self.retries.set(retries);
    }

    /// Takes the sockets remembered by [`Completer::retry`]. Any IRQL.
    pub(super) fn take_retries(&self) -> [Option<SocketKey>; RETRIES] {
        self.retries.replace([None; RETRIES])
    }
}

impl Core {
    /// An ICMP error about a UDP datagram the host sent: `ClientEventErrorEx` on the address
    /// file it left from (the exact binding, else the wildcard one), with the `TDI_DEST_*`
    /// status the error means and the datagram's destination, as Windows raises it.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn udp_error_event(&self, error: UdpError, c: &Completer<'_>) {
        let bound = |exact: bool| {
            self.addresses.iter().find_map(|(key, address)| {
                let matches = address.protocol == Protocol::Udp
                    && address.file_open
                    && address.port() == error.local.port()
                    && if exact {
                        address.ip() == *error.local.ip()
                    } else {
                        address.ip().is_unspecified()
                    };
                matches.then_some(key.index)
            })
        };
        let Some(address) = bound(true).or_else(|| bound(false)) else {
            return;
        };
        if !c.hub.has_handler(address, TDI_EVENT_ERROR_EX) {
            return;
        }
        let status = match error.status {
            IP_DEST_NET_UNREACHABLE => NtStatus::NETWORK_UNREACHABLE,
            IP_DEST_PROT_UNREACHABLE => NtStatus::PROTOCOL_UNREACHABLE,
            IP_DEST_PORT_UNREACHABLE => NtStatus::PORT_UNREACHABLE,
            _ => NtStatus::HOST_UNREACHABLE,
        };
        // Without memory the error goes unreported, as an ICMP message may be lost.
        let _ = c.hub.raise(Due::Error {
            address,
            status,
            remote: error.remote,
        });
    }

    /// Follows up TDI_SET_EVENT_HANDLER (already registered in the hub by the dispatch
    /// routine): a connect handler on a TCP address makes it listen, so that connections are
    /// offered to the handler without any TDI_LISTEN. DISPATCH_LEVEL, under the core lock.
    pub(super) fn handler_set(
        &mut self,
        address: u32,
        event: usize,
        set: bool,
        c: &Completer<'_>,
    ) -> NtStatus {
        let Some(key) = self.address_key(address) else {
            return NtStatus::INVALID_PARAMETER;
        };
        let tcp = self
            .addresses
            .get(key)
            .is_some_and(|address| address.protocol == Protocol::Tcp);
        if set && tcp && event == TDI_EVENT_CONNECT as usize {
            if let Err(status) = self.ensure_listener(key) {
                return status;
            }
            self.maintain_listener(key, c);
        }
        NtStatus::SUCCESS
    }

    /// Gives an open address file its listener (the transport's own accept queue) if it has
    /// none yet. DISPATCH_LEVEL, under the core lock.
    pub(super) fn ensure_listener(&mut self, address_key: Key) -> Result<(), NtStatus> {
        let (backlog, half_open_limit) = (self.config.backlog, self.config.half_open_limit);
        match self.addresses.get_mut(address_key) {
            Some(entry) if entry.file_open => {
                if entry.listener.is_none() {
                    pool::try_push(&mut self.listeners, address_key)?;
                    entry.listener = Some(Listener::new(backlog, half_open_limit));
                }
                Ok(())
            }
            _ => Err(NtStatus::INVALID_CONNECTION),
        }
    }

    /// Offers the connections of the accept queue to the address's connect handler when no
    /// TDI_LISTEN waits (a pending TDI_LISTEN takes precedence, as on Windows).
    /// DISPATCH_LEVEL, under the core lock.
    pub(super) fn offer_connections(
        &mut self,
        listener: &mut Listener,
        address_key: Key,
        port: u16,
        c: &Completer<'_>,
    ) {
        if !listener.waiting.is_empty()
            || listener.ready.is_empty()
            || !c.hub.has_handler(address_key.index, TDI_EVENT_CONNECT)
        {
            return;
        }
        while let Some((socket, peer)) = listener.ready.pop_front() {
            let due = Due::Connect {
                listener: address_key,
                socket,
                peer,
                port,
            };
            if c.hub.raise(due).is_err() {
                // The slot just popped is free: this cannot allocate.
                listener.ready.push_front((socket, peer));
                if let Some(socket) = listener.socket {
                    c.retry(socket);
                }
                break;
            }
        }
    }

    /// Raises an event for each socket remembered for a retry. DISPATCH_LEVEL, under the core
    /// lock.
    pub(super) fn raise_retries(&mut self, c: &Completer<'_>) {
        for socket in c.take_retries().into_iter().flatten() {
            self.sockets.raise(socket);
        }
    }

    /// Applies what the clients answered to delivered events, in order. `cancel` is armed on
    /// receive IRPs handed back by handlers. DISPATCH_LEVEL, under the core lock.
    pub fn apply_events(&mut self, events: Vec<Event>, cancel: CancelRoutine, c: &Completer<'_>) {
        for event in events {
            match event {
                Event::Outcome(Outcome::Received {
                    connection,
                    indicated,
                    available,
                    taken,
                    irp,
                }) => self.received(connection, indicated, available, taken, irp, cancel, c),
                Event::Outcome(Outcome::Disconnected { connection }) => {
                    if let Some(entry) = self.connections.get_mut(connection) {
                        entry.events.in_flight = false;
                    }
                    self.service(connection, c);
                }
                Event::Outcome(Outcome::Connect {
                    listener,
                    socket,
                    peer,
                    port,
                    answer,
                }) => self.answered(listener, socket, peer, port, answer, c),
                Event::Due(_) | Event::Done => {}
            }
        }
        self.raise_retries(c);
    }

    /// A receive indication's outcome: the bytes taken leave the ring, a returned IRP is
    /// served before anything else, and bytes shown and left are not indicated again until
    /// more arrive (what was shown and all taken is followed by the next indication at once).
    #[expect(
        clippy::too_many_arguments,
        reason = "the outcome's fields, applied in one place"
    )]
    fn received(
        &mut self,
        connection: Key,
        indicated: usize,
        available: usize,
        taken: usize,
        irp: Option<Receive>,
        cancel: CancelRoutine,
        c: &Completer<'_>,
    ) {
        let Some(entry) = self.connections.get_mut(connection) else {
            if let Some(receive) = irp {
                c.done(receive.irp, NtStatus::INVALID_CONNECTION, 0);
            }
            return;
        };
        entry.events.in_flight = false;
        if let Some(tcp) = entry.socket.and_then(|socket| self.sockets.get(socket)) {
            let mut left = taken;
            while left > 0 {
                match tcp.recv(|ring| {
                    let n = ring.len().min(left);
                    (n, n)
                }) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left -= n,
                }
            }
        }
        entry.events.declined = if irp.is_none() && taken < indicated {
            available.saturating_sub(taken)
        } else {
            0
        };
        if let Some(mut receive) = irp {
            if !receive.irp.arm(cancel) {
                c.done(receive.irp, NtStatus::CANCELLED, 0);
            } else if let Err(status) = pool::try_reserve_deque(&mut entry.receives, 1) {
                if receive.irp.disarm() {
                    c.done(receive.irp, status, 0);
                } else {
                    // The cancel routine claimed it and waits for the core lock: serve it.
                    entry.receives.push_front(receive);
                }
            } else {
                entry.receives.push_front(receive);
            }
        }
        self.service(connection, c);
    }

    /// A connect handler's answer: the connection is accepted onto the endpoint of the
    /// TDI_ACCEPT IRP (associated with this address, idle or finished), whose IRP then
    /// completes; refused
    /// connections are reset; without a handler it goes back to the accept queue.
    fn answered(
        &mut self,
        listener: Key,
        socket: SocketKey,
        peer: SocketAddrV4,
        port: u16,
        answer: Answer,
        c: &Completer<'_>,
    ) {
        let listening = self
            .addresses
            .get(listener)
            .is_some_and(|address| address.listener.is_some());
        match answer {
            Answer::Unhandled if listening => {
                let queued = self.with_listener(listener.index, |listener| {
                    pool::try_reserve_deque(&mut listener.ready, 1)
                        .map(|()| listener.ready.push_front((socket, peer)))
                });
                if !matches!(queued, Some(Ok(()))) {
                    self.abandon(socket, port, true);
                }
            }
            Answer::Unhandled | Answer::Refused => self.abandon(socket, port, true),
            Answer::Accept {
                context,
                connection,
                irp,
            } => {
                // An idle endpoint of this address, or a finished one used again.
                let endpoint = connection.and_then(|index| {
                    let (key, entry) = self.connection_mut(index)?;
                    let state = entry.state();
                    let usable = matches!(state, EndpointState::Idle | EndpointState::Disconnected);
                    (listening && usable && entry.address == Some(listener.index))
                        .then_some((index, key, state))
                });
                let endpoint = endpoint
                    .filter(|&(_, key, state)| state == EndpointState::Idle || self.recycle(key))
                    .and_then(|(index, key, _)| {
                        self.connections.get_mut(key)?.context = context;
                        Some((index, key))
                    });
                match endpoint {
                    Some((index, key)) => {
                        self.accept_onto(index, socket, peer, port, c);
                        c.done(irp, NtStatus::SUCCESS, 0);
                        self.service(key, c);
                    }
                    None => {
                        self.abandon(socket, port, true);
                        c.done(irp, NtStatus::INVALID_CONNECTION, 0);
                    }
                }
            }
        }
    }
}
