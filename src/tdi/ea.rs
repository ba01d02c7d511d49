//! The extended-attribute (EA) buffer of `IRP_MJ_CREATE`, which says what a transport file
//! object is.
//!
//! The I/O manager passes the buffer in `Irp->AssociatedIrp.SystemBuffer`, its length in
//! `Parameters.Create.EaLength`. It is a chain of `FILE_FULL_EA_INFORMATION` entries:
//!
//! ```text
//! +0  ULONG  NextEntryOffset   bytes from this entry to the next, 0 for the last
//! +4  UCHAR  Flags
//! +5  UCHAR  EaNameLength      without the NUL
//! +6  USHORT EaValueLength
//! +8  CHAR   EaName[EaNameLength], then a NUL
//! +9+EaNameLength  UCHAR value[EaValueLength]   (unaligned)
//! ```
//!
//! AFD sends a single entry (contract §2.1):
//! - `"TransportAddress"` (16) with a 22-byte `TA_IP_ADDRESS`: an address file. The value
//!   starts at offset 25.
//! - `"ConnectionContext"` (17) with a pointer-sized context (NULL from AFD): a connection
//!   endpoint. The value starts at offset 26.
//! - No EA at all: a control channel.
//!
//! As in ReactOS's transport, the kind is chosen by `EaNameLength` plus an exact,
//! case-sensitive comparison of the name; an entry with any other name does not make the create
//! fail, and a chain with no recognised entry opens a control channel.
//!
//! Status codes: every malformed buffer is `STATUS_INVALID_PARAMETER`, and so is every
//! `TransportAddress` value that fails ReactOS's validation (§2.2: value shorter than 22 bytes,
//! `TAAddressCount` != 1, `AddressLength` < 14, `AddressType` != IP), because RT answers
//! those with `STATUS_INVALID_PARAMETER` and msafd maps it to `WSAEINVAL`.
//! `STATUS_INVALID_ADDRESS` (an address that is not local) needs the interface list, so it is
//! the address-file open's job, not the decoder's.

use super::address::{TA_IP_ADDRESS_LEN, TransportAddress};
use crate::nt::NtStatus;
use crate::nt::types::{
    FILE_FULL_EA_INFORMATION, TDI_CONNECTION_CONTEXT_EA, TDI_TRANSPORT_ADDRESS_EA,
};
use core::mem::{offset_of, size_of};

const NEXT_ENTRY_OFFSET: usize = offset_of!(FILE_FULL_EA_INFORMATION, NextEntryOffset);
const FLAGS: usize = offset_of!(FILE_FULL_EA_INFORMATION, Flags);
const NAME_LENGTH: usize = offset_of!(FILE_FULL_EA_INFORMATION, EaNameLength);
const VALUE_LENGTH: usize = offset_of!(FILE_FULL_EA_INFORMATION, EaValueLength);
/// Offset of `EaName`, which is also the size of the fixed header: 8.
const NAME: usize = offset_of!(FILE_FULL_EA_INFORMATION, EaName);
/// `NextEntryOffset` must keep every entry `ULONG`-aligned.
const ENTRY_ALIGNMENT: usize = 4;

/// Size of a `ConnectionContext` value: a `PVOID`.
pub const CONNECTION_CONTEXT_LEN: usize = size_of::<usize>();

