//! Transport addresses: `TRANSPORT_ADDRESS`, `TA_IP_ADDRESS` and `TDI_ADDRESS_INFO`.
//!
//! A `TRANSPORT_ADDRESS` is a list of addresses of any family, packed byte to byte with no
//! alignment (all integers little endian except where noted):
//!
//! ```text
//! +0  LONG   TAAddressCount
//! +4  TA_ADDRESS[0]: USHORT AddressLength, USHORT AddressType, UCHAR Address[AddressLength]
//! ..  TA_ADDRESS[1] right after the last byte of Address[0], and so on
//! ```
//!
//! An IPv4 entry has `AddressType` = `TDI_ADDRESS_TYPE_IP` (2) and holds a `TDI_ADDRESS_IP`
//! (`AddressLength` = 14): `sin_port` (network order), `in_addr` (network order) and
//! `sin_zero[8]`. A `TRANSPORT_ADDRESS` with exactly that one entry is a `TA_IP_ADDRESS`
//! (22 bytes), which is what AFD sends in the `TransportAddress` EA and in every
//! `TDI_CONNECTION_INFORMATION::RemoteAddress`, and what the transport writes back for
//! `TDI_LISTEN` and `TDI_RECEIVE_DATAGRAM`. `TDI_QUERY_ADDRESS_INFO` answers with a
//! `TDI_ADDRESS_INFO`: a `ULONG ActivityCount` followed by the `TA_IP_ADDRESS` (26 bytes).

use crate::nt::NtStatus;
use crate::nt::types::{
    AddrIp, TA_ADDRESS, TA_IP_ADDRESS, TDI_ADDRESS_INFO, TDI_ADDRESS_IP, TDI_ADDRESS_LENGTH_IP,
    TDI_ADDRESS_TYPE_IP, TRANSPORT_ADDRESS,
};
use core::mem::size_of;
use core::net::{Ipv4Addr, SocketAddrV4};
use zerocopy::byteorder::{little_endian as le, network_endian as ne};
use zerocopy::{FromBytes, IntoBytes};

/// Size of a `TA_IP_ADDRESS`: 22 bytes.
pub const TA_IP_ADDRESS_LEN: usize = size_of::<TA_IP_ADDRESS>();

/// Size of a `TDI_ADDRESS_INFO` holding a `TA_IP_ADDRESS`: 26 bytes.
pub const ADDRESS_INFO_LEN: usize = size_of::<TDI_ADDRESS_INFO>() + TA_IP_ADDRESS_LEN;

