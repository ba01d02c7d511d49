//! `core::segment::classify`: the look at a received TCP segment before smoltcp.
//!
//! Invariants: a classified segment comes from an unfragmented IPv4 packet of protocol 6 with
//! a complete TCP header, and its addresses, ports and flags are the headers'.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpip::core::segment::classify;

fuzz_target!(|frame: &[u8]| {
    let Some(segment) = classify(frame) else {
        return;
    };
    assert_eq!(frame[0] >> 4, 4);
    assert_eq!(frame[9], 6);
    assert_eq!(
        u16::from_be_bytes([frame[6], frame[7]]) & 0x3fff,
        0,
        "not a fragment"
    );
    let header = usize::from(frame[0] & 0x0f) * 4;
    let tcp = &frame[header..];
    assert!(tcp.len() >= 20);
    assert_eq!(segment.src.ip().octets(), frame[12..16]);
    assert_eq!(segment.dst.ip().octets(), frame[16..20]);
    assert_eq!(segment.src.port(), u16::from_be_bytes([tcp[0], tcp[1]]));
    assert_eq!(segment.dst.port(), u16::from_be_bytes([tcp[2], tcp[3]]));
    let flags = tcp[13];
    assert_eq!(
        (segment.fin, segment.syn, segment.rst, segment.ack),
        (
            flags & 1 != 0,
            flags & 2 != 0,
            flags & 4 != 0,
            flags & 16 != 0
        )
    );
    assert_eq!(
        segment.is_connection_request(),
        segment.syn && !segment.ack && !segment.rst
    );
});
