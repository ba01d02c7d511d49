//! Raw TDI datagram requests for the UDP tests, built as AFD builds them (`host::afd::wire`),
//! on top of the transport tests' `tdi_support`.
#![allow(dead_code)]

use crate::tdi_support::{Extras, Loaded, PendingRequest, start_with};
use std::net::SocketAddrV4;
use tcpip::core::udp::UdpStats;
use tcpip::host::afd::wire;
use tcpip::host::{Handle, IoStatus, KernelHandle, stats};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;

pub const UDP_DEVICE: &str = "\\Device\\Udp";

/// Opens a UDP address file (CREATE `\Device\Udp` with the `TransportAddress` EA).
pub fn open_udp(loaded: &Loaded, address: SocketAddrV4, share: u16) -> Result<Handle, NtStatus> {
    loaded
        .kernel
        .create_file(UDP_DEVICE, Some(&wire::address_file_ea(address)), share)
}

/// The driver's UDP counters.
pub fn udp_stats(loaded: &Loaded) -> UdpStats {
    stats::udp_stats(loaded.driver()).expect("driver loaded")
}

/// A TDI_RECEIVE_DATAGRAM in flight with the buffer it fills.
pub struct PendingReceive {
    pub request: PendingRequest,
    pub buffer: Box<[u8]>,
}

impl PendingReceive {
    /// Waits for the datagram: the status block, the bytes, the sender.
    pub fn wait(mut self) -> (IoStatus, Vec<u8>, Option<SocketAddrV4>) {
        let status = self.request.wait();
        let data = self.buffer[..status.information.min(self.buffer.len())].to_vec();
        self.buffer = Box::new([]);
        (status, data, self.request.returned_peer())
    }
}

/// Posts TDI_RECEIVE_DATAGRAM for up to `room` bytes as AFD does (flags 0, the receive and
/// return information the same block, holding the local address).
pub fn start_receive(kernel: &KernelHandle, address: Handle, room: usize) -> PendingReceive {
    let mut buffer = vec![0u8; room].into_boxed_slice();
    let mut extras = Extras {
        return_info: Some(wire::ConnectionInfo::null()),
        ..Extras::default()
    };
    let info = extras
        .return_info
        .as_mut()
        .map_or(std::ptr::null_mut(), |i| i.as_ptr());
    let parameters = wire::receive_datagram(room as u32, info, info, 0);
    let request = start_with(
        kernel,
        address,
        TDI_RECEIVE_DATAGRAM,
        parameters,
        Some(&mut buffer),
        extras,
    );
    PendingReceive { request, buffer }
}

/// One TDI_RECEIVE_DATAGRAM, waited for.
pub fn receive(
    kernel: &KernelHandle,
    address: Handle,
    room: usize,
) -> (IoStatus, Vec<u8>, Option<SocketAddrV4>) {
    start_receive(kernel, address, room).wait()
}

/// A TDI_SEND_DATAGRAM in flight with the buffer it sends from.
pub struct PendingSend {
    pub request: PendingRequest,
    _buffer: Vec<u8>,
}

impl PendingSend {
    pub fn wait(&self) -> IoStatus {
        self.request.wait()
    }
}

/// Starts TDI_SEND_DATAGRAM with a caller-built destination block (or null) and `length`,
/// which may differ from the buffer's. The block is only needed during dispatch: AFD frees it
/// when `IoCallDriver` returns.
pub fn start_send_with_info(
    kernel: &KernelHandle,
    address: Handle,
    info: *mut TDI_CONNECTION_INFORMATION,
    data: &[u8],
    length: u32,
) -> PendingSend {
    let mut buffer = data.to_vec();
    let parameters = wire::send_datagram(length, info);
    let mdl = (!buffer.is_empty()).then_some(&mut buffer[..]);
    let request = start_with(
        kernel,
        address,
        TDI_SEND_DATAGRAM,
        parameters,
        mdl,
        Extras::default(),
    );
    PendingSend {
        request,
        _buffer: buffer,
    }
}

/// Starts one TDI_SEND_DATAGRAM of `data` to `remote`; the destination block is freed as soon
/// as the dispatch routine returns.
pub fn start_send(
    kernel: &KernelHandle,
    address: Handle,
    remote: SocketAddrV4,
    data: &[u8],
) -> PendingSend {
    let mut destination = wire::ConnectionInfo::new(remote);
    start_send_with_info(
        kernel,
        address,
        destination.as_ptr(),
        data,
        data.len() as u32,
    )
}

/// One TDI_SEND_DATAGRAM of `data` to `remote`, waited for.
pub fn send_to(
    kernel: &KernelHandle,
    address: Handle,
    remote: SocketAddrV4,
    data: &[u8],
) -> IoStatus {
    start_send(kernel, address, remote, data).wait()
}

/// TDI_SEND_DATAGRAM with a caller-built destination block, waited for.
pub fn send_with_info(
    kernel: &KernelHandle,
    address: Handle,
    info: *mut TDI_CONNECTION_INFORMATION,
    data: &[u8],
    length: u32,
) -> IoStatus {
    start_send_with_info(kernel, address, info, data, length).wait()
}
