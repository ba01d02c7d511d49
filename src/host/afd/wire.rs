//! The bytes AFD and its user-mode helpers put on the wire to the transport, built the way
//! `TdiOpenAddressFile`, `TdiOpenConnectionEndpointFile`, `TdiBuildConnectionInfo`,
//! `TdiBuildNullConnectionInfo`, the `TdiBuildXxx` macros of `tdikrnl.h` and tdilib/wshtcpip
//! build them (contract §0.2, §2.1, §4.1, §5).
//!
//! These encoders are written independently of the driver's decoders (`crate::tdi`): the AFD
//! model is the driver's client, and the tests check that the two agree.

use crate::nt::types::*;
use std::ffi::c_void;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Size of a `TA_IP_ADDRESS`.
pub const TA_IP_ADDRESS_LEN: usize = 22;
/// Size of a `TDI_ADDRESS_INFO` holding a `TA_IP_ADDRESS` (the minimum getsockname output).
pub const ADDRESS_INFO_LEN: usize = 4 + TA_IP_ADDRESS_LEN;
/// `FILE_SHARE_READ | FILE_SHARE_WRITE`: the share access of an `AFD_SHARE_REUSE` bind and of
/// tdilib's control channels.
pub const SHARE_READ_WRITE: u16 = 3;

/// The 22 bytes of a `TA_IP_ADDRESS`: count 1, length 14, type IP, port and address in network
/// order, zero `sin_zero`.
pub fn ta_ip_address(address: SocketAddrV4) -> [u8; TA_IP_ADDRESS_LEN] {
    let mut out = [0u8; TA_IP_ADDRESS_LEN];
    out[0..4].copy_from_slice(&1i32.to_le_bytes());
    out[4..6].copy_from_slice(&TDI_ADDRESS_LENGTH_IP.to_le_bytes());
    out[6..8].copy_from_slice(&TDI_ADDRESS_TYPE_IP.to_le_bytes());
    out[8..10].copy_from_slice(&address.port().to_be_bytes());
    out[10..14].copy_from_slice(&address.ip().octets());
    out
}

/// Reads a `TA_IP_ADDRESS` the way AFD and msafd do: the first entry must be an IP address of
/// at least 14 bytes; `None` otherwise.
pub fn parse_ta_ip_address(bytes: &[u8]) -> Option<SocketAddrV4> {
    if bytes.len() < TA_IP_ADDRESS_LEN {
        return None;
    }
    let count = i32::from_le_bytes(bytes[0..4].try_into().ok()?);
    let length = u16::from_le_bytes(bytes[4..6].try_into().ok()?);
    let kind = u16::from_le_bytes(bytes[6..8].try_into().ok()?);
    if count < 1 || length < TDI_ADDRESS_LENGTH_IP || kind != TDI_ADDRESS_TYPE_IP {
        return None;
    }
    let port = u16::from_be_bytes(bytes[8..10].try_into().ok()?);
    let ip = Ipv4Addr::new(bytes[10], bytes[11], bytes[12], bytes[13]);
    Some(SocketAddrV4::new(ip, port))
}

/// One `FILE_FULL_EA_INFORMATION` entry: NextEntryOffset 0, Flags 0, the name (its length in
/// `EaNameLength`, without the NUL), a NUL, then the value at the unaligned offset
/// `8 + name.len() + 1`.
pub fn ea_entry(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + name.len() + 1 + value.len());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(0);
    out.push(u8::try_from(name.len()).expect("EA name length fits in a byte"));
    out.extend_from_slice(
        &u16::try_from(value.len())
            .expect("EA value length fits in 16 bits")
            .to_le_bytes(),
    );
    out.extend_from_slice(name);
    out.push(0);
    out.extend_from_slice(value);
    out
}

/// The EA of an address-file create (`TdiOpenAddressFile`): `"TransportAddress"` (16) with a
/// 22-byte `TA_IP_ADDRESS`. The value starts at offset 25.
pub fn address_file_ea(address: SocketAddrV4) -> Vec<u8> {
    ea_entry(TDI_TRANSPORT_ADDRESS_EA, &ta_ip_address(address))
}

