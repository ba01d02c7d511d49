//! The input buffers of `IOCTL_TCP_QUERY_INFORMATION_EX` and `IOCTL_TCP_SET_INFORMATION_EX`,
//! and the ReactOS length-probe convention for their answers (contract §5).
//!
//! `IOCTL_TCP_QUERY_INFORMATION_EX` (0x120003, `METHOD_NEITHER`) takes a
//! `TCP_REQUEST_QUERY_INFORMATION_EX`, which must be exactly its own size:
//!
//! ```text
//! +0      TDIObjectID ID        toi_entity {tei_entity, tei_instance}, toi_class, toi_type, toi_id
//! +20/24  ULONG_PTR Context[]   16 bytes, 8-aligned on x64 (so 36 bytes on x86, 40 on x64)
//! ```
//!
//! `IOCTL_TCP_SET_INFORMATION_EX` (0x128004, `METHOD_BUFFERED`) takes a
//! `TCP_REQUEST_SET_INFORMATION_EX`: the same `TDIObjectID`, an `unsigned int BufferSize` at
//! 20, and `BufferSize` bytes of option value from offset 24.
//!
//! All integers are little endian. Pointer width is the driver's own (`size_of::<usize>()`):
//! the decoder serves native callers only, as the transport does.

use crate::nt::NtStatus;
use crate::nt::types::{
    TCP_REQUEST_QUERY_INFORMATION_EX, TCP_REQUEST_SET_INFORMATION_EX, TDIObjectID,
};
use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, IntoBytes};

/// Size of the `Context` of a query: 16 bytes.
pub const CONTEXT_LEN: usize = 16;

// The context follows the id and is the last member: `emit` relies on it.
const _: () = assert!(
    QueryInformationEx::CONTEXT_OFFSET >= size_of::<TDIObjectID>()
        && QueryInformationEx::LEN == QueryInformationEx::CONTEXT_OFFSET + CONTEXT_LEN
);

/// A decoded `TCP_REQUEST_QUERY_INFORMATION_EX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryInformationEx {
    pub id: TDIObjectID,
    /// Opaque to the caller; ReactOS's transport copies it back into the input buffer (at
    /// [`CONTEXT_OFFSET`](Self::CONTEXT_OFFSET)) on success.
    pub context: [u8; CONTEXT_LEN],
}

impl QueryInformationEx {
    /// The exact input length the IOCTL requires: 36 on x86, 40 on x64.
    pub const LEN: usize = size_of::<TCP_REQUEST_QUERY_INFORMATION_EX>();
    /// Offset of `Context` in the input buffer: 20 on x86, 24 on x64.
    pub const CONTEXT_OFFSET: usize = offset_of!(TCP_REQUEST_QUERY_INFORMATION_EX, Context);

    /// Decodes the input buffer. Any length but [`LEN`](Self::LEN) is
    /// `STATUS_INVALID_PARAMETER`, as in ReactOS's transport.
    pub fn parse(input: &[u8]) -> Result<Self, NtStatus> {
        if input.len() != Self::LEN {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let (id, _) =
            TDIObjectID::read_from_prefix(input).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let context = input
            .get(Self::CONTEXT_OFFSET..)
            .and_then(|tail| tail.first_chunk::<CONTEXT_LEN>())
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        Ok(Self {
            id,
            context: *context,
        })
    }

    /// Writes the [`LEN`](Self::LEN)-byte input buffer (padding zeroed) and returns its length;
    /// `STATUS_BUFFER_TOO_SMALL` if `out` is shorter.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, NtStatus> {
        let out = out.get_mut(..Self::LEN).ok_or(NtStatus::BUFFER_TOO_SMALL)?;
        out.fill(0);
        let (head, context) = out.split_at_mut(Self::CONTEXT_OFFSET);
        let id = self.id.as_bytes();
        head.get_mut(..id.len())
            .ok_or(NtStatus::BUFFER_TOO_SMALL)?
            .copy_from_slice(id);
        context.copy_from_slice(&self.context);
        Ok(Self::LEN)
    }
}

