//! IRPs: owned, completed exactly once.
//!
//! A dispatch routine receives an [`Irp`]. It either completes it ([`Irp::complete`]) or marks it
//! pending ([`Irp::mark_pending`]); both return the [`Dispatched`] value the routine must return,
//! so "STATUS_PENDING without IoMarkIrpPending" cannot be written. A [`PendingIrp`] can carry a
//! cancel routine; the arm/disarm protocol below is the cancel-safe queue discipline of NT:
//!
//! - [`PendingIrp::arm`] installs the cancel routine. It must be called while holding the lock
//!   under which the cancel routine will look for the IRP, so that a cancel that fires right after
//!   arming finds it. If the IRP was cancelled before the routine was installed, `arm` takes the
//!   routine back and reports it: the caller completes the IRP with `STATUS_CANCELLED`.
//! - [`PendingIrp::disarm`] takes the cancel routine away before completion. If it was already
//!   gone, `IoCancelIrp` has claimed it and the cancel routine is (or will be) running: the IRP
//!   must stay where that routine looks for it, and the routine completes it.

use crate::nt::NtStatus;
use crate::nt::mdl::MdlChain;
use crate::nt::sys;
use crate::nt::thread::ThreadId;
use crate::nt::types::*;
use crate::nt::user;
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// The identity of an IRP while it is alive: how cancel routines find their request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IrpId(usize);

impl IrpId {
    pub(crate) fn from_raw(irp: *mut IRP) -> Self {
        IrpId(irp as usize)
    }
}

/// What a dispatch routine returns: the status of a completed IRP, or `STATUS_PENDING` for an
/// IRP that was marked pending. Only [`Irp::complete`] and [`Irp::mark_pending`] make one.
#[must_use = "a dispatch routine returns this to the I/O manager"]
#[derive(Debug, Clone, Copy)]
pub struct Dispatched(NtStatus);

impl Dispatched {
    /// The status to return from the dispatch routine.
    pub fn status(self) -> NtStatus {
        self.0
    }
}

/// A cancel routine installed by [`PendingIrp::arm`]; made by `nt::entry` for the driver.
#[derive(Clone, Copy)]
pub struct CancelRoutine(pub(crate) unsafe extern "system" fn(*mut DEVICE_OBJECT, *mut IRP));

/// The I/O request modes of `IRP::RequestorMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestorMode {
    Kernel,
    User,
}

/// An IRP owned by the driver: it must be completed exactly once.
pub struct Irp {
    raw: NonNull<IRP>,
}

// SAFETY: an IRP may be completed from any thread; ownership of this value is the right to do so.
unsafe impl Send for Irp {}

impl Irp {
    /// Takes ownership of an IRP handed to a dispatch routine.
    ///
    /// # Safety
    /// `raw` is a live IRP owned by this driver from now until it is completed.
    pub(crate) unsafe fn from_raw(raw: *mut IRP) -> Option<Irp> {
        NonNull::new(raw).map(|raw| Irp { raw })
    }

    /// Takes ownership of an IRP a TDI client handed back from an event handler (a receive IRP
    /// or an accept IRP with `STATUS_MORE_PROCESSING_REQUIRED`). The client filled its next
    /// stack location (`TdiBuildReceive`, `TdiBuildAccept`) without `IoCallDriver`, so the
    /// transport makes that location current, as `IoSetNextIrpStackLocation` does. `None` for a
    /// null IRP or one without a next location (a client bug: the IRP stays its owner's).
    ///
    /// # Safety
    /// `raw` is null or a live IRP that its owner hands over to this driver until completion.
    pub(crate) unsafe fn from_client(raw: *mut IRP) -> Option<Irp> {
        let raw = NonNull::new(raw)?;
        // SAFETY: live and handed over (caller contract); nobody else touches it now.
        let irp = unsafe { &mut *raw.as_ptr() };
        if irp.CurrentLocation <= 1 || irp.CurrentLocation > irp.StackCount.saturating_add(1) {
            return None;
        }
        irp.CurrentLocation -= 1;
        // SAFETY: `Tail.Overlay` is the view the I/O manager uses for a live IRP; CurrentLocation
        // was above 1, so the location below the current one is within the IRP's stack array
        // (IoSetNextIrpStackLocation).
        unsafe {
            let overlay = &mut irp.Tail.Overlay;
            overlay.CurrentStackLocation = overlay.CurrentStackLocation.sub(1);
        }
        Some(Irp { raw })
    }

