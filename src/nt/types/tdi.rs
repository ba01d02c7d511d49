//! TDI structures (`tdi.h`, `tdikrnl.h`, `tdiinfo.h`, `tcpioctl.h`) and their constants.
//!
//! The address structures are packed to one byte in the DDK (`pshpack1.h`): `TA_IP_ADDRESS` is
//! 22 bytes and its fields are unaligned. They derive `zerocopy` traits so the decoders in
//! [`crate::tdi`] read them from byte slices without any alignment assumption.

use core::ffi::c_void;
use zerocopy::byteorder::{little_endian as le, network_endian as ne};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

// TDI minor functions (`IO_STACK_LOCATION::MinorFunction` of IRP_MJ_INTERNAL_DEVICE_CONTROL).
pub const TDI_ASSOCIATE_ADDRESS: u8 = 0x01;
pub const TDI_DISASSOCIATE_ADDRESS: u8 = 0x02;
pub const TDI_CONNECT: u8 = 0x03;
pub const TDI_LISTEN: u8 = 0x04;
pub const TDI_ACCEPT: u8 = 0x05;
pub const TDI_DISCONNECT: u8 = 0x06;
pub const TDI_SEND: u8 = 0x07;
pub const TDI_RECEIVE: u8 = 0x08;
pub const TDI_SEND_DATAGRAM: u8 = 0x09;
pub const TDI_RECEIVE_DATAGRAM: u8 = 0x0A;
pub const TDI_SET_EVENT_HANDLER: u8 = 0x0B;
pub const TDI_QUERY_INFORMATION: u8 = 0x0C;
pub const TDI_SET_INFORMATION: u8 = 0x0D;
pub const TDI_ACTION: u8 = 0x0E;

/// `FsContext2`-style file kinds.
pub const TDI_TRANSPORT_ADDRESS_FILE: u32 = 1;
pub const TDI_CONNECTION_FILE: u32 = 2;
pub const TDI_CONTROL_CHANNEL_FILE: u32 = 3;

pub const TDI_RECEIVE_BROADCAST: u32 = 0x4;
pub const TDI_RECEIVE_NORMAL: u32 = 0x20;
pub const TDI_RECEIVE_COPY_LOOKAHEAD: u32 = 0x200;
pub const TDI_RECEIVE_ENTIRE_MESSAGE: u32 = 0x400;
pub const TDI_RECEIVE_AT_DISPATCH_LEVEL: u32 = 0x800;
pub const TDI_RECEIVE_PEEK: u32 = 0x80;
pub const TDI_QUERY_ACCEPT: u32 = 0x1;
pub const TDI_DISCONNECT_WAIT: u32 = 0x1;
pub const TDI_DISCONNECT_ABORT: u32 = 0x2;
pub const TDI_DISCONNECT_RELEASE: u32 = 0x4;
pub const TDI_SEND_EXPEDITED: u32 = 0x20;
pub const TDI_SEND_PARTIAL: u32 = 0x40;
pub const TDI_SEND_NON_BLOCKING: u32 = 0x100;

// Event types of TDI_SET_EVENT_HANDLER (`tdi.h`).
pub const TDI_EVENT_CONNECT: i32 = 0;
pub const TDI_EVENT_DISCONNECT: i32 = 1;
pub const TDI_EVENT_ERROR: i32 = 2;
pub const TDI_EVENT_RECEIVE: i32 = 3;
pub const TDI_EVENT_RECEIVE_DATAGRAM: i32 = 4;
pub const TDI_EVENT_RECEIVE_EXPEDITED: i32 = 5;
pub const TDI_EVENT_SEND_POSSIBLE: i32 = 6;
pub const TDI_EVENT_CHAINED_RECEIVE: i32 = 7;
pub const TDI_EVENT_ERROR_EX: i32 = 10;

pub const TDI_QUERY_PROVIDER_INFO: i32 = 2;
pub const TDI_QUERY_ADDRESS_INFO: i32 = 3;
pub const TDI_QUERY_CONNECTION_INFO: i32 = 4;
pub const TDI_QUERY_PROVIDER_STATISTICS: i32 = 5;
pub const TDI_QUERY_MAX_DATAGRAM_INFO: i32 = 9;

pub const TDI_ADDRESS_TYPE_IP: u16 = 2;
pub const TDI_ADDRESS_LENGTH_IP: u16 = 14;