/// A decoded `TCP_REQUEST_SET_INFORMATION_EX`: the object and the option value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetInformationEx<'a> {
    pub id: TDIObjectID,
    /// The `BufferSize` bytes after the header.
    pub buffer: &'a [u8],
}

impl<'a> SetInformationEx<'a> {
    /// Size of the header before `Buffer`: 24.
    pub const HEADER_LEN: usize = size_of::<TCP_REQUEST_SET_INFORMATION_EX>();

    /// Decodes the input buffer. `STATUS_INVALID_PARAMETER` if it is shorter than the header or
    /// if `BufferSize` is larger than the bytes that follow the header. Bytes after the value
    /// (callers often pass `sizeof` of the structure, which includes `Buffer[1]` and padding)
    /// are ignored.
    pub fn parse(input: &'a [u8]) -> Result<Self, NtStatus> {
        let (header, rest) = TCP_REQUEST_SET_INFORMATION_EX::read_from_prefix(input)
            .map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let size = usize::try_from(header.BufferSize).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let buffer = rest.get(..size).ok_or(NtStatus::INVALID_PARAMETER)?;
        Ok(Self {
            id: header.ID,
            buffer,
        })
    }

    /// Length of the input buffer [`emit`](Self::emit) writes: the header plus the value.
    pub fn buffer_len(&self) -> usize {
        Self::HEADER_LEN + self.buffer.len()
    }

    /// Writes the input buffer and returns its length. `STATUS_BUFFER_TOO_SMALL` if `out` is
    /// shorter than [`buffer_len`](Self::buffer_len); `STATUS_INVALID_PARAMETER` if the value
    /// does not fit the 32-bit `BufferSize`.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, NtStatus> {
        let size = u32::try_from(self.buffer.len()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let out = out
            .get_mut(..self.buffer_len())
            .ok_or(NtStatus::BUFFER_TOO_SMALL)?;
        let header = TCP_REQUEST_SET_INFORMATION_EX {
            ID: self.id,
            BufferSize: size,
        };
        let (head, value) = out.split_at_mut(Self::HEADER_LEN);
        head.copy_from_slice(header.as_bytes());
        value.copy_from_slice(self.buffer);
        Ok(self.buffer_len())
    }
}

