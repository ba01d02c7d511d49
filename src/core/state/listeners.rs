//! Listeners: TDI_LISTEN, the LISTEN socket of each listening address and its refresh, the
//! half-open connections it holds and their hand-over to waiting listens, and the listener's end.
//! Run under the core lock at DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use super::*;

impl Core {
    pub(super) fn listen(&mut self, connection: u32, irp: PendingIrp, c: &Completer<'_>) {
        let (key, entry) = match self.admit(connection, Verb::Listen) {
            Ok(admitted) => admitted,
            Err(status) => return c.done(irp, status, 0),
        };
        let Some(address) = entry.address else {
            return c.done(irp, NtStatus::INVALID_CONNECTION, 0);
        };
        let Some(address_key) = self.address_key(address) else {
            return c.done(irp, NtStatus::INVALID_CONNECTION, 0);
        };
        if let Err(status) = self.ensure_listener(address_key) {
            return c.done(irp, status, 0);
        }
        let queued = self.with_listener(address, |listener| {
            pool::try_reserve_deque(&mut listener.waiting, 1)
                .map(|()| listener.waiting.push_back(connection))
        });
        match queued {
            Some(Ok(())) => {
                if let Some(entry) = self.connections.get_mut(key) {
                    entry.phase = Phase::Listening;
                    entry.listen = Some(irp);
                }
                self.maintain_listener(address_key, c);
            }
            Some(Err(status)) => c.done(irp, status, 0),
            None => c.done(irp, NtStatus::INVALID_CONNECTION, 0),
        }
    }

    /// Takes endpoint `connection` off the TDI_LISTENs waiting on address `address`'s
    /// listener. DISPATCH_LEVEL, core lock held.
    pub(super) fn stop_waiting(&mut self, address: u32, connection: u32) {
        self.with_listener(address, |listener| {
            listener.waiting.retain(|waiting| *waiting != connection)
        });
    }

    pub(super) fn with_listener<R>(
        &mut self,
        address: u32,
        f: impl FnOnce(&mut Listener) -> R,
    ) -> Option<R> {
        let key = self.address_key(address)?;
        self.addresses.get_mut(key)?.listener.as_mut().map(f)
    }

    /// Keeps one socket in LISTEN, moves sockets that left LISTEN to the half-open list,
    /// promotes established ones to the accept queue, and hands queued connections to waiting
    /// TDI_LISTENs.
    pub(in crate::core) fn maintain_listener(&mut self, address_key: Key, c: &Completer<'_>) {
        let Some(address) = self.addresses.get_mut(address_key) else {
            return;
        };
        let (ip, port) = (address.ip(), address.port());
        let Some(mut listener) = address.listener.take() else {
            return;
        };
        self.refresh_listen_socket(&mut listener, address_key, ip, port);
        self.promote_half_open(&mut listener, port);
        while !listener.ready.is_empty() {
            let Some(waiting) = listener.waiting.pop_front() else {
                break;
            };
            let Some((socket, peer)) = listener.ready.pop_front() else {
                break;
            };
            self.accept_onto(waiting, socket, peer, port, c);
        }
        self.offer_connections(&mut listener, address_key, port, c);
        if let Some(address) = self.addresses.get_mut(address_key) {
            address.listener = Some(listener);
        }
    }

    /// If the LISTEN socket took a SYN, files its 4-tuple, moves it to the half-open list and
    /// opens a new one.
    pub(super) fn refresh_listen_socket(
        &mut self,
        listener: &mut Listener,
        address_key: Key,
        ip: Ipv4Addr,
        port: u16,
    ) {
        if let Some(key) = listener.socket {
            match self.sockets.peek(key).map(|socket| socket.state()) {
                Some(State::Listen) => {}
                Some(State::Closed) | None => {
                    self.sockets.remove(key);
                    listener.socket = None;
                }
                Some(_) => {
                    listener.socket = None;
                    let tuple = self.sockets.get(key).and_then(|socket| {
                        socket.set_timeout(Some(self.config.syn_received_timeout));
                        Some((
                            endpoint_v4(socket.local_endpoint()?),
                            endpoint_v4(socket.remote_endpoint()?),
                        ))
                    });
                    let filed = tuple.is_some_and(|tuple| {
                        let route = self.route_for(*tuple.0.ip(), *tuple.1.ip());
                        self.sockets.set_tuple(key, tuple, route).is_ok()
                    });
                    let held = filed && self.ports.acquire(port).is_ok();
                    self.count(|c| c.tcp.passive_opens = c.tcp.passive_opens.wrapping_add(1));
                    if !held || pool::try_push(&mut listener.half_open, key).is_err() {
                        // No memory for the bookkeeping: refuse this connection attempt.
                        if let Some(socket) = self.sockets.get(key) {
                            socket.abort();
                        }
                        self.sockets.remove(key);
                        if held {
                            self.ports.release(port);
                        }
                    }
                }
            }
        }
        if listener.socket.is_none() {
            listener.socket = self.new_listen_socket(address_key, ip, port).ok();
        }
    }

