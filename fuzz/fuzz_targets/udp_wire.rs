//! `core::udp::wire`: received UDP datagrams (`parse`) and the broadcast test
//! (`is_broadcast`). The first byte says whether checksums are verified.
//!
//! Invariants: a datagram comes from a whole IPv4 packet of protocol 17, its addresses and
//! ports are the headers', its payload lies inside the packet and is the UDP length less
//! the header; with checksums off nothing is `BadChecksum`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use tcpip::core::udp::wire::{Parsed, is_broadcast, parse};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, packet)) = data.split_first() else {
        return;
    };
    let checksums = flags & 1 != 0;
    match parse(packet, checksums) {
        Parsed::Datagram(datagram) => {
            assert_eq!(packet[9], 17);
            assert_eq!(datagram.src.ip().octets(), packet[12..16]);
            assert_eq!(datagram.dst.ip().octets(), packet[16..20]);
            let header = usize::from(packet[0] & 0x0f) * 4;
            let udp = &packet[header..];
            assert_eq!(datagram.src.port(), u16::from_be_bytes([udp[0], udp[1]]));
            assert_eq!(datagram.dst.port(), u16::from_be_bytes([udp[2], udp[3]]));
            let length = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
            assert_eq!(datagram.payload.len() + 8, length);
            let outer = packet.as_ptr_range();
            let inner = datagram.payload.as_ptr_range();
            assert!(outer.start <= inner.start && inner.end <= outer.end);
        }
        Parsed::BadChecksum => assert!(checksums),
        Parsed::NotUdp => {}
    }
    if let Some(bytes) = packet.get(..9) {
        let ip = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
        let address = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
        let prefix = bytes[8] % 40;
        let broadcast = is_broadcast(ip, Some((address, prefix)));
        assert!(!ip.is_broadcast() || broadcast);
        if broadcast && !ip.is_broadcast() {
            assert!(prefix < 31);
        }
        assert_eq!(is_broadcast(ip, None), ip.is_broadcast());
    }
});