/// Copies a `QUERY_INFORMATION_EX` answer to the caller's output buffer of `room` bytes with
/// ReactOS's length-probe semantics, and returns the `IoStatus.Information` to complete with.
/// `write` copies the whole answer to the start of the output buffer (a fault-safe copy for a
/// user-mode buffer); its error is the request's. On success:
/// - `room` is 0 (a probe): nothing is copied; Information = `answer.len()`, the size needed.
/// - `room` is non-zero but shorter than the answer: nothing is copied; Information =
///   `answer.len()`. tdilib then retries with a buffer of that size.
/// - `room` is large enough: the answer is written; Information = `answer.len()`, the bytes
///   written.
///
/// Information is therefore always `answer.len()`: tdilib repeats probe and fetch until the
/// two agree, so an answer must not change size between them without reason.
pub fn copy_out_with_probe<E>(
    answer: &[u8],
    room: usize,
    write: impl FnOnce(&[u8]) -> Result<(), E>,
) -> Result<usize, E> {
    if answer.len() <= room {
        write(answer)?;
    }
    Ok(answer.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nt::types::TDIEntityID;
    use crate::nt::types::{
        CO_TL_ENTITY, ENTITY_LIST_ID, GENERIC_ENTITY, IF_ENTITY, INFO_CLASS_GENERIC,
        INFO_CLASS_PROTOCOL, INFO_TYPE_CONNECTION, INFO_TYPE_PROVIDER, TCP_SOCKET_NODELAY,
    };
    use proptest::prelude::*;

    /// `copy_out_with_probe` into a slice.
    fn copy_out(answer: &[u8], out: &mut [u8]) -> usize {
        let room = out.len();
        let written = copy_out_with_probe(answer, room, |answer| {
            out[..answer.len()].copy_from_slice(answer);
            Ok::<(), ()>(())
        });
        written.unwrap_or_default()
    }

    const ENTITY_LIST: TDIObjectID = TDIObjectID {
        toi_entity: TDIEntityID {
            tei_entity: GENERIC_ENTITY,
            tei_instance: 0,
        },
        toi_class: INFO_CLASS_GENERIC,
        toi_type: INFO_TYPE_PROVIDER,
        toi_id: ENTITY_LIST_ID,
    };

    fn query_bytes(id: TDIObjectID, context: [u8; 16]) -> Vec<u8> {
        let mut out = vec![0; QueryInformationEx::LEN];
        QueryInformationEx { id, context }.emit(&mut out).unwrap();
        out
    }

    #[test]
    fn query_sizes_follow_pointer_width() {
        let (len, context) = if cfg!(target_pointer_width = "64") {
            (40, 24)
        } else {
            (36, 20)
        };
        assert_eq!(QueryInformationEx::LEN, len);
        assert_eq!(QueryInformationEx::CONTEXT_OFFSET, context);
    }

    #[test]
    fn query_decodes_id_and_context() {
        let mut input = vec![0u8; QueryInformationEx::LEN];
        let words = [0x400u32, 3, 0x200, 0x300, 1];
        for (i, w) in words.iter().enumerate() {
            input[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        let ctx: [u8; 16] = core::array::from_fn(|i| i as u8 + 1);
        input[QueryInformationEx::CONTEXT_OFFSET..].copy_from_slice(&ctx);
        let query = QueryInformationEx::parse(&input).unwrap();
        assert_eq!(
            query.id.toi_entity,
            TDIEntityID {
                tei_entity: 0x400,
                tei_instance: 3
            }
        );
        assert_eq!(
            (query.id.toi_class, query.id.toi_type, query.id.toi_id),
            (0x200, 0x300, 1)
        );
        assert_eq!(query.context, ctx);
    }

    #[test]
    fn query_input_length_must_be_exact() {
        let input = query_bytes(ENTITY_LIST, [0; 16]);
        for len in [0, 20, 35, 36, 39, 40, 41, 64] {
            let mut buf = input.clone();
            buf.resize(len, 0);
            let expected = if len == QueryInformationEx::LEN {
                Ok(QueryInformationEx {
                    id: ENTITY_LIST,
                    context: [0; 16],
                })
            } else {
                Err(NtStatus::INVALID_PARAMETER)
            };
            assert_eq!(QueryInformationEx::parse(&buf), expected, "length {len}");
        }
    }

    #[test]
    fn query_emit_needs_room() {
        let q = QueryInformationEx {
            id: ENTITY_LIST,
            context: [0; 16],
        };
        let mut short = vec![0; QueryInformationEx::LEN - 1];
        assert_eq!(q.emit(&mut short), Err(NtStatus::BUFFER_TOO_SMALL));
    }

    #[test]
    fn set_nodelay_request() {
        let id = TDIObjectID {
            toi_entity: TDIEntityID {
                tei_entity: CO_TL_ENTITY,
                tei_instance: 1,
            },
            toi_class: INFO_CLASS_PROTOCOL,
            toi_type: INFO_TYPE_CONNECTION,
            toi_id: TCP_SOCKET_NODELAY,
        };
        let mut input = id.as_bytes().to_vec();
        input.extend_from_slice(&1u32.to_le_bytes());
        input.extend_from_slice(&[1, 0, 0, 0]); // BOOLEAN TRUE, then Buffer[1]'s padding
        let set = SetInformationEx::parse(&input).unwrap();
        assert_eq!(set, SetInformationEx { id, buffer: &[1] });
    }

    #[test]
    fn set_input_shorter_than_header() {
        for len in 0..SetInformationEx::HEADER_LEN {
            assert_eq!(
                SetInformationEx::parse(&vec![0; len]),
                Err(NtStatus::INVALID_PARAMETER)
            );
        }
        assert_eq!(
            SetInformationEx::parse(&[0; SetInformationEx::HEADER_LEN]),
            Ok(SetInformationEx {
                id: TDIObjectID::read_from_bytes(&[0; 20]).unwrap(),
                buffer: &[]
            })
        );
    }

    #[test]
    fn set_buffer_size_larger_than_what_follows() {
        let mut input = ENTITY_LIST.as_bytes().to_vec();
        input.extend_from_slice(&5u32.to_le_bytes());
        input.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            SetInformationEx::parse(&input),
            Err(NtStatus::INVALID_PARAMETER)
        );
        input[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            SetInformationEx::parse(&input),
            Err(NtStatus::INVALID_PARAMETER)
        );
    }

    #[test]
    fn probe_with_empty_output_reports_required_size() {
        let answer = [7u8; 24];
        let mut out = [];
        assert_eq!(copy_out(&answer, &mut out), 24);
    }

    #[test]
    fn short_output_copies_nothing_and_reports_required_size() {
        let answer = [7u8; 24];
        let mut out = [0u8; 23];
        assert_eq!(copy_out(&answer, &mut out), 24);
        assert_eq!(out, [0; 23]);
    }

    #[test]
    fn large_output_gets_the_answer() {
        let answer = [7u8; 24];
        let mut out = [0u8; 30];
        assert_eq!(copy_out(&answer, &mut out), 24);
        assert_eq!(out[..24], answer);
        assert_eq!(out[24..], [0; 6]);
    }

    #[test]
    fn empty_answer() {
        assert_eq!(copy_out(&[], &mut []), 0);
        let mut out = [9u8; 4];
        assert_eq!(copy_out(&[], &mut out), 0);
        assert_eq!(out, [9; 4]);
    }

    #[test]
    fn entity_list_probe_then_fetch_like_tdilib() {
        let entities = [
            TDIEntityID {
                tei_entity: IF_ENTITY,
                tei_instance: 0,
            },
            TDIEntityID {
                tei_entity: CO_TL_ENTITY,
                tei_instance: 2,
            },
        ];
        let needed = copy_out(entities.as_bytes(), &mut []);
        assert_eq!(needed, 16);
        let mut out = vec![0; needed];
        assert_eq!(copy_out(entities.as_bytes(), &mut out), needed);
        assert_eq!(out, [0, 2, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 2, 0, 0, 0]);
    }

    fn any_id() -> impl Strategy<Value = TDIObjectID> {
        any::<[u32; 5]>().prop_map(|w| TDIObjectID {
            toi_entity: TDIEntityID {
                tei_entity: w[0],
                tei_instance: w[1],
            },
            toi_class: w[2],
            toi_type: w[3],
            toi_id: w[4],
        })
    }

    proptest! {
        #[test]
        fn query_round_trip(id in any_id(), context in any::<[u8; 16]>()) {
            let q = QueryInformationEx { id, context };
            prop_assert_eq!(QueryInformationEx::parse(&query_bytes(id, context)), Ok(q));
        }

        #[test]
        fn set_round_trip(id in any_id(), value in proptest::collection::vec(any::<u8>(), 0..64)) {
            let set = SetInformationEx { id, buffer: &value };
            let mut out = vec![0; set.buffer_len()];
            prop_assert_eq!(set.emit(&mut out), Ok(out.len()));
            prop_assert_eq!(SetInformationEx::parse(&out), Ok(set));
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Err(s) = QueryInformationEx::parse(&bytes) {
                prop_assert_eq!(s, NtStatus::INVALID_PARAMETER);
            }
            match SetInformationEx::parse(&bytes) {
                Ok(set) => prop_assert!(set.buffer.len() + 24 <= bytes.len()),
                Err(s) => prop_assert_eq!(s, NtStatus::INVALID_PARAMETER),
            }
        }

        #[test]
        fn copy_out_is_all_or_nothing(
            answer in proptest::collection::vec(any::<u8>(), 0..64),
            out_len in 0usize..80,
        ) {
            let mut out = vec![0xCC; out_len];
            prop_assert_eq!(copy_out(&answer, &mut out), answer.len());
            if out_len >= answer.len() {
                prop_assert_eq!(&out[..answer.len()], &answer[..]);
                prop_assert!(out[answer.len()..].iter().all(|&b| b == 0xCC));
            } else {
                prop_assert!(out.iter().all(|&b| b == 0xCC));
            }
        }
    }
}

/// `IOCTL_SET_IP_ADDRESS` input, `IP_SET_DATA` (12 bytes): `ULONG NteContext` (the interface
/// index), then the new address and mask as `IPAddr`s (network byte order in memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetIpAddress {
    pub interface: u32,
    pub ip: core::net::Ipv4Addr,
    /// The mask as a prefix length.
    pub prefix: u8,
}

impl SetIpAddress {
    /// The input length iphlpapi sends.
    pub const LEN: usize = 12;

    /// Decodes the input. A short buffer or a mask that is not a contiguous prefix is
    /// `STATUS_INVALID_PARAMETER`.
    pub fn parse(input: &[u8]) -> Result<Self, NtStatus> {
        let bytes: &[u8; Self::LEN] = input
            .get(..Self::LEN)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        let [c0, c1, c2, c3, a0, a1, a2, a3, m0, m1, m2, m3] = *bytes;
        let mask = u32::from_be_bytes([m0, m1, m2, m3]);
        let prefix = mask.leading_ones();
        if mask.checked_shl(prefix).unwrap_or(0) != 0 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        Ok(Self {
            interface: u32::from_le_bytes([c0, c1, c2, c3]),
            ip: core::net::Ipv4Addr::new(a0, a1, a2, a3),
            prefix: prefix as u8,
        })
    }
}

/// `IOCTL_DELETE_IP_ADDRESS` input: a `USHORT` interface index (iphlpapi passes 2 bytes).
pub fn parse_delete_ip_address(input: &[u8]) -> Result<u32, NtStatus> {
    match input {
        [low, high, ..] => Ok(u32::from(u16::from_le_bytes([*low, *high]))),
        _ => Err(NtStatus::INVALID_PARAMETER),
    }
}

#[cfg(test)]
mod ip_address_tests {
    use super::*;
    use core::net::Ipv4Addr;

    #[test]
    fn set_ip_address_decodes_index_address_and_prefix() {
        let input = [1, 0, 0, 0, 10, 11, 12, 1, 255, 255, 255, 0];
        assert_eq!(
            SetIpAddress::parse(&input),
            Ok(SetIpAddress {
                interface: 1,
                ip: Ipv4Addr::new(10, 11, 12, 1),
                prefix: 24
            })
        );
        let full = [1, 0, 0, 0, 10, 0, 0, 1, 255, 255, 255, 255];
        assert_eq!(SetIpAddress::parse(&full).map(|s| s.prefix), Ok(32));
    }

    #[test]
    fn set_ip_address_rejects_short_input_and_holes_in_the_mask() {
        assert_eq!(
            SetIpAddress::parse(&[1, 0, 0, 0, 10, 0, 0, 1, 255, 255, 255]),
            Err(NtStatus::INVALID_PARAMETER)
        );
        assert_eq!(
            SetIpAddress::parse(&[1, 0, 0, 0, 10, 0, 0, 1, 255, 0, 255, 0]),
            Err(NtStatus::INVALID_PARAMETER)
        );
    }

    #[test]
    fn delete_ip_address_takes_a_ushort() {
        assert_eq!(parse_delete_ip_address(&[1, 0]), Ok(1));
        assert_eq!(
            parse_delete_ip_address(&[1]),
            Err(NtStatus::INVALID_PARAMETER)
        );
    }
}