/// One `FILE_FULL_EA_INFORMATION` entry, with its name (without the NUL) and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EaEntry<'a> {
    pub flags: u8,
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// Walks a `FILE_FULL_EA_INFORMATION` chain, validating each entry before yielding it.
///
/// Yields `Err(STATUS_INVALID_PARAMETER)` once and stops when an entry is malformed:
/// - fewer than 8 bytes left for the header;
/// - the name, its NUL terminator, or the value run past the entry (the rest of the buffer
///   for the last entry, `NextEntryOffset` bytes otherwise);
/// - the byte after the name is not NUL;
/// - `NextEntryOffset` is not a multiple of 4, or points at or past the end of the buffer.
///
/// `NextEntryOffset` is unsigned and relative, and must cover the whole entry, so the walk only
/// moves forward over disjoint entries: a backward pointer or a cycle cannot be expressed (one
/// that would wrap the address space is rejected as pointing outside the buffer).
#[derive(Debug, Clone)]
pub struct EaEntries<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> EaEntries<'a> {
    pub fn new(buffer: &'a [u8]) -> Self {
        Self {
            rest: buffer,
            done: buffer.is_empty(),
        }
    }

    /// Decodes the entry at the start of `self.rest` and advances past it.
    fn next_entry(&mut self) -> Result<EaEntry<'a>, NtStatus> {
        let rest = self.rest;
        let header: &[u8; NAME] = rest.first_chunk().ok_or(NtStatus::INVALID_PARAMETER)?;
        let next = u32::from_le_bytes([
            header[NEXT_ENTRY_OFFSET],
            header[NEXT_ENTRY_OFFSET + 1],
            header[NEXT_ENTRY_OFFSET + 2],
            header[NEXT_ENTRY_OFFSET + 3],
        ]);
        let flags = header[FLAGS];
        let name_len = usize::from(header[NAME_LENGTH]);
        let value_len = usize::from(u16::from_le_bytes([
            header[VALUE_LENGTH],
            header[VALUE_LENGTH + 1],
        ]));

        let (entry, following) = if next == 0 {
            (rest, None)
        } else {
            let next = usize::try_from(next).map_err(|_| NtStatus::INVALID_PARAMETER)?;
            if next % ENTRY_ALIGNMENT != 0 || next >= rest.len() {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            let (entry, following) = rest.split_at(next);
            (entry, Some(following))
        };

        let name_end = NAME + name_len;
        let name = entry
            .get(NAME..name_end)
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        if entry.get(name_end) != Some(&0) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let value_start = name_end + 1;
        let value = entry
            .get(value_start..value_start + value_len)
            .ok_or(NtStatus::INVALID_PARAMETER)?;

        match following {
            Some(following) => self.rest = following,
            None => self.done = true,
        }
        Ok(EaEntry { flags, name, value })
    }
}

impl<'a> Iterator for EaEntries<'a> {
    type Item = Result<EaEntry<'a>, NtStatus>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let entry = self.next_entry();
        if entry.is_err() {
            self.done = true;
        }
        Some(entry)
    }
}

/// What an `IRP_MJ_CREATE` on a transport device opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateRequest {
    /// A `"TransportAddress"` EA: an address file bound to this address.
    AddressFile(TransportAddress),
    /// A `"ConnectionContext"` EA: a connection endpoint. `context` is the client's
    /// `CONNECTION_CONTEXT` (passed back to its event handlers; NULL from AFD), read as a
    /// little-endian pointer-sized integer from the first `size_of::<usize>()` value bytes.
    ConnectionEndpoint { context: usize },
    /// No EA, or none with a recognised name: a control channel for IOCTLs.
    ControlChannel,
}

impl CreateRequest {
    /// Decodes the EA buffer of a create. An empty buffer is a control channel.
    ///
    /// Walks the chain with [`EaEntries`] and decides on the first entry whose name is
    /// recognised; entries after it are not examined. Errors are all
    /// `STATUS_INVALID_PARAMETER`:
    /// - a malformed chain up to and including that entry (see [`EaEntries`]);
    /// - a `TransportAddress` value rejected by
    ///   [`TransportAddress::parse_ta_ip_address`]: shorter than 22 bytes,
    ///   `TAAddressCount` != 1, `AddressLength` < 14 or `AddressType` != 2;
    /// - a `ConnectionContext` value shorter than a pointer.
    pub fn parse(ea: &[u8]) -> Result<Self, NtStatus> {
        for entry in EaEntries::new(ea) {
            let entry = entry?;
            if entry.name == TDI_TRANSPORT_ADDRESS_EA {
                return TransportAddress::parse_ta_ip_address(entry.value).map(Self::AddressFile);
            }
            if entry.name == TDI_CONNECTION_CONTEXT_EA {
                let bytes = entry
                    .value
                    .first_chunk::<CONNECTION_CONTEXT_LEN>()
                    .ok_or(NtStatus::INVALID_PARAMETER)?;
                return Ok(Self::ConnectionEndpoint {
                    context: usize::from_le_bytes(*bytes),
                });
            }
        }
        Ok(Self::ControlChannel)
    }

    /// The EA name and value AFD would send for this request; `None` for a control channel.
    fn name_and_value(&self) -> Option<(&'static [u8], EaValue)> {
        match *self {
            Self::AddressFile(address) => Some((
                TDI_TRANSPORT_ADDRESS_EA,
                EaValue::Address(address.emit_ta_ip_address()),
            )),
            Self::ConnectionEndpoint { context } => Some((
                TDI_CONNECTION_CONTEXT_EA,
                EaValue::Context(context.to_le_bytes()),
            )),
            Self::ControlChannel => None,
        }
    }

