//! NDIS 5.0 protocol structures (`ndis.h`) and the registry structures the binding reads.
//!
//! The driver is an NDIS 5.0 *protocol*: it fills an [`NDIS_PROTOCOL_CHARACTERISTICS`] with its
//! handlers and registers it; NDIS hands it opaque handles (`NDIS_HANDLE`) for the protocol, each
//! binding and each pool. Packets and buffers are allocated by NDIS; the only fields the driver
//! touches are the ones the DDK's own macros touch (`NdisChainBufferAtFront` writes
//! `Private.Head`/`Tail`/`ValidCounts`; `NdisGetNextBuffer` reads `MDL::Next`: an
//! `NDIS_BUFFER` *is* an MDL on NT).

use super::{BOOLEAN, KEVENT, MDL, NTSTATUS, UNICODE_STRING};
use core::ffi::c_void;

/// `NDIS_STATUS`: an NTSTATUS.
pub type NDIS_STATUS = NTSTATUS;
/// `NDIS_HANDLE`: an opaque pointer.
pub type NDIS_HANDLE = *mut c_void;
/// `NDIS_STRING`: a counted UTF-16 string.
pub type NDIS_STRING = UNICODE_STRING;
/// `NDIS_BUFFER`: an MDL.
pub type NDIS_BUFFER = MDL;
/// `NDIS_MEDIUM` (an enum, 4 bytes).
pub type NDIS_MEDIUM = u32;
/// `NDIS_OID`.
pub type NDIS_OID = u32;

pub const NDIS_STATUS_SUCCESS: NDIS_STATUS = 0;
pub const NDIS_STATUS_PENDING: NDIS_STATUS = 0x0000_0103;
pub const NDIS_STATUS_MEDIA_CONNECT: NDIS_STATUS = 0x4001_000B;
pub const NDIS_STATUS_MEDIA_DISCONNECT: NDIS_STATUS = 0x4001_000C;
pub const NDIS_STATUS_RESET_START: NDIS_STATUS = 0x4001_0004;
pub const NDIS_STATUS_RESET_END: NDIS_STATUS = 0x4001_0005;
pub const NDIS_STATUS_FAILURE: NDIS_STATUS = 0xC000_0001_u32 as i32;
pub const NDIS_STATUS_RESOURCES: NDIS_STATUS = 0xC000_009A_u32 as i32;
pub const NDIS_STATUS_NOT_SUPPORTED: NDIS_STATUS = 0xC000_00BB_u32 as i32;
pub const NDIS_STATUS_ADAPTER_NOT_FOUND: NDIS_STATUS = 0xC001_0006_u32 as i32;
pub const NDIS_STATUS_UNSUPPORTED_MEDIA: NDIS_STATUS = 0xC001_0019_u32 as i32;
pub const NDIS_STATUS_BAD_VERSION: NDIS_STATUS = 0xC001_0004_u32 as i32;
pub const NDIS_STATUS_BAD_CHARACTERISTICS: NDIS_STATUS = 0xC001_0005_u32 as i32;
pub const NDIS_STATUS_INVALID_LENGTH: NDIS_STATUS = 0xC001_0014_u32 as i32;

/// `NdisMedium802_3`: Ethernet.
pub const NDIS_MEDIUM_802_3: NDIS_MEDIUM = 0;

/// `NDIS_REQUEST_TYPE::NdisRequestQueryInformation`.
pub const NDIS_REQUEST_QUERY_INFORMATION: u32 = 0;
/// `NDIS_REQUEST_TYPE::NdisRequestSetInformation`.
pub const NDIS_REQUEST_SET_INFORMATION: u32 = 1;

pub const OID_GEN_MAXIMUM_FRAME_SIZE: NDIS_OID = 0x0001_0106;
/// The link speed, in units of 100 bit/s.
pub const OID_GEN_LINK_SPEED: NDIS_OID = 0x0001_0107;
pub const OID_GEN_CURRENT_PACKET_FILTER: NDIS_OID = 0x0001_010E;
pub const OID_GEN_MEDIA_CONNECT_STATUS: NDIS_OID = 0x0001_0114;
pub const OID_802_3_CURRENT_ADDRESS: NDIS_OID = 0x0101_0102;

pub const NDIS_PACKET_TYPE_DIRECTED: u32 = 0x0001;
pub const NDIS_PACKET_TYPE_MULTICAST: u32 = 0x0002;
pub const NDIS_PACKET_TYPE_BROADCAST: u32 = 0x0008;

/// `NDIS_MEDIA_STATE::NdisMediaStateConnected`.
pub const NDIS_MEDIA_STATE_CONNECTED: u32 = 0;

