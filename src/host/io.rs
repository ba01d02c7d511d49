//! IRPs: allocation with their stack locations, `IoCallDriver`, and `IoCompleteRequest` with
//! completion routines.
//!
//! IRPs have the real layout: the `IRP` header followed by `StackCount` contiguous
//! `IO_STACK_LOCATION`s. A new IRP has `CurrentLocation = StackCount + 1`; the caller fills the
//! "next" location (the last one) and calls the driver, which makes it the current location.
//!
//! Completion walks the stack upwards as the I/O manager does: each location's
//! `SL_PENDING_RETURNED` becomes `Irp->PendingReturned`; a completion routine runs when its
//! `SL_INVOKE_ON_SUCCESS/ERROR/CANCEL` bit matches, with the device of the location above it
//! (null at the top); without a routine, a pending mark is propagated to the location above;
//! `STATUS_MORE_PROCESSING_REQUIRED` from a routine stops the walk and leaves the IRP to the
//! routine's owner, which frees it ([`KernelHandle::free_irp`]) or completes it again.
//! Otherwise the I/O manager's final stage runs: `IoStatus` is copied to `UserIosb`, the MDLs
//! the model built are freed, `UserEvent` is signalled and the IRP is freed.
//!
//! The model never frees an IRP while one of its own calls still uses it (a dispatch routine
//! that has not returned, a cancel in progress), so the verifier can inspect the IRP after the
//! driver returns. The verifier checks double completion, completion with a cancel routine set
//! or with `STATUS_PENDING`, the pending protocol of dispatch routines, and completion at
//! DISPATCH_LEVEL of IRPs whose completion routine needs PASSIVE_LEVEL.

use super::AddressMap;
use super::context::{self, EntryScope};
use super::irql::{self, DISPATCH_LEVEL};
use super::kernel::{KernelHandle, KernelInner};
use super::sync::Event;
use super::verifier::{self, Entry, RoutineFrame, Rule, Site, major_name};
use crate::nt::NtStatus;
use crate::nt::types::*;
use std::alloc::Layout;
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

/// The final status and information of an IRP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoStatus {
    pub status: NtStatus,
    pub information: usize,
}

/// When a completion routine runs (`SL_INVOKE_ON_*`), and whether it needs PASSIVE_LEVEL (a
/// model flag: completing such an IRP at DISPATCH_LEVEL is
/// [`Rule::PassiveCompletionAtDispatch`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompletionFlags {
    pub on_success: bool,
    pub on_error: bool,
    pub on_cancel: bool,
    pub requires_passive: bool,
}

impl CompletionFlags {
    /// On success, error and cancel, as `IoSetCompletionRoutine(…, TRUE, TRUE, TRUE)`.
    pub const ALWAYS: CompletionFlags = CompletionFlags {
        on_success: true,
        on_error: true,
        on_cancel: true,
        requires_passive: false,
    };

    /// [`CompletionFlags::ALWAYS`], needing PASSIVE_LEVEL (AFD's completion routines).
    pub const ALWAYS_PASSIVE: CompletionFlags = CompletionFlags {
        requires_passive: true,
        ..CompletionFlags::ALWAYS
    };
}

/// What to put in an IRP's next stack location.
#[derive(Clone, Copy)]
pub struct StackLocation {
    pub major: u8,
    pub minor: u8,
    pub flags: u8,
    pub file_object: *mut FILE_OBJECT,
    /// The raw `Parameters` union (`Create`, `DeviceIoControl` or `Others`).
    pub parameters: IoStackParameters,
}

impl StackLocation {
    /// A location with zeroed parameters.
    pub fn new(major: u8, minor: u8, file_object: *mut FILE_OBJECT) -> StackLocation {
        StackLocation {
            major,
            minor,
            flags: 0,
            file_object,
            parameters: IoStackParameters {
                Others: OtherParameters {
                    Argument1: std::ptr::null_mut(),
                    Argument2: std::ptr::null_mut(),
                    Argument3: std::ptr::null_mut(),
                    Argument4: std::ptr::null_mut(),
                },
            },
        }
    }
}

/// A dispatch routine (`PDRIVER_DISPATCH` without the `Option`).
type DispatchRoutine = unsafe extern "system" fn(*mut DEVICE_OBJECT, *mut IRP) -> NTSTATUS;