    /// Length of the EA buffer [`emit`](Self::emit) writes: one entry with the NUL-terminated
    /// name and the value (47 bytes for an address file; 30 / 34 for a connection endpoint on
    /// x86 / x64), or 0 for a control channel.
    pub fn buffer_len(&self) -> usize {
        self.name_and_value().map_or(0, |(name, value)| {
            NAME + name.len() + 1 + value.as_bytes().len()
        })
    }

    /// Writes the EA buffer AFD sends for this request (a single entry, `NextEntryOffset` 0,
    /// `Flags` 0) and returns its length. `STATUS_BUFFER_TOO_SMALL` if `out` is shorter than
    /// [`buffer_len`](Self::buffer_len).
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, NtStatus> {
        let len = self.buffer_len();
        let out = out.get_mut(..len).ok_or(NtStatus::BUFFER_TOO_SMALL)?;
        if let Some((name, value)) = self.name_and_value() {
            let value = value.as_bytes();
            let (header, body) = out
                .split_first_chunk_mut::<NAME>()
                .ok_or(NtStatus::BUFFER_TOO_SMALL)?;
            *header = [0; NAME];
            header[NAME_LENGTH] = name.len() as u8;
            let [low, high] = (value.len() as u16).to_le_bytes();
            header[VALUE_LENGTH] = low;
            header[VALUE_LENGTH + 1] = high;
            // `out` is `buffer_len()` long: the name, its NUL and the value fill `body` exactly.
            for (slot, byte) in body.iter_mut().zip(name.iter().chain(&[0]).chain(value)) {
                *slot = *byte;
            }
        }
        Ok(len)
    }
}

/// The value bytes of an emitted EA entry.
enum EaValue {
    Address([u8; TA_IP_ADDRESS_LEN]),
    Context([u8; CONNECTION_CONTEXT_LEN]),
}

impl EaValue {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Address(bytes) => bytes,
            Self::Context(bytes) => bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;
    use proptest::prelude::*;

    const BIND: TransportAddress = TransportAddress::new(Ipv4Addr::new(0, 0, 0, 0), 5000);

    /// One EA entry as raw bytes, with a chosen `NextEntryOffset` and lengths that may lie.
    fn raw_entry(next: u32, name: &[u8], name_len: u8, value: &[u8], value_len: u16) -> Vec<u8> {
        let mut out = next.to_le_bytes().to_vec();
        out.push(0);
        out.push(name_len);
        out.extend_from_slice(&value_len.to_le_bytes());
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out
    }

    fn entry(name: &[u8], value: &[u8]) -> Vec<u8> {
        raw_entry(0, name, name.len() as u8, value, value.len() as u16)
    }

