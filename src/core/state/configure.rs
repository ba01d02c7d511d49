//! Configuration changes the information model's set requests make: routes and socket options
//! (see [`crate::info::set`]). Run under the core lock.
#![forbid(unsafe_code)]

use super::Core;
use crate::core::address::Protocol;
use crate::core::ethernet::MAX_INTERFACES;
use crate::core::routes::StaticRoute;
use crate::info::entities::ADDRESS_ENTITY_BASE;
use crate::info::model::Transport;
use crate::info::set::{RouteChange, SocketOption};
use crate::nt::NtStatus;

impl Core {
    /// Adds or deletes a route through the interface `change` names
    /// (`STATUS_INVALID_PARAMETER` for one that does not exist). The default route is that
    /// interface's gateway; other destinations are static routes. Routes through loopback are
    /// refused, as ReactOS's transport refuses them. DISPATCH_LEVEL.
    pub fn change_route(&mut self, change: RouteChange) -> NtStatus {
        let Some(slot) = self.slot(change.interface) else {
            return NtStatus::INVALID_PARAMETER;
        };
        let current = slot.gateway;
        // A delete names the route by destination (and gateway) only: iphlpapi sends it with
        // the mask 255.255.255.255.
        let default = change.destination.is_unspecified();
        match (default, change.delete) {
            (true, false) if change.prefix != 0 || change.gateway.is_unspecified() => {
                NtStatus::INVALID_PARAMETER
            }
            (true, false) => self.set_gateway(change.interface, Some(change.gateway)),
            (true, true)
                if current.is_some_and(|gateway| {
                    change.gateway.is_unspecified() || gateway == change.gateway
                }) =>
            {
                self.set_gateway(change.interface, None)
            }
            (false, false) => self.add_route(StaticRoute {
                interface: change.interface,
                destination: change.destination,
                prefix: change.prefix,
                gateway: change.gateway,
                metric: change.metric,
            }),
            (false, true) if self.routes.remove(change.destination, change.gateway) => {
                for index in 1..=MAX_INTERFACES as u32 {
                    self.reapply_routes(index);
                }
                NtStatus::SUCCESS
            }
            (_, true) => NtStatus::INVALID_PARAMETER,
        }
    }

    /// Applies a socket option sent to the `transport` entity `instance`: for TCP, to every
    /// connection associated with that address file (and to its listening socket); for UDP, to
    /// the address file's own socket. An entity that names no open address file succeeds
    /// without effect (contract §5.2): wshtcpip sends setsockopt(TCP_NODELAY) for an accepted
    /// socket with an entity no bind ever gave it, and a failure there would be setsockopt's
    /// WSAEINVAL. One that names an address file of the other protocol is
    /// `STATUS_INVALID_PARAMETER`. DISPATCH_LEVEL.
    pub fn set_socket_option(
        &mut self,
        transport: Transport,
        instance: u32,
        option: SocketOption,
    ) -> NtStatus {
        let Some(address) = instance.checked_sub(ADDRESS_ENTITY_BASE) else {
            return NtStatus::SUCCESS;
        };
        let protocol = match transport {
            Transport::Tcp => Protocol::Tcp,
            Transport::Udp => Protocol::Udp,
        };
        let Some(entry) = self
            .address_key(address)
            .and_then(|key| self.addresses.get_mut(key))
            .filter(|entry| entry.file_open)
        else {
            return NtStatus::SUCCESS;
        };
        if entry.protocol != protocol {
            return NtStatus::INVALID_PARAMETER;
        }
        if let Some(endpoint) = entry.datagram.as_deref_mut() {
            if let SocketOption::Ttl(ttl) = option {
                endpoint.set_hop_limit(ttl);
            }
            return NtStatus::SUCCESS;
        }
        let listening = entry.listener.as_ref().and_then(|listener| listener.socket);
        for index in 0..self.connections.slot_count() {
            let Some((_, connection)) = self.connection_mut(index) else {
                continue;
            };
            if connection.address != Some(address) {
                continue;
            }
            match option {
                SocketOption::NoDelay(enabled) => {
                    self.set_no_delay(index, enabled);
                }
                SocketOption::Ttl(ttl) => {
                    let socket = connection.socket;
                    if let Some(socket) = socket.and_then(|socket| self.sockets.get(socket)) {
                        socket.set_hop_limit(Some(ttl));
                    }
                }
                SocketOption::NoEffect => {}
            }
        }
        if let (Some(socket), SocketOption::Ttl(ttl)) = (listening, option)
            && let Some(socket) = self.sockets.get(socket)
        {
            socket.set_hop_limit(Some(ttl));
        }
        NtStatus::SUCCESS
    }
}
