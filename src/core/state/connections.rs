//! TCP connections: connect, send, receive, disconnect, queries and options, and the follow-up
//! of a connection's socket (`service`). Run under the core lock at DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use super::*;

impl Core {
    /// The endpoint `connection`, if `verb` is to be served in its state
    /// ([`endpoint::rule`]); otherwise the status to complete the request with at once (an
    /// unknown endpoint: `STATUS_INVALID_CONNECTION`). DISPATCH_LEVEL, core lock held.
    pub(super) fn admit(
        &mut self,
        connection: u32,
        verb: Verb,
    ) -> Result<(Key, &mut Connection), NtStatus> {
        let (key, entry) = self
            .connection_mut(connection)
            .ok_or(NtStatus::INVALID_CONNECTION)?;
        let state = entry.state();
        match endpoint::rule(state, verb) {
            endpoint::Rule::Serve => {}
            endpoint::Rule::Answer(status) => return Err(status),
        }
        if state == endpoint::State::Disconnected
            && matches!(verb, Verb::Listen | Verb::Connect)
            && !self.recycle(key)
        {
            return Err(NtStatus::INVALID_CONNECTION);
        }
        self.connections
            .get_mut(key)
            .map(|entry| (key, entry))
            .ok_or(NtStatus::INVALID_CONNECTION)
    }

    /// A new TCP socket, its rings from the lookaside: full-sized buffers, or small ones once
    /// the sockets together hold [`CoreConfig::buffer_pressure`] bytes (the lookaside then
    /// frees its full-sized blocks: no socket takes them while the pressure lasts);
    /// `STATUS_INSUFFICIENT_RESOURCES` past [`CoreConfig::socket_memory_limit`] or when the
    /// pool has no block. DISPATCH_LEVEL, core lock held.
    pub(super) fn new_socket(
        &mut self,
        no_delay: bool,
    ) -> Result<Lent<tcp::Socket<'static>>, NtStatus> {
        let full = self.config.rx_buffer + self.config.tx_buffer;
        let pressed =
            self.sockets.buffer_bytes().saturating_add(full) > self.config.buffer_pressure;
        let (rx_size, tx_size) = if pressed {
            (self.config.small_buffer, self.config.small_buffer)
        } else {
            (self.config.rx_buffer, self.config.tx_buffer)
        };
        let held = self
            .sockets
            .buffer_bytes()
            .saturating_add(rx_size + tx_size);
        if held > self.config.socket_memory_limit {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        if pressed {
            self.sockets
                .lookaside_mut()
                .flush_except(self.config.small_buffer);
        }
        let mut socket = self.sockets.new_socket(rx_size, tx_size)?;
        let tcp = socket.get_mut();
        tcp.set_nagle_enabled(!no_delay);
        if pressed {
            tcp.set_ack_delay(None);
        }
        Ok(socket)
    }

    pub(super) fn connect(
        &mut self,
        connection: u32,
        remote: SocketAddrV4,
        timeout: Timeout,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        match self.start_connect(connection, remote, timeout) {
            Ok(key) => {
                if let Some(entry) = self.connections.get_mut(key) {
                    entry.connect = Some(irp);
                }
            }
            Err(status) => c.done(irp, status, 0),
        }
    }

    pub(super) fn start_connect(
        &mut self,
        connection: u32,
        remote: SocketAddrV4,
        timeout: Timeout,
    ) -> Result<Key, NtStatus> {
        let (key, entry) = self.admit(connection, Verb::Connect)?;
        let no_delay = entry.no_delay;
        let address = entry.address.ok_or(NtStatus::INVALID_CONNECTION)?;
        let (bound, port, process) = self
            .address_key(address)
            .and_then(|key| self.addresses.get(key))
            .map(|a| (a.ip(), a.port(), a.owner))
            .ok_or(NtStatus::INVALID_CONNECTION)?;
        if remote.port() == 0 || remote.ip().is_unspecified() || remote.ip().is_broadcast() {
            return Err(NtStatus::INVALID_ADDRESS);
        }
        let local = SocketAddrV4::new(self.source_for(bound, *remote.ip())?, port);
        if self.has_socket_for(local, remote) {
            // The 4-tuple is still in use (e.g. in TIME-WAIT after an explicit rebind).
            return Err(NtStatus::ADDRESS_ALREADY_EXISTS);
        }
        // AFD passes no timeout; a relative one (100 ns units) shortens the attempt.
        let wait = match timeout {
            Timeout::Relative(units) if units > 0 => Duration::from_micros(units / 10),
            _ => self.config.connect_timeout,
        };
        let mut socket = self.new_socket(no_delay)?;
        socket.get_mut().set_timeout(Some(wait));
        self.reseed(local, remote);
        let opened = socket
            .get_mut()
            .connect(
                self.iface.context(),
                IpEndpoint::new(IpAddress::Ipv4(*remote.ip()), remote.port()),
                IpListenEndpoint {
                    addr: Some(IpAddress::Ipv4(*local.ip())),
                    port,
                },
            )
            .map_err(|_| NtStatus::INVALID_ADDRESS)
            .and_then(|()| self.ports.acquire(port));
        if let Err(status) = opened {
            self.sockets.discard(socket);
            return Err(status);
        }
        let socket = match self.sockets.add(socket, Owner::Connection(key), process) {
            Ok(socket) => socket,
            Err(status) => {
                self.ports.release(port);
                return Err(status);
            }
        };
        let route = self.route_for(*local.ip(), *remote.ip());
        if let Err(status) = self.sockets.set_tuple(socket, (local, remote), route) {
            self.sockets.remove(socket);
            self.ports.release(port);
            return Err(status);
        }
        let deadline = (self.now + wait).total_micros();
        if let Some(entry) = self.connections.get_mut(key) {
            entry.socket = Some(socket);
            entry.phase = Phase::Connecting { deadline };
        }
        self.count(|c| c.tcp.active_opens = c.tcp.active_opens.wrapping_add(1));
        Ok(key)
    }

