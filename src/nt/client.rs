//! A TDI client's event handlers (`TDI_SET_EVENT_HANDLER`), called as typed, safe functions.
//!
//! A kernel TDI client registers a handler function and a context per event type on an address
//! file; the transport calls it at DISPATCH_LEVEL with no lock of its own held (see
//! ARCHITECTURE.md, "TDI events"). [`ClientHandler`] is the registered (handler, context) pair as
//! values; each call method builds the arguments the DDK prototype takes (`tdikrnl.h`), calls
//! through [`sys::call_client_handler`] (the host model's verifier checks the IRQL and that the
//! driver holds no spin lock there), and returns what the client answered, with an IRP it
//! handed back already made the driver's own ([`Irp`]: its next stack location made current,
//! as `IoSetNextIrpStackLocation` does for an IRP the transport did not get through
//! `IoCallDriver`).

use crate::nt::NtStatus;
use crate::nt::irp::Irp;
use crate::nt::sys;
use crate::nt::types::*;
use core::ffi::c_void;
use core::ptr;

/// `PTDI_IND_RECEIVE`.
type ReceiveFn = unsafe extern "system" fn(
    *mut c_void,
    *mut c_void,
    u32,
    u32,
    u32,
    *mut u32,
    *mut c_void,
    *mut *mut IRP,
) -> NTSTATUS;

/// `PTDI_IND_RECEIVE_DATAGRAM`.
type ReceiveDatagramFn = unsafe extern "system" fn(
    *mut c_void,
    i32,
    *mut c_void,
    i32,
    *mut c_void,
    u32,
    u32,
    u32,
    *mut u32,
    *mut c_void,
    *mut *mut IRP,
) -> NTSTATUS;

/// `PTDI_IND_DISCONNECT`.
type DisconnectFn = unsafe extern "system" fn(
    *mut c_void,
    *mut c_void,
    i32,
    *mut c_void,
    i32,
    *mut c_void,
    u32,
) -> NTSTATUS;

/// `PTDI_IND_CONNECT`.
type ConnectFn = unsafe extern "system" fn(
    *mut c_void,
    i32,
    *mut c_void,
    i32,
    *mut c_void,
    i32,
    *mut c_void,
    *mut *mut c_void,
    *mut *mut IRP,
) -> NTSTATUS;

/// `PTDI_IND_ERROR_EX`.
type ErrorExFn = unsafe extern "system" fn(*mut c_void, NTSTATUS, *mut c_void) -> NTSTATUS;

/// A registered event handler and its context, as the integers TDI_SET_EVENT_HANDLER carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHandler {
    handler: usize,
    context: usize,
}

/// What a receive handler (`ClientEventReceive`, `ClientEventReceiveDatagram`) answered.
pub struct ReceiveReply {
    pub status: NtStatus,
    /// `*BytesTaken`, at most the bytes indicated.
    pub taken: usize,
    /// The receive IRP returned with `STATUS_MORE_PROCESSING_REQUIRED`, now the driver's.
    pub irp: Option<Irp>,
}

/// What a connect handler (`ClientEventConnect`) answered.
pub struct ConnectReply {
    pub status: NtStatus,
    /// `*ConnectionContext`.
    pub context: usize,
    /// The TDI_ACCEPT IRP returned with `STATUS_MORE_PROCESSING_REQUIRED`, now the driver's.
    pub irp: Option<Irp>,
}

impl ClientHandler {
    /// The pair TDI_SET_EVENT_HANDLER registered; `None` for a null handler (cleared). Any IRQL.
    pub fn new(handler: usize, context: usize) -> Option<Self> {
        (handler != 0).then_some(Self { handler, context })
    }

    /// `ClientEventReceive`: `data` (a copy the driver owns for the call) is the first
    /// `BytesIndicated` of `available` bytes buffered on the connection. DISPATCH_LEVEL, no
    /// lock of the driver held.
    #[track_caller]
    pub fn receive(
        &self,
        connection_context: usize,
        flags: u32,
        data: &[u8],
        available: usize,
    ) -> ReceiveReply {
        let mut taken: u32 = 0;
        let mut irp: *mut IRP = ptr::null_mut();
        // SAFETY: the client registered this function as its TDI_EVENT_RECEIVE handler, whose
        // prototype is `PTDI_IND_RECEIVE`; the Tsdu buffer is valid for `data.len()` bytes for
        // the call (the client copies, TDI_RECEIVE_COPY_LOOKAHEAD), the out-parameters are
        // locals.
        let status = sys::call_client_handler(|| unsafe {
            let handler = core::mem::transmute::<usize, ReceiveFn>(self.handler);
            handler(
                self.context as *mut c_void,
                connection_context as *mut c_void,
                flags,
                clamp(data.len()),
                clamp(available),
                &mut taken,
                data.as_ptr() as *mut c_void,
                &mut irp,
            )
        });
        reply(NtStatus(status), taken, data.len(), irp)
    }

