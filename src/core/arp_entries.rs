//! ARP entries set through the IP helper (`SetIpNetEntry`/`CreateIpNetEntry`, `arp -s`;
//! `DeleteIpNetEntry`, `arp -d`), sent as `IOCTL_TCP_SET_INFORMATION_EX` on an AT entity.
//!
//! The entry goes into the core's ARP table ([`crate::core::neighbors`], which the IP helper
//! reads) and into smoltcp's own neighbour cache, which is what the stack sends by. smoltcp
//! 0.14 offers no call to fill or flush that cache; it fills it from ARP packets aimed at the
//! interface. So the core hands the interface an ARP reply from the entry's address and MAC,
//! through a device of its own that holds that one frame (the link, its queue and its
//! counters never see it). smoltcp forgets an entry after 60 s, so static entries are handed
//! over again every [`REFRESH`]; a real ARP packet from the same address may change smoltcp's
//! copy until then. A deleted entry leaves the core's table at once; smoltcp's copy of it, if
//! it had one, lives out its 60 s.
#![forbid(unsafe_code)]

use crate::core::ethernet::Port;
use crate::core::state::Core;
use crate::info::set::NeighborChange;
use crate::nt::NtStatus;
use core::net::Ipv4Addr;
use smoltcp::iface::SocketSet;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, IpCidr,
};

/// How often static entries are handed to smoltcp again (its entries live 60 s).
pub const REFRESH: Duration = Duration::from_secs(30);

/// Bytes of an Ethernet frame holding an ARP packet.
const ARP_FRAME: usize = 42;

/// A device that delivers one frame and sends nothing.
struct OneFrame {
    frame: Option<[u8; ARP_FRAME]>,
}

/// The frame, as smoltcp's receive token.
struct Rx([u8; ARP_FRAME]);

/// Never handed out: the device sends nothing.
struct NoTx;

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for NoTx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut nothing = [0u8; ARP_FRAME];
        let len = len.min(ARP_FRAME);
        f(nothing.get_mut(..len).unwrap_or_default())
    }
}

impl phy::Device for OneFrame {
    type RxToken<'a> = Rx;
    type TxToken<'a> = NoTx;

    fn receive(&mut self, _: Instant) -> Option<(Rx, NoTx)> {
        self.frame.take().map(|frame| (Rx(frame), NoTx))
    }

    fn transmit(&mut self, _: Instant) -> Option<NoTx> {
        None
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// Hands `port`'s interface an ARP reply from `ip`/`mac` to its own address, so that smoltcp
/// fills its cache with the pair. Nothing happens while the interface has no address.
/// DISPATCH_LEVEL, under the core lock.
fn teach(port: &mut Port, ip: Ipv4Addr, mac: [u8; 6], now: Instant) {
    let HardwareAddress::Ethernet(own_mac) = port.iface.hardware_addr() else {
        return;
    };
    let Some(&IpCidr::Ipv4(own)) = port.iface.ip_addrs().first() else {
        return;
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: ip,
        target_hardware_addr: own_mac,
        target_protocol_addr: own.address(),
    };
    let ethernet = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: own_mac,
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = [0u8; ARP_FRAME];
    let mut view = EthernetFrame::new_unchecked(&mut frame[..]);
    ethernet.emit(&mut view);
    arp.emit(&mut ArpPacket::new_unchecked(view.payload_mut()));
    let mut device = OneFrame { frame: Some(frame) };
    let mut no_sockets = SocketSet::new(&mut [][..]);
    port.iface
        .poll_ingress_single(now, &mut device, &mut no_sockets);
}

/// Hands every live entry of the core's ARP table to `port`'s (new) interface.
/// DISPATCH_LEVEL, under the core lock.
pub fn reteach(port: &mut Port, now: Instant) {
    let mut live = [(Ipv4Addr::UNSPECIFIED, [0u8; 6]); crate::core::neighbors::CAPACITY];
    let mut count = 0;
    for (slot, entry) in live.iter_mut().zip(port.neighbors.live(now)) {
        *slot = entry;
        count += 1;
    }
    for &(ip, mac) in live.iter().take(count) {
        teach(port, ip, mac, now);
    }
}

/// Hands every static entry of `port` to smoltcp again when [`REFRESH`] has passed.
/// DISPATCH_LEVEL, under the core lock.
pub fn refresh(port: &mut Port, now: Instant) {
    if port.static_refresh_at.is_none_or(|at| at > now) {
        return;
    }
    let mut statics = [(Ipv4Addr::UNSPECIFIED, [0u8; 6]); crate::core::neighbors::CAPACITY];
    let mut count = 0;
    for (slot, entry) in statics.iter_mut().zip(port.neighbors.statics()) {
        *slot = entry;
        count += 1;
    }
    for &(ip, mac) in statics.iter().take(count) {
        teach(port, ip, mac, now);
    }
    port.static_refresh_at = (count > 0).then(|| now + REFRESH);
}

impl Core {
    /// An ARP entry change for interface `interface`: `STATUS_INVALID_PARAMETER` for an
    /// interface that does not exist, one of the host's addresses or an address off the
    /// interface's subnet, `STATUS_DEVICE_DOES_NOT_EXIST` with no adapter bound there, `STATUS_NOT_FOUND` to delete an entry that is not there,
    /// `STATUS_INSUFFICIENT_RESOURCES` when every slot holds a static entry. DISPATCH_LEVEL,
    /// under the core lock.
    pub fn set_neighbor(
        &mut self,
        interface: u32,
        ip: Ipv4Addr,
        change: NeighborChange,
    ) -> NtStatus {
        let Some(slot) = self.slot(interface) else {
            return NtStatus::INVALID_PARAMETER;
        };
        let now = self.now;
        let own = self.is_local(ip);
        let off_subnet = slot.address.is_some_and(|cidr| !cidr.contains_addr(&ip));
        let Some(port) = self.slot_port_mut(interface) else {
            return NtStatus::DEVICE_DOES_NOT_EXIST;
        };
        if own || off_subnet {
            return NtStatus::INVALID_PARAMETER;
        }
        match change {
            NeighborChange::Delete => {
                if port.neighbors.remove(ip) {
                    NtStatus::SUCCESS
                } else {
                    NtStatus::NOT_FOUND
                }
            }
            NeighborChange::Dynamic(mac) => {
                port.neighbors.remove(ip);
                port.neighbors.fill(ip, mac, now);
                teach(port, ip, mac, now);
                NtStatus::SUCCESS
            }
            NeighborChange::Static(mac) => {
                if !port.neighbors.set_static(ip, mac) {
                    return NtStatus::INSUFFICIENT_RESOURCES;
                }
                teach(port, ip, mac, now);
                port.static_refresh_at = Some(now + REFRESH);
                NtStatus::SUCCESS
            }
        }
    }
}
