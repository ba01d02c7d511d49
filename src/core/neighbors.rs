//! A mirror of smoltcp's ARP cache, for the IP helper's ARP table (`arp -a`) and for the frames
//! the core writes itself (IPv4 fragments, [`crate::core::udp`]), which need the next hop's MAC
//! address that smoltcp knows but does not expose; [`arp_request`] asks for one it lacks.
//!
//! smoltcp 0.14 keeps its neighbour cache private, so the core keeps the same entries by the
//! same rules, watching the frames it hands to smoltcp: an ARP request or reply aimed at the
//! interface's address, from a unicast sender on its subnet, fills (or refreshes) the sender's
//! entry for 60 s; an IPv4 packet from a known neighbour with the same MAC refreshes it; when
//! full, the entry that expires first makes room. Capacity and lifetime are smoltcp's
//! (`IFACE_NEIGHBOR_CACHE_COUNT` 8, `ENTRY_LIFETIME` 60 s). No allocation.
//!
//! Entries set by the IP helper (`SetIpNetEntry`, `arp -s`) are *static*: they do not expire,
//! traffic does not change them, and a learned entry never replaces one
//! ([`crate::core::arp_entries`] keeps smoltcp's own cache in step with them).
#![forbid(unsafe_code)]

use core::net::Ipv4Addr;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Ipv4Cidr, Ipv4Packet,
};

/// smoltcp's neighbour cache size (`IFACE_NEIGHBOR_CACHE_COUNT`).
pub const CAPACITY: usize = 8;
/// smoltcp's neighbour lifetime (`ENTRY_LIFETIME`).
const LIFETIME: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
struct Neighbor {
    ip: Ipv4Addr,
    mac: [u8; 6],
    expires: Instant,
    /// Set by the IP helper: never expires, never replaced by what the wire says.
    is_static: bool,
}

/// The neighbours of one Ethernet interface.
#[derive(Default)]
pub struct Neighbors {
    entries: [Option<Neighbor>; CAPACITY],
}

impl Neighbors {
    /// Looks at one received frame for an interface holding `ours`. Never panics, whatever
    /// the bytes. Any IRQL.
    pub fn observe(&mut self, frame: &[u8], ours: Option<Ipv4Cidr>, now: Instant) {
        let (Ok(ethernet), Some(ours)) = (EthernetFrame::new_checked(frame), ours) else {
            return;
        };
        match ethernet.ethertype() {
            EthernetProtocol::Arp => {
                let Ok(packet) = ArpPacket::new_checked(ethernet.payload()) else {
                    return;
                };
                let Ok(ArpRepr::EthernetIpv4 {
                    operation,
                    source_hardware_addr,
                    source_protocol_addr,
                    target_protocol_addr,
                    ..
                }) = ArpRepr::parse(&packet)
                else {
                    return;
                };
                let for_us = target_protocol_addr == ours.address()
                    && !matches!(operation, ArpOperation::Unknown(_));
                let unicast = source_hardware_addr.is_unicast()
                    && !source_protocol_addr.is_broadcast()
                    && !source_protocol_addr.is_multicast()
                    && !source_protocol_addr.is_unspecified();
                if for_us && unicast && ours.contains_addr(&source_protocol_addr) {
                    self.fill(source_protocol_addr, source_hardware_addr.0, now);
                }
            }
            EthernetProtocol::Ipv4 => {
                let Ok(ip) = Ipv4Packet::new_checked(ethernet.payload()) else {
                    return;
                };
                let (source, mac) = (ip.src_addr(), ethernet.src_addr().0);
                let known = self.entries.iter_mut().flatten();
                for entry in known.filter(|e| e.ip == source && e.mac == mac && !e.is_static) {
                    entry.expires = now + LIFETIME;
                }
            }
            _ => {}
        }
    }