/// The model's bookkeeping of one live IRP.
struct IrpRecord {
    layout: Layout,
    stack_count: usize,
    /// Model calls currently using the IRP; it is freed only at zero.
    holds: usize,
    free_requested: bool,
    /// Being completed or completed (reset when a completion routine returns
    /// `STATUS_MORE_PROCESSING_REQUIRED`, which hands the IRP back to be completed again).
    completed: bool,
    /// How many times `IoCompleteRequest` started on the IRP.
    completions: u64,
    /// The `Control` byte of every location when the last completion began.
    controls: Vec<u8>,
    /// Per location: the completion routine there needs PASSIVE_LEVEL.
    passive: Vec<bool>,
    /// Sent to the driver under test and not completed yet: the dispatch that received it.
    in_driver: Option<Entry>,
    /// The lowest stack location dispatched so far: a dispatch routine that passed the IRP
    /// down leaves the pending protocol to the driver below.
    lowest_dispatched: usize,
    /// The thread the IRP is queued to (`IoQueueThreadIrp`, as `IoBuildDeviceIoControlRequest`
    /// does): cancelled when that thread ends, if the model spawned it.
    thread: Option<ThreadId>,
}

/// The live IRPs of a kernel, by address.
#[derive(Default)]
pub(crate) struct Irps {
    table: Mutex<AddressMap<IrpRecord>>,
}

impl Irps {
    fn lock(&self) -> std::sync::MutexGuard<'_, AddressMap<IrpRecord>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a hold on a live IRP; false if it is not live.
    pub(crate) fn hold(&self, irp: *mut IRP) -> bool {
        match self.lock().get_mut(&(irp as usize)) {
            Some(record) if !record.free_requested => {
                record.holds += 1;
                true
            }
            _ => false,
        }
    }

    /// Releases a hold, freeing the IRP if that was the last one and it is to be freed.
    pub(crate) fn release(&self, irp: *mut IRP) {
        let mut table = self.lock();
        let Some(record) = table.get_mut(&(irp as usize)) else {
            return;
        };
        record.holds -= 1;
        if record.holds == 0 && record.free_requested {
            let record = table.remove(&(irp as usize));
            drop(table);
            if let Some(record) = record {
                // SAFETY: allocated by `allocate` with this layout; no hold remains.
                unsafe { std::alloc::dealloc(irp.cast(), record.layout) };
            }
        }
    }

    /// Frees the IRP now, or when the last hold is released. False if it is not live.
    fn request_free(&self, irp: *mut IRP) -> bool {
        let mut table = self.lock();
        match table.get_mut(&(irp as usize)) {
            Some(record) if !record.free_requested => {
                record.free_requested = true;
                record.holds += 1;
                drop(table);
                self.release(irp);
                true
            }
            _ => false,
        }
    }

    /// The IRPs sent to the driver under test and never completed.
    pub(crate) fn in_driver(&self) -> Vec<(usize, Entry)> {
        self.lock()
            .iter()
            .filter_map(|(&a, r)| r.in_driver.map(|e| (a, e)))
            .collect()
    }

    /// How many times `IoCompleteRequest` started on the IRP (`u64::MAX` once it is freed).
    pub(crate) fn completions(&self, irp: *mut IRP) -> u64 {
        self.lock()
            .get(&(irp as usize))
            .map_or(u64::MAX, |r| r.completions)
    }

    pub(crate) fn is_allocated(&self, irp: *mut IRP) -> bool {
        self.lock().contains_key(&(irp as usize))
    }

    /// Takes a hold on each IRP queued to `thread` that the I/O manager has not finished with
    /// (the thread's `IrpList`), so that none is freed, and its address reused, before the
    /// caller releases it.
    pub(crate) fn hold_of_thread(&self, thread: ThreadId) -> Vec<*mut IRP> {
        self.lock()
            .iter_mut()
            .filter(|(_, r)| r.thread == Some(thread) && !r.free_requested)
            .map(|(&a, r)| {
                r.holds += 1;
                a as *mut IRP
            })
            .collect()
    }

    /// How many IRPs queued to `thread` the I/O manager has not finished with.
    pub(crate) fn count_of_thread(&self, thread: ThreadId) -> usize {
        self.lock()
            .values()
            .filter(|r| r.thread == Some(thread) && !r.free_requested)
            .count()
    }
}

