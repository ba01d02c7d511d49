//! The TDI requests on UDP address files, as methods of the core: open, send, receive, close
//! and cancellation. Everything runs under the core lock at DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use crate::core::address::{Address, Protocol};
use crate::core::slab::{Key, Slab};
use crate::core::sockets::Route;
use crate::core::state::{Completer, Core};
use crate::core::udp::endpoint::{Endpoint, PendingSend, SendRoute};
use crate::core::udp::{HEADERS, MAX_PAYLOAD};
use crate::nt::NtStatus;
use crate::nt::irp::{IrpId, PendingIrp};
use crate::nt::pool;
use crate::nt::process::ProcessOwner;
use crate::tdi::TransportAddress;
use core::net::{Ipv4Addr, SocketAddrV4};
use smoltcp::wire::{EthernetAddress, HardwareAddress};

impl Core {
    /// Opens a UDP address file on `address` (port 0: an ephemeral port of UDP's own port
    /// space). Returns the address table index. DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn bind_udp_address(
        &mut self,
        address: TransportAddress,
        shared: bool,
        owner: ProcessOwner,
    ) -> Result<u32, NtStatus> {
        let binding = self.udp.ports.bind(address.ip, address.port, shared)?;
        let largest = self.device.mtu().saturating_sub(HEADERS);
        let endpoint = Endpoint::new(binding.port(), largest).and_then(pool::try_box);
        let serial = self.take_serial();
        let inserted = endpoint.and_then(|endpoint| {
            self.addresses.try_insert(Address {
                serial,
                owner,
                protocol: Protocol::Udp,
                binding,
                refs: 1,
                file_open: true,
                listener: None,
                datagram: Some(endpoint),
                raw: None,
            })
        });
        let key = match inserted {
            Ok(key) => key,
            Err(status) => {
                self.udp.ports.unbind(binding);
                return Err(status);
            }
        };
        if let Err(status) = self.udp.index(binding.port(), key) {
            self.addresses.remove(key);
            self.udp.ports.unbind(binding);
            return Err(status);
        }
        Ok(key.index)
    }

    /// Frees a UDP address file's port when its last reference goes.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn unbind_udp_address(&mut self, key: Key, address: &Address) {
        self.udp.ports.unbind(address.binding);
        self.udp.unindex(address.port(), key);
    }

    /// IRP_MJ_CLOSE of a UDP address file: its pending receives and sends complete with
    /// `STATUS_CANCELLED` and its queued datagrams are dropped.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn close_datagram(&mut self, key: Key, c: &Completer<'_>) {
        let Some(endpoint) = self
            .addresses
            .get_mut(key)
            .and_then(|address| address.datagram.as_deref_mut())
        else {
            return;
        };
        for irp in endpoint.drain_irps() {
            c.done(irp, NtStatus::CANCELLED, 0);
        }
    }

    /// TDI_RECEIVE_DATAGRAM. DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn receive_datagram(
        &mut self,
        address: u32,
        length: u32,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        match endpoint(&mut self.addresses, address) {
            Ok((_, endpoint)) => endpoint.receive(irp, length as usize, &mut self.udp.stats, c),
            Err(status) => c.done(irp, status, 0),
        }
    }

    /// TDI_SEND_DATAGRAM: checks the destination and the size, picks the route and source
    /// address, and queues the send for the next egress (or, for a datagram to the host itself
    /// larger than the loopback's MTU, sends it as fragments at once). DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn send_datagram(
        &mut self,
        address: u32,
        remote: SocketAddrV4,
        length: u32,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let length = length as usize;
        let buffer = irp.irp().mdl().map_or(0, |mdl| mdl.len());
        let planned = endpoint(&mut self.addresses, address)
            .map(|(key, _)| key)
            .and_then(|key| {
                if length > buffer {
                    return Err(NtStatus::INVALID_PARAMETER);
                }
                let bound = self
                    .addresses
                    .get(key)
                    .map_or(Ipv4Addr::UNSPECIFIED, Address::ip);
                let local = self.addresses.get(key).map_or(0, Address::port);
                let client = self.dhcp_client_interface(local, remote, length, &irp);
                let (route, source, mtu) = self.plan_datagram(bound, remote, client)?;
                if length > mtu.saturating_sub(HEADERS).min(MAX_PAYLOAD) {
                    // Larger datagrams go as fragments (not broadcasts: not yet).
                    if !matches!(route, SendRoute::Broadcast(_)) && length <= MAX_PAYLOAD {
                        let port = self.addresses.get(key).map_or(0, Address::port);
                        return Ok(Err((route, port, source)));
                    }
                    return Err(NtStatus::INVALID_BUFFER_SIZE);
                }
                self.udp.reserve_sending()?;
                Ok(Ok((key, route, source)))
            });
        let (key, route, source) = match planned {
            Ok(Ok(planned)) => planned,
            Ok(Err((route, port, source))) => {
                let loopback = route == SendRoute::Loopback;
                let from = SocketAddrV4::new(source, port);
                return self.send_fragmented(from, remote, length, loopback, irp, c);
            }
            Err(status) => return c.done(irp, status, 0),
        };
        let send = PendingSend::new(irp, remote, source, route, length);
        let queued = match endpoint(&mut self.addresses, address) {
            Ok((_, endpoint)) => endpoint.queue_send(send),
            Err(status) => Err((send.irp, status)),
        };
        match queued {
            Ok(()) => self.udp.mark_sending(key),
            Err((irp, status)) => c.done(irp, status, 0),
        }
    }

    /// The route, source address and MTU of a datagram from an address file bound to `bound`
    /// to `remote`. Errors: `STATUS_INVALID_ADDRESS` for port 0 or 0.0.0.0;
    /// `STATUS_NETWORK_UNREACHABLE` with no route. DISPATCH_LEVEL, under the core lock.
    fn plan_datagram(
        &self,
        bound: Ipv4Addr,
        remote: SocketAddrV4,
        client: Option<u32>,
    ) -> Result<(SendRoute, Ipv4Addr, usize), NtStatus> {
        let ip = *remote.ip();
        if remote.port() == 0 || ip.is_unspecified() {
            return Err(NtStatus::INVALID_ADDRESS);
        }
        let loopback_mtu = self.device.mtu();
        if let Some(interface) = self.broadcast_route(ip) {
            // A limited broadcast leaves by the interface of the address file's address, by
            // the interface a DHCP client's request names, or else from a wildcard file by
            // every interface, each copy from that interface's address (0.0.0.0 while it has
            // none); a directed broadcast by its subnet's interface. The smallest MTU of the
            // links it takes bounds it.
            let interface = interface.or(client).or_else(|| {
                self.interfaces()
                    .find(|(_, slot)| slot.address.is_some_and(|cidr| cidr.address() == bound))
                    .map(|(index, _)| index)
            });
            let mtu = self
                .interfaces()
                .filter(|(index, slot)| slot.bound && interface.is_none_or(|i| i == *index))
                .fold(loopback_mtu, |mtu, (_, slot)| mtu.min(slot.mtu));
            let source = match interface {
                _ if !bound.is_unspecified() => bound,
                Some(index) => self.address_of(index).map_or(bound, |cidr| cidr.address()),
                None => self
                    .interfaces()
                    .find_map(|(_, slot)| slot.address)
                    .map_or(bound, |cidr| cidr.address()),
            };
            return Ok((SendRoute::Broadcast(interface), source, mtu));
        }
        let source = self.source_for(bound, ip)?;
        Ok(match self.route_to(ip) {
            Route::Loopback => (SendRoute::Loopback, source, loopback_mtu),
            Route::Ethernet(index) => (
                SendRoute::Ethernet(index),
                source,
                self.mtu_of(index).unwrap_or(loopback_mtu),
            ),
        })
    }

    /// The interface a DHCP client's broadcast (from port 68 to port 67) is for: the one whose
    /// MAC address is the BOOTP message's client hardware address (`chaddr`, bytes 28 to 33).
    /// ReactOS's dhcpcsvc sends the DISCOVER and REQUEST of every adapter to 255.255.255.255
    /// from one socket bound to 0.0.0.0:68, so `chaddr` is the only thing that names the
    /// adapter; sent out of every adapter, a request would draw offers from the servers of
    /// the other subnets for it. DISPATCH_LEVEL, under the core lock.
    fn dhcp_client_interface(
        &self,
        local: u16,
        remote: SocketAddrV4,
        length: usize,
        irp: &PendingIrp,
    ) -> Option<u32> {
        const CHADDR: usize = 28;
        if local != 68 || remote.port() != 67 || length < CHADDR + 6 {
            return None;
        }
        let mut chaddr = [0u8; 6];
        let copied = irp.irp().mdl()?.read(CHADDR, &mut chaddr).ok()?;
        if copied != chaddr.len() {
            return None;
        }
        let mac = HardwareAddress::Ethernet(EthernetAddress(chaddr));
        self.interfaces()
            .find(|(_, slot)| {
                slot.port
                    .as_ref()
                    .is_some_and(|port| port.iface.hardware_addr() == mac)
            })
            .map(|(index, _)| index)
    }

    /// Unlinks the pending datagram request `id` of a UDP address file (for its cancel
    /// routine). DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn cancel_datagram(&mut self, id: IrpId) -> Option<PendingIrp> {
        self.addresses
            .iter_mut()
            .filter_map(|(_, address)| address.datagram.as_deref_mut())
            .find_map(|endpoint| endpoint.take_irp(id))
    }
}

/// The UDP endpoint of address file `index`, or the status for a request that names something
/// else: `STATUS_INVALID_ADDRESS` for a closed or unknown file, `STATUS_INVALID_DEVICE_REQUEST`
/// for a TCP address file. DISPATCH_LEVEL, under the core lock.
fn endpoint(addresses: &mut Slab<Address>, index: u32) -> Result<(Key, &mut Endpoint), NtStatus> {
    let key = addresses.key_at(index).ok_or(NtStatus::INVALID_ADDRESS)?;
    let address = addresses.get_mut(key).ok_or(NtStatus::INVALID_ADDRESS)?;
    match address.datagram.as_deref_mut() {
        Some(endpoint) if address.file_open => Ok((key, endpoint)),
        Some(_) => Err(NtStatus::INVALID_ADDRESS),
        None => Err(NtStatus::INVALID_DEVICE_REQUEST),
    }
}
