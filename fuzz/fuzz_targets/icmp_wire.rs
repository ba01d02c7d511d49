//! `core::icmp::wire`: received ICMP messages (`parse`) and the core's answer to an echo
//! request (`echo_reply_to`). The first byte says whether checksums are verified.
//!
//! Invariants: an echo reply's data lies inside the packet; a parsed message comes from a
//! whole IPv4 packet of protocol 1 whose addresses are the carrier's; with checksums on, a
//! message whose checksum is broken is never reported as one; the reply to an echo request
//! parses, checksums verified, as an echo reply with the request's identifier, sequence,
//! data and swapped addresses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpip::core::icmp::wire::{Message, Parsed, echo_reply_to, parse};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, packet)) = data.split_first() else {
        return;
    };
    let checksums = flags & 1 != 0;
    let parsed = parse(packet, checksums);
    if let Parsed::Icmp(carrier, message) = parsed {
        assert_eq!(packet[9], 1);
        assert_eq!(carrier.src.octets(), packet[12..16]);
        assert_eq!(carrier.dst.octets(), packet[16..20]);
        if let Message::EchoReply { data, .. } = message {
            let outer = packet.as_ptr_range();
            let inner = data.as_ptr_range();
            assert!(outer.start <= inner.start && inner.end <= outer.end);
        }
    }
    if let Some(Ok(reply)) = echo_reply_to(packet) {
        let Parsed::Icmp(carrier, Message::EchoReply { ident, seq, data }) = parse(&reply, true)
        else {
            panic!("the reply to an echo request is not an echo reply: {reply:02x?}");
        };
        assert_eq!(carrier.src.octets(), packet[16..20]);
        assert_eq!(carrier.dst.octets(), packet[12..16]);
        if let Parsed::Icmp(_, Message::EchoRequest) = parse(packet, false) {
            let header = usize::from(packet[0] & 0x0f) * 4;
            let icmp = &packet[header..];
            assert_eq!(ident, u16::from_be_bytes([icmp[4], icmp[5]]));
            assert_eq!(seq, u16::from_be_bytes([icmp[6], icmp[7]]));
            assert!(icmp[8..].starts_with(data));
        }
    }
});
