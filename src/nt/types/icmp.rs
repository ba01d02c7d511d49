//! The `IOCTL_ICMP_ECHO_REQUEST` buffers: `ICMP_ECHO_REQUEST` (the input, as iphlpapi's
//! `IcmpSendEcho`/`IcmpSendEcho2` build it) and `ICMP_ECHO_REPLY` with its
//! `IP_OPTION_INFORMATION` (`ipexport.h`), the output. These are user-mode structures: mingw's
//! DDK headers the layout probe compiles against have neither, so their layouts are asserted
//! here for both architectures.

use super::layout::for_this_arch;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `ICMP_ECHO_REQUEST` (20 bytes on both architectures): the destination, the timeout in
/// milliseconds, where the echo data and the IP options are in the input buffer, and the IP
/// header fields to send with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ICMP_ECHO_REQUEST {
    /// `IPAddr`, in network byte order.
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
    pub _pad: u32,
    /// `PUCHAR OptionsData`, a user-mode address.
    pub OptionsData: usize,
}

/// `ICMP_ECHO_REPLY` (28 / 40 bytes). `Reserved` of the first reply carries the number of
/// replies (iphlpapi's `IcmpSendEcho2` reads it and clears it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ICMP_ECHO_REPLY {
    /// `IPAddr` of the replying host, in network byte order.
    pub Address: [u8; 4],
    /// An `IP_*` status.
    pub Status: u32,
    pub RoundTripTime: u32,
    pub DataSize: u16,
    pub Reserved: u16,
    /// `PVOID Data`: the user-mode address of the reply's data in the caller's buffer.
    pub Data: usize,
    pub Options: IP_OPTION_INFORMATION,
}

// `IP_STATUS` values of `ipexport.h`.
pub const IP_SUCCESS: u32 = 0;
pub const IP_DEST_NET_UNREACHABLE: u32 = 11002;
pub const IP_DEST_HOST_UNREACHABLE: u32 = 11003;
pub const IP_DEST_PROT_UNREACHABLE: u32 = 11004;
pub const IP_DEST_PORT_UNREACHABLE: u32 = 11005;
pub const IP_NO_RESOURCES: u32 = 11006;
pub const IP_PACKET_TOO_BIG: u32 = 11009;
pub const IP_REQ_TIMED_OUT: u32 = 11010;
pub const IP_BAD_ROUTE: u32 = 11012;
pub const IP_TTL_EXPIRED_TRANSIT: u32 = 11013;
pub const IP_TTL_EXPIRED_REASSEM: u32 = 11014;
pub const IP_PARAM_PROBLEM: u32 = 11015;
pub const IP_SOURCE_QUENCH: u32 = 11016;

macro_rules! assert_layout {
    ($ty:ident = $s86:literal / $s64:literal { $($field:ident : $o86:literal / $o64:literal),* $(,)? }) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == for_this_arch($s86, $s64));
        $(const _: () = assert!(core::mem::offset_of!($ty, $field) == for_this_arch($o86, $o64));)*
    };
}

assert_layout!(ICMP_ECHO_REQUEST = 20 / 20 {
    Address: 0 / 0,
    Timeout: 4 / 4,
    DataOffset: 8 / 8,
    DataSize: 10 / 10,
    HasOptions: 12 / 12,
    Ttl: 13 / 13,
    Tos: 14 / 14,
    Flags: 15 / 15,
    OptionsOffset: 16 / 16,
    OptionsSize: 18 / 18,
});
assert_layout!(IP_OPTION_INFORMATION = 8 / 16 {
    Ttl: 0 / 0,
    Tos: 1 / 1,
    Flags: 2 / 2,
    OptionsSize: 3 / 3,
    OptionsData: 4 / 8,
});
assert_layout!(ICMP_ECHO_REPLY = 28 / 40 {
    Address: 0 / 0,
    Status: 4 / 4,
    RoundTripTime: 8 / 8,
    DataSize: 12 / 12,
    Reserved: 14 / 14,
    Data: 16 / 16,
    Options: 20 / 24,
});