/// The EA of a connection-endpoint create (`TdiOpenConnectionEndpointFile`):
/// `"ConnectionContext"` (17) with a NULL pointer, pointer-sized. The value starts at offset 26.
pub fn connection_file_ea() -> Vec<u8> {
    ea_entry(TDI_CONNECTION_CONTEXT_EA, &[0u8; size_of::<usize>()])
}

/// A `TDI_CONNECTION_INFORMATION` with its `TA_IP_ADDRESS` embedded right after the structure,
/// as `TdiBuildConnectionInfo` lays it out (one pool block), `RemoteAddress` pointing at it.
/// Boxed so that the pointers the transport receives stay put.
#[repr(C)]
pub struct ConnectionInfo {
    pub info: TDI_CONNECTION_INFORMATION,
    pub address: [u8; TA_IP_ADDRESS_LEN],
}

// SAFETY: the raw pointers inside point into the same heap block (or are NULL) and are only
// dereferenced by the transport while the IRP that carries them is outstanding.
unsafe impl Send for ConnectionInfo {}
// SAFETY: as above.
unsafe impl Sync for ConnectionInfo {}

impl ConnectionInfo {
    /// `TdiBuildConnectionInfo(&Info, Address)`: RemoteAddressLength 22, RemoteAddress → the
    /// embedded copy of `address`, no user data, no options.
    pub fn new(address: SocketAddrV4) -> Box<ConnectionInfo> {
        let mut block = Box::new(ConnectionInfo {
            info: TDI_CONNECTION_INFORMATION {
                UserDataLength: 0,
                UserData: std::ptr::null_mut(),
                OptionsLength: 0,
                Options: std::ptr::null_mut(),
                RemoteAddressLength: TA_IP_ADDRESS_LEN as i32,
                RemoteAddress: std::ptr::null_mut(),
            },
            address: ta_ip_address(address),
        });
        block.info.RemoteAddress = block.address.as_mut_ptr().cast::<c_void>();
        block
    }