/// `OpenAdapterCompleteHandler(ProtocolBindingContext, Status, OpenErrorStatus)`.
pub type OPEN_ADAPTER_COMPLETE_HANDLER =
    Option<unsafe extern "system" fn(NDIS_HANDLE, NDIS_STATUS, NDIS_STATUS)>;
/// `CloseAdapterCompleteHandler(ProtocolBindingContext, Status)`; also the shape of
/// `ResetCompleteHandler`.
pub type CLOSE_ADAPTER_COMPLETE_HANDLER =
    Option<unsafe extern "system" fn(NDIS_HANDLE, NDIS_STATUS)>;
/// `SendCompleteHandler(ProtocolBindingContext, Packet, Status)`.
pub type SEND_COMPLETE_HANDLER =
    Option<unsafe extern "system" fn(NDIS_HANDLE, *mut NDIS_PACKET, NDIS_STATUS)>;
/// `TransferDataCompleteHandler(ProtocolBindingContext, Packet, Status, BytesTransferred)`.
pub type TRANSFER_DATA_COMPLETE_HANDLER =
    Option<unsafe extern "system" fn(NDIS_HANDLE, *mut NDIS_PACKET, NDIS_STATUS, u32)>;
/// `RequestCompleteHandler(ProtocolBindingContext, NdisRequest, Status)`.
pub type REQUEST_COMPLETE_HANDLER =
    Option<unsafe extern "system" fn(NDIS_HANDLE, *mut NDIS_REQUEST, NDIS_STATUS)>;
/// `ReceiveHandler(ProtocolBindingContext, MacReceiveContext, HeaderBuffer, HeaderBufferSize,
/// LookAheadBuffer, LookaheadBufferSize, PacketSize)`.
pub type RECEIVE_HANDLER = Option<
    unsafe extern "system" fn(
        NDIS_HANDLE,
        NDIS_HANDLE,
        *mut c_void,
        u32,
        *mut c_void,
        u32,
        u32,
    ) -> NDIS_STATUS,
>;
/// `ReceiveCompleteHandler(ProtocolBindingContext)`; also `StatusCompleteHandler`.
pub type RECEIVE_COMPLETE_HANDLER = Option<unsafe extern "system" fn(NDIS_HANDLE)>;
/// `StatusHandler(ProtocolBindingContext, GeneralStatus, StatusBuffer, StatusBufferSize)`.
pub type STATUS_HANDLER =
    Option<unsafe extern "system" fn(NDIS_HANDLE, NDIS_STATUS, *mut c_void, u32)>;
/// `ReceivePacketHandler(ProtocolBindingContext, Packet)`: the references the protocol keeps.
pub type RECEIVE_PACKET_HANDLER =
    Option<unsafe extern "system" fn(NDIS_HANDLE, *mut NDIS_PACKET) -> i32>;
/// `BindAdapterHandler(Status, BindContext, DeviceName, SystemSpecific1, SystemSpecific2)`.
pub type BIND_HANDLER = Option<
    unsafe extern "system" fn(
        *mut NDIS_STATUS,
        NDIS_HANDLE,
        *mut NDIS_STRING,
        *mut c_void,
        *mut c_void,
    ),
>;
/// `UnbindAdapterHandler(Status, ProtocolBindingContext, UnbindContext)`.
pub type UNBIND_HANDLER =
    Option<unsafe extern "system" fn(*mut NDIS_STATUS, NDIS_HANDLE, NDIS_HANDLE)>;
/// `PnPEventHandler(ProtocolBindingContext, NetPnPEvent)`.
pub type PNP_EVENT_HANDLER =
    Option<unsafe extern "system" fn(NDIS_HANDLE, *mut c_void) -> NDIS_STATUS>;
/// `UnloadHandler()`.
pub type UNLOAD_PROTOCOL_HANDLER = Option<unsafe extern "system" fn()>;