    /// Chains entries, padding each to a multiple of 4 and filling in `NextEntryOffset`.
    fn chain(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let mut e = e.clone();
            if i + 1 < entries.len() {
                e.resize(e.len().next_multiple_of(4), 0);
                let next = e.len() as u32;
                e[..4].copy_from_slice(&next.to_le_bytes());
            }
            out.extend_from_slice(&e);
        }
        out
    }

    fn address_ea(address: TransportAddress) -> Vec<u8> {
        entry(b"TransportAddress", &address.emit_ta_ip_address())
    }

    #[test]
    fn empty_buffer_is_control_channel() {
        assert_eq!(CreateRequest::parse(&[]), Ok(CreateRequest::ControlChannel));
    }

    #[test]
    fn afd_address_file() {
        let ea = address_ea(BIND);
        assert_eq!(ea.len(), 47);
        // The value is unaligned, at offset 25.
        assert_eq!(ea[25..], BIND.emit_ta_ip_address());
        assert_eq!(
            CreateRequest::parse(&ea),
            Ok(CreateRequest::AddressFile(BIND))
        );
    }

    #[test]
    fn afd_connection_endpoint() {
        let ea = entry(b"ConnectionContext", &0usize.to_le_bytes());
        assert_eq!(ea.len(), 26 + size_of::<usize>());
        assert_eq!(
            CreateRequest::parse(&ea),
            Ok(CreateRequest::ConnectionEndpoint { context: 0 })
        );
    }

    #[test]
    fn connection_context_is_read_little_endian_from_offset_26() {
        let context = 0x1122_3344_5566_7788u64 as usize;
        let mut value = context.to_le_bytes().to_vec();
        value.push(0xAA); // A longer value is accepted; the extra bytes are ignored.
        let ea = entry(b"ConnectionContext", &value);
        assert_eq!(ea[26..26 + size_of::<usize>()], context.to_le_bytes());
        assert_eq!(
            CreateRequest::parse(&ea),
            Ok(CreateRequest::ConnectionEndpoint { context })
        );
    }

    #[test]
    fn other_names_open_a_control_channel() {
        for name in [
            &b"TransportAddresS"[..],
            b"transportaddress",
            b"Transport",
            b"X",
            b"",
        ] {
            let ea = entry(name, &BIND.emit_ta_ip_address());
            assert_eq!(
                CreateRequest::parse(&ea),
                Ok(CreateRequest::ControlChannel),
                "{name:?}"
            );
        }
    }

    #[test]
    fn name_length_must_match_exactly() {
        // "TransportAddress" followed by more name bytes: EaNameLength 17, no match.
        let ea = entry(b"TransportAddressX", &BIND.emit_ta_ip_address());
        assert_eq!(CreateRequest::parse(&ea), Ok(CreateRequest::ControlChannel));
    }

    #[test]
    fn chain_is_walked_to_the_first_recognised_entry() {
        let other = entry(b"SomethingElse", b"abc");
        let context = entry(b"ConnectionContext", &7usize.to_le_bytes());
        let ea = chain(&[other.clone(), address_ea(BIND), context.clone()]);
        assert_eq!(
            CreateRequest::parse(&ea),
            Ok(CreateRequest::AddressFile(BIND))
        );
        let ea = chain(&[other.clone(), context, address_ea(BIND)]);
        assert_eq!(
            CreateRequest::parse(&ea),
            Ok(CreateRequest::ConnectionEndpoint { context: 7 })
        );
        let ea = chain(&[other.clone(), other]);
        assert_eq!(CreateRequest::parse(&ea), Ok(CreateRequest::ControlChannel));
    }

    #[test]
    fn entries_after_the_match_are_not_examined() {
        // The second entry is cut short after its header.
        let mut ea = chain(&[address_ea(BIND), entry(b"X", b"")]);
        ea.truncate(ea.len() - 2);
        assert_eq!(
            CreateRequest::parse(&ea),
            Ok(CreateRequest::AddressFile(BIND))
        );
    }

    #[test]
    fn buffer_shorter_than_header() {
        let ea = address_ea(BIND);
        for len in 1..8 {
            assert_eq!(
                CreateRequest::parse(&ea[..len]),
                Err(NtStatus::INVALID_PARAMETER)
            );
        }
    }

    #[test]
    fn name_length_past_buffer() {
        let ea = raw_entry(0, b"Transport", 200, b"", 0);
        assert_eq!(CreateRequest::parse(&ea), Err(NtStatus::INVALID_PARAMETER));
    }

    #[test]
    fn value_length_past_buffer() {
        let mut ea = address_ea(BIND);
        ea.truncate(ea.len() - 1);
        assert_eq!(CreateRequest::parse(&ea), Err(NtStatus::INVALID_PARAMETER));
        let ea = raw_entry(0, b"ConnectionContext", 17, &[0; 8], 0xFFFF);
        assert_eq!(CreateRequest::parse(&ea), Err(NtStatus::INVALID_PARAMETER));
    }

    #[test]
    fn missing_nul_after_name() {
        let mut ea = address_ea(BIND);
        ea[8 + 16] = b'!';
        assert_eq!(CreateRequest::parse(&ea), Err(NtStatus::INVALID_PARAMETER));
        // The name fills the buffer, leaving no room for the NUL.
        let mut ea = raw_entry(0, b"TransportAddress", 16, b"", 0);
        ea.truncate(8 + 16);
        assert_eq!(CreateRequest::parse(&ea), Err(NtStatus::INVALID_PARAMETER));
    }

    #[test]
    fn next_entry_offset_outside_buffer() {
        let mut ea = chain(&[entry(b"X", b""), address_ea(BIND)]);
        let len = ea.len() as u32;
        for next in [len, len + 4, 0xFFFF_FFFC] {
            ea[..4].copy_from_slice(&next.to_le_bytes());
            assert_eq!(
                CreateRequest::parse(&ea),
                Err(NtStatus::INVALID_PARAMETER),
                "{next:#x}"
            );
        }
    }

    #[test]
    fn next_entry_offset_inside_its_own_entry() {
        // Offsets smaller than the entry would overlap it (or, at 4, point into its header):
        // backwards walks and cycles are impossible because these are rejected.
        let mut ea = chain(&[entry(b"SomeName", b"value"), address_ea(BIND)]);
        for next in [4u32, 8, 12, 16] {
            ea[..4].copy_from_slice(&next.to_le_bytes());
            assert_eq!(
                CreateRequest::parse(&ea),
                Err(NtStatus::INVALID_PARAMETER),
                "{next}"
            );
        }
    }

    #[test]
    fn next_entry_offset_misaligned() {
        let mut ea = chain(&[entry(b"X", b""), address_ea(BIND)]);
        let next = u32::from_le_bytes(ea[..4].try_into().unwrap());
        // Make room so that the misaligned offsets still point inside the buffer.
        ea.splice(next as usize..next as usize, [0; 3]);
        for delta in 1..4 {
            ea[..4].copy_from_slice(&(next + delta).to_le_bytes());
            assert_eq!(CreateRequest::parse(&ea), Err(NtStatus::INVALID_PARAMETER));
        }
    }

    #[test]
    fn transport_address_value_too_short() {
        let wire = BIND.emit_ta_ip_address();
        for len in 0..22 {
            let ea = entry(b"TransportAddress", &wire[..len]);
            assert_eq!(
                CreateRequest::parse(&ea),
                Err(NtStatus::INVALID_PARAMETER),
                "{len}"
            );
        }
    }

    #[test]
    fn transport_address_count_not_one() {
        let mut wire = BIND.emit_ta_ip_address();
        wire[0] = 2;
        let ea = entry(b"TransportAddress", &wire);
        assert_eq!(CreateRequest::parse(&ea), Err(NtStatus::INVALID_PARAMETER));
    }

    #[test]
    fn transport_address_length_below_14() {
        let mut wire = BIND.emit_ta_ip_address();
        wire[4] = 13;
        let ea = entry(b"TransportAddress", &wire);
        assert_eq!(CreateRequest::parse(&ea), Err(NtStatus::INVALID_PARAMETER));
    }

    #[test]
    fn transport_address_type_not_ip() {
        let mut wire = BIND.emit_ta_ip_address();
        wire[6] = 17;
        let ea = entry(b"TransportAddress", &wire);
        assert_eq!(CreateRequest::parse(&ea), Err(NtStatus::INVALID_PARAMETER));
    }

    #[test]
    fn connection_context_too_short() {
        for len in 0..size_of::<usize>() {
            let ea = entry(b"ConnectionContext", &vec![0; len]);
            assert_eq!(
                CreateRequest::parse(&ea),
                Err(NtStatus::INVALID_PARAMETER),
                "{len}"
            );
        }
    }

    #[test]
    fn emit_into_short_buffer() {
        let request = CreateRequest::AddressFile(BIND);
        let mut out = [0; 46];
        assert_eq!(request.emit(&mut out), Err(NtStatus::BUFFER_TOO_SMALL));
        assert_eq!(CreateRequest::ControlChannel.emit(&mut []), Ok(0));
    }

    fn any_request() -> impl Strategy<Value = CreateRequest> {
        prop_oneof![
            (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| CreateRequest::AddressFile(
                TransportAddress::new(ip.into(), port)
            )),
            any::<usize>().prop_map(|context| CreateRequest::ConnectionEndpoint { context }),
            Just(CreateRequest::ControlChannel),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(request in any_request()) {
            let mut buffer = vec![0; request.buffer_len()];
            prop_assert_eq!(request.emit(&mut buffer), Ok(buffer.len()));
            prop_assert_eq!(CreateRequest::parse(&buffer), Ok(request));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Err(s) = CreateRequest::parse(&bytes) {
                prop_assert_eq!(s, NtStatus::INVALID_PARAMETER);
            }
        }

        /// Mutating one byte of a valid chain never panics and gives a documented result.
        #[test]
        fn mutated_chains_never_panic(
            request in any_request(),
            index in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut single = vec![0; request.buffer_len()];
            request.emit(&mut single).unwrap();
            let mut ea = chain(&[entry(b"Padding", b"xyz"), single]);
            let i = index.index(ea.len());
            ea[i] = byte;
            if let Err(s) = CreateRequest::parse(&ea) {
                prop_assert_eq!(s, NtStatus::INVALID_PARAMETER);
            }
        }
    }
}