/// `IoAllocateIrp(stack_size, FALSE)`: a zeroed IRP with `stack_size` locations.
pub(crate) fn allocate(kernel: &KernelInner, stack_size: i8) -> *mut IRP {
    let stack_count = usize::try_from(stack_size).expect("stack size ≥ 0");
    let size = size_of::<IRP>() + stack_count * size_of::<IO_STACK_LOCATION>();
    let layout = Layout::from_size_align(size, align_of::<IRP>()).expect("IRP layout");
    // SAFETY: non-zero size.
    let irp = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<IRP>();
    assert!(!irp.is_null(), "out of memory allocating an IRP");
    // SAFETY: a fresh, zeroed allocation of the IRP and its locations.
    unsafe {
        let i = &mut *irp;
        i.Type = IO_TYPE_IRP;
        i.Size = size as u16;
        i.StackCount = stack_size;
        i.CurrentLocation = stack_size + 1;
        i.Tail.Overlay.CurrentStackLocation = stack_location(irp, stack_count);
    }
    kernel.irps.lock().insert(
        irp as usize,
        IrpRecord {
            layout,
            stack_count,
            holds: 0,
            free_requested: false,
            completed: false,
            completions: 0,
            controls: Vec::new(),
            passive: vec![false; stack_count],
            in_driver: None,
            lowest_dispatched: stack_count,
            thread: None,
        },
    );
    irp
}

/// The stack location `index` (0-based; `StackCount` is one past the end).
///
/// # Safety
/// `irp` is a live IRP and `index ≤ StackCount`.
unsafe fn stack_location(irp: *mut IRP, index: usize) -> *mut IO_STACK_LOCATION {
    // SAFETY: the locations follow the header contiguously (caller contract on `index`).
    unsafe { irp.add(1).cast::<IO_STACK_LOCATION>().add(index) }
}

/// The next stack location (`IoGetNextIrpStackLocation`). Panics if there is none.
///
/// # Safety
/// `irp` is a live IRP.
unsafe fn next_location(irp: *mut IRP) -> (*mut IO_STACK_LOCATION, usize) {
    // SAFETY: forwarded caller contract.
    let current = unsafe { (*irp).CurrentLocation };
    assert!(current >= 2, "IRP {irp:p} has no next stack location");
    let index = (current - 2) as usize;
    // SAFETY: 0 ≤ index < StackCount.
    (unsafe { stack_location(irp, index) }, index)
}

/// The model's dispatch routine for major functions a driver does not handle (the I/O
/// manager's default): completes the IRP with `STATUS_INVALID_DEVICE_REQUEST`.
///
/// # Safety
/// Called by [`call_driver`] with a live IRP.
pub(crate) unsafe extern "system" fn invalid_device_request(
    _device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
) -> NTSTATUS {
    let status = NtStatus::INVALID_DEVICE_REQUEST.raw();
    // SAFETY: a live IRP owned by this "driver" until completed.
    unsafe {
        (*irp).IoStatus.Status.Status = status;
        (*irp).IoStatus.Information = 0;
        complete(&context::current(), irp, Site::entry(Entry::Client));
    }
    status
}