/// `NDIS50_PROTOCOL_CHARACTERISTICS` (108 / 208 bytes): the NDIS 4.0 handler set, four reserved
/// slots and the connection-oriented handlers (left null by a connectionless protocol).
#[repr(C)]
pub struct NDIS_PROTOCOL_CHARACTERISTICS {
    pub MajorNdisVersion: u8,
    pub MinorNdisVersion: u8,
    pub Filler: u16,
    pub Flags: u32,
    pub OpenAdapterCompleteHandler: OPEN_ADAPTER_COMPLETE_HANDLER,
    pub CloseAdapterCompleteHandler: CLOSE_ADAPTER_COMPLETE_HANDLER,
    pub SendCompleteHandler: SEND_COMPLETE_HANDLER,
    pub TransferDataCompleteHandler: TRANSFER_DATA_COMPLETE_HANDLER,
    pub ResetCompleteHandler: CLOSE_ADAPTER_COMPLETE_HANDLER,
    pub RequestCompleteHandler: REQUEST_COMPLETE_HANDLER,
    pub ReceiveHandler: RECEIVE_HANDLER,
    pub ReceiveCompleteHandler: RECEIVE_COMPLETE_HANDLER,
    pub StatusHandler: STATUS_HANDLER,
    pub StatusCompleteHandler: RECEIVE_COMPLETE_HANDLER,
    pub Name: NDIS_STRING,
    pub ReceivePacketHandler: RECEIVE_PACKET_HANDLER,
    pub BindAdapterHandler: BIND_HANDLER,
    pub UnbindAdapterHandler: UNBIND_HANDLER,
    pub PnPEventHandler: PNP_EVENT_HANDLER,
    pub UnloadHandler: UNLOAD_PROTOCOL_HANDLER,
    pub ReservedHandlers: [*mut c_void; 4],
    pub CoSendCompleteHandler: *mut c_void,
    pub CoStatusHandler: *mut c_void,
    pub CoReceivePacketHandler: *mut c_void,
    pub CoAfRegisterNotifyHandler: *mut c_void,
}

/// `NDIS_PACKET_PRIVATE` (32 / 48 bytes): NDIS's part of a packet descriptor.
#[repr(C)]
pub struct NDIS_PACKET_PRIVATE {
    pub PhysicalCount: u32,
    pub TotalLength: u32,
    pub Head: *mut NDIS_BUFFER,
    pub Tail: *mut NDIS_BUFFER,
    pub Pool: *mut c_void,
    pub Count: u32,
    pub Flags: u32,
    pub ValidCounts: BOOLEAN,
    pub NdisPacketFlags: u8,
    pub NdisPacketOobOffset: u16,
}

/// `NDIS_PACKET` up to `ProtocolReserved` (56 / 96 bytes): the protocol-reserved area the pool
/// was created with follows it.
#[repr(C)]
pub struct NDIS_PACKET {
    pub Private: NDIS_PACKET_PRIVATE,
    /// The `MiniportReserved`/`WrapperReserved`/`MacReserved` union.
    pub MacReserved: [*mut c_void; 4],
    pub Reserved: [usize; 2],
}

/// The query/set part of `NDIS_REQUEST::DATA` (both have this shape).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NDIS_REQUEST_INFORMATION {
    pub Oid: NDIS_OID,
    pub InformationBuffer: *mut c_void,
    pub InformationBufferLength: u32,
    /// `BytesWritten` for a query, `BytesRead` for a set.
    pub BytesTransferred: u32,
    pub BytesNeeded: u32,
}

/// `NDIS_REQUEST` in its NDIS 5.0 size (92 / 176 bytes).
#[repr(C)]
pub struct NDIS_REQUEST {
    pub MacReserved: [*mut c_void; 4],
    pub RequestType: u32,
    pub DATA: NDIS_REQUEST_INFORMATION,
    pub NdisReserved: [*mut c_void; 9],
    pub ProtocolReserved: [*mut c_void; 2],
    pub MiniportReserved: [*mut c_void; 2],
}

/// `NDIS_EVENT` (16 / 24 bytes): a notification event.
#[repr(C)]
pub struct NDIS_EVENT {
    pub Event: KEVENT,
}

/// `OBJECT_ATTRIBUTES` (24 / 48 bytes).
#[repr(C)]
pub struct OBJECT_ATTRIBUTES {
    pub Length: u32,
    pub RootDirectory: *mut c_void,
    pub ObjectName: *mut UNICODE_STRING,
    pub Attributes: u32,
    pub SecurityDescriptor: *mut c_void,
    pub SecurityQualityOfService: *mut c_void,
}

pub const OBJ_CASE_INSENSITIVE: u32 = 0x40;
pub const OBJ_KERNEL_HANDLE: u32 = 0x200;
/// `KEY_READ`.
pub const KEY_READ: u32 = 0x0002_0019;
/// `KEY_VALUE_INFORMATION_CLASS::KeyValuePartialInformation`.
pub const KEY_VALUE_PARTIAL_INFORMATION_CLASS: u32 = 2;
pub const REG_SZ: u32 = 1;
pub const REG_DWORD: u32 = 4;
pub const REG_MULTI_SZ: u32 = 7;

/// `KEY_VALUE_PARTIAL_INFORMATION` up to `Data` (12 / 12 bytes); the data follows.
#[repr(C)]
pub struct KEY_VALUE_PARTIAL_INFORMATION {
    pub TitleIndex: u32,
    pub Type: u32,
    pub DataLength: u32,
}
