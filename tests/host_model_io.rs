//! Host model self-tests: IRPs, completion, cancellation, MDLs, devices, file objects and
//! handles, I/O control.

mod host_model_support;

use host_model_support::*;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use tcpip::host::{
    CompletionFlags, DISPATCH_LEVEL, Event, EventType, Handle, IoStatus, IoctlOptions,
    KernelHandle, MdlKind, PASSIVE_LEVEL, STATUS_OBJECT_NAME_COLLISION, StackLocation,
    current_irql, lower_irql, raise_irql,
};
use tcpip::nt::NtStatus;
use tcpip::nt::sys;
use tcpip::nt::types::*;

/// Per-test state shared by the fake driver's handlers and the test.
#[derive(Default)]
struct Ctx {
    log: Log,
    /// The device an upper handler forwards to.
    lower: AtomicPtr<DEVICE_OBJECT>,
    /// The last IRP a handler left pending.
    pending: AtomicPtr<IRP>,
    /// Set by handlers whose checks failed (they cannot panic across `extern "system"`).
    wrong: AtomicBool,
    cancel_irql: AtomicU8,
    irql_in_cancel: AtomicU8,
}

impl Ctx {
    fn check(&self, ok: bool) {
        if !ok {
            self.wrong.store(true, Ordering::Release);
        }
    }

    fn ptr(&self) -> *mut c_void {
        std::ptr::from_ref(self).cast_mut().cast()
    }
}

fn ctx<'a>(device: *mut DEVICE_OBJECT) -> &'a Ctx {
    // SAFETY: every test installs a Ctx that outlives its driver.
    unsafe { context::<Ctx>(device) }
}

// Event codes.
const LOWER_DISPATCH: u32 = 1;
const UPPER_ROUTINE: u32 = 2;
const TOP_ROUTINE: u32 = 3;
const CANCEL_ROUTINE: u32 = 4;
const CREATE: u32 = 10;
const CLEANUP: u32 = 11;
const CLOSE: u32 = 12;
const CLOSE_ON_WORKER: u32 = 13;

unsafe extern "system" fn top_routine(
    device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: the context is the test's Ctx.
    let ctx = unsafe { &*context.cast::<Ctx>() };
    ctx.check(device.is_null());
    ctx.log.push(TOP_ROUTINE);
    // SAFETY: the IRP is live during its completion.
    ctx.log
        .push(100 + u32::from(unsafe { (*irp).PendingReturned }));
    0
}

unsafe extern "system" fn top_routine_keep(
    _: *mut DEVICE_OBJECT,
    _: *mut IRP,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: the context is the test's Ctx.
    unsafe { &*context.cast::<Ctx>() }.log.push(TOP_ROUTINE);
    NtStatus::MORE_PROCESSING_REQUIRED.raw()
}

unsafe extern "system" fn upper_routine(
    device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: the context is the test's Ctx; the IRP is live during its completion.
    unsafe {
        let ctx = &*context.cast::<Ctx>();
        // The device above this routine's location: the upper device, not the lower one.
        ctx.check(!device.is_null() && device != ctx.lower.load(Ordering::Acquire));
        ctx.log.push(UPPER_ROUTINE);
        if (*irp).PendingReturned != 0 {
            mark_pending(irp);
        }
    }
    0
}

/// `IoCopyCurrentIrpStackLocationToNext`.
///
/// # Safety
/// `irp` is live in a driver and has a next location.
unsafe fn copy_to_next(irp: *mut IRP) {
    // SAFETY: forwarded caller contract.
    unsafe {
        let current = (*irp).Tail.Overlay.CurrentStackLocation;
        let next = current.sub(1);
        (*next).MajorFunction = (*current).MajorFunction;
        (*next).MinorFunction = (*current).MinorFunction;
        (*next).Flags = (*current).Flags;
        (*next).Parameters = (*current).Parameters;
        (*next).FileObject = (*current).FileObject;
        (*next).Control = 0;
        (*next).CompletionRoutine = None;
        (*next).Context = std::ptr::null_mut();
    }
}

/// Upper device: forwards to the lower device with a completion routine.
unsafe fn forward_with_routine(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: a live IRP with a next location.
    unsafe { copy_to_next(irp) };
    let kernel = KernelHandle::current();
    kernel.set_completion_routine(irp, Some(upper_routine), ctx.ptr(), CompletionFlags::ALWAYS);
    kernel
        .call_driver(ctx.lower.load(Ordering::Acquire), irp)
        .raw()
}

/// Upper device: forwards to the lower device without a completion routine.
unsafe fn forward_plain(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: a live IRP with a next location.
    unsafe { copy_to_next(irp) };
    KernelHandle::current()
        .call_driver(ctx.lower.load(Ordering::Acquire), irp)
        .raw()
}