    /// Fills or refreshes the learned entry of `ip`; when full, replaces the learned entry
    /// expiring first. A static entry for `ip` stays as it is. Any IRQL.
    pub fn fill(&mut self, ip: Ipv4Addr, mac: [u8; 6], now: Instant) {
        if self
            .entries
            .iter()
            .flatten()
            .any(|e| e.ip == ip && e.is_static)
        {
            return;
        }
        self.put(Neighbor {
            ip,
            mac,
            expires: now + LIFETIME,
            is_static: false,
        });
    }

    /// Sets a static entry for `ip` (replacing any entry of it, or the learned entry expiring
    /// first). `false` if every slot already holds a static entry. Any IRQL.
    pub fn set_static(&mut self, ip: Ipv4Addr, mac: [u8; 6]) -> bool {
        self.put(Neighbor {
            ip,
            mac,
            expires: Instant::from_micros(i64::MAX),
            is_static: true,
        })
    }

    /// Removes the entry of `ip`, static or learned; whether there was one. Any IRQL.
    pub fn remove(&mut self, ip: Ipv4Addr) -> bool {
        let slot = self
            .entries
            .iter_mut()
            .find(|e| e.is_some_and(|e| e.ip == ip));
        slot.and_then(Option::take).is_some()
    }

    /// The static entries, as (IP, MAC). Any IRQL.
    pub fn statics(&self) -> impl Iterator<Item = (Ipv4Addr, [u8; 6])> + '_ {
        self.entries
            .iter()
            .flatten()
            .filter(|e| e.is_static)
            .map(|e| (e.ip, e.mac))
    }

    /// Puts `entry` in the slot of its IP, a free one, or that of the learned entry expiring
    /// first. `false` if none is left (every slot static). Any IRQL.
    fn put(&mut self, entry: Neighbor) -> bool {
        let slots = &mut self.entries;
        let same = slots
            .iter()
            .position(|e| e.is_some_and(|e| e.ip == entry.ip));
        let free = || slots.iter().position(Option::is_none);
        let index = same.or_else(free).or_else(|| {
            let learned = slots
                .iter()
                .enumerate()
                .filter(|(_, e)| e.is_some_and(|e| !e.is_static));
            let oldest = learned.min_by_key(|(_, e)| e.map(|e| e.expires));
            oldest.map(|(index, _)| index)
        });
        match index.and_then(|index| self.entries.get_mut(index)) {
            Some(slot) => {
                *slot = Some(entry);
                true
            }
            None => false,
        }
    }

    /// The MAC address of `ip`, while its entry lives. Any IRQL.
    pub fn lookup(&self, ip: Ipv4Addr, now: Instant) -> Option<[u8; 6]> {
        self.live(now)
            .find_map(|(known, mac)| (known == ip).then_some(mac))
    }

    /// The live entries, as (IP, MAC). Any IRQL.
    pub fn live(&self, now: Instant) -> impl Iterator<Item = (Ipv4Addr, [u8; 6])> + '_ {
        self.rows(now).map(|(ip, mac, _)| (ip, mac))
    }

    /// The live entries, as (IP, MAC, static). Any IRQL.
    pub fn rows(&self, now: Instant) -> impl Iterator<Item = (Ipv4Addr, [u8; 6], bool)> + '_ {
        self.entries
            .iter()
            .flatten()
            .filter(move |entry| entry.is_static || entry.expires > now)
            .map(|entry| (entry.ip, entry.mac, entry.is_static))
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

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn arp(operation: ArpOperation, sender: Ipv4Addr, mac: u8, target: Ipv4Addr) -> Vec<u8> {
        let arp = ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, mac]),
            source_protocol_addr: sender,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        };
        let ethernet = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, mac]),
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EthernetProtocol::Arp,
        };
        let mut frame = vec![0; ethernet.buffer_len() + arp.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut frame);
        ethernet.emit(&mut eth);
        arp.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
        frame
    }

    fn ours() -> Option<Ipv4Cidr> {
        Some(Ipv4Cidr::new(OURS, 24))
    }

    #[test]
    fn learns_from_arp_aimed_at_us_only_and_forgets_after_a_minute() {
        let mut table = Neighbors::default();
        let now = Instant::from_secs(100);
        let peer = Ipv4Addr::new(10, 0, 0, 1);
        table.observe(
            &arp(ArpOperation::Request, peer, 1, Ipv4Addr::new(10, 0, 0, 9)),
            ours(),
            now,
        );
        table.observe(
            &arp(ArpOperation::Reply, Ipv4Addr::new(192, 168, 0, 1), 2, OURS),
            ours(),
            now,
        );
        assert_eq!(
            table.live(now).count(),
            0,
            "not for us, or not on our subnet"
        );
        table.observe(&arp(ArpOperation::Request, peer, 1, OURS), ours(), now);
        assert_eq!(
            table.live(now).collect::<Vec<_>>(),
            [(peer, [2, 0, 0, 0, 0, 1])]
        );
        table.observe(&arp(ArpOperation::Reply, peer, 3, OURS), ours(), now);
        assert_eq!(
            table.live(now).collect::<Vec<_>>(),
            [(peer, [2, 0, 0, 0, 0, 3])]
        );
        assert_eq!(table.live(now + Duration::from_secs(60)).count(), 0);
    }

    #[test]
    fn a_full_table_drops_the_entry_that_expires_first() {
        let mut table = Neighbors::default();
        for i in 0..=CAPACITY as u8 {
            let now = Instant::from_secs(i64::from(i));
            table.observe(
                &arp(
                    ArpOperation::Reply,
                    Ipv4Addr::new(10, 0, 0, 10 + i),
                    i,
                    OURS,
                ),
                ours(),
                now,
            );
        }
        let live: Vec<_> = table
            .live(Instant::from_secs(10))
            .map(|(ip, _)| ip)
            .collect();
        assert_eq!(live.len(), CAPACITY);
        assert!(
            !live.contains(&Ipv4Addr::new(10, 0, 0, 10)),
            "the oldest went"
        );
        table.observe(&[0xFF; 7], ours(), Instant::from_secs(10));
        assert_eq!(
            table.live(Instant::from_secs(10)).count(),
            CAPACITY,
            "garbage ignored"
        );
    }

    #[test]
    fn static_entries_outlive_traffic_and_time_and_crowd_out_learned_ones() {
        let mut table = Neighbors::default();
        let now = Instant::from_secs(100);
        let peer = Ipv4Addr::new(10, 0, 0, 1);
        assert!(table.set_static(peer, [2, 0, 0, 0, 0, 0x51]));
        // The wire says otherwise: the static entry stays.
        table.observe(&arp(ArpOperation::Reply, peer, 9, OURS), ours(), now);
        let later = now + Duration::from_secs(3600);
        assert_eq!(
            table.rows(later).collect::<Vec<_>>(),
            [(peer, [2, 0, 0, 0, 0, 0x51], true)]
        );
        // Static entries fill every slot; then nothing learned fits, and no more static one.
        for i in 1..CAPACITY as u8 {
            assert!(table.set_static(Ipv4Addr::new(10, 0, 0, 1 + i), [2, 0, 0, 0, 1, i]));
        }
        assert!(!table.set_static(Ipv4Addr::new(10, 0, 0, 99), [2; 6]));
        table.observe(
            &arp(ArpOperation::Reply, Ipv4Addr::new(10, 0, 0, 98), 8, OURS),
            ours(),
            now,
        );
        assert_eq!(table.lookup(Ipv4Addr::new(10, 0, 0, 98), now), None);
        assert_eq!(table.statics().count(), CAPACITY);
        // Removal frees the slot; removing an absent entry says so.
        assert!(table.remove(peer));
        assert!(!table.remove(peer));
        table.observe(
            &arp(ArpOperation::Reply, Ipv4Addr::new(10, 0, 0, 98), 8, OURS),
            ours(),
            now,
        );
        assert_eq!(
            table.lookup(Ipv4Addr::new(10, 0, 0, 98), now),
            Some([2, 0, 0, 0, 0, 8])
        );
    }
}
