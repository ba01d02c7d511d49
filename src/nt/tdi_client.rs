//! The client side of TDI, for a kernel driver that uses a transport (the tdiecho test image):
//! opening transport files with `ZwCreateFile` and their EAs, building and sending TDI requests
//! as `TdiBuild*` does (`IoAllocateIrp`, the next stack location, an MDL over a pool buffer, a
//! completion routine, `IoCallDriver`), and the event handlers a client registers with
//! TDI_SET_EVENT_HANDLER, as trampolines onto the safe [`TdiClient`] trait.
//!
//! Every request completes into one completion routine ([`request_done`]) that frees the MDL
//! and the IRP (it returns `STATUS_MORE_PROCESSING_REQUIRED`, so the I/O manager touches the
//! IRP no more) and hands the status, the `Information` and the request's buffer back to
//! [`TdiClient::completed`] with the tag the request was sent with.

use crate::nt::NtStatus;
use crate::nt::pool;
use crate::nt::sys;
use crate::nt::thread;
use crate::nt::types::*;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// What a kernel TDI client does with the transport's events and its requests' completions.
/// Every method runs at DISPATCH_LEVEL at most, with no lock of the transport held, and may send
/// requests.
pub trait TdiClient: Sync + 'static {
    /// `ClientEventConnect` from `remote` (a `TRANSPORT_ADDRESS`, as the transport passed it):
    /// `Some((connection context, TDI_ACCEPT request))` accepts on the endpoint whose context
    /// that is, `None` refuses.
    fn connect(&'static self, remote: &[u8]) -> Option<(usize, Request)>;

    /// `ClientEventReceive` on connection `connection`: `data` is what the transport shows of
    /// `available` bytes. Returns the bytes taken from `data` and, optionally, a TDI_RECEIVE
    /// for what follows them.
    fn receive(
        &'static self,
        connection: usize,
        flags: u32,
        data: &[u8],
        available: usize,
    ) -> (usize, Option<Request>);

    /// `ClientEventDisconnect` on connection `connection` (`TDI_DISCONNECT_*` flags).
    fn disconnect(&'static self, connection: usize, flags: u32);

    /// A request sent with `tag` completed with `status` and `information`; `buffer` is the
    /// buffer it carried (received data in its first `information` bytes for a receive).
    fn completed(&'static self, tag: usize, status: NtStatus, information: usize, buffer: Vec<u8>);
}

/// The TDI requests a client sends (the `Parameters` overlays of `tdikrnl.h`).
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// TDI_ASSOCIATE_ADDRESS with the address file's handle.
    Associate(usize),
    /// TDI_SET_EVENT_HANDLER: made by [`Kind::event_handler`].
    SetEvent(EventHandler),
    /// TDI_ACCEPT with no connection information.
    Accept,
    /// TDI_SEND of the whole buffer.
    Send,
    /// TDI_RECEIVE into the buffer (`TDI_RECEIVE_NORMAL`).
    Receive,
    /// TDI_DISCONNECT with `TDI_DISCONNECT_*` flags.
    Disconnect(u32),
}

/// The arguments of a TDI_SET_EVENT_HANDLER: only [`Kind::event_handler`] makes them, so the
/// handler is always one of this module's trampolines with its client as context.
#[derive(Clone, Copy, Debug)]
pub struct EventHandler {
    event: i32,
    handler: usize,
    context: usize,
}

impl Kind {
    /// TDI_SET_EVENT_HANDLER of client `C`'s handler for `event` (`TDI_EVENT_CONNECT`,
    /// `_RECEIVE` or `_DISCONNECT`) with `client` as its context; `None` (or another event
    /// type) clears the event's handler.
    pub fn event_handler<C: TdiClient>(event: i32, client: Option<&'static C>) -> Kind {
        let handler = match (event, client) {
            (_, None) => 0,
            (TDI_EVENT_CONNECT, _) => on_connect::<C> as *const () as usize,
            (TDI_EVENT_RECEIVE, _) => on_receive::<C> as *const () as usize,
            (TDI_EVENT_DISCONNECT, _) => on_disconnect::<C> as *const () as usize,
            _ => 0,
        };
        let context = match client {
            Some(client) if handler != 0 => client as *const C as usize,
            _ => 0,
        };
        Kind::SetEvent(EventHandler {
            event,
            handler,
            context,
        })
    }
}

/// An open transport file (address file or connection endpoint) and the client's reference to
/// its file object; closed (`ZwClose`, then the reference dropped) on drop, at PASSIVE_LEVEL.
pub struct TdiFile {
    handle: HANDLE,
    file: NonNull<FILE_OBJECT>,
    device: NonNull<DEVICE_OBJECT>,
}

// SAFETY: a kernel handle (OBJ_KERNEL_HANDLE) and a referenced file object are valid from any
// thread and process; the device outlives the file object.
unsafe impl Send for TdiFile {}
// SAFETY: as above; `&TdiFile` only reads the pointers.
unsafe impl Sync for TdiFile {}

/// The longest device name [`TdiFile::open`] takes.
const MAX_NAME: usize = 64;

impl TdiFile {
    /// Opens `device` (e.g. `\Device\Tcp`, ASCII) with the EA buffer `ea` (one
    /// `FILE_FULL_EA_INFORMATION`: a transport address or a connection context), as a kernel
    /// handle, and references its file object. PASSIVE_LEVEL.
    pub fn open(device: &str, ea: &[u8]) -> Result<TdiFile, NtStatus> {
        let mut wide = [0u16; MAX_NAME];
        if device.len() > MAX_NAME || !device.is_ascii() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        for (slot, byte) in wide.iter_mut().zip(device.bytes()) {
            *slot = u16::from(byte);
        }
        let mut name = UNICODE_STRING {
            Length: (device.len() * 2) as u16,
            MaximumLength: (device.len() * 2) as u16,
            Buffer: wide.as_mut_ptr(),
        };
        let mut attributes = OBJECT_ATTRIBUTES {
            Length: size_of::<OBJECT_ATTRIBUTES>() as u32,
            RootDirectory: ptr::null_mut(),
            ObjectName: &mut name,
            Attributes: OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
            SecurityDescriptor: ptr::null_mut(),
            SecurityQualityOfService: ptr::null_mut(),
        };
        let mut ea_copy = pool::try_vec::<u8>(ea.len())?;
        ea_copy.extend_from_slice(ea);
        let mut io_status = IO_STATUS_BLOCK {
            Status: IoStatusUnion { Status: 0 },
            Information: 0,
        };
        let mut handle: HANDLE = ptr::null_mut();
        // SAFETY: every pointer is to a local that outlives the call; the EA buffer is ours and
        // `ea_copy.len()` bytes long; the name is `device.len()` UTF-16 units.
        let status = unsafe {
            sys::ZwCreateFile(
                &mut handle,
                GENERIC_READ_WRITE,
                &mut attributes,
                &mut io_status,
                ptr::null_mut(),
                FILE_ATTRIBUTE_NORMAL,
                0,
                FILE_OPEN_IF,
                0,
                ea_copy.as_mut_ptr().cast(),
                ea_copy.len() as u32,
            )
        };
        NtStatus(status).ok()?;
        let mut object: *mut c_void = ptr::null_mut();
        // SAFETY: a handle we just opened; the object type restricts the result to a file object.
        let status = unsafe {
            sys::ObReferenceObjectByHandle(
                handle,
                0,
                sys::io_file_object_type(),
                KERNEL_MODE,
                &mut object,
                ptr::null_mut(),
            )
        };
        let referenced = NtStatus(status).ok().and_then(|()| {
            NonNull::new(object.cast::<FILE_OBJECT>()).ok_or(NtStatus::UNSUCCESSFUL)
        });
        let file = match referenced {
            Ok(file) => file,
            Err(status) => {
                // SAFETY: our handle, closed once.
                unsafe { sys::ZwClose(handle) };
                return Err(status);
            }
        };
        // SAFETY: a referenced file object of a device that outlives it.
        let device = NonNull::new(unsafe { sys::IoGetRelatedDeviceObject(file.as_ptr()) });
        match device {
            Some(device) => Ok(TdiFile {
                handle,
                file,
                device,
            }),
            None => {
                // SAFETY: our reference and our handle, each released once.
                unsafe {
                    sys::ObfDereferenceObject(file.as_ptr().cast());
                    sys::ZwClose(handle);
                }
                Err(NtStatus::UNSUCCESSFUL)
            }
        }
    }

    /// The file's handle, as TDI_ASSOCIATE_ADDRESS takes an address file's.
    pub fn handle(&self) -> usize {
        self.handle as usize
    }

    /// Builds request `kind` on this file for client `client`, with `buffer` (the data to send,
    /// or the room to receive into; empty for none) and `tag` for
    /// [`TdiClient::completed`]. Not sent yet: [`Request::send`] it, or return it from an event
    /// handler. Errors: `STATUS_INSUFFICIENT_RESOURCES`. IRQL ≤ DISPATCH_LEVEL.
    pub fn request<C: TdiClient>(
        &self,
        client: &'static C,
        kind: Kind,
        buffer: Vec<u8>,
        tag: usize,
    ) -> Result<Request, NtStatus> {
        let length = u32::try_from(buffer.len()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let mut pending = pool::try_box(Pending {
            complete: complete_for::<C>,
            client: client as *const C as usize,
            tag,
            buffer,
            mdl: ptr::null_mut(),
        })?;
        // SAFETY: the device outlives our reference on its file object.
        let stack_size = unsafe { self.device.as_ref() }.StackSize;
        // SAFETY: no precondition beyond IRQL ≤ DISPATCH_LEVEL.
        let irp = NonNull::new(unsafe { sys::IoAllocateIrp(stack_size, FALSE) })
            .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        if length > 0 {
            // SAFETY: the buffer is pool memory (the global allocator's non-paged pool) owned by
            // `pending` until the completion, `length` bytes long.
            let mdl = unsafe {
                sys::IoAllocateMdl(
                    pending.buffer.as_mut_ptr().cast(),
                    length,
                    FALSE,
                    FALSE,
                    ptr::null_mut(),
                )
            };
            if mdl.is_null() {
                // SAFETY: our IRP, never sent.
                unsafe { sys::IoFreeIrp(irp.as_ptr()) };
                return Err(NtStatus::INSUFFICIENT_RESOURCES);
            }
            // SAFETY: a fresh MDL over non-paged pool.
            unsafe { sys::MmBuildMdlForNonPagedPool(mdl) };
            pending.mdl = mdl;
        }
        let parameters = parameters(kind, length);
        // SAFETY: a fresh IRP we own: IoAllocateIrp set CurrentLocation to StackCount + 1 and
        // CurrentStackLocation past the array, so the next location (the transport's) is the
        // one below it, inside the IRP.
        unsafe {
            let raw = &mut *irp.as_ptr();
            raw.MdlAddress = pending.mdl;
            let next = &mut *raw.Tail.Overlay.CurrentStackLocation.sub(1);
            next.MajorFunction = IRP_MJ_INTERNAL_DEVICE_CONTROL;
            next.MinorFunction = kind.minor();
            next.Flags = 0;
            next.Parameters = parameters;
            next.FileObject = self.file.as_ptr();
            next.DeviceObject = self.device.as_ptr();
            next.CompletionRoutine = Some(request_done);
            next.Context = Box::into_raw(pending).cast();
            next.Control = SL_INVOKE_ON_SUCCESS | SL_INVOKE_ON_ERROR | SL_INVOKE_ON_CANCEL;
        }
        Ok(Request {
            irp,
            device: self.device,
        })
    }

    /// Sends request `kind` (no buffer) and waits for its completion, polling every
    /// millisecond: what a client does at setup and teardown. PASSIVE_LEVEL.
    pub fn request_sync(&self, kind: Kind) -> NtStatus {
        let wait = SyncWait {
            done: AtomicBool::new(false),
            status: AtomicI32::new(0),
        };
        // SAFETY: `wait` outlives the request: this function returns only once the completion
        // has stored its status (the transport completes every request).
        let pointer: *const SyncWait = &wait;
        // SAFETY: as above.
        let wait: &'static SyncWait = unsafe { &*pointer };
        match self.request(wait, kind, Vec::new(), 0) {
            Ok(request) => {
                request.send();
                while !wait.done.load(Ordering::Acquire) {
                    thread::sleep_micros(1000);
                }
                NtStatus(wait.status.load(Ordering::Acquire))
            }
            Err(status) => status,
        }
    }
}

impl Drop for TdiFile {
    fn drop(&mut self) {
        // SAFETY: our handle and our reference, each released once; the transport cleans the
        // file up on the handle's close and closes it with the last reference.
        unsafe {
            sys::ZwClose(self.handle);
            sys::ObfDereferenceObject(self.file.as_ptr().cast());
        }
    }
}

impl Kind {
    fn minor(self) -> u8 {
        match self {
            Kind::Associate(_) => TDI_ASSOCIATE_ADDRESS,
            Kind::SetEvent(..) => TDI_SET_EVENT_HANDLER,
            Kind::Accept => TDI_ACCEPT,
            Kind::Send => TDI_SEND,
            Kind::Receive => TDI_RECEIVE,
            Kind::Disconnect(_) => TDI_DISCONNECT,
        }
    }
}

/// The `Parameters` overlay of a request (`TdiBuild*`).
fn parameters(kind: Kind, length: u32) -> IoStackParameters {
    fn overlay<T>(request: T) -> IoStackParameters {
        const { assert!(size_of::<T>() <= size_of::<IoStackParameters>()) };
        // SAFETY: IoStackParameters is plain data (integers and raw pointers); all-zero is valid.
        let mut parameters: IoStackParameters = unsafe { core::mem::zeroed() };
        // SAFETY: the overlay fits in the union (asserted above), which is pointer-aligned like
        // every overlay.
        unsafe { ptr::write((&raw mut parameters).cast::<T>(), request) };
        parameters
    }
    let kernel_request = |flags| TDI_REQUEST_KERNEL {
        RequestFlags: flags,
        RequestConnectionInformation: ptr::null_mut(),
        ReturnConnectionInformation: ptr::null_mut(),
        RequestSpecific: ptr::null_mut(),
    };
    match kind {
        Kind::Associate(handle) => overlay(TDI_REQUEST_KERNEL_ASSOCIATE {
            AddressHandle: handle as *mut c_void,
        }),
        Kind::SetEvent(set) => overlay(TDI_REQUEST_KERNEL_SET_EVENT {
            EventType: set.event,
            EventHandler: set.handler as *mut c_void,
            EventContext: set.context as *mut c_void,
        }),
        Kind::Accept => overlay(kernel_request(0)),
        Kind::Disconnect(flags) => overlay(kernel_request(flags)),
        Kind::Send => overlay(TDI_REQUEST_KERNEL_SEND {
            SendLength: length,
            SendFlags: 0,
        }),
        Kind::Receive => overlay(TDI_REQUEST_KERNEL_RECEIVE {
            ReceiveLength: length,
            ReceiveFlags: TDI_RECEIVE_NORMAL,
        }),
    }
}

/// A built request: an IRP the client owns until it is sent or returned from a handler. Dropped
/// unsent, it is freed and completed to the client as `STATUS_CANCELLED`.
pub struct Request {
    irp: NonNull<IRP>,
    device: NonNull<DEVICE_OBJECT>,
}

// SAFETY: the IRP is owned by this value alone; IRPs may be sent from any thread.
unsafe impl Send for Request {}

impl Request {
    /// `IoCallDriver`: the completion comes to [`TdiClient::completed`], maybe before this
    /// returns. No lock of the client may be held. IRQL ≤ DISPATCH_LEVEL.
    pub fn send(self) {
        let (irp, device) = (self.irp, self.device);
        core::mem::forget(self);
        // SAFETY: our built IRP for this device's file; ownership passes to the I/O manager.
        unsafe { sys::IofCallDriver(device.as_ptr(), irp.as_ptr()) };
    }

    /// Hands the IRP to the transport from an event handler.
    fn into_raw(self) -> *mut IRP {
        let irp = self.irp.as_ptr();
        core::mem::forget(self);
        irp
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        // SAFETY: an IRP built by `TdiFile::request`, never sent: complete it to the client as
        // cancelled (which frees it, its MDL and its context).
        unsafe {
            (*self.irp.as_ptr()).IoStatus.Status.Status = NtStatus::CANCELLED.raw();
            (*self.irp.as_ptr()).IoStatus.Information = 0;
            let next = &*(*self.irp.as_ptr())
                .Tail
                .Overlay
                .CurrentStackLocation
                .sub(1);
            request_done(ptr::null_mut(), self.irp.as_ptr(), next.Context);
        }
    }
}

/// A request's completion context.
struct Pending {
    complete: fn(usize, usize, NtStatus, usize, Vec<u8>),
    client: usize,
    tag: usize,
    buffer: Vec<u8>,
    mdl: *mut MDL,
}

fn complete_for<C: TdiClient>(
    client: usize,
    tag: usize,
    status: NtStatus,
    information: usize,
    buffer: Vec<u8>,
) {
    // SAFETY: `client` is the `&'static C` the request was built with.
    let client = unsafe { &*(client as *const C) };
    client.completed(tag, status, information, buffer);
}

/// The completion routine of every request. IRQL ≤ DISPATCH_LEVEL.
unsafe extern "system" fn request_done(
    _device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: `context` is the `Pending` boxed by `TdiFile::request`, completed once; the IRP is
    // ours again (this routine returns STATUS_MORE_PROCESSING_REQUIRED), and its MDL is the
    // one we built: both are freed here, after their last read.
    let (pending, status, information) = unsafe {
        let pending = Box::from_raw(context.cast::<Pending>());
        let status = NtStatus((*irp).IoStatus.Status.Status);
        let information = (*irp).IoStatus.Information;
        if !pending.mdl.is_null() {
            sys::IoFreeMdl(pending.mdl);
        }
        sys::IoFreeIrp(irp);
        (pending, status, information)
    };
    let Pending {
        complete,
        client,
        tag,
        buffer,
        ..
    } = *pending;
    complete(client, tag, status, information.min(buffer.len()), buffer);
    NtStatus::MORE_PROCESSING_REQUIRED.raw()
}

/// The client of [`TdiFile::request_sync`]: records the status for the polling thread.
struct SyncWait {
    done: AtomicBool,
    status: AtomicI32,
}

impl TdiClient for SyncWait {
    fn connect(&'static self, _remote: &[u8]) -> Option<(usize, Request)> {
        None
    }

    fn receive(&'static self, _: usize, _: u32, _: &[u8], _: usize) -> (usize, Option<Request>) {
        (0, None)
    }

    fn disconnect(&'static self, _: usize, _: u32) {}

    fn completed(&'static self, _tag: usize, status: NtStatus, _: usize, _: Vec<u8>) {
        self.status.store(status.raw(), Ordering::Release);
        self.done.store(true, Ordering::Release);
    }
}

/// `ClientEventConnect` (`PTDI_IND_CONNECT`). DISPATCH_LEVEL.
unsafe extern "system" fn on_connect<C: TdiClient>(
    context: *mut c_void,
    remote_length: i32,
    remote: *mut c_void,
    _user_data_length: i32,
    _user_data: *mut c_void,
    _options_length: i32,
    _options: *mut c_void,
    connection_context: *mut *mut c_void,
    accept_irp: *mut *mut IRP,
) -> NTSTATUS {
    // SAFETY: the context registered with this handler is a `&'static C`.
    let client = unsafe { &*(context as *const C) };
    let remote = match (usize::try_from(remote_length), remote.is_null()) {
        // SAFETY: the transport passes `remote_length` readable bytes at `remote`.
        (Ok(len), false) => unsafe { core::slice::from_raw_parts(remote as *const u8, len) },
        _ => &[],
    };
    match client.connect(remote) {
        Some((connection, request)) => {
            // SAFETY: out-parameters the transport passes for the call.
            unsafe {
                *connection_context = connection as *mut c_void;
                *accept_irp = request.into_raw();
            }
            NtStatus::MORE_PROCESSING_REQUIRED.raw()
        }
        None => NtStatus::CONNECTION_REFUSED.raw(),
    }
}

/// `ClientEventReceive` (`PTDI_IND_RECEIVE`). DISPATCH_LEVEL.
#[allow(clippy::too_many_arguments, reason = "the DDK prototype")]
unsafe extern "system" fn on_receive<C: TdiClient>(
    context: *mut c_void,
    connection_context: *mut c_void,
    flags: u32,
    indicated: u32,
    available: u32,
    taken: *mut u32,
    tsdu: *mut c_void,
    irp: *mut *mut IRP,
) -> NTSTATUS {
    // SAFETY: the context registered with this handler is a `&'static C`.
    let client = unsafe { &*(context as *const C) };
    let data = if tsdu.is_null() {
        &[][..]
    } else {
        // SAFETY: the transport shows `indicated` bytes at `tsdu` for the call.
        unsafe { core::slice::from_raw_parts(tsdu as *const u8, indicated as usize) }
    };
    let (took, request) =
        client.receive(connection_context as usize, flags, data, available as usize);
    let took = took.min(data.len());
    // SAFETY: out-parameters the transport passes for the call.
    unsafe {
        *taken = took as u32;
        *irp = ptr::null_mut();
    }
    match request {
        Some(request) => {
            // SAFETY: as above.
            unsafe { *irp = request.into_raw() };
            NtStatus::MORE_PROCESSING_REQUIRED.raw()
        }
        None if took == data.len() => NtStatus::SUCCESS.raw(),
        None => NtStatus::DATA_NOT_ACCEPTED.raw(),
    }
}

/// `ClientEventDisconnect` (`PTDI_IND_DISCONNECT`). DISPATCH_LEVEL.
unsafe extern "system" fn on_disconnect<C: TdiClient>(
    context: *mut c_void,
    connection_context: *mut c_void,
    _data_length: i32,
    _data: *mut c_void,
    _information_length: i32,
    _information: *mut c_void,
    flags: u32,
) -> NTSTATUS {
    // SAFETY: the context registered with this handler is a `&'static C`.
    let client = unsafe { &*(context as *const C) };
    client.disconnect(connection_context as usize, flags);
    NtStatus::SUCCESS.raw()
}