/// Lower device: completes at once with SUCCESS.
unsafe fn complete_now(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    ctx.log.push(LOWER_DISPATCH);
    // SAFETY: a live IRP with its current location.
    let stack = unsafe { current_stack(irp) };
    ctx.check(stack.DeviceObject == device && current_irql() == PASSIVE_LEVEL);
    // SAFETY: the IRP is ours to complete.
    unsafe { complete(irp, NtStatus::SUCCESS, 7) }
}

/// Lower device: completes at once with an error.
unsafe fn fail_now(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: the IRP is ours to complete.
    unsafe { complete(irp, NtStatus::INVALID_PARAMETER, 0) }
}

/// Lower device: marks the IRP pending and leaves it for the test.
unsafe fn pend(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    ctx.log.push(LOWER_DISPATCH);
    // SAFETY: a live IRP in this driver.
    unsafe { mark_pending(irp) };
    ctx.pending.store(irp, Ordering::Release);
    NtStatus::PENDING.raw()
}

unsafe extern "system" fn cancel_routine(device: *mut DEVICE_OBJECT, irp: *mut IRP) {
    let ctx = ctx(device);
    ctx.log.push(CANCEL_ROUTINE);
    ctx.irql_in_cancel.store(current_irql(), Ordering::Release);
    // SAFETY: called with the cancel spin lock held; the IRP is ours to complete.
    unsafe {
        ctx.check(is_cancelled(irp));
        ctx.cancel_irql.store((*irp).CancelIrql, Ordering::Release);
        sys::IoReleaseCancelSpinLock((*irp).CancelIrql);
        complete(irp, NtStatus::CANCELLED, 0);
    }
}

/// Lower device: pends the IRP with a cancel routine.
unsafe fn pend_cancellable(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: a live IRP in this driver.
    unsafe {
        mark_pending(irp);
        set_cancel_routine(irp, Some(cancel_routine));
    }
    ctx.pending.store(irp, Ordering::Release);
    NtStatus::PENDING.raw()
}

fn fake(kernel: &KernelHandle, context: &Ctx) -> Fake {
    let fake = Fake::load(kernel);
    context.lower.store(fake.device2, Ordering::Release);
    fake.set(fake.device, complete_now, context.ptr());
    fake.set(fake.device2, complete_now, context.ptr());
    fake
}

#[test]
fn irps_have_their_stack_locations_after_the_header() {
    let kernel = kernel(1);
    let irp = kernel.allocate_irp(3);
    // SAFETY: a live IRP owned by the test.
    unsafe {
        assert_eq!((*irp).Type, IO_TYPE_IRP);
        assert_eq!((*irp).StackCount, 3);
        assert_eq!((*irp).CurrentLocation, 4);
        let first = irp.add(1).cast::<IO_STACK_LOCATION>();
        assert_eq!((*irp).Tail.Overlay.CurrentStackLocation, first.add(3));
        assert_eq!(
            (*irp).Size as usize,
            size_of::<IRP>() + 3 * size_of::<IO_STACK_LOCATION>()
        );
    }
    kernel.free_irp(irp);
    assert!(!kernel.irp_is_live(irp));
}

#[test]
fn call_driver_makes_the_next_location_current() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    let irp = request(&kernel, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_SEND);
    let result = kernel.call_driver_sync(fake.device2, irp);
    assert_eq!(
        result,
        IoStatus {
            status: NtStatus::SUCCESS,
            information: 7
        }
    );
    assert_eq!(context.log.entries(), vec![LOWER_DISPATCH]);
    assert!(!context.wrong.load(Ordering::Acquire));
    assert!(
        !kernel.irp_is_live(irp),
        "freed by the I/O manager's completion"
    );
    fake.driver.unload();
}

#[test]
fn completion_routines_run_bottom_up_with_the_device_above_them() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    fake.set(fake.device, forward_with_routine, context.ptr());
    let irp = request(&kernel, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_SEND);
    kernel.free_irp(irp);
    let irp = kernel.allocate_irp(2);
    kernel.set_next_stack(
        irp,
        StackLocation::new(
            IRP_MJ_INTERNAL_DEVICE_CONTROL,
            TDI_SEND,
            std::ptr::null_mut(),
        ),
    );
    kernel.set_completion_routine(
        irp,
        Some(top_routine),
        context.ptr(),
        CompletionFlags::ALWAYS,
    );
    let result = kernel.call_driver_sync(fake.device, irp);
    assert_eq!(result.status, NtStatus::SUCCESS);
    assert_eq!(
        context.log.entries(),
        vec![LOWER_DISPATCH, UPPER_ROUTINE, TOP_ROUTINE, 100]
    );
    assert!(!context.wrong.load(Ordering::Acquire));
    fake.driver.unload();
}