    fn raw(&self) -> &IRP {
        // SAFETY: owned and live until completion (type invariant).
        unsafe { self.raw.as_ref() }
    }

    /// This IRP's identity.
    pub fn id(&self) -> IrpId {
        IrpId(self.raw.as_ptr() as usize)
    }

    /// The current stack location (the one addressed to this driver).
    pub fn stack(&self) -> IoStack<'_> {
        // SAFETY: the I/O manager sets CurrentStackLocation before calling the driver; it points
        // into this IRP's stack locations, which live as long as the IRP.
        let stack = unsafe { &*self.raw().Tail.Overlay.CurrentStackLocation };
        IoStack { raw: stack }
    }

    /// The mode of the original requester (user buffers need probing, kernel ones do not).
    pub fn requestor_mode(&self) -> RequestorMode {
        if self.raw().RequestorMode == KERNEL_MODE {
            RequestorMode::Kernel
        } else {
            RequestorMode::User
        }
    }

    /// Whether `IoCancelIrp` has been called on this IRP.
    pub fn is_cancel_requested(&self) -> bool {
        // SAFETY: `Cancel` is a byte inside the live IRP; IoCancelIrp writes it concurrently, so
        // it is read atomically.
        let cancel = unsafe { AtomicU8::from_ptr(&raw mut (*self.raw.as_ptr()).Cancel) };
        cancel.load(Ordering::Acquire) != 0
    }

    /// `AssociatedIrp.SystemBuffer` viewed as `len` bytes (IRP_MJ_CREATE EAs, METHOD_BUFFERED
    /// IOCTLs), or an empty slice if there is none.
    pub fn system_buffer(&mut self, len: usize) -> &mut [u8] {
        // SAFETY: SystemBuffer is a union of pointers; for the requests that use it, it is either
        // null or a nonpaged buffer of at least the length the stack location states, which the
        // callers pass as `len`.
        let buffer = unsafe { self.raw().AssociatedIrp.SystemBuffer };
        if buffer.is_null() || len == 0 {
            return &mut [];
        }
        // SAFETY: see above; the buffer is owned by the IRP until completion and `&mut self`
        // makes this the only view.
        unsafe { core::slice::from_raw_parts_mut(buffer.cast::<u8>(), len) }
    }

    /// `Irp->UserBuffer` as raw address: the output of METHOD_NEITHER IOCTLs, and the caller's
    /// output buffer (in its address space) of METHOD_BUFFERED ones.
    pub fn user_buffer(&self) -> *mut c_void {
        self.raw().UserBuffer
    }

    /// Copies the METHOD_NEITHER input (`Type3InputBuffer`, `InputBufferLength` bytes) into
    /// `into`; returns the input length. `STATUS_INVALID_PARAMETER` if it does not fit or a
    /// user-mode range lies outside user space; a user-mode buffer that faults is its exception
    /// code (`STATUS_ACCESS_VIOLATION`): user memory is only read by a guarded copy
    /// ([`user::copy_from_user`]). PASSIVE_LEVEL, in the requester's context.
    pub fn neither_input(&self, into: &mut [u8]) -> Result<usize, NtStatus> {
        let ioctl = self.stack().ioctl();
        let len = ioctl.input_length as usize;
        let into = into.get_mut(..len).ok_or(NtStatus::INVALID_PARAMETER)?;
        let address = ioctl.type3_input as usize;
        match self.requestor_mode() {
            RequestorMode::User => user::copy_from_user(address, into)?,
            RequestorMode::Kernel if len == 0 => {}
            RequestorMode::Kernel if address == 0 => return Err(NtStatus::INVALID_PARAMETER),
            RequestorMode::Kernel => {
                // SAFETY: a kernel-mode requester passes a valid buffer of `len` bytes (the
                // I/O manager's contract for METHOD_NEITHER); `into` is our own buffer.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        ioctl.type3_input.cast::<u8>(),
                        into.as_mut_ptr(),
                        len,
                    )
                };
            }
        }
        Ok(len)
    }

    /// The room of the METHOD_NEITHER output buffer (`OutputBufferLength`), or 0 if
    /// `Irp->UserBuffer` is null. Any IRQL.
    pub fn neither_output_length(&self) -> usize {
        if self.raw().UserBuffer.is_null() {
            0
        } else {
            self.stack().ioctl().output_length as usize
        }
    }

    /// Copies `answer`, built in a kernel buffer, to the start of the METHOD_NEITHER output
    /// buffer (`Irp->UserBuffer`). `STATUS_BUFFER_TOO_SMALL` if it exceeds
    /// [`Irp::neither_output_length`]; for a user-mode requester, `STATUS_INVALID_PARAMETER` if
    /// the buffer lies outside user space and the exception code (`STATUS_ACCESS_VIOLATION`)
    /// if a page of it is unmapped or read-only, found before anything is written
    /// ([`user::copy_to_user`]). PASSIVE_LEVEL, in the requester's context.
    pub fn write_neither_output(&mut self, answer: &[u8]) -> Result<(), NtStatus> {
        if answer.len() > self.neither_output_length() {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        if answer.is_empty() {
            return Ok(());
        }
        let address = self.raw().UserBuffer;
        match self.requestor_mode() {
            RequestorMode::User => user::copy_to_user(address as usize, answer),
            RequestorMode::Kernel => {
                // SAFETY: a kernel-mode requester's UserBuffer (non-null: the length above is
                // not 0) holds `OutputBufferLength` writable bytes, at least `answer.len()`;
                // `&mut self` makes this the only writer for the IRP.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        answer.as_ptr(),
                        address.cast::<u8>(),
                        answer.len(),
                    )
                };
                Ok(())
            }
        }
    }

    /// The data buffer described by `Irp->MdlAddress`, if any.
    pub fn mdl(&self) -> Option<MdlChain<'_>> {
        // SAFETY: MdlAddress is null or a locked MDL chain owned by the IRP until completion.
        unsafe { MdlChain::from_raw(self.raw().MdlAddress) }
    }

    /// Sets the status and information and calls `IoCompleteRequest`. Callable at IRQL ≤
    /// DISPATCH_LEVEL; the driver calls it at PASSIVE_LEVEL with no lock held, because
    /// completion routines (AFD's) wait on mutexes and re-enter the driver.
    #[track_caller]
    pub fn complete(self, status: NtStatus, information: usize) -> Dispatched {
        let raw = self.raw.as_ptr();
        // SAFETY: we own the live IRP; writing its status block and completing it hands it
        // back to the I/O manager, after which `self` is gone.
        unsafe {
            (*raw).IoStatus.Status.Status = status.raw();
            (*raw).IoStatus.Information = information;
            sys::IofCompleteRequest(raw, IO_NETWORK_INCREMENT);
        }
        Dispatched(status)
    }

    /// `IoMarkIrpPending`: the IRP will be completed later, possibly on another thread, and the
    /// dispatch routine must return `STATUS_PENDING` — which the returned [`Dispatched`] is.
    #[track_caller]
    pub fn mark_pending(self) -> (Dispatched, PendingIrp) {
        let stack = self.stack().raw as *const IO_STACK_LOCATION as *mut IO_STACK_LOCATION;
        // SAFETY: the current stack location belongs to this driver while it owns the IRP;
        // setting SL_PENDING_RETURNED is what IoMarkIrpPending does.
        unsafe { (*stack).Control |= SL_PENDING_RETURNED };
        (
            Dispatched(NtStatus::PENDING),
            PendingIrp {
                irp: self,
                armed: false,
                dispatcher: ThreadId::current(),
            },
        )
    }

    fn cancel_routine_slot(&self) -> &AtomicPtr<c_void> {
        // SAFETY: CancelRoutine is a pointer-sized field of the live IRP that IoCancelIrp
        // exchanges atomically; IoSetCancelRoutine is the same atomic exchange.
        unsafe { AtomicPtr::from_ptr((&raw mut (*self.raw.as_ptr()).CancelRoutine).cast()) }
    }

    /// Reads the TDI request overlay (`TDI_REQUEST_KERNEL_*`) of the current stack location's
    /// `Parameters` as its four pointer-sized arguments.
    pub fn tdi_arguments(&self) -> [usize; 4] {
        let stack = self.stack().raw;
        // SAFETY: every variant of the Parameters union is plain data; the `Others` view reads
        // the same bytes as four pointer-sized words.
        let others = unsafe { stack.Parameters.Others };
        [
            others.Argument1 as usize,
            others.Argument2 as usize,
            others.Argument3 as usize,
            others.Argument4 as usize,
        ]
    }

    /// The `TDI_CONNECTION_INFORMATION` at the given argument of the TDI overlay, e.g.
    /// `RequestConnectionInformation` of `TDI_REQUEST_KERNEL`.
    pub fn tdi_connection_information(
        &mut self,
        argument: usize,
    ) -> Option<ConnectionInformation<'_>> {
        let pointer = *self.tdi_arguments().get(argument)? as *mut TDI_CONNECTION_INFORMATION;
        // SAFETY: TDI clients (AFD, kernel mode) pass connection information blocks that stay
        // valid until the IRP completes; `&mut self` ties the view to our ownership of the IRP.
        let info = unsafe { pointer.as_mut() }?;
        Some(ConnectionInformation { raw: info })
    }

    /// The `LARGE_INTEGER` that `RequestSpecific` (argument 3 of `TDI_REQUEST_KERNEL`) points
    /// to: the CONNECT/DISCONNECT timeout in 100 ns units (negative = relative).
    pub fn tdi_timeout(&self) -> Option<i64> {
        let pointer = self.tdi_arguments()[3] as *const i64;
        // SAFETY: RequestSpecific is null or points to a LARGE_INTEGER owned by the client for
        // the IRP's lifetime; it may be unaligned on some clients, hence read_unaligned.
        (!pointer.is_null()).then(|| unsafe { pointer.read_unaligned() })
    }
}