/// `IoCallDriver`: makes the next location current, sets its device, calls the device's
/// dispatch routine, and checks what the driver under test did with the IRP.
///
/// # Safety
/// `device` is a live device object of this kernel; `irp` a live IRP with a filled next
/// location.
pub(crate) unsafe fn call_driver(
    kernel: &KernelInner,
    device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
) -> NtStatus {
    assert!(
        kernel.irps.hold(irp),
        "IoCallDriver: {irp:p} is not a live IRP"
    );
    // SAFETY: a live, held IRP; `next_location` panics if there is no next location.
    let (stack, index) = unsafe { next_location(irp) };
    // SAFETY: as above; the device is live (caller contract).
    let (major, minor, driver) = unsafe {
        let i = &mut *irp;
        i.CurrentLocation -= 1;
        i.Tail.Overlay.CurrentStackLocation = stack;
        (*stack).DeviceObject = device;
        (
            (*stack).MajorFunction,
            (*stack).MinorFunction,
            (*device).DriverObject,
        )
    };
    let tracked = !kernel.drivers.is_foreign(driver);
    // SAFETY: a live driver object (it owns a live device).
    let dispatch = unsafe { (*driver).MajorFunction }
        .get(major as usize)
        .copied()
        .flatten()
        .unwrap_or(invalid_device_request);
    let handled = !std::ptr::fn_addr_eq(dispatch, invalid_device_request as DispatchRoutine);
    let entry = Entry::Dispatch { major, minor };
    let mut completions = 0;
    if let Some(record) = kernel.irps.lock().get_mut(&(irp as usize)) {
        record.lowest_dispatched = record.lowest_dispatched.min(index);
        completions = record.completions;
        if tracked && handled {
            record.in_driver = Some(entry);
        }
    }
    let tracker = if tracked && handled {
        Arc::as_ptr(&kernel.pool)
    } else {
        std::ptr::null()
    };
    let frame = RoutineFrame::begin();
    let status = {
        let _scope = EntryScope::enter(tracker, entry);
        // SAFETY: the dispatch routine of the device's driver, called as the I/O manager does.
        NtStatus(unsafe { dispatch(device, irp) })
    };
    frame.end(entry, dispatch as usize);
    if tracked && handled {
        check_dispatch_result(kernel, irp, index, completions, status, entry);
    }
    kernel.irps.release(irp);
    status
}

/// The pending protocol: `STATUS_PENDING` if and only if marked pending; otherwise completed
/// (`IoCompleteRequest` was called since the dispatch began, when the IRP had seen
/// `completions` completions). A dispatch routine that passed the IRP to a lower driver returns
/// that driver's status and relies on completion to propagate the pending mark, so it is not
/// checked.
fn check_dispatch_result(
    kernel: &KernelInner,
    irp: *mut IRP,
    index: usize,
    completions: u64,
    status: NtStatus,
    entry: Entry,
) {
    let (completed, control) = {
        let table = kernel.irps.lock();
        let Some(record) = table.get(&(irp as usize)) else {
            return;
        };
        if record.lowest_dispatched < index {
            return;
        }
        let completed = record.completions > completions;
        let control = if completed {
            record.controls.get(index).copied().unwrap_or(0)
        } else {
            // SAFETY: the IRP is held (not freed) and not completed, so its location is intact.
            unsafe { (*stack_location(irp, index)).Control }
        };
        (completed, control)
    };
    let marked = control & SL_PENDING_RETURNED != 0;
    let site = Site::entry(entry);
    let pending = status == NtStatus::PENDING;
    if pending && !marked {
        verifier::report(
            Rule::PendingNotMarked,
            site,
            format!("IRP {irp:p}: STATUS_PENDING returned without IoMarkIrpPending"),
        );
    }
    if !pending && marked {
        verifier::report(
            Rule::PendingMarkedNotReturned,
            site,
            format!("IRP {irp:p}: marked pending, but the dispatch routine returned {status}"),
        );
    }
    if !pending && !completed {
        verifier::report(
            Rule::NotCompletedNotPending,
            site,
            format!("IRP {irp:p}: {status} returned without completing the IRP"),
        );
    }
}

/// `IoCompleteRequest`.
///
/// # Safety
/// `irp` is an IRP of this kernel that the caller owns (or a stale pointer, which the verifier
/// reports without touching it).
pub(crate) unsafe fn complete(kernel: &KernelInner, irp: *mut IRP, site: Site) {
    let started = {
        let mut table = kernel.irps.lock();
        match table.get_mut(&(irp as usize)) {
            Some(record) if !record.completed && !record.free_requested => {
                record.completed = true;
                record.completions += 1;
                record.holds += 1;
                record.in_driver = None;
                record.controls = (0..record.stack_count)
                    // SAFETY: a live IRP with `stack_count` locations.
                    .map(|i| unsafe { (*stack_location(irp, i)).Control })
                    .collect();
                Ok((record.stack_count, record.passive.clone()))
            }
            Some(_) => Err("that was already completed"),
            None => Err("that is not live (completed twice and freed, or never allocated)"),
        }
    };
    let (stack_count, passive) = match started {
        Ok(started) => started,
        Err(why) => {
            verifier::report(
                Rule::IrpCompletedTwice,
                site,
                format!("IoCompleteRequest on IRP {irp:p}, {why}"),
            );
            return;
        }
    };
    // SAFETY: a live IRP, held until the end of this function.
    unsafe { complete_held(kernel, irp, site, stack_count, &passive) };
}

