//! The protocol's characteristics and the handlers NDIS calls.
//!
//! [`Registration::register`] fills an NDIS 5.0 `NDIS_PROTOCOL_CHARACTERISTICS` with the
//! trampolines of this module, generic over the driver's [`Protocol`], and calls
//! `NdisRegisterProtocol`. NDIS calls `BindAdapterHandler` for every adapter it already knows
//! *inside* that call (ReactOS reads `Services\<Name>\Linkage\Bind` there), and later for
//! adapters that arrive. The bind handler has no context argument, so the protocol state is
//! published first (`sys::ndis::set_protocol_context`), and the protocol handle NDIS returns is
//! written where the bind handler can read it ([`Registration::handle`]) before any bind runs.
//!
//! Every other handler gets the `ProtocolBindingContext` given to `NdisOpenAdapter`: the
//! address of the driver's binding (`P::Binding`), which stays valid from the open until the
//! close has completed.

use super::NdisStatus;
use super::open::Open;
use super::packet::PacketId;
use super::receive::{Lookahead, ReceivedPacket};
use crate::nt::NtStatus;
use crate::nt::sys::ndis as sys;
use crate::nt::types::*;
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

/// A protocol driver's handlers. See the module documentation.
pub trait Protocol: Sync + Sized + 'static {
    /// The state of one binding, whose address is the `ProtocolBindingContext`.
    type Binding: Sync + 'static;

    /// `ProtocolBindAdapter`: bind to adapter `name` (`\Device\{GUID}`); `registry_path` is
    /// the adapter's protocol configuration key. PASSIVE_LEVEL. Never pended.
    fn bind(&'static self, name: &[u16], registry_path: &[u16]) -> NdisStatus;
    /// `ProtocolUnbindAdapter`: close the binding, after its sends completed. PASSIVE_LEVEL.
    /// Never pended.
    fn unbind(&'static self, binding: &Self::Binding) -> NdisStatus;
    /// The binding's [`Open`], which completes pended opens, closes and requests.
    fn open(binding: &Self::Binding) -> &Open;
    /// `ProtocolSendComplete` for packet `packet`. DISPATCH_LEVEL.
    fn send_complete(binding: &Self::Binding, packet: PacketId, status: NdisStatus);
    /// `ProtocolTransferDataComplete`. DISPATCH_LEVEL.
    fn transfer_complete(binding: &Self::Binding, packet: PacketId, status: NdisStatus, bytes: u32);
    /// `ProtocolReceive`. DISPATCH_LEVEL.
    fn receive(binding: &Self::Binding, indication: &Lookahead<'_>) -> NdisStatus;
    /// `ProtocolReceivePacket`: the protocol copies the packet and keeps no reference.
    /// DISPATCH_LEVEL.
    fn receive_packet(binding: &Self::Binding, packet: &ReceivedPacket<'_>);
    /// `ProtocolStatus` (media connect/disconnect, reset start/end). DISPATCH_LEVEL.
    fn status(binding: &Self::Binding, status: NdisStatus);
}

/// The registration of the protocol with NDIS.
pub struct Registration {
    handle: AtomicPtr<c_void>,
}

impl Default for Registration {
    fn default() -> Self {
        Self {
            handle: AtomicPtr::new(core::ptr::null_mut()),
        }
    }
}

/// The name NDIS knows the protocol by, which is also its service name: `Tcpip`.
static NAME: [u16; 5] = [
    b'T' as u16,
    b'c' as u16,
    b'p' as u16,
    b'i' as u16,
    b'p' as u16,
];

impl Registration {
    /// The protocol handle, for `NdisOpenAdapter`; null while unregistered. Any IRQL.
    pub fn handle(&self) -> NDIS_HANDLE {
        self.handle.load(Ordering::Acquire)
    }

    /// Registers `protocol` as NDIS 5.0 protocol "Tcpip". NDIS binds the adapters it knows
    /// before this returns. PASSIVE_LEVEL, once.
    pub fn register<P: Protocol>(&self, protocol: &'static P) -> Result<(), NdisStatus> {
        // SAFETY: an all-zero characteristics block is valid (null handlers).
        let mut chars: NDIS_PROTOCOL_CHARACTERISTICS = unsafe { core::mem::zeroed() };
        chars.MajorNdisVersion = 5;
        chars.MinorNdisVersion = 0;
        chars.OpenAdapterCompleteHandler = Some(open_adapter_complete::<P>);
        chars.CloseAdapterCompleteHandler = Some(close_adapter_complete::<P>);
        chars.SendCompleteHandler = Some(send_complete::<P>);
        chars.TransferDataCompleteHandler = Some(transfer_data_complete::<P>);
        chars.ResetCompleteHandler = Some(reset_complete);
        chars.RequestCompleteHandler = Some(request_complete::<P>);
        chars.ReceiveHandler = Some(receive::<P>);
        chars.ReceiveCompleteHandler = Some(receive_complete);
        chars.StatusHandler = Some(status::<P>);
        chars.StatusCompleteHandler = Some(receive_complete);
        chars.Name = UNICODE_STRING {
            Length: (NAME.len() * 2) as u16,
            MaximumLength: (NAME.len() * 2) as u16,
            Buffer: NAME.as_ptr().cast_mut(),
        };
        chars.ReceivePacketHandler = Some(receive_packet::<P>);
        chars.BindAdapterHandler = Some(bind_adapter::<P>);
        chars.UnbindAdapterHandler = Some(unbind_adapter::<P>);
        chars.PnPEventHandler = Some(pnp_event);
        sys::set_protocol_context(core::ptr::from_ref(protocol).cast_mut().cast());
        let mut status = NDIS_STATUS_FAILURE;
        // SAFETY: valid characteristics (NDIS copies them and the name), a valid status
        // pointer, and the handle slot, which outlives the registration.
        unsafe {
            sys::NdisRegisterProtocol(
                &mut status,
                self.handle.as_ptr(),
                &mut chars,
                core::mem::size_of::<NDIS_PROTOCOL_CHARACTERISTICS>() as u32,
            )
        };
        let status = NtStatus(status);
        if !status.is_success() {
            self.handle.store(core::ptr::null_mut(), Ordering::Release);
            sys::set_protocol_context(core::ptr::null_mut());
            return Err(status);
        }
        Ok(())
    }

    /// Deregisters the protocol; every binding must be closed. PASSIVE_LEVEL.
    pub fn deregister(&self) -> NdisStatus {
        let handle = self.handle.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if handle.is_null() {
            return NtStatus::SUCCESS;
        }
        let mut status = NDIS_STATUS_FAILURE;
        // SAFETY: our registered protocol handle, deregistered once.
        unsafe { sys::NdisDeregisterProtocol(&mut status, handle) };
        sys::set_protocol_context(core::ptr::null_mut());
        NtStatus(status)
    }
}

/// The protocol state published by `register`. Any IRQL.
fn protocol<P: Protocol>() -> Option<&'static P> {
    // SAFETY: published by `register` from a `&'static P`; P is the only protocol type.
    unsafe { sys::protocol_context().cast::<P>().as_ref() }
}

/// The binding behind a `ProtocolBindingContext`.
///
/// # Safety
/// `context` is null or the context given to `NdisOpenAdapter`, whose binding is alive until
/// its close has completed, which is after NDIS's last handler call for it. Any IRQL.
unsafe fn binding<'a, P: Protocol>(context: NDIS_HANDLE) -> Option<&'a P::Binding> {
    // SAFETY: forwarded caller contract.
    unsafe { context.cast::<P::Binding>().as_ref() }
}

/// A counted UTF-16 string as a slice (empty for null).
///
/// # Safety
/// `string` is null or a valid `NDIS_STRING` whose buffer lives for `'a`. Any IRQL.
unsafe fn wide<'a>(string: *const NDIS_STRING) -> &'a [u16] {
    // SAFETY: forwarded caller contract.
    let Some(string) = (unsafe { string.as_ref() }) else {
        return &[];
    };
    if string.Buffer.is_null() {
        return &[];
    }
    // SAFETY: `Length` bytes of UTF-16 at `Buffer`.
    unsafe { core::slice::from_raw_parts(string.Buffer, usize::from(string.Length / 2)) }
}

/// `ProtocolBindAdapter`. PASSIVE_LEVEL.
unsafe extern "system" fn bind_adapter<P: Protocol>(
    status: *mut NDIS_STATUS,
    _bind_context: NDIS_HANDLE,
    name: *mut NDIS_STRING,
    system_specific1: *mut c_void,
    _system_specific2: *mut c_void,
) {
    // SAFETY: NDIS passes valid strings for the call (SystemSpecific1 is the registry path).
    let (name, path) = unsafe { (wide(name), wide(system_specific1.cast())) };
    let result = match protocol::<P>() {
        Some(protocol) => protocol.bind(name, path),
        None => NtStatus(NDIS_STATUS_FAILURE),
    };
    // SAFETY: NDIS's status out pointer.
    if let Some(status) = unsafe { status.as_mut() } {
        *status = result.raw();
    }
}

/// `ProtocolUnbindAdapter`. PASSIVE_LEVEL.
unsafe extern "system" fn unbind_adapter<P: Protocol>(
    status: *mut NDIS_STATUS,
    context: NDIS_HANDLE,
    _unbind_context: NDIS_HANDLE,
) {
    // SAFETY: the binding context of an open binding (NDIS unbinds only those).
    let result = match (protocol::<P>(), unsafe { binding::<P>(context) }) {
        (Some(protocol), Some(binding)) => protocol.unbind(binding),
        _ => NtStatus(NDIS_STATUS_FAILURE),
    };
    // SAFETY: NDIS's status out pointer.
    if let Some(status) = unsafe { status.as_mut() } {
        *status = result.raw();
    }
}

/// `ProtocolOpenAdapterComplete`. IRQL ≤ DISPATCH_LEVEL.
unsafe extern "system" fn open_adapter_complete<P: Protocol>(
    context: NDIS_HANDLE,
    status: NDIS_STATUS,
    _open_error: NDIS_STATUS,
) {
    // SAFETY: the context of the binding being opened.
    if let Some(binding) = unsafe { binding::<P>(context) } {
        P::open(binding).complete(status);
    }
}

/// `ProtocolCloseAdapterComplete`. IRQL ≤ DISPATCH_LEVEL.
unsafe extern "system" fn close_adapter_complete<P: Protocol>(
    context: NDIS_HANDLE,
    status: NDIS_STATUS,
) {
    // SAFETY: the context of the binding being closed (alive until this completion).
    if let Some(binding) = unsafe { binding::<P>(context) } {
        P::open(binding).complete(status);
    }
}

/// `ProtocolRequestComplete`. IRQL ≤ DISPATCH_LEVEL.
unsafe extern "system" fn request_complete<P: Protocol>(
    context: NDIS_HANDLE,
    _request: *mut NDIS_REQUEST,
    status: NDIS_STATUS,
) {
    // SAFETY: the context of an open binding.
    if let Some(binding) = unsafe { binding::<P>(context) } {
        P::open(binding).complete(status);
    }
}

/// `ProtocolSendComplete`. DISPATCH_LEVEL.
unsafe extern "system" fn send_complete<P: Protocol>(
    context: NDIS_HANDLE,
    packet: *mut NDIS_PACKET,
    status: NDIS_STATUS,
) {
    // SAFETY: the context of an open binding.
    if let Some(binding) = unsafe { binding::<P>(context) } {
        P::send_complete(binding, PacketId(packet as usize), NtStatus(status));
    }
}

/// `ProtocolTransferDataComplete`. DISPATCH_LEVEL.
unsafe extern "system" fn transfer_data_complete<P: Protocol>(
    context: NDIS_HANDLE,
    packet: *mut NDIS_PACKET,
    status: NDIS_STATUS,
    bytes: u32,
) {
    // SAFETY: the context of an open binding.
    if let Some(binding) = unsafe { binding::<P>(context) } {
        P::transfer_complete(binding, PacketId(packet as usize), NtStatus(status), bytes);
    }
}

/// `ProtocolReceive`. DISPATCH_LEVEL.
unsafe extern "system" fn receive<P: Protocol>(
    context: NDIS_HANDLE,
    receive_context: NDIS_HANDLE,
    header: *mut c_void,
    header_size: u32,
    lookahead: *mut c_void,
    lookahead_size: u32,
    packet_size: u32,
) -> NDIS_STATUS {
    // SAFETY: the context of an open binding.
    let Some(binding) = (unsafe { binding::<P>(context) }) else {
        return NDIS_STATUS_NOT_SUPPORTED;
    };
    // SAFETY: NDIS's buffers and sizes, valid for this call, which `indication` does not
    // outlive.
    let indication = unsafe {
        Lookahead::new(
            receive_context,
            header,
            header_size,
            lookahead,
            lookahead_size,
            packet_size,
        )
    };
    P::receive(binding, &indication).raw()
}

/// `ProtocolReceivePacket`: copies, keeps no reference (returns 0). DISPATCH_LEVEL.
unsafe extern "system" fn receive_packet<P: Protocol>(
    context: NDIS_HANDLE,
    packet: *mut NDIS_PACKET,
) -> i32 {
    // SAFETY: the context of an open binding.
    if let (Some(binding), Some(packet)) = (unsafe { binding::<P>(context) }, NonNull::new(packet))
    {
        // SAFETY: NDIS's packet, valid for this call, which `packet` does not outlive.
        let packet = unsafe { ReceivedPacket::new(packet) };
        P::receive_packet(binding, &packet);
    }
    // No reference kept: the frame was copied.
    0
}

/// `ProtocolStatus`. DISPATCH_LEVEL.
unsafe extern "system" fn status<P: Protocol>(
    context: NDIS_HANDLE,
    status: NDIS_STATUS,
    _buffer: *mut c_void,
    _size: u32,
) {
    // SAFETY: the context of an open binding.
    if let Some(binding) = unsafe { binding::<P>(context) } {
        P::status(binding, NtStatus(status));
    }
}

/// `ProtocolResetComplete`: nothing waits for resets (the protocol never asks for one).
unsafe extern "system" fn reset_complete(_context: NDIS_HANDLE, _status: NDIS_STATUS) {}

/// `ProtocolReceiveComplete` and `ProtocolStatusComplete`: every indication was handled in
/// full when it was made.
unsafe extern "system" fn receive_complete(_context: NDIS_HANDLE) {}

/// `ProtocolPnPEvent`: every event is accepted.
unsafe extern "system" fn pnp_event(_context: NDIS_HANDLE, _event: *mut c_void) -> NDIS_STATUS {
    NDIS_STATUS_SUCCESS
}