/// A view of a client's `TDI_CONNECTION_INFORMATION`.
pub struct ConnectionInformation<'a> {
    raw: &'a mut TDI_CONNECTION_INFORMATION,
}

impl ConnectionInformation<'_> {
    /// The bytes of `RemoteAddress` (a `TRANSPORT_ADDRESS`), `RemoteAddressLength` long.
    pub fn remote_address(&self) -> &[u8] {
        let len = usize::try_from(self.raw.RemoteAddressLength).unwrap_or(0);
        if self.raw.RemoteAddress.is_null() || len == 0 {
            return &[];
        }
        // SAFETY: the client describes a buffer of RemoteAddressLength bytes at RemoteAddress,
        // valid for the IRP's lifetime.
        unsafe { core::slice::from_raw_parts(self.raw.RemoteAddress.cast::<u8>(), len) }
    }

    /// Writes `address` into the client's `RemoteAddress` buffer, cut to its length. Returns
    /// the number of bytes written.
    pub fn set_remote_address(&mut self, address: &[u8]) -> usize {
        let room = usize::try_from(self.raw.RemoteAddressLength).unwrap_or(0);
        if self.raw.RemoteAddress.is_null() {
            return 0;
        }
        let len = room.min(address.len());
        // SAFETY: the client's RemoteAddress buffer holds RemoteAddressLength bytes; we write at
        // most that many, and it does not overlap `address` (our own buffer).
        unsafe {
            core::ptr::copy_nonoverlapping(address.as_ptr(), self.raw.RemoteAddress.cast(), len)
        };
        len
    }

    /// Sets `UserDataLength` and `OptionsLength` to 0 (no connect data, no options).
    pub fn clear_data_and_options(&mut self) {
        self.raw.UserDataLength = 0;
        self.raw.OptionsLength = 0;
    }
}

