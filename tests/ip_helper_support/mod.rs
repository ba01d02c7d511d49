//! Requests as iphlpapi, wshtcpip and tdilib send them to `\\Device\\Tcp` and `\\Device\\Ip`
//! (`IOCTL_TCP_QUERY_INFORMATION_EX`/`SET_INFORMATION_EX`, `IOCTL_ICMP_ECHO_REQUEST`), for the
//! information-model tests.
#![allow(dead_code)]

use crate::tdi_support::Loaded;
use std::net::{Ipv4Addr, SocketAddrV4};
use tcpip::host::{Event, EventType, Handle, IoStatus, KernelHandle, StackLocation};
use tcpip::info::wire::*;
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tcpip::tdi::{QueryInformationEx, SetInformationEx};
use zerocopy::{FromBytes, IntoBytes};

pub fn object(entity: u32, instance: u32, class: u32, kind: u32, id: u32) -> TDIObjectID {
    TDIObjectID {
        toi_entity: TDIEntityID {
            tei_entity: entity,
            tei_instance: instance,
        },
        toi_class: class,
        toi_type: kind,
        toi_id: id,
    }
}

/// A provider-type protocol query, the form of every statistics and table query.
pub fn provider(entity: u32, instance: u32, id: u32) -> TDIObjectID {
    object(
        entity,
        instance,
        INFO_CLASS_PROTOCOL,
        INFO_TYPE_PROVIDER,
        id,
    )
}

/// Queries like tdilib: a zero-length probe for the size, then the fetch, which must agree.
pub fn query_with_context(
    t: &Loaded,
    control: Handle,
    id: TDIObjectID,
    context: [u8; 16],
) -> Result<Vec<u8>, NtStatus> {
    let mut input = vec![0; QueryInformationEx::LEN];
    QueryInformationEx { id, context }.emit(&mut input).unwrap();
    let (status, needed) =
        t.kernel
            .device_io_control(control, IOCTL_TCP_QUERY_INFORMATION_EX, &input, &mut []);
    if status != NtStatus::SUCCESS {
        return Err(status);
    }
    let mut out = vec![0u8; needed];
    let (status, written) =
        t.kernel
            .device_io_control(control, IOCTL_TCP_QUERY_INFORMATION_EX, &input, &mut out);
    assert_eq!(
        (status, written),
        (NtStatus::SUCCESS, needed),
        "probe and fetch agree"
    );
    Ok(out)
}

pub fn query(t: &Loaded, control: Handle, id: TDIObjectID) -> Result<Vec<u8>, NtStatus> {
    query_with_context(t, control, id, [0; 16])
}

/// The rows of a table answer (read one by one: the answer need not be aligned for `T`).
pub fn rows<T: FromBytes + zerocopy::Immutable + zerocopy::KnownLayout + Copy>(
    bytes: &[u8],
) -> Vec<T> {
    let size = size_of::<T>();
    assert_eq!(bytes.len() % size, 0, "whole rows");
    bytes
        .chunks_exact(size)
        .map(|row| T::read_from_bytes(row).expect("a row"))
        .collect()
}

pub fn set(t: &Loaded, control: Handle, id: TDIObjectID, value: &[u8]) -> NtStatus {
    let request = SetInformationEx { id, buffer: value };
    let mut input = vec![0; request.buffer_len()];
    request.emit(&mut input).unwrap();
    t.kernel
        .device_io_control(control, IOCTL_TCP_SET_INFORMATION_EX, &input, &mut [])
        .0
}

pub fn control(t: &Loaded) -> Handle {
    t.kernel
        .create_file("\\Device\\Tcp", None, 0)
        .expect("control channel")
}

/// Gives interface 1 10.11.12.2/24.
pub fn configure(t: &Loaded, control: Handle) {
    let mut input = 1u32.to_le_bytes().to_vec();
    input.extend_from_slice(&[10, 11, 12, 2, 255, 255, 255, 0]);
    let mut output = [0u8; 12];
    let (status, _) =
        t.kernel
            .device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut output);
    assert_eq!(status, NtStatus::SUCCESS);
}

pub fn entities(t: &Loaded, control: Handle) -> Vec<(u32, u32)> {
    let list = query(
        t,
        control,
        object(
            GENERIC_ENTITY,
            0,
            INFO_CLASS_GENERIC,
            INFO_TYPE_PROVIDER,
            ENTITY_LIST_ID,
        ),
    )
    .unwrap();
    rows::<TDIEntityID>(&list)
        .iter()
        .map(|e| (e.tei_entity, e.tei_instance))
        .collect()
}