#[test]
fn a_pending_mark_propagates_up_through_locations_without_a_routine() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    fake.set(fake.device, forward_plain, context.ptr());
    fake.set(fake.device2, pend, context.ptr());
    let irp = kernel.allocate_irp(2);
    kernel.set_next_stack(
        irp,
        StackLocation::new(
            IRP_MJ_INTERNAL_DEVICE_CONTROL,
            TDI_RECEIVE,
            std::ptr::null_mut(),
        ),
    );
    kernel.set_completion_routine(
        irp,
        Some(top_routine),
        context.ptr(),
        CompletionFlags::ALWAYS,
    );
    assert_eq!(kernel.call_driver(fake.device, irp), NtStatus::PENDING);
    let pending = context.pending.load(Ordering::Acquire);
    assert_eq!(pending, irp);
    let pending = pending as usize;
    // The lower driver completes it later, from another thread at DISPATCH_LEVEL.
    let handle = kernel.clone();
    kernel
        .spawn("completer", move || {
            let old = raise_irql(DISPATCH_LEVEL);
            // SAFETY: the pending IRP is owned by the lower driver, whose role this plays.
            unsafe { complete(pending as *mut IRP, NtStatus::SUCCESS, 0) };
            lower_irql(old);
            drop(handle);
        })
        .join()
        .unwrap();
    assert_eq!(
        context.log.entries(),
        vec![LOWER_DISPATCH, TOP_ROUTINE, 101],
        "the top routine sees PendingReturned"
    );
    fake.driver.unload();
}

#[test]
fn routines_run_only_for_the_outcomes_they_asked_for() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    fake.set(fake.device2, fail_now, context.ptr());
    let only_success = CompletionFlags {
        on_success: true,
        ..CompletionFlags::default()
    };
    let only_error = CompletionFlags {
        on_error: true,
        ..CompletionFlags::default()
    };
    for (flags, expected) in [(only_success, vec![]), (only_error, vec![TOP_ROUTINE, 100])] {
        let context = Ctx::default();
        fake.set(fake.device2, fail_now, context.ptr());
        let irp = request(&kernel, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_SEND);
        kernel.set_completion_routine(irp, Some(top_routine), context.ptr(), flags);
        let result = kernel.call_driver_sync(fake.device2, irp);
        assert_eq!(result.status, NtStatus::INVALID_PARAMETER);
        assert_eq!(context.log.entries(), expected);
    }
    // SL_INVOKE_ON_CANCEL: runs for a cancelled IRP.
    let context = Ctx::default();
    fake.set(fake.device2, pend_cancellable, context.ptr());
    let irp = request(&kernel, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_SEND);
    let only_cancel = CompletionFlags {
        on_cancel: true,
        ..CompletionFlags::default()
    };
    kernel.set_completion_routine(irp, Some(top_routine), context.ptr(), only_cancel);
    assert_eq!(kernel.call_driver(fake.device2, irp), NtStatus::PENDING);
    assert!(kernel.cancel_irp(irp));
    assert_eq!(
        context.log.entries(),
        vec![CANCEL_ROUTINE, TOP_ROUTINE, 101]
    );
    fake.driver.unload();
}

#[test]
fn more_processing_required_leaves_the_irp_to_its_owner() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    let event = Event::new(&kernel, EventType::Notification, false);
    let irp = request(&kernel, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_SEND);
    kernel.set_completion_routine(
        irp,
        Some(top_routine_keep),
        context.ptr(),
        CompletionFlags::ALWAYS,
    );
    // SAFETY: the test owns the unsent IRP.
    unsafe { kernel.with_irp(irp, |i| i.UserEvent = event.as_ptr()) };
    assert_eq!(kernel.call_driver(fake.device2, irp), NtStatus::SUCCESS);
    assert!(kernel.irp_is_live(irp));
    assert!(
        !event.is_signaled(),
        "the I/O manager's final stage did not run"
    );
    // SAFETY: back with its owner after STATUS_MORE_PROCESSING_REQUIRED.
    let info = unsafe { kernel.with_irp(irp, |i| i.IoStatus.Information) };
    assert_eq!(info, 7);
    kernel.free_irp(irp);
    assert!(!kernel.irp_is_live(irp));
    fake.driver.unload();
}

/// Completes the IRP, then checks it is still readable (the model frees it only after the
/// dispatch routine returns).
unsafe fn complete_then_inspect(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: ours to complete.
    unsafe { complete(irp, NtStatus::SUCCESS, 0) };
    ctx.check(KernelHandle::current().irp_is_live(irp));
    // SAFETY: the model keeps the IRP until this routine returns.
    ctx.check(unsafe { (*irp).Type } == IO_TYPE_IRP);
    0
}

#[test]
fn an_irp_is_freed_only_after_its_dispatch_routine_returns() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    fake.set(fake.device2, complete_then_inspect, context.ptr());
    let irp = request(&kernel, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_SEND);
    assert_eq!(kernel.call_driver(fake.device2, irp), NtStatus::SUCCESS);
    assert!(!kernel.irp_is_live(irp));
    assert!(!context.wrong.load(Ordering::Acquire));
    fake.driver.unload();
}

