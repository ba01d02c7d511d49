//! `tdi::ioctl`: the inputs of `IOCTL_TCP_QUERY_INFORMATION_EX`,
//! `IOCTL_TCP_SET_INFORMATION_EX`, `IOCTL_SET_IP_ADDRESS` and `IOCTL_DELETE_IP_ADDRESS`, and
//! the length-probe copy of the answers. The first byte picks the decoder.
//!
//! Invariants: parsed query and set requests emit back to bytes that parse to the same value;
//! a set request's value lies inside the input and has the length it declares; an address
//! set's prefix is the mask's; the probe copy reports the answer's length and copies all of
//! it or nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpip::tdi::ioctl::{SetIpAddress, parse_delete_ip_address};
use tcpip::tdi::{QueryInformationEx, SetInformationEx, copy_out_with_probe};

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            // The exact length is required: stretch or cut short inputs to it half the time.
            let mut owned = input.to_vec();
            if which & 0x80 != 0 {
                owned.resize(QueryInformationEx::LEN, 0);
            }
            if let Ok(query) = QueryInformationEx::parse(&owned) {
                assert_eq!(owned.len(), QueryInformationEx::LEN);
                let mut out = [0u8; 64];
                assert_eq!(query.emit(&mut out), Ok(QueryInformationEx::LEN));
                assert_eq!(
                    QueryInformationEx::parse(&out[..QueryInformationEx::LEN]),
                    Ok(query)
                );
            }
        }
        1 => {
            if let Ok(set) = SetInformationEx::parse(input) {
                let range = input.as_ptr_range();
                let value = set.buffer.as_ptr_range();
                assert!(range.start <= value.start && value.end <= range.end);
                let declared = u32::from_le_bytes(input[20..24].try_into().unwrap());
                assert_eq!(set.buffer.len(), declared as usize);
                let mut out = vec![0u8; set.buffer_len()];
                assert_eq!(set.emit(&mut out), Ok(out.len()));
                assert_eq!(SetInformationEx::parse(&out), Ok(set));
            }
        }
        2 => {
            if let Ok(set) = SetIpAddress::parse(input) {
                let mask = u32::from_be_bytes(input[8..12].try_into().unwrap());
                let expected = if set.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - set.prefix)
                };
                assert_eq!(mask, expected);
                assert_eq!(set.ip.octets(), input[4..8]);
            }
        }
        3 => {
            if let Ok(index) = parse_delete_ip_address(input) {
                assert!(index <= u32::from(u16::MAX));
            }
        }
        _ => {
            let (answer, out_len) = input.split_at(input.len() / 2);
            let mut out = vec![0xCCu8; out_len.len()];
            let room = out.len();
            let written = copy_out_with_probe(answer, room, |answer| {
                out[..answer.len()].copy_from_slice(answer);
                Ok::<(), ()>(())
            });
            assert_eq!(written, Ok(answer.len()));
            if out.len() >= answer.len() {
                assert_eq!(&out[..answer.len()], answer);
            } else {
                assert!(out.iter().all(|&b| b == 0xCC));
            }
        }
    }
});