    /// `ClientEventReceiveDatagram`: one whole datagram (`data`) from `source` (a
    /// `TA_IP_ADDRESS`). DISPATCH_LEVEL, no lock of the driver held.
    #[track_caller]
    pub fn receive_datagram(&self, source: &[u8], flags: u32, data: &[u8]) -> ReceiveReply {
        let mut taken: u32 = 0;
        let mut irp: *mut IRP = ptr::null_mut();
        // SAFETY: the client's TDI_EVENT_RECEIVE_DATAGRAM handler (`PTDI_IND_RECEIVE_DATAGRAM`);
        // the source address and the datagram are driver buffers valid for the call, options
        // are absent (null, 0), the out-parameters are locals.
        let status = sys::call_client_handler(|| unsafe {
            let handler = core::mem::transmute::<usize, ReceiveDatagramFn>(self.handler);
            handler(
                self.context as *mut c_void,
                clamp(source.len()) as i32,
                source.as_ptr() as *mut c_void,
                0,
                ptr::null_mut(),
                flags,
                clamp(data.len()),
                clamp(data.len()),
                &mut taken,
                data.as_ptr() as *mut c_void,
                &mut irp,
            )
        });
        reply(NtStatus(status), taken, data.len(), irp)
    }

    /// `ClientEventDisconnect` with `flags` (`TDI_DISCONNECT_RELEASE` or `_ABORT`), no
    /// disconnect data. DISPATCH_LEVEL, no lock of the driver held.
    #[track_caller]
    pub fn disconnect(&self, connection_context: usize, flags: u32) {
        // SAFETY: the client's TDI_EVENT_DISCONNECT handler (`PTDI_IND_DISCONNECT`); no data
        // and no information (null, 0).
        let _status = sys::call_client_handler(|| unsafe {
            let handler = core::mem::transmute::<usize, DisconnectFn>(self.handler);
            handler(
                self.context as *mut c_void,
                connection_context as *mut c_void,
                0,
                ptr::null_mut(),
                0,
                ptr::null_mut(),
                flags,
            )
        });
    }

    /// `ClientEventErrorEx` with `status` and `buffer` (the `TA_IP_ADDRESS` of the destination
    /// an ICMP error was about). DISPATCH_LEVEL, no lock of the driver held.
    #[track_caller]
    pub fn error_ex(&self, status: NtStatus, buffer: &[u8]) {
        // SAFETY: the client's TDI_EVENT_ERROR_EX handler (`PTDI_IND_ERROR_EX`); the buffer is
        // a driver buffer valid for the call.
        let _status = sys::call_client_handler(|| unsafe {
            let handler = core::mem::transmute::<usize, ErrorExFn>(self.handler);
            handler(
                self.context as *mut c_void,
                status.raw(),
                buffer.as_ptr() as *mut c_void,
            )
        });
    }

    /// `ClientEventConnect` for a connection from `remote` (a `TA_IP_ADDRESS`), no user data
    /// or options. DISPATCH_LEVEL, no lock of the driver held.
    #[track_caller]
    pub fn connect(&self, remote: &[u8]) -> ConnectReply {
        let mut context: *mut c_void = ptr::null_mut();
        let mut irp: *mut IRP = ptr::null_mut();
        // SAFETY: the client's TDI_EVENT_CONNECT handler (`PTDI_IND_CONNECT`); the remote
        // address is a driver buffer valid for the call, user data and options are absent, the
        // out-parameters are locals.
        let status = sys::call_client_handler(|| unsafe {
            let handler = core::mem::transmute::<usize, ConnectFn>(self.handler);
            handler(
                self.context as *mut c_void,
                clamp(remote.len()) as i32,
                remote.as_ptr() as *mut c_void,
                0,
                ptr::null_mut(),
                0,
                ptr::null_mut(),
                &mut context,
                &mut irp,
            )
        });
        let status = NtStatus(status);
        let irp = if status == NtStatus::MORE_PROCESSING_REQUIRED {
            // SAFETY: with STATUS_MORE_PROCESSING_REQUIRED the client hands over a TDI_ACCEPT
            // IRP built with TdiBuildAccept (its next stack location filled).
            unsafe { Irp::from_client(irp) }
        } else {
            None
        };
        ConnectReply {
            status,
            context: context as usize,
            irp,
        }
    }
}

/// A length as the `ULONG` a handler takes (buffers here are far smaller). Any IRQL.
fn clamp(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// A receive handler's answer: `taken` cut to the bytes indicated, and the IRP of
/// `STATUS_MORE_PROCESSING_REQUIRED` taken over. Any IRQL.
fn reply(status: NtStatus, taken: u32, indicated: usize, irp: *mut IRP) -> ReceiveReply {
    let irp = if status == NtStatus::MORE_PROCESSING_REQUIRED {
        // SAFETY: with STATUS_MORE_PROCESSING_REQUIRED the client hands over a receive IRP
        // built with TdiBuildReceive / TdiBuildReceiveDatagram (its next location filled).
        unsafe { Irp::from_client(irp) }
    } else {
        None
    };
    ReceiveReply {
        status,
        taken: (taken as usize).min(indicated),
        irp,
    }
}
