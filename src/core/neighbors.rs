//! The MAC addresses of on-link neighbours, learned from the ARP packets the core sees on the
//! Ethernet link before smoltcp does. smoltcp keeps its own neighbour cache but does not expose
//! it; the core needs the addresses for the frames it writes itself (IPv4 fragments). A fixed
//! table: no allocation, the least recently learned entry gives way.
#![forbid(unsafe_code)]

use core::net::Ipv4Addr;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr,
};

/// Neighbours remembered.
const ENTRIES: usize = 16;

/// How long a learned address is trusted.
const LIFETIME: Duration = Duration::from_secs(60);

/// The table. Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
#[derive(Default)]
pub struct Neighbors {
    entries: [Option<(Ipv4Addr, [u8; 6], Instant)>; ENTRIES],
}

impl Neighbors {
    /// Learns the sender of `frame` if it is an ARP packet. IRQL ≤ DISPATCH_LEVEL.
    pub fn snoop(&mut self, frame: &[u8], now: Instant) {
        let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
            return;
        };
        if ethernet.ethertype() != EthernetProtocol::Arp {
            return;
        }
        let repr = ArpPacket::new_checked(ethernet.payload()).and_then(|p| ArpRepr::parse(&p));
        if let Ok(ArpRepr::EthernetIpv4 {
            source_hardware_addr,
            source_protocol_addr,
            ..
        }) = repr
            && !source_protocol_addr.is_unspecified()
        {
            self.learn(source_protocol_addr, source_hardware_addr.0, now);
        }
    }

    /// Records `ip` at `mac`. IRQL ≤ DISPATCH_LEVEL.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: [u8; 6], now: Instant) {
        let slot = self
            .entries
            .iter()
            .position(|e| e.is_some_and(|(known, ..)| known == ip))
            .or_else(|| self.entries.iter().position(Option::is_none))
            .or_else(|| {
                self.entries
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.map(|(.., at)| at))
                    .map(|(i, _)| i)
            });
        if let Some(entry) = slot.and_then(|i| self.entries.get_mut(i)) {
            *entry = Some((ip, mac, now));
        }
    }

    /// The MAC address of `ip`, if learned recently. IRQL ≤ DISPATCH_LEVEL.
    pub fn lookup(&self, ip: Ipv4Addr, now: Instant) -> Option<[u8; 6]> {
        self.entries
            .iter()
            .flatten()
            .find_map(|&(known, mac, at)| (known == ip && now - at < LIFETIME).then_some(mac))
    }
}

/// Writes an ARP request for `target` from `mac`/`ip` into `frame` (42 bytes). Returns the
/// frame's length, or 0 if `frame` is too short. IRQL ≤ DISPATCH_LEVEL.
pub fn arp_request(frame: &mut [u8], mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> usize {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let ethernet = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let len = ethernet.buffer_len() + arp.buffer_len();
    let Some(frame) = frame.get_mut(..len) else {
        return 0;
    };
    let mut view = EthernetFrame::new_unchecked(frame);
    ethernet.emit(&mut view);
    arp.emit(&mut ArpPacket::new_unchecked(view.payload_mut()));
    len
}