#[test]
fn cancel_irp_calls_the_cancel_routine_with_the_cancel_lock_held() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    fake.set(fake.device2, pend_cancellable, context.ptr());
    let irp = request(&kernel, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_RECEIVE);
    kernel.set_completion_routine(
        irp,
        Some(top_routine),
        context.ptr(),
        CompletionFlags::ALWAYS,
    );
    assert_eq!(kernel.call_driver(fake.device2, irp), NtStatus::PENDING);
    let old = raise_irql(DISPATCH_LEVEL);
    assert!(kernel.cancel_irp(irp));
    lower_irql(old);
    assert_eq!(
        context.log.entries(),
        vec![CANCEL_ROUTINE, TOP_ROUTINE, 101]
    );
    assert_eq!(
        context.irql_in_cancel.load(Ordering::Acquire),
        DISPATCH_LEVEL
    );
    assert_eq!(
        context.cancel_irql.load(Ordering::Acquire),
        DISPATCH_LEVEL,
        "the caller's IRQL"
    );
    assert!(!context.wrong.load(Ordering::Acquire));
    assert!(!kernel.cancel_irp(irp), "a freed IRP is not touched");
    fake.driver.unload();
}

#[test]
fn cancel_irp_without_a_cancel_routine_only_sets_cancel() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    fake.set(fake.device2, pend, context.ptr());
    let irp = request(&kernel, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_RECEIVE);
    assert_eq!(kernel.call_driver(fake.device2, irp), NtStatus::PENDING);
    assert!(!kernel.cancel_irp(irp));
    // SAFETY: the IRP is pending in the driver, live.
    assert!(unsafe { is_cancelled(irp) });
    // SAFETY: the driver's IRP; the test plays the driver completing it.
    unsafe { complete(irp, NtStatus::CANCELLED, 0) };
    fake.driver.unload();
}

/// Completes the pending IRP unless its cancel routine claimed it first (the NT disarm
/// protocol).
unsafe extern "system" fn racing_completion_dpc(
    _: *mut KDPC,
    context: *mut c_void,
    _: *mut c_void,
    _: *mut c_void,
) {
    // SAFETY: the context is the test's Ctx.
    let ctx = unsafe { &*context.cast::<Ctx>() };
    let irp = ctx.pending.load(Ordering::Acquire);
    // SAFETY: the IRP is live until one of the two racers completes it; only the one that
    // takes the cancel routine back (or the cancel routine) completes it.
    unsafe {
        if set_cancel_routine(irp, None).is_some() {
            complete(irp, NtStatus::SUCCESS, 0);
        }
    }
}

unsafe extern "system" fn counting_routine(
    _: *mut DEVICE_OBJECT,
    _: *mut IRP,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: the context is an AtomicUsize owned by the test.
    unsafe { &*context.cast::<AtomicUsize>() }.fetch_add(1, Ordering::AcqRel);
    0
}

#[test]
fn cancel_races_with_completion_from_a_dpc() {
    let kernel = kernel(2);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    fake.set(fake.device2, pend_cancellable, context.ptr());
    let completions = AtomicUsize::new(0);
    // SAFETY: KDPC is plain data; zeroed storage is initialised below.
    let mut dpc: Box<KDPC> = unsafe { Box::new_zeroed().assume_init() };
    // SAFETY: fresh storage that outlives its queueing.
    unsafe { sys::KeInitializeDpc(&mut *dpc, Some(racing_completion_dpc), context.ptr()) };
    let rounds = 300;
    let mut cancelled = 0;
    for _ in 0..rounds {
        let irp = request(&kernel, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_RECEIVE);
        kernel.set_completion_routine(
            irp,
            Some(counting_routine),
            std::ptr::from_ref(&completions).cast_mut().cast(),
            CompletionFlags::ALWAYS,
        );
        assert_eq!(kernel.call_driver(fake.device2, irp), NtStatus::PENDING);
        // SAFETY: the DPC is initialised and outlives the loop.
        unsafe { sys::KeInsertQueueDpc(&mut *dpc, std::ptr::null_mut(), std::ptr::null_mut()) };
        if kernel.cancel_irp(irp) {
            cancelled += 1;
        }
        kernel.wait_quiescent();
    }
    assert_eq!(completions.load(Ordering::Acquire), rounds);
    assert!(cancelled <= rounds);
    fake.driver.unload();
}

/// Walks the IRP's MDL chain as `MmGetSystemAddressForMdlSafe` does and fills each buffer with
/// its index; completes with the number of bytes written (or INSUFFICIENT_RESOURCES).
unsafe fn fill_mdl_chain(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let mut written = 0;
    // SAFETY: the MDLs of a live IRP describe live test buffers.
    unsafe {
        let mut mdl = (*irp).MdlAddress;
        let mut index = 1u8;
        while !mdl.is_null() {
            let mapped = MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL;
            let va = if (*mdl).MdlFlags & mapped != 0 {
                (*mdl).MappedSystemVa
            } else {
                sys::MmMapLockedPagesSpecifyCache(
                    mdl,
                    KERNEL_MODE,
                    MM_CACHED,
                    std::ptr::null_mut(),
                    0,
                    NORMAL_PAGE_PRIORITY,
                )
            };
            if va.is_null() {
                return complete(irp, NtStatus::INSUFFICIENT_RESOURCES, 0);
            }
            let len = (*mdl).ByteCount as usize;
            std::ptr::write_bytes(va.cast::<u8>(), index, len);
            written += len;
            index += 1;
            mdl = (*mdl).Next;
        }
        complete(irp, NtStatus::SUCCESS, written)
    }
}

