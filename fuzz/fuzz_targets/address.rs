//! `tdi::address`: `TRANSPORT_ADDRESS` and `TA_IP_ADDRESS` (`TransportAddress::parse`,
//! `parse_ta_ip_address`).
//!
//! Invariants: a parsed address emitted as a `TA_IP_ADDRESS` parses back to itself with both
//! parsers; a `TA_IP_ADDRESS` the strict parser accepts with `AddressLength` 14 is the address
//! the generic parser finds; the `TDI_ADDRESS_INFO` answer carries it after the count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpip::tdi::TransportAddress;

fn round_trip(address: TransportAddress) {
    let bytes = address.emit_ta_ip_address();
    assert_eq!(TransportAddress::parse_ta_ip_address(&bytes), Ok(address));
    assert_eq!(TransportAddress::parse(&bytes), Ok(address));
    let info = address.emit_address_info(7);
    assert_eq!(&info[..4], &7u32.to_le_bytes());
    assert_eq!(TransportAddress::parse(&info[4..]), Ok(address));
}

fuzz_target!(|data: &[u8]| {
    let generic = TransportAddress::parse(data);
    if let Ok(address) = generic {
        round_trip(address);
    }
    if let Ok(address) = TransportAddress::parse_ta_ip_address(data) {
        round_trip(address);
        if data.get(4..6) == Some(&[14, 0][..]) {
            assert_eq!(generic, Ok(address));
        }
    }
});
