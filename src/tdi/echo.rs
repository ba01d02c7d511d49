//! `IOCTL_ICMP_ECHO_REQUEST` (0x120000, `METHOD_BUFFERED`, on `\Device\Ip`): iphlpapi's
//! `IcmpSendEcho`, what `ping` and `tracert` call.
//!
//! The input is an `ICMP_ECHO_REQUEST` (20 bytes) followed by its options and data, which
//! `DataOffset`/`OptionsOffset` locate within the input buffer:
//!
//! ```text
//! 0  IPAddr  Address        destination, network order
//! 4  ULONG   Timeout        milliseconds
//! 8  USHORT  DataOffset     12 USHORT DataSize
//! 12 UCHAR   HasOptions     13 Ttl  14 Tos  15 Flags
//! 16 USHORT  OptionsOffset  18 UCHAR OptionsSize  19 padding
//! ```
//!
//! The output is one `ICMP_ECHO_REPLY` (28 bytes on x86, 40 on x64: `Data` and
//! `Options.OptionsData` are pointers) with the echoed data at the end of the output buffer,
//! `Data` pointing at it in the *caller's* buffer, and `Reserved` holding the number of
//! replies, which iphlpapi returns. A request that times out completes with `STATUS_TIMEOUT`
//! (a success code) and a zeroed reply whose `Status` is `IP_REQ_TIMED_OUT`, as ReactOS's
//! transport does.
#![forbid(unsafe_code)]
#![allow(
    non_snake_case,
    non_camel_case_types,
    reason = "the DDK's names of ICMP_ECHO_REQUEST and ICMP_ECHO_REPLY"
)]

use crate::nt::NtStatus;
use core::mem::{offset_of, size_of};
use core::net::Ipv4Addr;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `IP_SUCCESS`.
pub const IP_SUCCESS: u32 = 0;
/// `IP_REQ_TIMED_OUT`.
pub const IP_REQ_TIMED_OUT: u32 = 11010;
/// The largest echo payload: 65,535 less the IPv4 (20) and ICMP (8) headers.
pub const MAX_DATA: usize = 65_507;

/// `ICMP_ECHO_REQUEST` (20 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ICMP_ECHO_REQUEST {
    pub Address: [u8; 4],
    pub Timeout: u32,
    pub DataOffset: u16,
    pub DataSize: u16,
    pub HasOptions: u8,
    pub Ttl: u8,
    pub Tos: u8,
    pub Flags: u8,
    pub OptionsOffset: u16,
    pub OptionsSize: u8,
    pub Padding: u8,
}

/// `IP_OPTION_INFORMATION` (8 / 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IP_OPTION_INFORMATION {
    pub Ttl: u8,
    pub Tos: u8,
    pub Flags: u8,
    pub OptionsSize: u8,
    #[cfg(target_pointer_width = "64")]
    pub _pad: [u8; 4],
    /// `PUCHAR OptionsData`, an address in the caller's space.
    pub OptionsData: usize,
}

/// `ICMP_ECHO_REPLY` (28 / 40 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ICMP_ECHO_REPLY {
    pub Address: [u8; 4],
    pub Status: u32,
    /// Milliseconds.
    pub RoundTripTime: u32,
    pub DataSize: u16,
    /// The number of replies in the buffer (iphlpapi's return value).
    pub Reserved: u16,
    /// `PVOID Data`, an address in the caller's space.
    pub Data: usize,
    pub Options: IP_OPTION_INFORMATION,
}

const _: () = {
    let x64 = size_of::<usize>() == 8;
    assert!(size_of::<ICMP_ECHO_REQUEST>() == 20);
    assert!(size_of::<ICMP_ECHO_REPLY>() == if x64 { 40 } else { 28 });
    assert!(offset_of!(ICMP_ECHO_REPLY, Options) == if x64 { 24 } else { 20 });
};

/// A decoded echo request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EchoRequest {
    pub destination: Ipv4Addr,
    /// Milliseconds; 0 is taken as 1.
    pub timeout_ms: u32,
    /// The TTL asked for, if options came with the request.
    pub ttl: Option<u8>,
    /// Where the data lies in the input buffer.
    pub data: core::ops::Range<usize>,
}

impl EchoRequest {
    /// Decodes the input buffer, checked against the output length: an input shorter than
    /// `ICMP_ECHO_REQUEST`, an output shorter than `ICMP_ECHO_REPLY`, data or options outside
    /// the input, or data larger than [`MAX_DATA`] are `STATUS_INVALID_PARAMETER`. Any IRQL.
    pub fn parse(input: &[u8], output_len: usize) -> Result<Self, NtStatus> {
        let (request, _) =
            ICMP_ECHO_REQUEST::read_from_prefix(input).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        if output_len < size_of::<ICMP_ECHO_REPLY>() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let start = usize::from(request.DataOffset);
        let data = start..start + usize::from(request.DataSize);
        let options_end = usize::from(request.OptionsOffset) + usize::from(request.OptionsSize);
        if data.end > input.len() || options_end > input.len() || data.len() > MAX_DATA {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        Ok(Self {
            destination: Ipv4Addr::from(request.Address),
            timeout_ms: request.Timeout.max(1),
            ttl: (request.HasOptions != 0 && request.Ttl != 0).then_some(request.Ttl),
            data,
        })
    }
}

/// What came back for an echo request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoReply {
    pub from: Ipv4Addr,
    pub status: u32,
    pub round_trip_ms: u32,
    pub ttl: u8,
}