#[test]
fn mdl_chains_are_mapped_on_demand_and_freed_at_completion() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    fake.set(fake.device2, fill_mdl_chain, context.ptr());
    for kind in [MdlKind::Locked, MdlKind::NonPagedPool] {
        let mappings = kernel.mdl_mappings();
        let (mut a, mut b, mut c) = (vec![0u8; 10], vec![0u8; 5000], vec![0u8; 3]);
        let head = kernel.build_mdl_chain(&mut [&mut a[..], &mut b[3..], &mut c[..]], kind);
        // SAFETY: a fresh MDL chain.
        unsafe {
            assert_eq!((*head).ByteCount, 10);
            let second = (*head).Next;
            assert_eq!((*second).ByteCount, 4997);
            assert_eq!(
                (*second).StartVa as usize + (*second).ByteOffset as usize,
                b.as_ptr() as usize + 3
            );
            let pages = ((*second).ByteOffset as usize + 4997).div_ceil(4096);
            assert_eq!(
                (*second).Size as usize,
                size_of::<MDL>() + pages * size_of::<usize>()
            );
        }
        // SAFETY: the chain is live until the IRP completes.
        let second = unsafe { (*head).Next };
        let irp = request(&kernel, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_RECEIVE);
        // SAFETY: the test owns the unsent IRP.
        unsafe { kernel.with_irp(irp, |i| i.MdlAddress = head) };
        let result = kernel.call_driver_sync(fake.device2, irp);
        assert_eq!(result.status, NtStatus::SUCCESS);
        assert_eq!(result.information, 10 + 4997 + 3);
        assert!(a.iter().all(|&x| x == 1));
        assert_eq!(b[..3], [0, 0, 0]);
        assert!(b[3..].iter().all(|&x| x == 2));
        assert!(c.iter().all(|&x| x == 3));
        let expected = if kind == MdlKind::Locked { 3 } else { 0 };
        assert_eq!(kernel.mdl_mappings() - mappings, expected);
        assert!(!kernel.mdl_is_live(head) && !kernel.mdl_is_live(second));
    }
    // A failed mapping.
    kernel.set_mdl_mapping_failure(true);
    let mut buffer = vec![0u8; 8];
    let mdl = kernel.build_mdl(buffer.as_mut_ptr(), buffer.len(), MdlKind::Locked);
    let irp = request(&kernel, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_RECEIVE);
    // SAFETY: the test owns the unsent IRP.
    unsafe { kernel.with_irp(irp, |i| i.MdlAddress = mdl) };
    let result = kernel.call_driver_sync(fake.device2, irp);
    assert_eq!(result.status, NtStatus::INSUFFICIENT_RESOURCES);
    fake.driver.unload();
}

/// Records CREATE/CLEANUP/CLOSE and checks the create's parameters against the test's
/// expectations (`\6`, EA "TransportAddress", share access 3).
unsafe fn file_requests(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: a live IRP in this driver with a file object.
    unsafe {
        let stack = current_stack(irp);
        let file = stack.FileObject;
        ctx.check(!file.is_null() && (*file).DeviceObject == device);
        match stack.MajorFunction {
            IRP_MJ_CREATE => {
                ctx.log.push(CREATE);
                let name = &(*file).FileName;
                let units = std::slice::from_raw_parts(name.Buffer, usize::from(name.Length) / 2);
                ctx.check(units == [u16::from(b'\\'), u16::from(b'6')]);
                let create = stack.Parameters.Create;
                ctx.check(create.ShareAccess == 3);
                let ea = (*irp)
                    .AssociatedIrp
                    .SystemBuffer
                    .cast::<FILE_FULL_EA_INFORMATION>();
                ctx.check(create.EaLength as usize == EA.len() && (*ea).EaNameLength == 16);
                let value = std::slice::from_raw_parts(ea.cast::<u8>(), EA.len());
                ctx.check(value == EA);
            }
            IRP_MJ_CLEANUP => ctx.log.push(CLEANUP),
            IRP_MJ_CLOSE => {
                let on_worker = std::thread::current()
                    .name()
                    .is_some_and(|n| n.starts_with("nt-worker"));
                ctx.check(current_irql() == PASSIVE_LEVEL);
                ctx.log
                    .push(if on_worker { CLOSE_ON_WORKER } else { CLOSE });
            }
            _ => ctx.check(false),
        }
        complete(irp, NtStatus::SUCCESS, 0)
    }
}

/// A `FILE_FULL_EA_INFORMATION` named "TransportAddress" with a 4-byte value.
const EA: &[u8] = b"\0\0\0\0\0\x10\x04\0TransportAddress\0\x01\x02\x03\x04";