    /// Moves established half-open connections to the accept queue and drops dead ones,
    /// keeping the rest in their order (oldest first, for [`Core::make_room`]).
    pub(super) fn promote_half_open(&mut self, listener: &mut Listener, port: u16) {
        let mut kept = 0;
        let mut stalled = false;
        for index in 0..listener.half_open.len() {
            let Some(&key) = listener.half_open.get(index) else {
                break;
            };
            let (state, remote) = match self.sockets.peek(key) {
                Some(socket) => (socket.state(), socket.remote_endpoint()),
                None => (State::Closed, None),
            };
            let keep = match (state, remote) {
                _ if stalled => true,
                (State::SynReceived, _) => true,
                (State::Closed, _) | (_, None) => {
                    self.count(|c| c.tcp.attempt_fails = c.tcp.attempt_fails.wrapping_add(1));
                    self.sockets.remove(key);
                    self.ports.release(port);
                    false
                }
                (_, Some(remote)) => {
                    if pool::try_reserve_deque(&mut listener.ready, 1).is_err() {
                        // No memory for the queue: try again at the next pass.
                        stalled = true;
                        true
                    } else {
                        if let Some(socket) = self.sockets.get(key) {
                            socket.set_timeout(None);
                        }
                        listener.ready.push_back((key, endpoint_v4(remote)));
                        false
                    }
                }
            };
            if keep {
                listener.half_open.swap(kept, index);
                kept += 1;
            }
        }
        listener.half_open.truncate(kept);
    }

    /// A connection request found `address_key`'s listener without room, or without a LISTEN
    /// socket. If half-open connections fill it, the oldest gives its place up: its socket is
    /// dropped silently (its SYN-ACK likely went to a spoofed address; if not, its peer's ACK
    /// now meets a RST). A LISTEN socket that could not be allocated earlier is tried again.
    /// Returns the LISTEN socket when the request may be delivered now.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn make_room(&mut self, address_key: Key) -> Option<SocketKey> {
        let address = self.addresses.get_mut(address_key)?;
        let (ip, port) = (address.ip(), address.port());
        let mut listener = address.listener.take()?;
        if !listener.has_room() && !listener.half_open.is_empty() {
            let oldest = listener.half_open.remove(0);
            self.sockets.remove(oldest);
            self.ports.release(port);
            self.count(|c| c.tcp.attempt_fails = c.tcp.attempt_fails.wrapping_add(1));
        }
        if listener.socket.is_none() && listener.has_room() {
            listener.socket = self.new_listen_socket(address_key, ip, port).ok();
        }
        let socket = listener.socket.filter(|_| listener.has_room());
        if let Some(address) = self.addresses.get_mut(address_key) {
            address.listener = Some(listener);
        }
        socket
    }

    /// Binds an accepted socket to the connection whose TDI_LISTEN waited for it and completes
    /// that listen with the peer's address.
    pub(super) fn accept_onto(
        &mut self,
        connection: u32,
        socket: SocketKey,
        peer: SocketAddrV4,
        port: u16,
        c: &Completer<'_>,
    ) {
        let Some((_, entry)) = self.connection_mut(connection) else {
            self.abandon(socket, port, true);
            return;
        };
        let no_delay = entry.no_delay;
        entry.socket = Some(socket);
        entry.phase = Phase::Connected;
        let listen = entry.listen.take();
        if let Some(key) = self.connection_key(connection) {
            self.sockets.set_owner(socket, Owner::Connection(key));
        }
        if let Some(tcp) = self.sockets.get(socket) {
            tcp.set_nagle_enabled(!no_delay);
        }
        if let Some(irp) = listen {
            c.finish(irp, NtStatus::SUCCESS, 0, Finish::ReturnPeer(peer));
        }
    }

    pub(super) fn new_listen_socket(
        &mut self,
        address_key: Key,
        ip: Ipv4Addr,
        port: u16,
    ) -> Result<SocketKey, NtStatus> {
        let mut socket = self.new_socket(false)?;
        let addr = (!ip.is_unspecified()).then_some(IpAddress::Ipv4(ip));
        if socket
            .get_mut()
            .listen(IpListenEndpoint { addr, port })
            .is_err()
        {
            self.sockets.discard(socket);
            return Err(NtStatus::INVALID_ADDRESS);
        }
        let process = self
            .addresses
            .get(address_key)
            .map(|address| address.owner)
            .unwrap_or_default();
        self.sockets
            .add(socket, Owner::Listener(address_key), process)
    }

    /// Ends an address's listener: waiting TDI_LISTENs complete with `STATUS_CANCELLED`,
    /// connections not yet accepted are reset.
    pub(super) fn destroy_listener(&mut self, address_key: Key, c: &Completer<'_>) {
        let Some(listener) = self
            .addresses
            .get_mut(address_key)
            .and_then(|address| address.listener.as_mut())
        else {
            return;
        };
        let waiting = core::mem::take(&mut listener.waiting);
        for connection in waiting {
            let Some((_, entry)) = self.connection_mut(connection) else {
                continue;
            };
            entry.phase = Phase::Idle;
            if let Some(irp) = entry.listen.take() {
                c.done(irp, NtStatus::CANCELLED, 0);
            }
        }
        self.destroy_listener_sockets(address_key);
    }

    pub(super) fn destroy_listener_sockets(&mut self, address_key: Key) {
        let Some(address) = self.addresses.get_mut(address_key) else {
            return;
        };
        let port = address.port();
        let Some(listener) = address.listener.take() else {
            return;
        };
        self.listeners.retain(|key| *key != address_key);
        if let Some(socket) = listener.socket {
            self.sockets.remove(socket);
        }
        for socket in listener.half_open {
            self.abandon(socket, port, true);
        }
        for (socket, _) in listener.ready {
            self.abandon(socket, port, true);
        }
    }
}