/// Writes a reply and its `data` into the output buffer `out` (the data at its end, as ReactOS
/// places it), with `Data` the caller's address `user_buffer` + the data's offset. Returns the
/// `Information` to complete with: the whole output length. Data that does not fit is cut.
/// Any IRQL.
pub fn emit_reply(reply: &EchoReply, data: &[u8], user_buffer: usize, out: &mut [u8]) -> usize {
    let head = size_of::<ICMP_ECHO_REPLY>();
    let room = out.len().saturating_sub(head);
    let data = data.get(..room).unwrap_or(data);
    let offset = out.len() - data.len();
    let record = ICMP_ECHO_REPLY {
        Address: reply.from.octets(),
        Status: reply.status,
        RoundTripTime: reply.round_trip_ms,
        DataSize: u16::try_from(data.len()).unwrap_or(u16::MAX),
        Reserved: 1,
        Data: if data.is_empty() {
            0
        } else {
            user_buffer.wrapping_add(offset)
        },
        Options: IP_OPTION_INFORMATION {
            Ttl: reply.ttl,
            ..IP_OPTION_INFORMATION::default()
        },
    };
    out.fill(0);
    if let Some(slot) = out.get_mut(..head) {
        slot.copy_from_slice(record.as_bytes());
    }
    if let Some(slot) = out.get_mut(offset..) {
        slot.copy_from_slice(data);
    }
    out.len()
}

/// Writes the reply of a request that timed out: zeroed, `Status` `IP_REQ_TIMED_OUT`. Returns
/// the `Information`: the reply's size. Any IRQL.
pub fn emit_timeout(out: &mut [u8]) -> usize {
    let record = ICMP_ECHO_REPLY {
        Status: IP_REQ_TIMED_OUT,
        ..ICMP_ECHO_REPLY::default()
    };
    match out.get_mut(..size_of::<ICMP_ECHO_REPLY>()) {
        Some(slot) => {
            slot.copy_from_slice(record.as_bytes());
            slot.len()
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(data_offset: u16, data_size: u16, len: usize) -> Vec<u8> {
        let head = ICMP_ECHO_REQUEST {
            Address: [127, 0, 0, 1],
            Timeout: 4000,
            DataOffset: data_offset,
            DataSize: data_size,
            HasOptions: 1,
            Ttl: 128,
            OptionsOffset: 20,
            ..ICMP_ECHO_REQUEST::default()
        };
        let mut input = head.as_bytes().to_vec();
        input.resize(len, 0xAB);
        input
    }

    #[test]
    fn a_ping_request_decodes() {
        let input = request(20, 32, 52);
        let reply = size_of::<ICMP_ECHO_REPLY>() + 32;
        assert_eq!(
            EchoRequest::parse(&input, reply),
            Ok(EchoRequest {
                destination: Ipv4Addr::LOCALHOST,
                timeout_ms: 4000,
                ttl: Some(128),
                data: 20..52,
            })
        );
    }

    #[test]
    fn bad_lengths_are_invalid() {
        let reply = size_of::<ICMP_ECHO_REPLY>();
        for (input, out) in [
            (request(20, 32, 51), reply + 32),
            (request(20, 0, 19), reply),
            (request(20, 0, 20), reply - 1),
            (request(0xFFFF, 1, 64), reply),
        ] {
            assert_eq!(
                EchoRequest::parse(&input, out),
                Err(NtStatus::INVALID_PARAMETER)
            );
        }
    }

    #[test]
    fn the_reply_points_at_its_data_at_the_end_of_the_caller_buffer() {
        let reply = EchoReply {
            from: Ipv4Addr::LOCALHOST,
            status: IP_SUCCESS,
            round_trip_ms: 3,
            ttl: 64,
        };
        let mut out = vec![0xEE; size_of::<ICMP_ECHO_REPLY>() + 40];
        assert_eq!(emit_reply(&reply, b"abcd", 0x1000, &mut out), out.len());
        let (record, _) = ICMP_ECHO_REPLY::read_from_prefix(&out).unwrap();
        assert_eq!(
            (record.DataSize, record.Reserved, record.Options.Ttl),
            (4, 1, 64)
        );
        assert_eq!(record.Data, 0x1000 + out.len() - 4);
        assert_eq!(&out[out.len() - 4..], b"abcd");
        let mut small = vec![0; size_of::<ICMP_ECHO_REPLY>() + 2];
        emit_reply(&reply, b"abcd", 0, &mut small);
        assert_eq!(&small[small.len() - 2..], b"ab", "cut to the room left");
    }
}