/// An IRP marked pending, waiting in one of the driver's queues.
pub struct PendingIrp {
    irp: Irp,
    armed: bool,
    /// The thread whose dispatch routine marked it pending: the thread its issuer waits in
    /// when the request is synchronous.
    dispatcher: ThreadId,
}

impl PendingIrp {
    /// The IRP, to read its parameters and buffers.
    pub fn irp(&self) -> &Irp {
        &self.irp
    }

    /// The IRP, to read or write its buffers.
    pub fn irp_mut(&mut self) -> &mut Irp {
        &mut self.irp
    }

    /// This IRP's identity.
    pub fn id(&self) -> IrpId {
        self.irp.id()
    }

    /// The thread that dispatched this IRP.
    pub fn dispatcher(&self) -> ThreadId {
        self.dispatcher
    }

    /// Installs `routine` as the cancel routine (`IoSetCancelRoutine`). Call with the lock held
    /// under which the cancel routine searches for this IRP. Returns `false` if the IRP had
    /// already been cancelled: the routine was taken back and the caller must complete the IRP
    /// with `STATUS_CANCELLED`. Any IRQL ≤ DISPATCH_LEVEL.
    #[track_caller]
    pub fn arm(&mut self, routine: CancelRoutine) -> bool {
        let slot = self.irp.cancel_routine_slot();
        slot.store(routine.0 as *mut c_void, Ordering::Release);
        self.armed = true;
        if !self.irp.is_cancel_requested() {
            return true;
        }
        // IoCancelIrp ran before the routine was set, or is running now. If we get our routine
        // back, nobody will call it: the IRP is ours to fail. If it is already gone, the cancel
        // routine has claimed the IRP and `armed` stays set so that `disarm` reports that.
        if slot.swap(core::ptr::null_mut(), Ordering::AcqRel).is_null() {
            return true;
        }
        self.armed = false;
        false
    }