/// # Safety
/// `irp` is live and held by the caller, which this function releases.
unsafe fn complete_held(
    kernel: &KernelInner,
    irp: *mut IRP,
    site: Site,
    stack_count: usize,
    passive: &[bool],
) {
    // SAFETY: CancelRoutine is an `Option<fn>` (pointer-sized, null for None), exchanged
    // atomically by IoSetCancelRoutine and IoCancelIrp.
    let cancel_routine = unsafe {
        AtomicPtr::<c_void>::from_ptr((&raw mut (*irp).CancelRoutine).cast())
            .load(Ordering::Acquire)
    };
    // SAFETY: the IRP is live and held; the current location is read only if it exists.
    let (status, major) = unsafe {
        let location = (*irp).CurrentLocation as usize;
        (
            NtStatus((*irp).IoStatus.Status.Status),
            (1..=stack_count)
                .contains(&location)
                .then(|| (*stack_location(irp, location - 1)).MajorFunction),
        )
    };
    if !cancel_routine.is_null() {
        verifier::report(
            Rule::CompleteWithCancelRoutine,
            site,
            format!(
                "IoCompleteRequest on IRP {irp:p} ({}) with its cancel routine {cancel_routine:p} \
                 still set",
                major.map_or_else(|| "no current location".to_owned(), major_name)
            ),
        );
    }
    if status == NtStatus::PENDING {
        verifier::report(
            Rule::CompleteWithPending,
            site,
            format!("IoCompleteRequest on IRP {irp:p} with IoStatus.Status = STATUS_PENDING"),
        );
    }
    loop {
        // SAFETY: the IRP is live and held; locations are 1-based, ≤ stack_count here.
        let location = unsafe { (*irp).CurrentLocation } as usize;
        if location == 0 || location > stack_count {
            break;
        }
        // SAFETY: as above. The status is read again at each location, since completion
        // routines may change it.
        let (routine, context, invoke, pending) = unsafe {
            let success = NtStatus((*irp).IoStatus.Status.Status).is_success();
            let cancelled = AtomicU8::from_ptr(&raw mut (*irp).Cancel).load(Ordering::Acquire) != 0;
            let stack = stack_location(irp, location - 1);
            let control = (*stack).Control;
            let pending = control & SL_PENDING_RETURNED != 0;
            (*irp).PendingReturned = u8::from(pending);
            let routine = (*stack).CompletionRoutine;
            let context = (*stack).Context;
            (*stack).Control = 0;
            (*stack).CompletionRoutine = None;
            (*stack).Context = std::ptr::null_mut();
            (*irp).CurrentLocation += 1;
            (*irp).Tail.Overlay.CurrentStackLocation = stack.add(1);
            let invoke = (success && control & SL_INVOKE_ON_SUCCESS != 0)
                || (!success && control & SL_INVOKE_ON_ERROR != 0)
                || (cancelled && control & SL_INVOKE_ON_CANCEL != 0);
            (routine, context, invoke, pending)
        };
        let above = location < stack_count;
        match routine.filter(|_| invoke) {
            Some(routine) => {
                let device = if above {
                    // SAFETY: the location above is within the IRP.
                    unsafe { (*stack_location(irp, location)).DeviceObject }
                } else {
                    std::ptr::null_mut()
                };
                let irql = irql::current_irql();
                if passive[location - 1] && irql >= DISPATCH_LEVEL {
                    verifier::report(
                        Rule::PassiveCompletionAtDispatch,
                        site,
                        format!(
                            "IRP {irp:p} completed at IRQL {irql}, but its completion routine \
                             {:#x} needs PASSIVE_LEVEL",
                            routine as usize
                        ),
                    );
                }
                let result = {
                    let _scope = EntryScope::enter(std::ptr::null(), Entry::Completion);
                    // SAFETY: the routine and context its owner installed, called as the I/O
                    // manager does.
                    NtStatus(unsafe { routine(device, irp, context) })
                };
                if result == NtStatus::MORE_PROCESSING_REQUIRED {
                    // The IRP is back with the routine's owner, which may free it or complete
                    // it again.
                    if let Some(record) = kernel.irps.lock().get_mut(&(irp as usize)) {
                        record.completed = false;
                    }
                    kernel.irps.release(irp);
                    return;
                }
            }
            None if pending && above => {
                // SAFETY: the location above is within the IRP.
                unsafe { (*stack_location(irp, location)).Control |= SL_PENDING_RETURNED };
            }
            None => {}
        }
    }
    // SAFETY: the IRP is live and held; UserIosb, UserEvent and MdlAddress are the owner's.
    unsafe {
        let i = &mut *irp;
        if !i.UserIosb.is_null() {
            (*i.UserIosb).Status.Status = i.IoStatus.Status.Status;
            (*i.UserIosb).Information = i.IoStatus.Information;
        }
        super::mdl::free_chain(kernel, i.MdlAddress);
        i.MdlAddress = std::ptr::null_mut();
        if !i.UserEvent.is_null() {
            super::sync::signal_kevent(kernel, i.UserEvent);
        }
    }
    kernel.irps.request_free(irp);
    kernel.irps.release(irp);
}

