//! The core's side of an Ethernet link: the adapter binding shared with the receive path, and
//! the smoltcp interface the core runs over it.
//!
//! A [`Link`] is what binding an adapter creates (on ReactOS, `ProtocolBindAdapter`; on the
//! host, attaching a TAP adapter): the adapter and its [`ReceiveQueue`]. It is shared, behind
//! an `Arc`, by the receive indication (which fills the queue at DISPATCH_LEVEL without the
//! core lock) and the core DPC (which drains it). A [`Port`] is the core's state for the link:
//! a smoltcp `Interface` with `Medium::Ethernet` (smoltcp resolves neighbours with ARP and
//! answers ARP and ICMP echo for the configured address), the transmit buffer the DPC lends to
//! each pass's [`EthernetDevice`], and the default gateway.
//!
//! ISNs of connections accepted on this link are RFC 6528's: the interface is rebuilt with a
//! seed made for the connection's ISN before its SYN is handed to the LISTEN socket
//! ([`Port::reseed`], `core::isn`), and its ARP cache handed over from the core's copy.
//!
//! The core has [`MAX_INTERFACES`] interface [`Slot`]s, interface `n` in slot `n - 1` (the
//! loopback is interface 0 and has no slot): each holds its IP configuration (address, default
//! gateway) and, while an adapter is bound under it, its [`Port`]. Interface 1 always exists
//! (its address may be set with no adapter bound, and is then reachable from the host only);
//! the others exist while their adapter is bound. A pass over the links lends each port and a
//! device over its link as a [`Wire`].
#![forbid(unsafe_code)]

use crate::core::arp_entries;
use crate::core::counters::LinkCounters;
use crate::core::neighbors::Neighbors;
use crate::link::ethernet::{Adapter, EthernetDevice, ReceiveQueue};
use crate::nt::NtStatus;
use alloc::boxed::Box;
use alloc::sync::Arc;
use core::cell::Cell;
use core::net::Ipv4Addr;
use smoltcp::iface::{Config, Interface};
use smoltcp::time::Instant;
use smoltcp::wire::{IpCidr, Ipv4Cidr};

/// Interfaces besides the loopback: as many as the NDIS protocol binds adapters.
pub const MAX_INTERFACES: usize = 8;

/// One interface's configuration and, while an adapter is bound under it, its port. Any IRQL
/// ≤ DISPATCH_LEVEL, under the core lock.
#[derive(Default)]
pub struct Slot {
    /// The address and prefix set by the registry's static configuration or
    /// `IOCTL_SET_IP_ADDRESS`.
    pub address: Option<Ipv4Cidr>,
    /// The default gateway through this interface.
    pub gateway: Option<Ipv4Addr>,
    /// The bound adapter's interface; taken out of the slot for the length of a pass.
    pub port: Option<Box<Port>>,
    /// Whether an adapter is bound (also while its port is lent to a pass).
    pub bound: bool,
    /// The bound adapter's IP MTU.
    pub mtu: usize,
}

/// A port and a device over its link, lent to one pass. DISPATCH_LEVEL, under the core lock.
pub struct Wire<'a> {
    pub port: &'a mut Port,
    pub device: EthernetDevice<'a>,
}

/// The wire of interface `index` among a pass's `wires` (slot `index - 1`).
pub fn wire<'w, 'a>(wires: &'w mut [Option<Wire<'a>>], index: u32) -> Option<&'w mut Wire<'a>> {
    let slot = usize::try_from(index.checked_sub(1)?).ok()?;
    wires.get_mut(slot)?.as_mut()
}

/// A bound adapter and the queue its received frames wait in.
pub struct Link {
    adapter: Arc<dyn Adapter>,
    queue: ReceiveQueue,
}

