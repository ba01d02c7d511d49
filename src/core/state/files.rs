//! Address and connection files: open, associate, close; the ports they hold and the sockets
//! they leave behind. Run under the core lock at DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use super::*;

impl Core {
    pub(in crate::core) fn is_local(&self, ip: Ipv4Addr) -> bool {
        self.iface.has_ip_addr(IpAddress::Ipv4(ip))
    }

    pub(super) fn open_address(
        &mut self,
        address: TransportAddress,
        shared: bool,
        protocol: Protocol,
        owner: ProcessOwner,
        mut irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let result = if address.ip.is_unspecified() || self.is_local(address.ip) {
            match protocol {
                Protocol::Tcp => self.bind_address(address, shared, owner),
                Protocol::Udp => self.bind_udp_address(address, shared, owner),
                Protocol::Raw(number) => self.bind_raw_address(address, number, owner),
            }
        } else {
            Err(NtStatus::INVALID_ADDRESS)
        };
        match result {
            Ok(index) => {
                if let Some(file) = irp.irp_mut().stack().file_object() {
                    file.set_context(index as usize + 1, TDI_TRANSPORT_ADDRESS_FILE as usize);
                }
                c.done(irp, NtStatus::SUCCESS, 0);
            }
            Err(status) => c.done(irp, status, 0),
        }
    }

    /// The serial number of the next address file, TCP or UDP. DISPATCH_LEVEL.
    pub(in crate::core) fn take_serial(&mut self) -> u64 {
        self.next_serial = self.next_serial.wrapping_add(1);
        self.next_serial
    }

    pub(super) fn bind_address(
        &mut self,
        address: TransportAddress,
        shared: bool,
        owner: ProcessOwner,
    ) -> Result<u32, NtStatus> {
        let binding = self.ports.bind(address.ip, address.port, shared)?;
        let entry = Address {
            serial: self.take_serial(),
            owner,
            protocol: Protocol::Tcp,
            binding,
            refs: 1,
            file_open: true,
            listener: None,
            datagram: None,
            raw: None,
        };
        match self.addresses.try_insert(entry) {
            Ok(key) => Ok(key.index),
            Err(status) => {
                self.ports.unbind(binding);
                Err(status)
            }
        }
    }

    pub(super) fn open_connection(
        &mut self,
        context: usize,
        mut irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        match self.connections.try_insert(Connection::new(context)) {
            Ok(key) => {
                if let Some(file) = irp.irp_mut().stack().file_object() {
                    file.set_context(key.index as usize + 1, TDI_CONNECTION_FILE as usize);
                }
                c.done(irp, NtStatus::SUCCESS, 0);
            }
            Err(status) => c.done(irp, status, 0),
        }
    }

    /// IRP_MJ_CLOSE of an address or connection file.
    pub(super) fn close(&mut self, object: Object, c: &Completer<'_>) {
        match object {
            Object::Address(index) => {
                let Some(key) = self.address_key(index) else {
                    return;
                };
                if let Some(address) = self.addresses.get_mut(key) {
                    address.file_open = false;
                }
                c.hub.clear_handlers(index);
                self.destroy_listener(key, c);
                self.close_datagram(key, c);
                self.close_raw(key, c);
                self.release_address(index);
            }
            Object::Connection(index) => {
                let Some(key) = self.connection_key(index) else {
                    return;
                };
                self.detach(key, c);
                self.connections.remove(key);
            }
        }
    }

    /// TDI_DISASSOCIATE_ADDRESS: detaches an associated endpoint in whatever state it is
    /// (`endpoint::rule`), then succeeds.
    ///
    /// Windows documents only SUCCESS and INVALID_CONNECTION for this request, and AFD sends
    /// it before the CLOSE of every endpoint, established ones included, ignoring its result
    /// (afd-tdi-contract.md §3). ReactOS's tcpip makes it a no-op and unlinks at CLOSE, which
    /// left a TDI_LISTEN or TDI_CONNECT pending on an endpoint the client considers
    /// disassociated: a client connecting afterwards completed that listen with a live
    /// connection on an endpoint without an address. Here it does what the CLOSE that follows
    /// would do to the connection, leaving the endpoint open and unassociated (it can be
    /// associated again). DISPATCH_LEVEL, core lock held.
    pub(super) fn disassociate(&mut self, connection: u32, c: &Completer<'_>) -> NtStatus {
        match self.admit(connection, Verb::Disassociate) {
            Ok((key, _)) => {
                self.detach(key, c);
                NtStatus::SUCCESS
            }
            Err(status) => status,
        }
    }