/// The TCP table as `(state, local, remote)` rows, sorted; the TCP entity's instance is looked
/// up in the entity list, as tdilib does (it follows the interfaces' numbers).
pub fn tcp_table(t: &Loaded, control: Handle) -> Vec<(u32, SocketAddrV4, SocketAddrV4)> {
    let instance = entities(t, control)
        .into_iter()
        .filter(|&(entity, _)| entity == CO_TL_ENTITY)
        .map(|(_, instance)| instance)
        .min()
        .expect("TCP entity");
    let table = query(t, control, provider(CO_TL_ENTITY, instance, 0x101)).unwrap();
    let port = |p: [u8; 4]| u16::from_be_bytes([p[0], p[1]]);
    let mut rows: Vec<_> = rows::<TCPConnTableEntry>(&table)
        .iter()
        .map(|r| {
            (
                r.tct_state,
                SocketAddrV4::new(Ipv4Addr::from(r.tct_localaddr), port(r.tct_localport)),
                SocketAddrV4::new(Ipv4Addr::from(r.tct_remoteaddr), port(r.tct_remoteport)),
            )
        })
        .collect();
    rows.sort();
    rows
}

pub fn tcp_stats(t: &Loaded, control: Handle) -> TCPStats {
    TCPStats::read_from_bytes(&query(t, control, provider(CO_TL_ENTITY, 0, 1)).unwrap()).unwrap()
}

/// One `IcmpSendEcho` as ReactOS's iphlpapi sends it: an `ICMP_ECHO_REQUEST` with 32 bytes of
/// data to `to`, and room for one reply and its data. Returns the status and the reply bytes.
pub fn ping(t: &Loaded, ip: Handle, to: Ipv4Addr, timeout_ms: u32) -> (NtStatus, usize, Vec<u8>) {
    use tcpip::nt::types::icmp::{ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST};
    let data: Vec<u8> = (0..32u8).map(|i| b'a' + i % 23).collect();
    let request = ICMP_ECHO_REQUEST {
        Address: to.octets(),
        Timeout: timeout_ms,
        DataOffset: 20,
        DataSize: 32,
        OptionsOffset: 20,
        ..ICMP_ECHO_REQUEST::default()
    };
    let mut input = request.as_bytes().to_vec();
    input.extend_from_slice(&data);
    let mut out = vec![0u8; size_of::<ICMP_ECHO_REPLY>() + 32 + 8];
    let (status, len) = t
        .kernel
        .device_io_control(ip, IOCTL_ICMP_ECHO_REQUEST, &input, &mut out);
    (status, len, out)
}

/// A METHOD_BUFFERED request sent without waiting: the IRP, its system buffer and its event.
pub struct Pending {
    pub irp: *mut IRP,
    pub returned: NtStatus,
    event: Event,
    iosb: Box<IO_STATUS_BLOCK>,
    buffer: Vec<u8>,
}

impl Pending {
    /// Waits for the completion; its status block.
    pub fn wait(&self) -> IoStatus {
        if self.returned == NtStatus::PENDING {
            self.event.wait(None);
        }
        IoStatus {
            // SAFETY: written by the completion before it signalled the event.
            status: NtStatus(unsafe { self.iosb.Status.Status }),
            information: self.iosb.Information,
        }
    }

    /// The system buffer (the output, once completed).
    pub fn buffer(&self) -> &[u8] {
        &self.buffer
    }
}

/// Sends `code` (METHOD_BUFFERED: one system buffer of `max(input, room)` bytes) on `handle`
/// without waiting for it, as an overlapped `DeviceIoControl` does.
pub fn start_buffered_ioctl(
    kernel: &KernelHandle,
    handle: Handle,
    code: u32,
    mut buffer: Vec<u8>,
    room: usize,
) -> Pending {
    let input_length = buffer.len();
    if buffer.len() < room {
        buffer.resize(room, 0);
    }
    let file = kernel.reference_file(handle).expect("file");
    let mut location = StackLocation::new(IRP_MJ_DEVICE_CONTROL, 0, std::ptr::null_mut());
    location.parameters = IoStackParameters {
        DeviceIoControl: DeviceIoControlParameters::new(
            code,
            input_length as u32,
            room as u32,
            std::ptr::null_mut(),
        ),
    };
    let irp = kernel.allocate_file_irp(&file, location);
    let event = Event::new(kernel, EventType::Notification, false);
    let mut iosb = Box::new(IO_STATUS_BLOCK {
        Status: IoStatusUnion { Status: 0 },
        Information: 0,
    });
    let iosb_ptr: *mut IO_STATUS_BLOCK = &mut *iosb;
    let system = buffer.as_mut_ptr();
    // SAFETY: a fresh IRP owned here until it is sent; the buffer outlives it.
    unsafe {
        kernel.with_irp(irp, |i| {
            i.AssociatedIrp.SystemBuffer = system.cast();
            i.UserBuffer = system.cast();
            i.UserEvent = event.as_ptr();
            i.UserIosb = iosb_ptr;
        })
    };
    let returned = kernel.call_driver(file.device(), irp);
    Pending {
        irp,
        returned,
        event,
        iosb,
        buffer,
    }
}