impl KernelHandle {
    /// `IoAllocateIrp`: a new IRP with `stack_size` stack locations, owned by the caller until
    /// it is sent. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn allocate_irp(&self, stack_size: i8) -> *mut IRP {
        let _api = self.api();
        allocate(&self.0, stack_size)
    }

    /// `IoFreeIrp`: frees an IRP the caller owns (one never sent, or one whose completion
    /// routine returned `STATUS_MORE_PROCESSING_REQUIRED`). Panics if it is not a live IRP.
    /// Any IRQL ≤ DISPATCH_LEVEL.
    pub fn free_irp(&self, irp: *mut IRP) {
        let _api = self.api();
        assert!(
            self.0.irps.request_free(irp),
            "IoFreeIrp: {irp:p} is not a live IRP"
        );
    }

    /// `IoQueueThreadIrp`: makes a live IRP a threaded one, queued to the calling thread (what
    /// `IoBuildDeviceIoControlRequest`, and so `TdiBuildInternalDeviceControlIrp`, does). When
    /// a thread made by [`KernelHandle::spawn`] ends, the I/O manager cancels the IRPs still
    /// queued to it (`IoCancelThreadIo`). Panics if the IRP is not live. Any IRQL.
    pub fn queue_thread_irp(&self, irp: *mut IRP) {
        let _api = self.api();
        let mut table = self.0.irps.lock();
        let record = table
            .get_mut(&(irp as usize))
            .expect("IoQueueThreadIrp: not a live IRP");
        record.thread = Some(std::thread::current().id());
    }

    /// Whether `irp` is still allocated: not freed by [`KernelHandle::free_irp`] or by the I/O
    /// manager's completion (which waits until the dispatch routine that received the IRP has
    /// returned). Any IRQL.
    pub fn irp_is_live(&self, irp: *mut IRP) -> bool {
        self.0.irps.is_allocated(irp)
    }

    /// Runs `f` on a live IRP's header (to set `MdlAddress`, `AssociatedIrp.SystemBuffer`,
    /// `UserBuffer`, `RequestorMode`, `UserIosb`, `UserEvent`, `Flags`…). Panics if the IRP is
    /// not live. Any IRQL.
    ///
    /// # Safety
    /// The caller owns the IRP (not sent yet, or back after
    /// `STATUS_MORE_PROCESSING_REQUIRED`): no driver accesses it during the call.
    pub unsafe fn with_irp<R>(&self, irp: *mut IRP, f: impl FnOnce(&mut IRP) -> R) -> R {
        let _api = self.api();
        assert!(self.0.irps.hold(irp), "{irp:p} is not a live IRP");
        // SAFETY: live and held; the caller owns it, so nothing else accesses it.
        let result = f(unsafe { &mut *irp });
        self.0.irps.release(irp);
        result
    }

    /// Runs `f` on the next stack location of a live IRP; panics if the IRP is not live or has
    /// no next location. The model only uses it on IRPs whose owner is the caller.
    fn with_next_location<R>(
        &self,
        irp: *mut IRP,
        f: impl FnOnce(&mut IO_STACK_LOCATION, usize) -> R,
    ) -> R {
        let _api = self.api();
        assert!(self.0.irps.hold(irp), "{irp:p} is not a live IRP");
        // SAFETY: live and held; `next_location` panics if there is no next location. The next
        // location belongs to the IRP's owner, the caller: drivers below only use theirs.
        let result = unsafe {
            let (stack, index) = next_location(irp);
            f(&mut *stack, index)
        };
        self.0.irps.release(irp);
        result
    }

    /// Fills the IRP's next stack location (`IoGetNextIrpStackLocation`), leaving its
    /// completion routine alone. Panics if the IRP is not live or has no next location. Any
    /// IRQL.
    pub fn set_next_stack(&self, irp: *mut IRP, location: StackLocation) {
        self.with_next_location(irp, |stack, _| {
            stack.MajorFunction = location.major;
            stack.MinorFunction = location.minor;
            stack.Flags = location.flags;
            stack.FileObject = location.file_object;
            stack.Parameters = location.parameters;
        });
    }

    /// `IoSetCompletionRoutine` on the next stack location, with the model's
    /// `requires_passive` flag. Panics if the IRP is not live or has no next location. Any
    /// IRQL.
    pub fn set_completion_routine(
        &self,
        irp: *mut IRP,
        routine: PIO_COMPLETION_ROUTINE,
        context: *mut c_void,
        flags: CompletionFlags,
    ) {
        let index = self.with_next_location(irp, |stack, index| {
            let mut control = 0;
            if flags.on_success {
                control |= SL_INVOKE_ON_SUCCESS;
            }
            if flags.on_error {
                control |= SL_INVOKE_ON_ERROR;
            }
            if flags.on_cancel {
                control |= SL_INVOKE_ON_CANCEL;
            }
            stack.CompletionRoutine = routine;
            stack.Context = context;
            stack.Control = control;
            index
        });
        if let Some(record) = self.0.irps.lock().get_mut(&(irp as usize)) {
            record.passive[index] = flags.requires_passive;
        }
    }

    /// `IoCallDriver(device, irp)`. Returns what the dispatch routine returned. The IRP must
    /// be live with its next location filled; `device` must be a live device of this kernel.
    /// The IRQL of the caller (PASSIVE_LEVEL for the driver's dispatch routines).
    #[expect(
        clippy::not_unsafe_ptr_arg_deref,
        reason = "the device and the IRP are checked against the kernel's live objects"
    )]
    pub fn call_driver(&self, device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NtStatus {
        let _api = self.api();
        assert!(
            self.0.objects.is_device(device),
            "IoCallDriver: {device:p} is not a live device"
        );
        // SAFETY: a live device (checked); the IRP is checked by call_driver.
        unsafe { call_driver(&self.0, device, irp) }
    }

    /// Sends the IRP and waits for it like a synchronous I/O request: sets `UserEvent` and
    /// `UserIosb`, calls the driver, waits if it returned `STATUS_PENDING`, and returns the
    /// final status. The IRP must not carry a completion routine that returns
    /// `STATUS_MORE_PROCESSING_REQUIRED`. PASSIVE_LEVEL.
    #[expect(
        clippy::not_unsafe_ptr_arg_deref,
        reason = "the device and the IRP are checked against the kernel's live objects"
    )]
    pub fn call_driver_sync(&self, device: *mut DEVICE_OBJECT, irp: *mut IRP) -> IoStatus {
        let _api = self.api();
        let event = Event::new(self, super::sync::EventType::Notification, false);
        let mut iosb = Box::new(IO_STATUS_BLOCK {
            Status: IoStatusUnion { Status: 0 },
            Information: 0,
        });
        let iosb_ptr: *mut IO_STATUS_BLOCK = &mut *iosb;
        // SAFETY: the IRP is live (checked by with_irp) and the caller owns it until it is sent
        // below.
        unsafe {
            self.with_irp(irp, |i| {
                i.UserEvent = event.as_ptr();
                i.UserIosb = iosb_ptr;
            })
        };
        let status = self.call_driver(device, irp);
        if status == NtStatus::PENDING {
            event.wait(None);
        }
        if !event.is_signaled() {
            return IoStatus {
                status,
                information: 0,
            };
        }
        IoStatus {
            // SAFETY: written by the completion's final stage before it signalled the event.
            status: NtStatus(unsafe { iosb.Status.Status }),
            information: iosb.Information,
        }
    }
}