    pub(super) fn send(
        &mut self,
        connection: u32,
        length: u32,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let (key, entry) = match self.admit(connection, Verb::Send) {
            Ok(admitted) => admitted,
            Err(status) => return c.done(irp, status, 0),
        };
        if let Some(reason) = entry.closed {
            return c.done(irp, reason.error_status(), 0);
        }
        if let Err((irp, status)) = entry.queue_send(irp, length) {
            return c.done(irp, status, 0);
        }
        self.service(key, c);
    }

    pub(super) fn receive(
        &mut self,
        connection: u32,
        length: u32,
        peek: bool,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let (key, entry) = match self.admit(connection, Verb::Receive) {
            Ok(admitted) => admitted,
            Err(status) => return c.done(irp, status, 0),
        };
        let receive = Receive { irp, length, peek };
        if let Err((irp, status)) = entry.queue_receive(receive) {
            return c.done(irp, status, 0);
        }
        self.service(key, c);
    }

    pub(super) fn disconnect(
        &mut self,
        connection: u32,
        kind: Disconnect,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let (key, entry) = match self.admit(connection, Verb::Disconnect(kind)) {
            Ok(admitted) => admitted,
            Err(status) => return c.done(irp, status, 0),
        };
        match (entry.phase, kind) {
            (Phase::Listening, _) => {
                // Withdraws the listen: the endpoint is idle again.
                entry.phase = Phase::Idle;
                if let Some(listen) = entry.listen.take() {
                    c.done(listen, NtStatus::CANCELLED, 0);
                }
                if let Some(address) = entry.address {
                    self.stop_waiting(address, key.index);
                }
            }
            (Phase::Connecting { .. }, _) => {
                // Abandons the attempt (RST): the endpoint is idle again.
                entry.phase = Phase::Idle;
                if let Some(connect) = entry.connect.take() {
                    c.done(connect, NtStatus::CANCELLED, 0);
                }
                if let Some(socket) = entry.socket.take() {
                    let port = self.connection_port(key);
                    self.abandon(socket, port, true);
                }
            }
            (_, Disconnect::Release) => {
                // The FIN follows the data already queued: `service` closes the socket once the
                // pending sends have been copied.
                entry.send_shutdown = true;
                c.done(irp, NtStatus::SUCCESS, 0);
                return self.service(key, c);
            }
            (_, Disconnect::Abort) => {
                entry.closed = Some(CloseReason::Aborted);
                for pending in entry.drain_data_irps() {
                    c.done(pending, NtStatus::FILE_CLOSED, 0);
                }
                if let Some(tcp) = entry.socket.and_then(|socket| self.sockets.get(socket)) {
                    tcp.abort();
                }
            }
            // `endpoint::rule` answers a WAIT itself.
            (_, Disconnect::Wait) => {}
        }
        c.done(irp, NtStatus::SUCCESS, 0);
    }

    pub(super) fn query(
        &mut self,
        object: Object,
        kind: QueryType,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let answer = match kind {
            QueryType::AddressInfo => self.local_address(object).map(Answer::address),
            QueryType::ConnectionInfo => Ok(Answer::connection(
                self.config.tx_buffer,
                self.config.rx_buffer,
            )),
            QueryType::ProviderInfo => Ok(Answer::provider()),
            QueryType::MaxDatagramInfo => Ok(Answer::max_datagram()),
            // Answered in dispatch, from the information model.
            QueryType::ProviderStatistics => Err(NtStatus::INVALID_DEVICE_REQUEST),
        };
        let result = answer.and_then(|answer| {
            let mdl = irp.irp().mdl().ok_or(NtStatus::BUFFER_TOO_SMALL)?;
            if mdl.len() < answer.bytes().len() {
                return Err(NtStatus::BUFFER_TOO_SMALL);
            }
            mdl.write(answer.bytes())
        });
        match result {
            Ok(written) => c.done(irp, NtStatus::SUCCESS, written),
            Err(status) => c.done(irp, status, 0),
        }
    }