/// An IPv4 transport address, in host byte order. The wire forms carry both fields in network
/// byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportAddress {
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl TransportAddress {
    /// `0.0.0.0:0`: the wildcard bind address, and a `TDI_LISTEN` filter that accepts anyone.
    pub const UNSPECIFIED: Self = Self::new(Ipv4Addr::UNSPECIFIED, 0);

    pub const fn new(ip: Ipv4Addr, port: u16) -> Self {
        Self { ip, port }
    }

    /// Parses a generic `TRANSPORT_ADDRESS` and returns its first IPv4 entry.
    ///
    /// Entries of other families before it are skipped. Errors:
    /// - `STATUS_INVALID_PARAMETER`: the buffer is malformed. It is shorter than the count, the
    ///   count is not positive, an entry header or its `Address` bytes run past the buffer
    ///   (including a count larger than the entries present), or the IPv4 entry is shorter than
    ///   `TDI_ADDRESS_IP` (14 bytes).
    /// - `STATUS_INVALID_ADDRESS`: the list is well formed but holds no IPv4 entry; msafd turns
    ///   this into `WSAEADDRNOTAVAIL`.
    pub fn parse(bytes: &[u8]) -> Result<Self, NtStatus> {
        let (header, mut rest) =
            TRANSPORT_ADDRESS::read_from_prefix(bytes).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let count = header.TAAddressCount.get();
        if count < 1 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        // Every iteration consumes at least a 4-byte entry header or returns, so a huge count
        // cannot make this loop run longer than the buffer allows.
        for _ in 0..count {
            let (entry, after) =
                TA_ADDRESS::read_from_prefix(rest).map_err(|_| NtStatus::INVALID_PARAMETER)?;
            let len = usize::from(entry.AddressLength.get());
            let address = after.get(..len).ok_or(NtStatus::INVALID_PARAMETER)?;
            if entry.AddressType.get() == TDI_ADDRESS_TYPE_IP {
                let (ip, _) = TDI_ADDRESS_IP::read_from_prefix(address)
                    .map_err(|_| NtStatus::INVALID_PARAMETER)?;
                return Ok(Self::from_wire(&ip));
            }
            rest = after.get(len..).ok_or(NtStatus::INVALID_PARAMETER)?;
        }
        Err(NtStatus::INVALID_ADDRESS)
    }

    /// Parses a `TA_IP_ADDRESS` with the checks ReactOS's transport applies to the
    /// `TransportAddress` EA of an address-file create (contract §2.2): at least 22 bytes,
    /// `TAAddressCount` == 1, `AddressLength` >= 14 and `AddressType` == `TDI_ADDRESS_TYPE_IP`.
    /// Any failure is `STATUS_INVALID_PARAMETER` (msafd: `WSAEINVAL`). Bytes after the first
    /// 14 of a longer address, and after the 22 bytes, are ignored.
    pub fn parse_ta_ip_address(bytes: &[u8]) -> Result<Self, NtStatus> {
        let (ta, _) =
            TA_IP_ADDRESS::read_from_prefix(bytes).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let entry = ta.Address;
        if ta.TAAddressCount.get() != 1
            || entry.AddressLength.get() < TDI_ADDRESS_LENGTH_IP
            || entry.AddressType.get() != TDI_ADDRESS_TYPE_IP
        {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        Ok(Self::from_wire(&entry.Address))
    }

    fn from_wire(ip: &TDI_ADDRESS_IP) -> Self {
        Self::new(Ipv4Addr::from(ip.in_addr), ip.sin_port.get())
    }

    /// The `TA_IP_ADDRESS` for this address: count 1, length 14, type IP, zero `sin_zero`.
    pub fn to_ta_ip_address(&self) -> TA_IP_ADDRESS {
        TA_IP_ADDRESS {
            TAAddressCount: le::I32::new(1),
            Address: AddrIp {
                AddressLength: le::U16::new(TDI_ADDRESS_LENGTH_IP),
                AddressType: le::U16::new(TDI_ADDRESS_TYPE_IP),
                Address: TDI_ADDRESS_IP {
                    sin_port: ne::U16::new(self.port),
                    in_addr: self.ip.octets(),
                    sin_zero: [0; 8],
                },
            },
        }
    }

    /// The 22 bytes of [`to_ta_ip_address`](Self::to_ta_ip_address).
    pub fn emit_ta_ip_address(&self) -> [u8; TA_IP_ADDRESS_LEN] {
        let mut out = [0; TA_IP_ADDRESS_LEN];
        out.copy_from_slice(self.to_ta_ip_address().as_bytes());
        out
    }

    /// The 26-byte `TDI_ADDRESS_INFO` answer to `TDI_QUERY_ADDRESS_INFO`: `activity_count`,
    /// then the `TA_IP_ADDRESS`.
    pub fn emit_address_info(&self, activity_count: u32) -> [u8; ADDRESS_INFO_LEN] {
        let header = TDI_ADDRESS_INFO {
            ActivityCount: le::U32::new(activity_count),
        };
        let mut out = [0; ADDRESS_INFO_LEN];
        let (info, address) = out.split_at_mut(size_of::<TDI_ADDRESS_INFO>());
        info.copy_from_slice(header.as_bytes());
        address.copy_from_slice(self.to_ta_ip_address().as_bytes());
        out
    }
}

impl From<SocketAddrV4> for TransportAddress {
    fn from(addr: SocketAddrV4) -> Self {
        Self::new(*addr.ip(), addr.port())
    }
}

impl From<TransportAddress> for SocketAddrV4 {
    fn from(addr: TransportAddress) -> Self {
        SocketAddrV4::new(addr.ip, addr.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ECHO: TransportAddress = TransportAddress::new(Ipv4Addr::new(127, 0, 0, 1), 7);

    /// 127.0.0.1:7 as AFD sends it.
    const ECHO_WIRE: [u8; 22] = [
        1, 0, 0, 0, // TAAddressCount
        14, 0, // AddressLength
        2, 0, // AddressType
        0, 7, // sin_port, network order
        127, 0, 0, 1, // in_addr, network order
        0, 0, 0, 0, 0, 0, 0, 0, // sin_zero
    ];

    fn entry(kind: u16, address: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(address.len() as u16).to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(address);
        out
    }

    fn list(count: i32, entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = count.to_le_bytes().to_vec();
        for e in entries {
            out.extend_from_slice(e);
        }
        out
    }

    #[test]
    fn emit_matches_afd_wire_format() {
        assert_eq!(ECHO.emit_ta_ip_address(), ECHO_WIRE);
        assert_eq!(TA_IP_ADDRESS_LEN, 22);
    }

    #[test]
    fn address_info_is_activity_count_then_ta_ip_address() {
        let info = ECHO.emit_address_info(1);
        assert_eq!(ADDRESS_INFO_LEN, 26);
        assert_eq!(info[..4], [1, 0, 0, 0]);
        assert_eq!(info[4..], ECHO_WIRE);
    }

    #[test]
    fn parse_both_forms() {
        assert_eq!(TransportAddress::parse(&ECHO_WIRE), Ok(ECHO));
        assert_eq!(TransportAddress::parse_ta_ip_address(&ECHO_WIRE), Ok(ECHO));
    }

    #[test]
    fn parse_skips_other_families() {
        let netbios = entry(17, &[b'X'; 18]);
        let ip = entry(2, &ECHO_WIRE[8..]);
        assert_eq!(
            TransportAddress::parse(&list(2, &[netbios.clone(), ip])),
            Ok(ECHO)
        );
        assert_eq!(
            TransportAddress::parse(&list(1, &[netbios])),
            Err(NtStatus::INVALID_ADDRESS)
        );
    }

    #[test]
    fn parse_takes_the_first_ip_entry() {
        let second = TransportAddress::new(Ipv4Addr::new(10, 0, 0, 2), 80);
        let first = entry(2, &ECHO_WIRE[8..]);
        let other = entry(2, &second.emit_ta_ip_address()[8..]);
        assert_eq!(TransportAddress::parse(&list(2, &[first, other])), Ok(ECHO));
    }

    #[test]
    fn parse_accepts_a_longer_ip_entry() {
        let mut long = ECHO_WIRE[8..].to_vec();
        long.extend_from_slice(&[0xEE; 4]);
        assert_eq!(
            TransportAddress::parse(&list(1, &[entry(2, &long)])),
            Ok(ECHO)
        );
    }

    #[test]
    fn parse_rejects_short_count() {
        assert_eq!(
            TransportAddress::parse(&[]),
            Err(NtStatus::INVALID_PARAMETER)
        );
        assert_eq!(
            TransportAddress::parse(&[1, 0, 0]),
            Err(NtStatus::INVALID_PARAMETER)
        );
    }

    #[test]
    fn parse_rejects_non_positive_count() {
        for count in [0, -1, i32::MIN] {
            let mut wire = ECHO_WIRE;
            wire[..4].copy_from_slice(&count.to_le_bytes());
            assert_eq!(
                TransportAddress::parse(&wire),
                Err(NtStatus::INVALID_PARAMETER)
            );
        }
    }

    #[test]
    fn parse_rejects_truncated_entries() {
        // Entry header cut short.
        assert_eq!(
            TransportAddress::parse(&ECHO_WIRE[..6]),
            Err(NtStatus::INVALID_PARAMETER)
        );
        // AddressLength runs past the buffer.
        assert_eq!(
            TransportAddress::parse(&ECHO_WIRE[..21]),
            Err(NtStatus::INVALID_PARAMETER)
        );
        // The count promises a second entry that is not there.
        let netbios = entry(17, &[0; 4]);
        assert_eq!(
            TransportAddress::parse(&list(2, &[netbios])),
            Err(NtStatus::INVALID_PARAMETER)
        );
    }

    #[test]
    fn parse_rejects_short_ip_entry() {
        let short = entry(2, &ECHO_WIRE[8..20]);
        assert_eq!(
            TransportAddress::parse(&list(1, &[short])),
            Err(NtStatus::INVALID_PARAMETER)
        );
    }

    #[test]
    fn strict_rejects_value_shorter_than_ta_ip_address() {
        for len in 0..22 {
            assert_eq!(
                TransportAddress::parse_ta_ip_address(&ECHO_WIRE[..len]),
                Err(NtStatus::INVALID_PARAMETER)
            );
        }
    }

    #[test]
    fn strict_rejects_address_count_other_than_one() {
        for count in [0i32, 2, -1] {
            let mut wire = ECHO_WIRE;
            wire[..4].copy_from_slice(&count.to_le_bytes());
            assert_eq!(
                TransportAddress::parse_ta_ip_address(&wire),
                Err(NtStatus::INVALID_PARAMETER)
            );
        }
    }

    #[test]
    fn strict_rejects_address_length_below_14() {
        let mut wire = ECHO_WIRE;
        wire[4] = 13;
        assert_eq!(
            TransportAddress::parse_ta_ip_address(&wire),
            Err(NtStatus::INVALID_PARAMETER)
        );
        wire[4] = 16;
        assert_eq!(TransportAddress::parse_ta_ip_address(&wire), Ok(ECHO));
    }

    #[test]
    fn strict_rejects_address_type_other_than_ip() {
        let mut wire = ECHO_WIRE;
        wire[6] = 23; // TDI_ADDRESS_TYPE_IP6
        assert_eq!(
            TransportAddress::parse_ta_ip_address(&wire),
            Err(NtStatus::INVALID_PARAMETER)
        );
    }

    #[test]
    fn socket_addr_conversions() {
        let sa = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 5000);
        assert_eq!(SocketAddrV4::from(TransportAddress::from(sa)), sa);
    }

    fn any_address() -> impl Strategy<Value = TransportAddress> {
        (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| TransportAddress::new(ip.into(), port))
    }

    proptest! {
        #[test]
        fn round_trip(addr in any_address()) {
            let wire = addr.emit_ta_ip_address();
            prop_assert_eq!(TransportAddress::parse(&wire), Ok(addr));
            prop_assert_eq!(TransportAddress::parse_ta_ip_address(&wire), Ok(addr));
            prop_assert_eq!(&addr.emit_address_info(0)[4..], &wire[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            match TransportAddress::parse(&bytes) {
                Ok(_) => {}
                Err(s) => prop_assert!(
                    s == NtStatus::INVALID_PARAMETER || s == NtStatus::INVALID_ADDRESS
                ),
            }
            match TransportAddress::parse_ta_ip_address(&bytes) {
                Ok(_) => {}
                Err(s) => prop_assert_eq!(s, NtStatus::INVALID_PARAMETER),
            }
        }

        #[test]
        fn arbitrary_lists_never_panic(
            count in any::<i32>(),
            entries in proptest::collection::vec(
                (0u16..30, proptest::collection::vec(any::<u8>(), 0..24)), 0..5),
        ) {
            let entries: Vec<Vec<u8>> = entries.iter().map(|(t, a)| entry(*t, a)).collect();
            let result = TransportAddress::parse(&list(count, &entries));
            if let Err(s) = result {
                prop_assert!(s == NtStatus::INVALID_PARAMETER || s == NtStatus::INVALID_ADDRESS);
            }
        }
    }
}