impl Link {
    /// Binds `adapter` with a receive queue of `frames` buffers of its MTU. PASSIVE_LEVEL.
    pub fn new(adapter: Arc<dyn Adapter>, frames: usize) -> Result<Arc<Link>, NtStatus> {
        let queue = ReceiveQueue::new(adapter.mtu(), frames)?;
        Arc::try_new(Link { adapter, queue }).map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)
    }

    /// The receive indication: copies `frame` into the queue. `false` if it was dropped (queue
    /// full, bad size). IRQL ≤ DISPATCH_LEVEL.
    pub fn indicate(&self, frame: &[u8]) -> bool {
        self.queue.indicate(frame)
    }

    /// The receive indication of a frame of `len` bytes that `fill` writes (see
    /// [`ReceiveQueue::indicate_with`]). IRQL ≤ DISPATCH_LEVEL.
    pub fn indicate_with(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> bool) -> bool {
        self.queue.indicate_with(len, fill)
    }

    /// A device for one DPC pass over the transmit buffer `tx`. IRQL ≤ DISPATCH_LEVEL.
    pub fn device(&self, tx: alloc::vec::Vec<u8>) -> Result<EthernetDevice<'_>, NtStatus> {
        EthernetDevice::with_transmit_buffer(&self.queue, &*self.adapter, tx)
    }
}

/// The core's interface on a bound link.
pub struct Port {
    /// The interface index (1 for the first slot).
    pub index: u32,
    /// The link: the adapter and its receive queue.
    pub wire: Arc<Link>,
    pub iface: Interface,
    /// The adapter's IP MTU.
    pub mtu: usize,
    /// The link's counters since it was bound.
    pub link: Cell<LinkCounters>,
    /// The ARP cache as smoltcp fills it.
    pub neighbors: Neighbors,
    /// The adapter, for the information model (name, media state).
    pub adapter: Arc<dyn Adapter>,
    /// The transmit buffer, lent to each pass's device.
    pub tx: alloc::vec::Vec<u8>,
    /// When the static ARP entries are next handed to smoltcp (`core::arp_entries`).
    pub static_refresh_at: Option<Instant>,
}

impl Port {
    /// An interface on `link` holding `addresses`, with `gateway` as its default route.
    /// PASSIVE_LEVEL (allocates the transmit buffer).
    pub fn new(
        index: u32,
        link: &Arc<Link>,
        seed: u64,
        now: Instant,
        addresses: &[IpCidr],
        gateway: Option<Ipv4Addr>,
    ) -> Result<Port, NtStatus> {
        let mut device = EthernetDevice::new(&link.queue, &*link.adapter)?;
        let mut config = Config::new(device.hardware_address());
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, now);
        set_addresses(&mut iface, addresses);
        let mut port = Port {
            index,
            wire: link.clone(),
            iface,
            mtu: device.mtu(),
            link: Cell::default(),
            neighbors: Neighbors::default(),
            adapter: link.adapter.clone(),
            tx: device.into_transmit_buffer(),
            static_refresh_at: None,
        };
        port.set_gateway(gateway);
        Ok(port)
    }

    /// Builds the interface afresh from `seed`, so that the next ISN it draws is the one the
    /// seed was made for (`core::isn`): smoltcp has no other way to set it. The addresses,
    /// the routes and the ARP cache carry over (the cache from the core's copy of it, each
    /// entry handed to smoltcp again, so its 60 s start over). DISPATCH_LEVEL, under the core
    /// lock.
    pub fn reseed(&mut self, device: &mut EthernetDevice<'_>, seed: u64, now: Instant) {
        let mut config = Config::new(self.iface.hardware_addr());
        config.random_seed = seed;
        let mut fresh = Interface::new(config, device, now);
        set_addresses(&mut fresh, self.iface.ip_addrs());
        let mut routes = None;
        self.iface
            .routes_mut()
            .update(|table| routes = Some(table.clone()));
        if let Some(routes) = routes {
            fresh.routes_mut().update(|table| *table = routes);
        }
        self.iface = fresh;
        arp_entries::reteach(self, now);
    }

    /// Replaces the interface's addresses (at most the configured one).
    pub fn set_addresses(&mut self, addresses: &[IpCidr]) {
        set_addresses(&mut self.iface, addresses);
    }

    /// Sets or clears the default route.
    pub fn set_gateway(&mut self, gateway: Option<Ipv4Addr>) {
        let routes = self.iface.routes_mut();
        routes.remove_default_ipv4_route();
        if let Some(gateway) = gateway {
            // The route table has room for the one default route just removed.
            let _ = routes.add_default_ipv4_route(gateway);
        }
    }
}

fn set_addresses(iface: &mut Interface, addresses: &[IpCidr]) {
    iface.update_ip_addrs(|list| {
        list.clear();
        for cidr in addresses {
            // The list holds smoltcp's IFACE_MAX_ADDR_COUNT (2) and `addresses` at most one.
            let _ = list.push(*cidr);
        }
    });
}