    /// The true local address of an object: a connection's socket endpoint once it has one
    /// (also for accepted connections), else its address file's.
    pub(super) fn local_address(&mut self, object: Object) -> Result<TransportAddress, NtStatus> {
        let address = match object {
            Object::Address(index) => index,
            Object::Connection(index) => {
                let (_, entry) = self.admit(index, Verb::QueryAddress)?;
                let (socket, address) = (entry.socket, entry.address);
                if let Some(endpoint) = socket
                    .and_then(|socket| self.sockets.get(socket))
                    .and_then(|socket| socket.local_endpoint())
                {
                    let endpoint = endpoint_v4(endpoint);
                    return Ok(TransportAddress {
                        ip: *endpoint.ip(),
                        port: endpoint.port(),
                    });
                }
                address.ok_or(NtStatus::INVALID_CONNECTION)?
            }
        };
        let key = self.address_key(address).ok_or(NtStatus::INVALID_ADDRESS)?;
        let entry = self.addresses.get(key).ok_or(NtStatus::INVALID_ADDRESS)?;
        Ok(TransportAddress {
            ip: entry.ip(),
            port: entry.port(),
        })
    }

    pub(super) fn set_no_delay(&mut self, connection: u32, enabled: bool) -> NtStatus {
        let Some((_, entry)) = self.connection_mut(connection) else {
            return NtStatus::INVALID_CONNECTION;
        };
        entry.no_delay = enabled;
        if let Some(socket) = entry.socket.and_then(|socket| self.sockets.get(socket)) {
            socket.set_nagle_enabled(!enabled);
        }
        NtStatus::SUCCESS
    }

    /// Whether a socket already owns the connection `local` ↔ `remote`.
    pub(super) fn has_socket_for(&self, local: SocketAddrV4, remote: SocketAddrV4) -> bool {
        self.sockets.find(local, remote).is_some()
    }

    /// Moves one connection forward: the outcome of a connect, data for pending receives,
    /// room for pending sends, the FIN after a release, and how the connection ended.
    pub(super) fn service(&mut self, key: Key, c: &Completer<'_>) {
        let now = self.now.total_micros();
        let Some(entry) = self.connections.get_mut(key) else {
            return;
        };
        let Some(socket_key) = entry.socket else {
            return;
        };
        let timed_out = self.sockets.timed_out(socket_key, self.now);
        let Some(socket) = self.sockets.get(socket_key) else {
            return;
        };
        let state = socket.state();
        if let Phase::Connecting { deadline } = entry.phase {
            match state {
                State::SynSent | State::SynReceived => return,
                State::Closed => {
                    // smoltcp does not say why: a RST before the deadline is a refusal, no
                    // answer until the deadline a timeout. STATUS_TIMEOUT is a success code
                    // that AFD would take for a connection, hence LOCAL_DISCONNECT.
                    let status = if now >= deadline {
                        NtStatus::LOCAL_DISCONNECT
                    } else {
                        NtStatus::REMOTE_NOT_LISTENING
                    };
                    entry.phase = Phase::Idle;
                    entry.socket = None;
                    if let Some(irp) = entry.connect.take() {
                        c.done(irp, status, 0);
                    }
                    self.count(|c| c.tcp.attempt_fails = c.tcp.attempt_fails.wrapping_add(1));
                    let port = self.connection_port(key);
                    self.abandon(socket_key, port, false);
                    return;
                }
                _ => {
                    socket.set_timeout(None);
                    entry.phase = Phase::Connected;
                    if let Some(irp) = entry.connect.take() {
                        c.done(irp, NtStatus::SUCCESS, 0);
                    }
                }
            }
        }
        if entry.phase != Phase::Connected {
            return;
        }
        if matches!(
            state,
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait
        ) {
            entry.fin_received = true;
        }
        // Both FINs exchanged (TIME-WAIT, LAST-ACK, CLOSING): over for the endpoint, which may
        // take a new connection while smoltcp finishes this one.
        let both_closed = entry.fin_received
            && entry.send_shutdown
            && matches!(state, State::TimeWait | State::LastAck | State::Closing);
        if (state == State::Closed || both_closed) && entry.closed.is_none() {
            let reason = if entry.fin_received {
                CloseReason::Fin
            } else if timed_out {
                CloseReason::TimedOut
            } else {
                CloseReason::Reset
            };
            entry.closed = Some(reason);
            if reason != CloseReason::Fin {
                let counters = &self.counters;
                let mut all = counters.get();
                all.tcp.established_resets = all.tcp.established_resets.wrapping_add(1);
                counters.set(all);
            }
        }
        // Once `closed` is set, these complete whatever still waits with its final status.
        // While an event of the connection is delivered, its receives wait for the outcome.
        if !entry.events.in_flight {
            transfer::receive(entry, socket, c);
        }
        transfer::send(entry, socket, c);
        if entry.send_shutdown && entry.sends.is_empty() {
            socket.close();
        }
        if events::raise(key, entry, socket, c).is_err() {
            c.retry(socket_key);
        }
    }
}
