//! The interfaces besides the loopback: their addresses and gateways, the binding of adapters
//! under them, and the choice of the interface and source address a packet leaves by. Run
//! under the core lock at DISPATCH_LEVEL, except where noted.
//!
//! Routing, for a destination that is not the host's own (those loop back without touching a
//! wire): the interface whose subnet holds it (the lowest index if several do); else a static
//! route's interface (longest prefix); else the default gateway of the lowest-indexed bound
//! interface that has one (Windows picks by metric; every interface here has the same).
#![forbid(unsafe_code)]

use super::*;
use crate::core::routes::{self, StaticRoute};
use alloc::sync::Arc;
use smoltcp::wire::Ipv4Cidr;

impl Core {
    /// The slot of interface `index` if the interface exists: interface 1 always, the others
    /// while an adapter is bound under them.
    pub(in crate::core) fn slot(&self, index: u32) -> Option<&Slot> {
        let slot = self
            .slots
            .get(usize::try_from(index.checked_sub(1)?).ok()?)?;
        (index == 1 || slot.bound).then_some(slot)
    }

    fn slot_mut(&mut self, index: u32) -> Option<&mut Slot> {
        let slot = self
            .slots
            .get_mut(usize::try_from(index.checked_sub(1)?).ok()?)?;
        (index == 1 || slot.bound).then_some(slot)
    }

    /// The port of interface `index`, if an adapter is bound there (outside a pass).
    pub(in crate::core) fn slot_port_mut(&mut self, index: u32) -> Option<&mut Port> {
        self.slot_mut(index)?.port.as_deref_mut()
    }

    /// The existing interfaces with their index, in index order.
    pub(in crate::core) fn interfaces(&self) -> impl Iterator<Item = (u32, &Slot)> {
        (1..)
            .zip(self.slots.iter())
            .filter(|(index, slot)| *index == 1 || slot.bound)
    }

    /// The address of interface `index`, if it has one.
    pub(in crate::core) fn address_of(&self, index: u32) -> Option<Ipv4Cidr> {
        self.slot(index)?.address
    }

    /// The interface whose subnet holds `ip` (the lowest index if several do).
    pub(in crate::core) fn on_link(&self, ip: Ipv4Addr) -> Option<(u32, Ipv4Cidr)> {
        self.interfaces().find_map(|(index, slot)| {
            slot.address
                .filter(|cidr| cidr.contains_addr(&ip))
                .map(|cidr| (index, cidr))
        })
    }

    /// The interface a packet to `remote` (not the host's own) leaves by, with the address it
    /// leaves from if that interface has one (see the module's routing rules). `None` when no
    /// interface reaches `remote`.
    pub(in crate::core) fn interface_to(
        &self,
        remote: Ipv4Addr,
    ) -> Option<(u32, Option<Ipv4Cidr>)> {
        if let Some((index, cidr)) = self.on_link(remote) {
            return Some((index, Some(cidr)));
        }
        let bound = |index: u32| self.slot(index).is_some_and(|slot| slot.bound);
        let routed = self
            .routes
            .iter()
            .filter(|route| {
                bound(route.interface)
                    && Ipv4Cidr::new(route.destination, route.prefix).contains_addr(&remote)
            })
            .max_by_key(|route| route.prefix);
        if let Some(route) = routed {
            return Some((route.interface, self.address_of(route.interface)));
        }
        self.interfaces()
            .find(|(_, slot)| slot.bound && slot.gateway.is_some())
            .map(|(index, slot)| (index, slot.address))
    }

    /// The local address a connection to `remote` leaves from: the address file's own, or for
    /// a wildcard address file the address of the interface on the way to `remote`.
    pub(in crate::core) fn source_for(
        &self,
        bound: Ipv4Addr,
        remote: Ipv4Addr,
    ) -> Result<Ipv4Addr, NtStatus> {
        if !bound.is_unspecified() {
            return Ok(bound);
        }
        if self.is_local(remote) {
            return Ok(remote);
        }
        if remote.is_loopback() {
            return Ok(Ipv4Addr::LOCALHOST);
        }
        match self.interface_to(remote) {
            Some((_, Some(cidr))) => Ok(cidr.address()),
            _ => Err(NtStatus::NETWORK_UNREACHABLE),
        }
    }

    /// The link to `remote`: the loopback for the host's own addresses, else the interface on
    /// the way to it (interface 1 when none is: with no adapter bound there, the packet is
    /// lost as on a link that is down).
    pub(in crate::core) fn route_to(&self, remote: Ipv4Addr) -> Route {
        if remote.is_loopback() || self.is_local(remote) {
            Route::Loopback
        } else {
            Route::Ethernet(self.interface_to(remote).map_or(1, |(index, _)| index))
        }
    }