#[test]
fn handles_and_references_drive_cleanup_and_close() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    fake.set(fake.device, file_requests, context.ptr());
    let path = "\\device\\FAKE\\6";
    let handle = kernel.create_file(path, Some(EA), 3).expect("create");
    let reference = kernel.reference_file(handle).expect("reference");
    assert_eq!(reference.device(), fake.device);
    assert_eq!(kernel.close(handle), NtStatus::SUCCESS);
    assert_eq!(
        context.log.entries(),
        vec![CREATE, CLEANUP],
        "cleanup at the last handle"
    );
    assert_eq!(kernel.close(handle), NtStatus::INVALID_HANDLE);
    drop(reference);
    assert_eq!(
        context.log.entries(),
        vec![CREATE, CLEANUP, CLOSE],
        "close at the last reference"
    );
    assert!(!context.wrong.load(Ordering::Acquire));
    fake.driver.unload();
}

#[test]
fn the_last_dereference_at_dispatch_level_defers_close_to_a_worker() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    fake.set(fake.device, file_requests, context.ptr());
    let handle = kernel
        .create_file("\\Device\\Fake\\6", Some(EA), 3)
        .unwrap();
    let reference = kernel.reference_file(handle).unwrap();
    kernel.close(handle);
    let old = raise_irql(DISPATCH_LEVEL);
    drop(reference);
    lower_irql(old);
    kernel.wait_quiescent();
    assert_eq!(
        context.log.entries(),
        vec![CREATE, CLEANUP, CLOSE_ON_WORKER]
    );
    assert!(!context.wrong.load(Ordering::Acquire));
    fake.driver.unload();
}

unsafe fn refuse_create(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    ctx(device).log.push(CREATE);
    // SAFETY: ours to complete.
    unsafe { complete(irp, NtStatus::ADDRESS_ALREADY_EXISTS, 0) }
}

#[test]
fn a_failed_create_sends_neither_cleanup_nor_close() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    fake.set(fake.device, refuse_create, context.ptr());
    assert_eq!(
        kernel.create_file(FAKE, None, 0),
        Err(NtStatus::ADDRESS_ALREADY_EXISTS)
    );
    assert_eq!(context.log.entries(), vec![CREATE]);
    assert_eq!(
        kernel.create_file("\\Device\\Nothing", None, 0),
        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
    );
    assert_eq!(
        kernel.create_file("\\Device\\FakeX", None, 0),
        Err(NtStatus::OBJECT_NAME_NOT_FOUND),
        "a name prefix is not a path prefix"
    );
    fake.driver.unload();
}

/// Reads a handle from the METHOD_NEITHER input, references it as a file object (the driver's
/// reference), reports whether it is the driver's own file, and dereferences it again.
unsafe fn reference_handle(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: a live IRP; for device control, a METHOD_NEITHER one whose input holds a handle.
    unsafe {
        if current_stack(irp).MajorFunction != IRP_MJ_DEVICE_CONTROL {
            return complete(irp, NtStatus::SUCCESS, 0);
        }
        let params = current_stack(irp).Parameters.DeviceIoControl;
        let handle = params.Type3InputBuffer.cast::<usize>().read_unaligned() as HANDLE;
        let mut object = std::ptr::null_mut();
        let status = NtStatus(sys::ObReferenceObjectByHandle(
            handle,
            0,
            sys::io_file_object_type(),
            KERNEL_MODE,
            &mut object,
            std::ptr::null_mut(),
        ));
        if !status.is_success() {
            return complete(irp, status, 0);
        }
        let own =
            (*(*object.cast::<FILE_OBJECT>()).DeviceObject).DriverObject == (*device).DriverObject;
        sys::ObfDereferenceObject(object);
        complete(irp, NtStatus::SUCCESS, usize::from(own))
    }
}

const IOCTL_NEITHER: u32 = 0x0012_0003;
const IOCTL_BUFFERED: u32 = 0x0012_0000;
const IOCTL_OUT_DIRECT: u32 = 0x0012_0002;

fn pass_handle(kernel: &KernelHandle, control: Handle, handle: HANDLE) -> (NtStatus, usize) {
    let input = (handle as usize).to_ne_bytes();
    kernel.device_io_control(control, IOCTL_NEITHER, &input, &mut [])
}

#[test]
fn reference_object_by_handle_checks_the_handle_and_the_type() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    let control = kernel.create_file(FAKE, None, 0).unwrap();
    fake.set(fake.device, reference_handle, context.ptr());
    let foreign = kernel.create_foreign_device("\\Device\\Afd").unwrap();
    let theirs = kernel
        .create_file("\\Device\\Afd\\Endpoint", None, 0)
        .unwrap();
    assert_eq!(kernel.reference_file(theirs).unwrap().device(), foreign);
    let own = kernel.create_file(FAKE2, None, 0).unwrap();
    let event = kernel.create_event_handle();
    assert_eq!(
        pass_handle(&kernel, control, own.as_raw()),
        (NtStatus::SUCCESS, 1)
    );
    assert_eq!(
        pass_handle(&kernel, control, theirs.as_raw()),
        (NtStatus::SUCCESS, 0)
    );
    assert_eq!(
        pass_handle(&kernel, control, event.as_raw()).0,
        NtStatus::OBJECT_TYPE_MISMATCH
    );
    assert_eq!(
        pass_handle(&kernel, control, Handle::invalid().as_raw()).0,
        NtStatus::INVALID_HANDLE
    );
    assert!(kernel.reference_file(event).is_err());
    for handle in [control, theirs, own, event] {
        assert_eq!(kernel.close(handle), NtStatus::SUCCESS);
    }
    fake.driver.unload();
}

