//! `core::neighbors::Neighbors::observe`: the mirror of smoltcp's ARP cache, fed sequences of
//! received frames (arbitrary, or ARP packets built from the input), with static entries set
//! and removed and time passing in between.
//!
//! Invariants: a learned entry is an address of the interface's subnet with a unicast MAC
//! address; static entries survive what the wire says; at most
//! `CAPACITY` entries; a fresh ARP request or reply for our address from a neighbour on the
//! subnet is found by `lookup`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Ipv4Cidr,
};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use tcpip::core::neighbors::{CAPACITY, Neighbors};

#[derive(Arbitrary, Debug)]
enum Step {
    Frame(Vec<u8>),
    Arp {
        reply: bool,
        mac: [u8; 6],
        sender: u8,
        target: u8,
    },
    Static {
        host: u8,
        mac: [u8; 6],
    },
    Remove(u8),
    Time(u16),
}

const OURS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn arp(reply: bool, mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: if reply {
            ArpOperation::Reply
        } else {
            ArpOperation::Request
        },
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: sender,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let ethernet = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = vec![0u8; ethernet.buffer_len() + arp.buffer_len()];
    let mut view = EthernetFrame::new_unchecked(&mut frame[..]);
    ethernet.emit(&mut view);
    arp.emit(&mut ArpPacket::new_unchecked(view.payload_mut()));
    frame
}

fuzz_target!(|steps: Vec<Step>| {
    let ours = Ipv4Cidr::new(OURS, 24);
    let mut neighbors = Neighbors::default();
    let mut statics: HashMap<Ipv4Addr, [u8; 6]> = HashMap::new();
    let mut now = Instant::from_secs(1);
    for step in steps.into_iter().take(64) {
        match step {
            Step::Frame(frame) => neighbors.observe(&frame, Some(ours), now),
            Step::Arp {
                reply,
                mac,
                sender,
                target,
            } => {
                let sender = Ipv4Addr::new(10, 0, 0, sender);
                let target = if target & 1 == 0 {
                    OURS
                } else {
                    Ipv4Addr::new(10, 0, 0, target)
                };
                let frame = arp(reply, mac, sender, target);
                neighbors.observe(&frame, Some(ours), now);
                let room = statics.len() < CAPACITY || statics.contains_key(&sender);
                let learnable = target == OURS
                    && room
                    && EthernetAddress(mac).is_unicast()
                    && sender != Ipv4Addr::new(10, 0, 0, 0)
                    && sender != Ipv4Addr::new(10, 0, 0, 255);
                if learnable {
                    let expected = statics.get(&sender).copied().unwrap_or(mac);
                    assert_eq!(neighbors.lookup(sender, now), Some(expected));
                }
            }
            Step::Static { host, mac } => {
                let ip = Ipv4Addr::new(10, 0, 0, host);
                let full = statics.len() == CAPACITY && !statics.contains_key(&ip);
                assert_eq!(neighbors.set_static(ip, mac), !full);
                if !full {
                    statics.insert(ip, mac);
                }
            }
            Step::Remove(host) => {
                let ip = Ipv4Addr::new(10, 0, 0, host);
                let had = neighbors.remove(ip);
                assert!(had || !statics.contains_key(&ip));
                statics.remove(&ip);
            }
            Step::Time(ms) => now += Duration::from_millis(u64::from(ms) * 10),
        }
        let rows: Vec<_> = neighbors.rows(now).collect();
        assert!(rows.len() <= CAPACITY);
        for (ip, mac, is_static) in rows {
            if is_static {
                assert_eq!(statics.get(&ip), Some(&mac));
            } else {
                assert!(ours.contains_addr(&ip) && !ip.is_broadcast() && !ip.is_unspecified());
                assert!(EthernetAddress(mac).is_unicast());
            }
        }
        for (ip, mac) in &statics {
            assert_eq!(
                neighbors.lookup(*ip, now),
                Some(*mac),
                "static entries stay"
            );
        }
    }
});