    /// Takes everything from an endpoint: its pending requests complete with
    /// `STATUS_CANCELLED`, a waiting TDI_LISTEN leaves the listener, a connect in progress is
    /// aborted (RST), a connection is given up (FIN, or RST with unread data, as Windows does
    /// on close) as an orphan that holds its port until smoltcp is done, and the association
    /// goes. The endpoint is left Unassociated. DISPATCH_LEVEL, core lock held.
    pub(super) fn detach(&mut self, key: Key, c: &Completer<'_>) {
        let port = self.connection_port(key);
        let Some(entry) = self.connections.get_mut(key) else {
            return;
        };
        for irp in entry.drain_irps() {
            c.done(irp, NtStatus::CANCELLED, 0);
        }
        let connecting = matches!(entry.phase, Phase::Connecting { .. });
        let (address, socket) = (entry.address, entry.socket);
        // An event being delivered still comes back for this endpoint: its outcome must find
        // the mark (with no socket, it consumes nothing).
        let in_flight = entry.events.in_flight;
        *entry = Connection {
            no_delay: entry.no_delay,
            ..Connection::new(entry.context)
        };
        entry.events.in_flight = in_flight;
        if let Some(address) = address {
            self.stop_waiting(address, key.index);
        }
        if let Some(socket) = socket {
            let unread = self
                .sockets
                .get(socket)
                .is_some_and(|socket| socket.recv_queue() > 0);
            self.abandon(socket, port, connecting || unread);
        }
        if let Some(address) = address {
            self.release_address(address);
        }
    }

    /// Readies a finished (Disconnected) endpoint for a new connection, as Windows lets a client
    /// reuse one: the old connection's socket is left to end on its own (TIME-WAIT, a RST
    /// still to send) as an orphan holding its port, and the endpoint keeps its association
    /// and options, nothing else. `false`, changing nothing, while requests of the old
    /// connection are still to be completed (its last receives wait for an event's outcome).
    /// DISPATCH_LEVEL, core lock held.
    pub(super) fn recycle(&mut self, key: Key) -> bool {
        let port = self.connection_port(key);
        let Some(entry) = self.connections.get_mut(key) else {
            return false;
        };
        if entry.connect.is_some()
            || entry.listen.is_some()
            || !entry.sends.is_empty()
            || !entry.receives.is_empty()
        {
            return false;
        }
        let (address, socket) = (entry.address, entry.socket);
        let in_flight = entry.events.in_flight;
        *entry = Connection {
            no_delay: entry.no_delay,
            address,
            ..Connection::new(entry.context)
        };
        entry.events.in_flight = in_flight;
        if let Some(socket) = socket {
            self.abandon(socket, port, false);
        }
        true
    }

    /// The port a connection's socket holds: its address file's.
    pub(super) fn connection_port(&self, key: Key) -> u16 {
        self.connections
            .get(key)
            .and_then(|connection| connection.address)
            .and_then(|address| self.address_key(address))
            .and_then(|key| self.addresses.get(key))
            .map_or(0, Address::port)
    }

    /// Drops one reference to an address; the last one frees it and its port.
    pub(super) fn release_address(&mut self, index: u32) {
        let Some(key) = self.address_key(index) else {
            return;
        };
        let Some(address) = self.addresses.get_mut(key) else {
            return;
        };
        address.refs = address.refs.saturating_sub(1);
        if address.refs == 0 {
            self.destroy_listener_sockets(key);
            let Some(address) = self.addresses.remove(key) else {
                return;
            };
            match address.protocol {
                Protocol::Tcp => {
                    self.ports.unbind(address.binding);
                }
                Protocol::Udp => self.unbind_udp_address(key, &address),
                Protocol::Raw(_) => self.unbind_raw_address(key),
            }
        }
    }

    /// Gives a socket up: close it gracefully (FIN) or abort it (RST), and keep it as an orphan
    /// until smoltcp is done with it. The socket holds a reference on `port` until then.
    pub(super) fn abandon(&mut self, socket: SocketKey, port: u16, abort: bool) {
        if let Some(tcp) = self.sockets.get(socket) {
            if abort {
                tcp.abort();
            } else {
                tcp.close();
            }
        }
        self.sockets.orphan(socket, port, self.now);
        self.reap(socket, port);
    }

    /// Removes an orphan once smoltcp has finished with it (closed, with its tuple forgotten:
    /// after TIME-WAIT, or once the RST of an abort has gone out) or once the core gives it up
    /// (its peer silent too long, or its RST unable to leave), and releases its port.
    pub(super) fn reap(&mut self, socket: SocketKey, port: u16) {
        let done = self
            .sockets
            .peek(socket)
            .is_some_and(|tcp| tcp.state() == State::Closed && tcp.local_endpoint().is_none())
            || self.sockets.given_up(socket, self.now);
        if done {
            self.sockets.remove(socket);
            self.ports.release(port);
        }
    }

    pub(super) fn associate(&mut self, connection: u32, address: u32) -> NtStatus {
        let Some(address_key) = self.address_key(address) else {
            return NtStatus::INVALID_ADDRESS;
        };
        let entry = match self.admit(connection, Verb::Associate) {
            Ok((_, entry)) => entry,
            Err(status) => return status,
        };
        entry.address = Some(address);
        match self.addresses.get_mut(address_key) {
            Some(target) if target.file_open && target.protocol == Protocol::Tcp => {
                target.refs += 1;
                NtStatus::SUCCESS
            }
            _ => {
                if let Some((_, entry)) = self.connection_mut(connection) {
                    entry.address = None;
                }
                NtStatus::INVALID_ADDRESS
            }
        }
    }
}