/// EA names, without their NUL (the lengths in `EaNameLength` exclude it).
pub const TDI_TRANSPORT_ADDRESS_EA: &[u8] = b"TransportAddress";
pub const TDI_CONNECTION_CONTEXT_EA: &[u8] = b"ConnectionContext";

// IOCTLs on IRP_MJ_DEVICE_CONTROL.
pub const IOCTL_TCP_QUERY_INFORMATION_EX: u32 = 0x0012_0003;
pub const IOCTL_TCP_SET_INFORMATION_EX: u32 = 0x0012_8004;
pub const IOCTL_SET_IP_ADDRESS: u32 = 0x0012_8038;
pub const IOCTL_QUERY_IP_HW_ADDRESS: u32 = 0x0012_003C;
pub const IOCTL_DELETE_IP_ADDRESS: u32 = 0x0012_8040;
pub const IOCTL_ICMP_ECHO_REQUEST: u32 = 0x0012_0000;

// tdiinfo.h entities, classes, types and ids.
pub const GENERIC_ENTITY: u32 = 0;
pub const IF_ENTITY: u32 = 0x200;
pub const AT_ENTITY: u32 = 0x280;
pub const CO_NL_ENTITY: u32 = 0x300;
pub const CL_NL_ENTITY: u32 = 0x301;
pub const ER_ENTITY: u32 = 0x380;
pub const CO_TL_ENTITY: u32 = 0x400;
pub const CL_TL_ENTITY: u32 = 0x401;
pub const IF_MIB: u32 = 0x202;
pub const AT_ARP: u32 = 0x280;
pub const AT_NULL: u32 = 0x282;
pub const CL_NL_IP: u32 = 0x303;
pub const CL_TL_UDP: u32 = 0x403;
pub const CO_TL_TCP: u32 = 0x404;
pub const ER_ICMP: u32 = 0x380;
pub const INFO_CLASS_GENERIC: u32 = 0x100;
pub const INFO_CLASS_PROTOCOL: u32 = 0x200;
pub const INFO_TYPE_PROVIDER: u32 = 0x100;
pub const INFO_TYPE_ADDRESS_OBJECT: u32 = 0x200;
/// `AO_OPTION_IP_HDRINCL`: the data of a raw address file's sends includes the IPv4 header.
pub const AO_OPTION_IP_HDRINCL: u32 = 12;
pub const INFO_TYPE_CONNECTION: u32 = 0x300;
pub const ENTITY_LIST_ID: u32 = 0;
pub const ENTITY_TYPE_ID: u32 = 1;
pub const TCP_SOCKET_NODELAY: u32 = 1;

/// `TDI_ADDRESS_IP` (14 bytes, packed): a `sockaddr_in` without its family. The port and the
/// address are in network byte order; `sin_zero` is ignored on input and zero on output.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct TDI_ADDRESS_IP {
    pub sin_port: ne::U16,
    /// `ULONG in_addr`, stored as the four address octets in network order.
    pub in_addr: [u8; 4],
    pub sin_zero: [u8; 8],
}

/// `TA_ADDRESS` header (4 bytes): one entry of a `TRANSPORT_ADDRESS`. `UCHAR
/// Address[AddressLength]` follows it; `AddressType` says how to read those bytes.
///
/// The DDK declares the entry with a one-byte `Address[1]` array, so C's `sizeof(TA_ADDRESS)` is
/// not the header size; this type stops where the array starts.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct TA_ADDRESS {
    pub AddressLength: le::U16,
    pub AddressType: le::U16,
}

/// `TRANSPORT_ADDRESS` header (4 bytes): `TAAddressCount` `TA_ADDRESS` entries follow it, each
/// `4 + AddressLength` bytes long, back to back and unaligned.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct TRANSPORT_ADDRESS {
    pub TAAddressCount: le::I32,
}

/// `struct _AddrIp`: the single `TA_ADDRESS` entry of a [`TA_IP_ADDRESS`] (18 bytes).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct AddrIp {
    /// [`TDI_ADDRESS_LENGTH_IP`] (14).
    pub AddressLength: le::U16,
    /// [`TDI_ADDRESS_TYPE_IP`] (2).
    pub AddressType: le::U16,
    /// `Address[0]` of the DDK's one-element array.
    pub Address: TDI_ADDRESS_IP,
}

