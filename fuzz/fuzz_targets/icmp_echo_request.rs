//! `tdi::icmp`: the `IOCTL_ICMP_ECHO_REQUEST` input (`EchoRequest::parse`).
//!
//! Invariants: the data lies inside the input at `DataOffset` with `DataSize` bytes, is no
//! longer than an IPv4 packet carries, the options declared lie inside the input, the
//! destination is not 0.0.0.0 and the TTL is never 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpip::tdi::icmp::{EchoRequest, MAX_DATA};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = EchoRequest::parse(data) else {
        return;
    };
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([data[at], data[at + 1]]));
    let (offset, size) = (u16_at(8), u16_at(10));
    assert_eq!(request.data.len(), size);
    assert!(request.data.len() <= MAX_DATA);
    assert!(std::ptr::eq(request.data.as_ptr(), data[offset..].as_ptr()));
    let options_size = usize::from(data[18]);
    if options_size > 0 {
        assert!(u16_at(16) + options_size <= data.len());
    }
    assert!(!request.dst.is_unspecified());
    assert_ne!(request.ttl, 0);
});