    /// The link of a connection from `local` to `remote`: as [`Core::route_to`], except that
    /// when `local` is a bound interface's own address and that interface reaches `remote`
    /// (on its subnet, or through its gateway), the connection keeps to it. So a connection
    /// that came in by an adapter is answered by that adapter, whichever interface's gateway
    /// comes first, and never leaves one adapter with another's address.
    pub(in crate::core) fn route_for(&self, local: Ipv4Addr, remote: Ipv4Addr) -> Route {
        if remote.is_loopback() || self.is_local(remote) {
            return Route::Loopback;
        }
        let own = self.interfaces().find(|(_, slot)| {
            slot.bound
                && slot.address.is_some_and(|cidr| {
                    cidr.address() == local
                        && (cidr.contains_addr(&remote) || slot.gateway.is_some())
                })
        });
        match own {
            Some((index, _)) => Route::Ethernet(index),
            None => self.route_to(remote),
        }
    }

    /// Whether `ip` is a broadcast, and for which interface: `Some(None)` for the limited
    /// broadcast 255.255.255.255, `Some(Some(index))` for the directed broadcast of interface
    /// `index`'s subnet.
    pub(in crate::core) fn broadcast_route(&self, ip: Ipv4Addr) -> Option<Option<u32>> {
        if ip.is_broadcast() {
            return Some(None);
        }
        self.interfaces().find_map(|(index, slot)| {
            let cidr = slot.address?;
            let own = Some((cidr.address(), cidr.prefix_len()));
            crate::core::udp::wire::is_broadcast(ip, own).then_some(Some(index))
        })
    }

    /// The IP MTU of interface `index`'s adapter, if one is bound.
    pub(in crate::core) fn mtu_of(&self, index: u32) -> Option<usize> {
        self.slot(index)
            .filter(|slot| slot.bound)
            .map(|slot| slot.mtu)
    }