#[test]
fn io_create_device_names_links_and_initialises_devices() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    let driver = fake.driver.object();
    // SAFETY: the loaded driver's objects are live.
    unsafe {
        assert_eq!(
            (*driver).DeviceObject,
            fake.device2,
            "the newest device first"
        );
        assert_eq!((*fake.device2).NextDevice, fake.device);
        for device in [fake.device, fake.device2] {
            assert_eq!((*device).Type, IO_TYPE_DEVICE);
            assert_eq!((*device).DriverObject, driver);
            assert_eq!(
                (*device).Flags & DO_DEVICE_INITIALIZING,
                0,
                "cleared after DriverEntry"
            );
            assert_eq!((*device).DeviceType, FILE_DEVICE_NETWORK);
            assert_eq!((*device).StackSize, 1);
            assert_eq!((*device).DeviceExtension as usize % 16, 0);
        }
        assert_eq!(
            create_device(driver, "\\DEVICE\\fake", 0),
            STATUS_OBJECT_NAME_COLLISION
        );
        assert_eq!(
            create_device(driver, "\\Device\\Fake3", 16),
            NtStatus::SUCCESS
        );
        let third = kernel.device_by_name("\\Device\\Fake3").unwrap();
        assert_eq!(
            (*third).Flags & DO_DEVICE_INITIALIZING,
            DO_DEVICE_INITIALIZING
        );
        assert_eq!(
            kernel.create_file("\\Device\\Fake3", None, 0),
            Err(tcpip::host::STATUS_NO_SUCH_DEVICE)
        );
        assert_eq!(
            std::slice::from_raw_parts((*third).DeviceExtension.cast::<u8>(), 16),
            [0; 16]
        );
    }
    fake.driver.unload();
    assert!(kernel.device_by_name(FAKE).is_none());
}

/// METHOD_BUFFERED: reverses the input into the system buffer. METHOD_NEITHER: copies the
/// input to the user buffer and reports the requestor mode. METHOD_OUT_DIRECT: fills the MDL.
unsafe fn ioctl(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: a live IRP; for device control, built by the model's I/O control path.
    unsafe {
        let stack = current_stack(irp);
        if stack.MajorFunction != IRP_MJ_DEVICE_CONTROL {
            ctx.check(
                stack.MajorFunction == IRP_MJ_CREATE
                    || stack.MajorFunction == IRP_MJ_CLEANUP
                    || stack.MajorFunction == IRP_MJ_CLOSE,
            );
            return complete(irp, NtStatus::SUCCESS, 0);
        }
        let params = stack.Parameters.DeviceIoControl;
        let (input, output) = (
            params.InputBufferLength as usize,
            params.OutputBufferLength as usize,
        );
        match params.IoControlCode {
            IOCTL_BUFFERED => {
                let buffer = (*irp).AssociatedIrp.SystemBuffer.cast::<u8>();
                let data = std::slice::from_raw_parts_mut(buffer, input.max(output));
                data[..input].reverse();
                complete(irp, NtStatus::SUCCESS, input.min(output))
            }
            IOCTL_NEITHER => {
                std::ptr::copy_nonoverlapping(
                    params.Type3InputBuffer.cast::<u8>(),
                    (*irp).UserBuffer.cast::<u8>(),
                    input.min(output),
                );
                complete(irp, NtStatus::SUCCESS, 100 + (*irp).RequestorMode as usize)
            }
            IOCTL_OUT_DIRECT => {
                let mdl = (*irp).MdlAddress;
                let va = sys::MmMapLockedPagesSpecifyCache(
                    mdl,
                    KERNEL_MODE,
                    MM_CACHED,
                    std::ptr::null_mut(),
                    0,
                    NORMAL_PAGE_PRIORITY,
                );
                std::ptr::write_bytes(va.cast::<u8>(), 0xAB, (*mdl).ByteCount as usize);
                complete(irp, NtStatus::SUCCESS, (*mdl).ByteCount as usize)
            }
            _ => complete(irp, NtStatus::INVALID_DEVICE_REQUEST, 0),
        }
    }
}