    /// `TdiBuildNullConnectionInfo`: a 0.0.0.0:0 address ("accept from anyone") and, as AFD
    /// does, **OptionsLength 4 with Options NULL** (the transport must not dereference it).
    pub fn null() -> Box<ConnectionInfo> {
        let mut block = ConnectionInfo::new(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        block.info.OptionsLength = 4;
        block
    }

    /// The structure's address, for the `TDI_REQUEST_KERNEL` overlay.
    pub fn as_ptr(&mut self) -> *mut TDI_CONNECTION_INFORMATION {
        &raw mut self.info
    }

    /// The address the transport wrote into (or left in) the embedded `TA_IP_ADDRESS`.
    pub fn remote(&self) -> Option<SocketAddrV4> {
        parse_ta_ip_address(&self.address)
    }
}

/// Writes a TDI request overlay at the start of a zeroed `Parameters` union, as the
/// `TdiBuildXxx` macros do.
fn overlay<T>(request: T) -> IoStackParameters {
    const { assert!(size_of::<T>() <= size_of::<IoStackParameters>()) };
    // SAFETY: IoStackParameters is plain data (integers and raw pointers); all-zero is valid.
    let mut parameters: IoStackParameters = unsafe { std::mem::zeroed() };
    // SAFETY: the overlay fits in the union (asserted above) and the union is at least as
    // aligned as any of its pointer-sized members, which covers the overlays.
    unsafe { std::ptr::write((&raw mut parameters).cast::<T>(), request) };
    parameters
}

/// `TdiBuildAssociateAddress`: `AddressHandle` = AFD's kernel handle to the address file.
pub fn associate(address_handle: HANDLE) -> IoStackParameters {
    overlay(TDI_REQUEST_KERNEL_ASSOCIATE {
        AddressHandle: address_handle,
    })
}

/// `TdiBuildConnect` / `TdiBuildListen` / `TdiBuildDisconnect` / `TdiBuildDisassociateAddress`:
/// a `TDI_REQUEST_KERNEL` with the flags, the two connection-information blocks and the
/// `RequestSpecific` timeout pointer.
pub fn kernel_request(
    flags: u32,
    request: *mut TDI_CONNECTION_INFORMATION,
    ret: *mut TDI_CONNECTION_INFORMATION,
    timeout: *mut LARGE_INTEGER,
) -> IoStackParameters {
    overlay(TDI_REQUEST_KERNEL {
        RequestFlags: flags,
        RequestConnectionInformation: request,
        ReturnConnectionInformation: ret,
        RequestSpecific: timeout.cast(),
    })
}

/// `TdiBuildReceive`: length and `TDI_RECEIVE_*` flags.
pub fn receive(length: u32, flags: u32) -> IoStackParameters {
    overlay(TDI_REQUEST_KERNEL_RECEIVE {
        ReceiveLength: length,
        ReceiveFlags: flags,
    })
}

/// `TdiBuildSend`: length and `TDI_SEND_*` flags (always 0 from AFD).
pub fn send(length: u32, flags: u32) -> IoStackParameters {
    overlay(TDI_REQUEST_KERNEL_SEND {
        SendLength: length,
        SendFlags: flags,
    })
}

/// `TdiBuildSendDatagram`: length and the connection-information block naming the destination.
pub fn send_datagram(length: u32, info: *mut TDI_CONNECTION_INFORMATION) -> IoStackParameters {
    overlay(TDI_REQUEST_KERNEL_SENDDG {
        SendLength: length,
        SendDatagramInformation: info,
    })
}

/// `TdiBuildReceiveDatagram`: length, the receive and return information blocks (AFD passes
/// the same block for both) and the flags (0 from AFD).
pub fn receive_datagram(
    length: u32,
    receive: *mut TDI_CONNECTION_INFORMATION,
    ret: *mut TDI_CONNECTION_INFORMATION,
    flags: u32,
) -> IoStackParameters {
    overlay(TDI_REQUEST_KERNEL_RECEIVEDG {
        ReceiveLength: length,
        ReceiveDatagramInformation: receive,
        ReturnDatagramInformation: ret,
        ReceiveFlags: flags,
    })
}

/// `TdiBuildQueryInformation`: the query type, `RequestConnectionInformation` NULL.
pub fn query_information(query_type: i32) -> IoStackParameters {
    overlay(TDI_REQUEST_KERNEL_QUERY_INFORMATION {
        QueryType: query_type,
        RequestConnectionInformation: std::ptr::null_mut(),
    })
}

/// `TCP_REQUEST_QUERY_INFORMATION_EX` (36 / 40 bytes) with a zero context.
pub fn query_information_ex(entity: u32, instance: u32, class: u32, kind: u32, id: u32) -> Vec<u8> {
    let mut out = vec![0u8; size_of::<TCP_REQUEST_QUERY_INFORMATION_EX>()];
    for (i, value) in [entity, instance, class, kind, id].into_iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&value.to_le_bytes());
    }
    out
}

/// `TCP_REQUEST_SET_INFORMATION_EX` as wshtcpip sends it: the header, `BufferSize`, the value,
/// and an input length of `sizeof(TCP_REQUEST_SET_INFORMATION_EX) + OptionLength` (the C
/// structure declares `UCHAR Buffer[1]`, so its `sizeof` is the 24-byte header plus 4 bytes of
/// array and padding).
pub fn set_information_ex(
    entity: u32,
    instance: u32,
    class: u32,
    kind: u32,
    id: u32,
    value: &[u8],
) -> Vec<u8> {
    const C_SIZEOF: usize = 28;
    let mut out = vec![0u8; C_SIZEOF + value.len()];
    for (i, field) in [entity, instance, class, kind, id].into_iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&field.to_le_bytes());
    }
    out[20..24].copy_from_slice(
        &u32::try_from(value.len())
            .expect("option fits")
            .to_le_bytes(),
    );
    out[24..24 + value.len()].copy_from_slice(value);
    out
}

/// The address in a `TDI_ADDRESS_INFO` (getsockname's answer): `ActivityCount`, then a
/// `TA_IP_ADDRESS`.
pub fn parse_address_info(bytes: &[u8]) -> Option<SocketAddrV4> {
    parse_ta_ip_address(bytes.get(4..)?)
}