/// `TA_IP_ADDRESS` (22 bytes, packed): a `TRANSPORT_ADDRESS` holding one IPv4 address.
///
/// ```text
/// 0  TAAddressCount  LONG    1
/// 4  AddressLength   USHORT  14
/// 6  AddressType     USHORT  2 (TDI_ADDRESS_TYPE_IP)
/// 8  sin_port        USHORT  network order
/// 10 in_addr         ULONG   network order
/// 14 sin_zero[8]
/// ```
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct TA_IP_ADDRESS {
    pub TAAddressCount: le::I32,
    /// `Address[0]` of the DDK's one-element array.
    pub Address: AddrIp,
}

/// `TDI_ADDRESS_INFO` header (4 bytes): the answer to `TDI_QUERY_ADDRESS_INFO`. A
/// `TRANSPORT_ADDRESS` follows it (for IP, a [`TA_IP_ADDRESS`]: 26 bytes in all).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct TDI_ADDRESS_INFO {
    /// The number of open file objects on the address; informational.
    pub ActivityCount: le::U32,
}

/// `TDI_CONNECTION_INFORMATION` (24 / 48 bytes).
#[repr(C)]
pub struct TDI_CONNECTION_INFORMATION {
    pub UserDataLength: i32,
    pub UserData: *mut c_void,
    pub OptionsLength: i32,
    pub Options: *mut c_void,
    pub RemoteAddressLength: i32,
    pub RemoteAddress: *mut c_void,
}

/// `TDI_REQUEST_KERNEL` overlay of `Parameters` (CONNECT, LISTEN, ACCEPT, DISCONNECT).
#[repr(C)]
pub struct TDI_REQUEST_KERNEL {
    /// `ULONG RequestFlags`; on x64 the four bytes after it are padding.
    pub RequestFlags: u32,
    pub RequestConnectionInformation: *mut TDI_CONNECTION_INFORMATION,
    pub ReturnConnectionInformation: *mut TDI_CONNECTION_INFORMATION,
    /// For CONNECT and DISCONNECT: a `PLARGE_INTEGER` timeout (100 ns units, negative =
    /// relative), or null.
    pub RequestSpecific: *mut c_void,
}

/// `TDI_REQUEST_KERNEL_ASSOCIATE`.
#[repr(C)]
pub struct TDI_REQUEST_KERNEL_ASSOCIATE {
    pub AddressHandle: *mut c_void,
}

/// `TDI_REQUEST_KERNEL_RECEIVE`.
#[repr(C)]
pub struct TDI_REQUEST_KERNEL_RECEIVE {
    pub ReceiveLength: u32,
    pub ReceiveFlags: u32,
}

/// `TDI_REQUEST_KERNEL_SEND`.
#[repr(C)]
pub struct TDI_REQUEST_KERNEL_SEND {
    pub SendLength: u32,
    pub SendFlags: u32,
}

/// `TDI_REQUEST_KERNEL_RECEIVEDG`.
#[repr(C)]
pub struct TDI_REQUEST_KERNEL_RECEIVEDG {
    pub ReceiveLength: u32,
    pub ReceiveDatagramInformation: *mut TDI_CONNECTION_INFORMATION,
    pub ReturnDatagramInformation: *mut TDI_CONNECTION_INFORMATION,
    pub ReceiveFlags: u32,
}

/// `TDI_REQUEST_KERNEL_SENDDG`.
#[repr(C)]
pub struct TDI_REQUEST_KERNEL_SENDDG {
    pub SendLength: u32,
    pub SendDatagramInformation: *mut TDI_CONNECTION_INFORMATION,
}

/// `TDI_REQUEST_KERNEL_QUERY_INFORMATION`.
#[repr(C)]
pub struct TDI_REQUEST_KERNEL_QUERY_INFORMATION {
    pub QueryType: i32,
    pub RequestConnectionInformation: *mut TDI_CONNECTION_INFORMATION,
}

/// `TDI_REQUEST_KERNEL_SET_EVENT`.
#[repr(C)]
pub struct TDI_REQUEST_KERNEL_SET_EVENT {
    pub EventType: i32,
    pub EventHandler: *mut c_void,
    pub EventContext: *mut c_void,
}