    /// Removes the cancel routine before completion. `true`: the IRP is ours to complete.
    /// `false`: `IoCancelIrp` has claimed it; leave it where the cancel routine looks, and that
    /// routine completes it. Any IRQL ≤ DISPATCH_LEVEL.
    #[track_caller]
    pub fn disarm(&mut self) -> bool {
        if !self.armed {
            return true;
        }
        let previous = self
            .irp
            .cancel_routine_slot()
            .swap(core::ptr::null_mut(), Ordering::AcqRel);
        self.armed = previous.is_null();
        !previous.is_null()
    }

    /// Called by the cancel routine for its IRP, whose routine `IoCancelIrp` already cleared.
    pub fn claimed_by_cancel(&mut self) {
        self.armed = false;
    }

    /// Completes the IRP. It must be disarmed (or never armed). Callable at IRQL ≤
    /// DISPATCH_LEVEL; the driver calls it at PASSIVE_LEVEL with no lock held.
    #[track_caller]
    pub fn complete(self, status: NtStatus, information: usize) {
        debug_assert!(!self.armed, "completing an IRP whose cancel routine is set");
        let _ = self.irp.complete(status, information);
    }
}

/// The driver's stack location of an IRP.
pub struct IoStack<'a> {
    raw: &'a IO_STACK_LOCATION,
}

/// `Parameters.DeviceIoControl` of the current stack location.
#[derive(Clone, Copy, Debug)]
pub struct IoctlParameters {
    pub code: u32,
    pub input_length: u32,
    pub output_length: u32,
    /// METHOD_NEITHER input buffer (a user address for user-mode requests).
    pub type3_input: *mut c_void,
}

impl<'a> IoStack<'a> {
    /// `MajorFunction`.
    pub fn major(&self) -> u8 {
        self.raw.MajorFunction
    }

    /// `MinorFunction` (the TDI request code for IRP_MJ_INTERNAL_DEVICE_CONTROL).
    pub fn minor(&self) -> u8 {
        self.raw.MinorFunction
    }

