//! `tdi::request`: the `TDI_REQUEST_KERNEL_*` overlays of `IO_STACK_LOCATION::Parameters`,
//! built from the fuzz bytes, and the values inside them (disconnect flags, query types,
//! timeouts).
//!
//! The overlays are fixed-offset reads, so most of this checks "no panic"; the invariants
//! that exist: every member reads back the bytes at its DDK offset, a query type maps back to
//! its raw value, a disconnect's flags decode as documented, and a timeout never overflows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpip::nt::NtStatus;
use tcpip::tdi::request::*;
use tcpip::tdi::{Disconnect, QueryType, Timeout};

const PTR: usize = size_of::<usize>();

fn word(params: &Parameters, offset: usize) -> usize {
    let mut bytes = [0u8; PTR];
    bytes.copy_from_slice(&params[offset..offset + PTR]);
    usize::from_le_bytes(bytes)
}

fn u32_at(params: &Parameters, offset: usize) -> u32 {
    u32::from_le_bytes(params[offset..offset + 4].try_into().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let mut params: Parameters = [0; size_of::<Parameters>()];
    let (head, tail) = data.split_at(data.len().min(params.len()));
    params[..head.len()].copy_from_slice(head);
    // After `Parameters`: a LARGE_INTEGER timeout and a system time, if present.
    let mut eight = [0u8; 8];
    let timeout = tail.get(..8).map(|b| {
        eight.copy_from_slice(b);
        i64::from_le_bytes(eight)
    });
    let now = tail.get(8..16).map_or(0, |b| {
        eight.copy_from_slice(b);
        i64::from_le_bytes(eight)
    });

    let kernel = KernelRequest::parse(&params);
    assert_eq!(kernel.flags, u32_at(&params, 0));
    assert_eq!(kernel.request_connection_information, word(&params, PTR));
    assert_eq!(kernel.return_connection_information, word(&params, 2 * PTR));
    assert_eq!(kernel.request_specific, word(&params, 3 * PTR));
    assert_eq!(
        AssociateParams::parse(&params).address_handle,
        word(&params, 0)
    );
    let send = SendParams::parse(&params);
    assert_eq!(
        (send.length, send.flags.0),
        (u32_at(&params, 0), u32_at(&params, 4))
    );
    let receive = ReceiveParams::parse(&params);
    assert_eq!(
        (receive.length, receive.flags.0),
        (u32_at(&params, 0), u32_at(&params, 4))
    );
    let datagram = SendDatagramParams::parse(&params);
    assert_eq!(datagram.send_datagram_information, word(&params, PTR));
    let receive = ReceiveDatagramParams::parse(&params);
    assert_eq!(receive.flags.0, u32_at(&params, 3 * PTR));
    let _ = SetEventParams::parse(&params);
    match QueryInformationParams::parse(&params) {
        Ok(query) => {
            assert_eq!(query.query_type.raw(), u32_at(&params, 0) as i32);
            assert_eq!(
                QueryType::from_raw(query.query_type.raw()),
                Ok(query.query_type)
            );
        }
        Err(status) => assert_eq!(status, NtStatus::NOT_IMPLEMENTED),
    }

    let flags = kernel.flags;
    match Disconnect::from_flags(flags) {
        Ok(Disconnect::Abort) => assert!(flags == 0 || flags & 2 != 0),
        Ok(Disconnect::Release) => assert!(flags & 2 == 0 && flags & 4 != 0),
        Ok(Disconnect::Wait) => assert!(flags & 6 == 0 && flags & 1 != 0),
        Err(status) => {
            assert_eq!(status, NtStatus::INVALID_PARAMETER);
            assert!(flags != 0 && flags & 7 == 0);
        }
    }

    let decoded = Timeout::from_large_integer(timeout);
    match (timeout, decoded.remaining(now)) {
        (None, remaining) => assert_eq!(remaining, None),
        (Some(_), remaining) => assert!(remaining.is_some()),
    }
});