/// `TDI_PROVIDER_INFO` (40 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TDI_PROVIDER_INFO {
    pub Version: u32,
    pub MaxSendSize: u32,
    pub MaxConnectionUserData: u32,
    pub MaxDatagramSize: u32,
    pub ServiceFlags: u32,
    pub MinimumLookaheadData: u32,
    pub MaximumLookaheadData: u32,
    pub NumberOfResources: u32,
    pub StartTime: i64,
}

/// `TDI_PROVIDER_STATISTICS` up to `ResourceStats` (200 bytes): the answer to
/// `TDI_QUERY_PROVIDER_STATISTICS`, with no resource entries (`NumberOfResources` 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TDI_PROVIDER_STATISTICS {
    pub Version: u32,
    pub OpenConnections: u32,
    pub ConnectionsAfterNoRetry: u32,
    pub ConnectionsAfterRetry: u32,
    pub LocalDisconnects: u32,
    pub RemoteDisconnects: u32,
    pub LinkFailures: u32,
    pub AdapterFailures: u32,
    pub SessionTimeouts: u32,
    pub CancelledConnections: u32,
    pub RemoteResourceFailures: u32,
    pub LocalResourceFailures: u32,
    pub NotFoundFailures: u32,
    pub NoListenFailures: u32,
    pub DatagramsSent: u32,
    pub _pad0: u32,
    pub DatagramBytesSent: i64,
    pub DatagramsReceived: u32,
    pub _pad1: u32,
    pub DatagramBytesReceived: i64,
    pub PacketsSent: u32,
    pub PacketsReceived: u32,
    pub DataFramesSent: u32,
    pub _pad2: u32,
    pub DataFrameBytesSent: i64,
    pub DataFramesReceived: u32,
    pub _pad3: u32,
    pub DataFrameBytesReceived: i64,
    pub DataFramesResent: u32,
    pub _pad4: u32,
    pub DataFrameBytesResent: i64,
    pub DataFramesRejected: u32,
    pub _pad5: u32,
    pub DataFrameBytesRejected: i64,
    pub ResponseTimerExpirations: u32,
    pub AckTimerExpirations: u32,
    pub MaximumSendWindow: u32,
    pub AverageSendWindow: u32,
    pub PiggybackAckQueued: u32,
    pub PiggybackAckTimeouts: u32,
    pub WastedPacketSpace: i64,
    pub WastedSpacePackets: u32,
    pub NumberOfResources: u32,
}

/// `TDI_CONNECTION_INFO` (56 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TDI_CONNECTION_INFO {
    pub State: u32,
    pub Event: u32,
    pub TransmittedTsdus: u32,
    pub ReceivedTsdus: u32,
    pub TransmissionErrors: u32,
    pub ReceiveErrors: u32,
    pub Throughput: i64,
    pub Delay: i64,
    pub SendBufferSize: u32,
    pub ReceiveBufferSize: u32,
    pub Unreliable: u8,
    pub _pad: [u8; 7],
}

/// `TDI_MAX_DATAGRAM_INFO` (4 bytes): the answer to `TDI_QUERY_MAX_DATAGRAM_INFO`.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TDI_MAX_DATAGRAM_INFO {
    pub MaxDatagramSize: u32,
}

/// `TDIEntityID` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TDIEntityID {
    pub tei_entity: u32,
    pub tei_instance: u32,
}

/// `TDIObjectID` (20 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TDIObjectID {
    pub toi_entity: TDIEntityID,
    pub toi_class: u32,
    pub toi_type: u32,
    pub toi_id: u32,
}

/// `TCP_REQUEST_QUERY_INFORMATION_EX` (36 / 40 bytes): the object id and a 16-byte context of
/// `ULONG_PTR`s. On x64 the context is 8-aligned, so four bytes of padding precede it.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout)]
pub struct TCP_REQUEST_QUERY_INFORMATION_EX {
    pub ID: TDIObjectID,
    pub Context: [usize; 16 / core::mem::size_of::<usize>()],
}

/// `TCP_REQUEST_SET_INFORMATION_EX` header (24 bytes); `Buffer[BufferSize]` follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TCP_REQUEST_SET_INFORMATION_EX {
    pub ID: TDIObjectID,
    pub BufferSize: u32,
}