    /// The file object the request is addressed to.
    pub fn file_object(&self) -> Option<FileObject<'a>> {
        // SAFETY: FileObject is null or a referenced file object that outlives the IRP.
        unsafe { self.raw.FileObject.as_ref() }.map(|raw| FileObject { raw })
    }

    /// `Parameters.Create.ShareAccess`.
    pub fn create_share_access(&self) -> u16 {
        // SAFETY: plain-data union read; meaningful for IRP_MJ_CREATE.
        unsafe { self.raw.Parameters.Create.ShareAccess }
    }

    /// `Parameters.Create.EaLength`.
    pub fn create_ea_length(&self) -> u32 {
        // SAFETY: plain-data union read; meaningful for IRP_MJ_CREATE.
        unsafe { self.raw.Parameters.Create.EaLength }
    }

    /// The raw bytes of the `Parameters` union, for the TDI request decoders.
    pub fn parameters(&self) -> [u8; core::mem::size_of::<IoStackParameters>()] {
        // SAFETY: the union is plain data of exactly this size; reading it as bytes is defined
        // for every variant.
        unsafe { core::mem::transmute_copy(&self.raw.Parameters) }
    }

    /// `Parameters.DeviceIoControl`.
    pub fn ioctl(&self) -> IoctlParameters {
        // SAFETY: plain-data union read; meaningful for IRP_MJ_(INTERNAL_)DEVICE_CONTROL.
        let p = unsafe { self.raw.Parameters.DeviceIoControl };
        IoctlParameters {
            code: p.IoControlCode,
            input_length: p.InputBufferLength,
            output_length: p.OutputBufferLength,
            type3_input: p.Type3InputBuffer,
        }
    }
}

/// A file object seen from a request addressed to it.
#[derive(Clone, Copy)]
pub struct FileObject<'a> {
    raw: &'a FILE_OBJECT,
}

impl<'a> FileObject<'a> {
    pub(crate) fn from_ref(raw: &'a FILE_OBJECT) -> Self {
        Self { raw }
    }

    fn fields(&self) -> (&AtomicPtr<c_void>, &AtomicPtr<c_void>) {
        let raw = self.raw as *const FILE_OBJECT as *mut FILE_OBJECT;
        // SAFETY: FsContext/FsContext2 are pointer-sized fields reserved for the owning driver;
        // requests on one file object can run concurrently, so they are accessed atomically.
        unsafe {
            (
                AtomicPtr::from_ptr(&raw mut (*raw).FsContext),
                AtomicPtr::from_ptr(&raw mut (*raw).FsContext2),
            )
        }
    }

    /// The driver's context values (`FsContext`, `FsContext2`) as integers.
    pub fn context(&self) -> (usize, usize) {
        let (a, b) = self.fields();
        (
            a.load(Ordering::Acquire) as usize,
            b.load(Ordering::Acquire) as usize,
        )
    }

    /// Stores the driver's context values.
    pub fn set_context(&self, context: usize, context2: usize) {
        let (a, b) = self.fields();
        b.store(context2 as *mut c_void, Ordering::Release);
        a.store(context as *mut c_void, Ordering::Release);
    }

    /// The file object itself, as an opaque identity.
    pub fn id(&self) -> usize {
        self.raw as *const FILE_OBJECT as usize
    }

    /// The device the file was opened on, as an opaque identity.
    pub fn device(&self) -> usize {
        self.raw.DeviceObject as usize
    }

    /// The driver object owning that device, as an opaque identity (0 if unknown).
    pub fn driver(&self) -> usize {
        // SAFETY: a file object's DeviceObject is a live device for the file's lifetime.
        unsafe { self.raw.DeviceObject.as_ref() }.map_or(0, |d| d.DriverObject as usize)
    }

    /// The file name after the device name (e.g. `\6` for `\Device\RawIp\6`), in UTF-16.
    pub fn file_name(&self) -> &'a [u16] {
        let name = &self.raw.FileName;
        if name.Buffer.is_null() {
            return &[];
        }
        // SAFETY: the I/O manager sets FileName to a counted string owned by the file object.
        unsafe { core::slice::from_raw_parts(name.Buffer, usize::from(name.Length) / 2) }
    }
}