#[test]
fn device_io_control_buffers_like_the_io_manager() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    fake.set(fake.device, ioctl, context.ptr());
    let handle = kernel.create_file(FAKE, None, 0).unwrap();
    let mut output = [0u8; 6];
    let result = kernel.device_io_control(handle, IOCTL_BUFFERED, b"abcd", &mut output);
    assert_eq!(result, (NtStatus::SUCCESS, 4));
    assert_eq!(&output, b"dcba\0\0");
    let mut output = [0u8; 3];
    let result = kernel.device_io_control(handle, IOCTL_NEITHER, b"xyz", &mut output);
    assert_eq!(result, (NtStatus::SUCCESS, 100 + USER_MODE as usize));
    assert_eq!(&output, b"xyz");
    let kernel_mode = IoctlOptions {
        requestor_mode: KERNEL_MODE,
        ..IoctlOptions::default()
    };
    let result = kernel.device_io_control_with(handle, IOCTL_NEITHER, b"q", &mut [0], kernel_mode);
    assert_eq!(result.1, 100 + KERNEL_MODE as usize);
    let mut output = [0u8; 5];
    let result = kernel.device_io_control(handle, IOCTL_OUT_DIRECT, b"", &mut output);
    assert_eq!(result, (NtStatus::SUCCESS, 5));
    assert_eq!(output, [0xAB; 5]);
    assert_eq!(
        kernel
            .device_io_control(handle, 0x0012_FFF0, b"", &mut [])
            .0,
        NtStatus::INVALID_DEVICE_REQUEST
    );
    assert_eq!(
        kernel
            .device_io_control(Handle::invalid(), IOCTL_BUFFERED, b"", &mut [])
            .0,
        NtStatus::INVALID_HANDLE
    );
    kernel.close(handle);
    assert!(!context.wrong.load(Ordering::Acquire));
    fake.driver.unload();
}

#[test]
fn unhandled_major_functions_get_invalid_device_request() {
    unsafe extern "system" fn entry(
        driver: *mut DRIVER_OBJECT,
        _: *const UNICODE_STRING,
    ) -> NTSTATUS {
        // SAFETY: the driver object passed to DriverEntry.
        unsafe {
            (*driver).DriverUnload = Some(fake_unload);
            create_device(driver, FAKE, 0).raw()
        }
    }
    let kernel = kernel(1);
    let driver = kernel.load_driver(entry).unwrap();
    assert_eq!(
        kernel.create_file(FAKE, None, 0),
        Err(NtStatus::INVALID_DEVICE_REQUEST)
    );
    assert!(driver.unload().is_clean());
}

#[test]
fn files_left_open_at_unload_are_reported_and_closed_safely_later() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    fake.set(fake.device, file_requests, context.ptr());
    let handle = kernel
        .create_file("\\Device\\Fake\\6", Some(EA), 3)
        .unwrap();
    let report = fake.driver.unload();
    assert_eq!(
        report.leaks_of(tcpip::host::Rule::FileObjectLeak).count(),
        1,
        "{report}"
    );
    assert_eq!(kernel.take_violations().len(), 1);
    assert!(
        kernel.device_by_name(FAKE).is_none(),
        "deleted, kept only for its open file"
    );
    // The driver is gone: cleanup and close go to the I/O manager's default routine.
    assert_eq!(kernel.close(handle), NtStatus::SUCCESS);
    assert_eq!(context.log.entries(), vec![CREATE]);
}

#[test]
fn a_driver_still_loaded_at_teardown_is_unloaded() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let _fake = fake(&kernel, &context);
}

/// Checks the request carries its file object the way AFD's TDI IRPs do.
unsafe fn tdi_request(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: a live IRP in this driver.
    unsafe {
        let stack = current_stack(irp);
        if stack.MajorFunction == IRP_MJ_INTERNAL_DEVICE_CONTROL {
            ctx.check(!stack.FileObject.is_null() && (*stack.FileObject).DeviceObject == device);
            ctx.check((*irp).Tail.Overlay.OriginalFileObject.is_null());
            ctx.check((*irp).RequestorMode == KERNEL_MODE);
            ctx.log.push(u32::from(stack.MinorFunction));
        }
        complete(irp, NtStatus::SUCCESS, 0)
    }
}

#[test]
fn file_irps_are_built_like_tdi_requests() {
    let kernel = kernel(1);
    let context = Ctx::default();
    let fake = fake(&kernel, &context);
    fake.set(fake.device, tdi_request, context.ptr());
    let handle = kernel.create_file(FAKE, None, 0).unwrap();
    let file = kernel.reference_file(handle).unwrap();
    let location = StackLocation::new(
        IRP_MJ_INTERNAL_DEVICE_CONTROL,
        TDI_CONNECT,
        std::ptr::null_mut(),
    );
    let irp = kernel.allocate_file_irp(&file, location);
    assert_eq!(
        kernel.call_driver_sync(file.device(), irp).status,
        NtStatus::SUCCESS
    );
    assert_eq!(context.log.entries(), vec![u32::from(TDI_CONNECT)]);
    assert!(!context.wrong.load(Ordering::Acquire));
    drop(file);
    kernel.close(handle);
    fake.driver.unload();
}