    /// Gives interface `interface` its address, replacing the one it had. Errors:
    /// `STATUS_DEVICE_DOES_NOT_EXIST` for an interface that does not exist,
    /// `STATUS_INVALID_PARAMETER` for an unusable address (unspecified, loopback, broadcast,
    /// multicast), `STATUS_DUPLICATE_OBJECTID` for an address the host has,
    /// `STATUS_INSUFFICIENT_RESOURCES` when the loopback interface holds no more addresses.
    pub(super) fn set_ip_address(
        &mut self,
        interface: u32,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NtStatus> {
        if self.slot(interface).is_none() {
            return Err(NtStatus::DEVICE_DOES_NOT_EXIST);
        }
        // smoltcp panics (a bugcheck here) on an interface address that is not unicast.
        if ip.is_unspecified()
            || ip.is_loopback()
            || ip.is_broadcast()
            || ip.is_multicast()
            || prefix > 32
        {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if self.is_local(ip) {
            return Err(NtStatus::DUPLICATE_OBJECTID);
        }
        let cidr = Ipv4Cidr::new(ip, prefix);
        let old = self
            .slot_mut(interface)
            .and_then(|slot| slot.address.replace(cidr));
        if let Err(status) = self.sync_loopback() {
            if let Some(slot) = self.slot_mut(interface) {
                slot.address = old;
            }
            let _ = self.sync_loopback();
            return Err(status);
        }
        if let Some(port) = self.slot_mut(interface).and_then(|slot| slot.port.as_mut()) {
            port.set_addresses(&[IpCidr::Ipv4(cidr)]);
        }
        Ok(())
    }

    /// Removes interface `interface`'s address (`STATUS_DEVICE_DOES_NOT_EXIST` for an interface
    /// that does not exist). Connections from it are aborted: their owners see a reset, as
    /// Windows' transport aborts the connections of an address that is deleted.
    pub(super) fn delete_ip_address(&mut self, interface: u32) -> NtStatus {
        let Some(slot) = self.slot_mut(interface) else {
            return NtStatus::DEVICE_DOES_NOT_EXIST;
        };
        let old = slot.address.take();
        if let Some(port) = slot.port.as_mut() {
            port.set_addresses(&[]);
        }
        if let Some(old) = old {
            self.sockets.abort_from(old.address());
        }
        // Fewer addresses than before always fit.
        let _ = self.sync_loopback();
        NtStatus::SUCCESS
    }

    /// Gives interface `interface` `address`, or removes its address (see
    /// [`Stack::configure_address`](crate::core::stack::Stack::configure_address)).
    pub fn configure_address(
        &mut self,
        interface: u32,
        address: Option<(Ipv4Addr, u8)>,
    ) -> Result<(), NtStatus> {
        match address {
            Some((ip, prefix)) => self.set_ip_address(interface, ip, prefix),
            None => self.delete_ip_address(interface).ok(),
        }
    }

    /// Gives the loopback interface 127.0.0.1/8 and every interface's address, so that the
    /// host's traffic to its own addresses loops back.
    fn sync_loopback(&mut self) -> Result<(), NtStatus> {
        let mut addresses = [IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8); MAX_ADDRESSES + 1];
        let mut count = 1;
        for cidr in self.slots.iter().filter_map(|slot| slot.address) {
            let Some(entry) = addresses.get_mut(count) else {
                return Err(NtStatus::INSUFFICIENT_RESOURCES);
            };
            *entry = IpCidr::Ipv4(cidr);
            count += 1;
        }
        let mut result = Ok(());
        self.iface.update_ip_addrs(|list| {
            list.clear();
            for cidr in addresses.iter().take(count) {
                if list.push(*cidr).is_err() {
                    result = Err(NtStatus::INSUFFICIENT_RESOURCES);
                }
            }
        });
        result
    }

    /// Binds an Ethernet link under the lowest free interface: a smoltcp interface on it with
    /// that interface's address and default gateway. Returns the interface index.
    /// `STATUS_INSUFFICIENT_RESOURCES` when every interface is taken. PASSIVE_LEVEL
    /// (allocates).
    pub fn attach_link(&mut self, link: &Arc<Link>) -> Result<u32, NtStatus> {
        let seed = self.random.next_u64();
        let now = self.now;
        let (index, slot) = (1u32..)
            .zip(self.slots.iter_mut())
            .find(|(_, slot)| !slot.bound)
            .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        let addresses = slot.address.map(IpCidr::Ipv4);
        let mut port = pool::try_box(Port::new(
            index,
            link,
            seed,
            now,
            addresses.as_slice(),
            slot.gateway,
        )?)?;
        self.routes.apply(&mut port.iface, slot.gateway, index);
        slot.mtu = port.mtu;
        slot.port = Some(port);
        slot.bound = true;
        Ok(index)
    }

    /// Unbinds interface `index`'s link. An interface other than 1 ceases to exist and loses
    /// its address (whose connections are aborted, as by [`Core::delete_ip_address`]), gateway
    /// and static routes; interface 1 keeps its configuration (its connections can no longer
    /// transmit).
    pub fn detach_link(&mut self, index: u32) {
        let Some(slot) = self.slot_mut(index) else {
            return;
        };
        slot.port = None;
        slot.bound = false;
        if index != 1 {
            let old = slot.address.take();
            slot.gateway = None;
            self.routes.remove_interface(index);
            if let Some(old) = old {
                self.sockets.abort_from(old.address());
            }
            // Fewer addresses than before always fit.
            let _ = self.sync_loopback();
        }
    }

    /// Sets the default gateway of interface `index` (reached over its link).
    /// `STATUS_DEVICE_DOES_NOT_EXIST` for an interface that does not exist,
    /// `STATUS_INVALID_PARAMETER` for a gateway that is no [`routes::is_gateway`].
    /// DISPATCH_LEVEL, under the core lock.
    pub fn set_gateway(&mut self, index: u32, gateway: Option<Ipv4Addr>) -> NtStatus {
        if gateway.is_some_and(|gateway| !routes::is_gateway(gateway)) {
            return NtStatus::INVALID_PARAMETER;
        }
        let Some(slot) = self.slot_mut(index) else {
            return NtStatus::DEVICE_DOES_NOT_EXIST;
        };
        slot.gateway = gateway;
        self.reapply_routes(index);
        NtStatus::SUCCESS
    }

    /// Adds a static route through interface `route.interface` and gives that interface's
    /// smoltcp interface its routes again.
    pub(super) fn add_route(&mut self, route: StaticRoute) -> NtStatus {
        match self.routes.add(route) {
            Ok(()) => {
                self.reapply_routes(route.interface);
                NtStatus::SUCCESS
            }
            Err(status) => status,
        }
    }

    /// Gives interface `index`'s smoltcp interface the static routes and gateway it has now.
    pub(super) fn reapply_routes(&mut self, index: u32) {
        let routes = &self.routes;
        let Some(slot) = usize::try_from(index.wrapping_sub(1))
            .ok()
            .and_then(|slot| self.slots.get_mut(slot))
        else {
            return;
        };
        if let Some(port) = slot.port.as_mut() {
            routes.apply(&mut port.iface, slot.gateway, index);
        }
    }
}
