//! Each verifier rule, shown firing on a deliberately wrong driver fragment, with the rule, the
//! call site and the entry point in the report.

mod host_model_support;

use host_model_support::*;
use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::time::Duration;
use tcpip::host::{
    CompletionFlags, Config, DISPATCH_LEVEL, Entry, Event, EventType, KMutex, Kernel, KernelHandle,
    PASSIVE_LEVEL, Rule, Violation, current_irql, lower_irql, raise_irql,
};
use tcpip::nt::NtStatus;
use tcpip::nt::pool::try_box;
use tcpip::nt::sys;
use tcpip::nt::types::*;

/// Per-test state of the wrong driver fragments.
struct Ctx {
    lock_a: UnsafeCell<KSPIN_LOCK>,
    lock_b: UnsafeCell<KSPIN_LOCK>,
    dpc: UnsafeCell<KDPC>,
    timer: UnsafeCell<KTIMER>,
    item: AtomicPtr<IO_WORKITEM>,
    blocker: AtomicPtr<IO_WORKITEM>,
    gate: AtomicBool,
    blocked: AtomicBool,
    pending: AtomicPtr<IRP>,
    kept: AtomicPtr<u64>,
}

// SAFETY: the kernel structures are only touched through the model (under its locks, or
// atomically for spin locks).
unsafe impl Sync for Ctx {}

impl Ctx {
    fn new() -> Box<Ctx> {
        // SAFETY: every field is valid when zeroed (atomics, and NT structures initialised by
        // the model before use).
        unsafe { Box::new_zeroed().assume_init() }
    }

    fn ptr(&self) -> *mut c_void {
        std::ptr::from_ref(self).cast_mut().cast()
    }

    fn a(&self) -> *mut KSPIN_LOCK {
        self.lock_a.get()
    }

    fn b(&self) -> *mut KSPIN_LOCK {
        self.lock_b.get()
    }
}

fn ctx<'a>(device: *mut DEVICE_OBJECT) -> &'a Ctx {
    // SAFETY: every test installs a Ctx that outlives its driver.
    unsafe { context::<Ctx>(device) }
}

/// Loads the fake driver with `handler` on `\Device\Fake`.
fn load(kernel: &KernelHandle, ctx: &Ctx, handler: Handler) -> Fake {
    let fake = Fake::load(kernel);
    fake.set(fake.device, handler, ctx.ptr());
    fake
}

/// Sends an internal device control request (TDI_SEND) and waits for it.
fn send(kernel: &KernelHandle, fake: &Fake) -> NtStatus {
    let irp = request(kernel, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_SEND);
    kernel.call_driver_sync(fake.device, irp).status
}

/// Sends a request that the handler leaves pending; returns the IRP.
fn send_async(kernel: &KernelHandle, fake: &Fake, flags: CompletionFlags) -> *mut IRP {
    let irp = request(kernel, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_RECEIVE);
    kernel.set_completion_routine(irp, Some(done), std::ptr::null_mut(), flags);
    kernel.call_driver(fake.device, irp);
    irp
}

unsafe extern "system" fn done(_: *mut DEVICE_OBJECT, _: *mut IRP, _: *mut c_void) -> NTSTATUS {
    0
}

const SEND_ENTRY: Entry = Entry::Dispatch {
    major: IRP_MJ_INTERNAL_DEVICE_CONTROL,
    minor: TDI_SEND,
};

/// The violations recorded since the last call, checked to be exactly `rules` (in order).
fn expect(kernel: &KernelHandle, rules: &[Rule]) -> Vec<Violation> {
    let violations = kernel.take_violations();
    let fired: Vec<Rule> = violations.iter().map(|v| v.rule).collect();
    assert_eq!(fired, rules, "{violations:#?}");
    violations
}

/// Checks that a violation names a call site in this file.
fn at_this_file(violation: &Violation) {
    let location = violation.site.location.expect("a call site");
    assert!(
        location.file().ends_with("host_model_verifier.rs"),
        "{violation}"
    );
    assert!(
        violation.to_string().contains("host_model_verifier.rs:"),
        "{violation}"
    );
}

/// Completes non-TDI requests (create/cleanup/close) normally.
///
/// # Safety
/// `irp` is live in the driver.
unsafe fn other_request(irp: *mut IRP) -> Option<NTSTATUS> {
    // SAFETY: forwarded caller contract.
    unsafe {
        (current_stack(irp).MajorFunction != IRP_MJ_INTERNAL_DEVICE_CONTROL)
            .then(|| complete(irp, NtStatus::SUCCESS, 0))
    }
}

// ---- Spin locks -----------------------------------------------------------------------------

unsafe fn dpc_level_acquire_at_passive(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: a zeroed lock; deliberately used at the wrong IRQL.
    unsafe {
        sys::KeAcquireSpinLockAtDpcLevel(ctx.a());
        sys::KeReleaseSpinLockFromDpcLevel(ctx.a());
        complete(irp, NtStatus::SUCCESS, 0)
    }
}

#[test]
fn spin_lock_irql() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, dpc_level_acquire_at_passive);
    assert_eq!(send(&kernel, &fake), NtStatus::SUCCESS);
    let violations = expect(&kernel, &[Rule::SpinLockIrql, Rule::SpinLockIrql]);
    for violation in &violations {
        at_this_file(violation);
        assert_eq!(violation.site.entry, SEND_ENTRY);
    }
    assert!(
        violations[0]
            .message
            .contains("KeAcquireSpinLockAtDpcLevel")
    );
    // Above DISPATCH_LEVEL.
    let old = raise_irql(DISPATCH_LEVEL + 1);
    // SAFETY: a zeroed lock, released below.
    unsafe {
        let previous = sys::KeAcquireSpinLockRaiseToDpc(ctx.a());
        sys::KeReleaseSpinLock(ctx.a(), previous);
    }
    lower_irql(old);
    let violations = expect(&kernel, &[Rule::SpinLockIrql]);
    assert!(violations[0].message.contains("above DISPATCH_LEVEL"));
    assert_eq!(violations[0].site.entry, Entry::Client);
    assert!(fake.driver.unload().is_clean());
}

unsafe fn acquire_twice(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: a zeroed lock, deliberately acquired twice, then released twice.
    unsafe {
        let old = sys::KeAcquireSpinLockRaiseToDpc(ctx.a());
        sys::KeAcquireSpinLockAtDpcLevel(ctx.a());
        sys::KeReleaseSpinLockFromDpcLevel(ctx.a());
        sys::KeReleaseSpinLock(ctx.a(), old);
        complete(irp, NtStatus::SUCCESS, 0)
    }
}

#[test]
fn spin_lock_recursion() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, acquire_twice);
    assert_eq!(send(&kernel, &fake), NtStatus::SUCCESS);
    let violations = expect(&kernel, &[Rule::SpinLockRecursion]);
    at_this_file(&violations[0]);
    assert!(violations[0].message.contains("already holds it"));
    // SAFETY: reading the lock word after the handler returned.
    let word = unsafe { *ctx.a() };
    assert_eq!(word, 0, "released once the outer hold is released");
    assert!(fake.driver.unload().is_clean());
}

unsafe fn release_out_of_order(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: zeroed locks, acquired A then B, released A then B.
    unsafe {
        let old = sys::KeAcquireSpinLockRaiseToDpc(ctx.a());
        sys::KeAcquireSpinLockAtDpcLevel(ctx.b());
        sys::KeReleaseSpinLockFromDpcLevel(ctx.a());
        sys::KeReleaseSpinLock(ctx.b(), old);
        complete(irp, NtStatus::SUCCESS, 0)
    }
}

#[test]
fn spin_lock_release_order() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, release_out_of_order);
    assert_eq!(send(&kernel, &fake), NtStatus::SUCCESS);
    let violations = expect(&kernel, &[Rule::SpinLockReleaseOrder]);
    at_this_file(&violations[0]);
    assert_eq!(violations[0].site.entry, SEND_ENTRY);
    // SAFETY: reading the lock words after the handler returned.
    assert_eq!(unsafe { (*ctx.a(), *ctx.b()) }, (0, 0));
    assert!(fake.driver.unload().is_clean());
}

unsafe fn release_unheld(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: a deliberate release of a lock that is not held.
    unsafe {
        sys::KeReleaseSpinLock(ctx.a(), PASSIVE_LEVEL);
        complete(irp, NtStatus::SUCCESS, 0)
    }
}

#[test]
fn spin_lock_not_held() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, release_unheld);
    assert_eq!(send(&kernel, &fake), NtStatus::SUCCESS);
    at_this_file(&expect(&kernel, &[Rule::SpinLockNotHeld])[0]);
    assert!(fake.driver.unload().is_clean());
}

unsafe extern "system" fn dpc_keeping_a_lock(
    _: *mut KDPC,
    context: *mut c_void,
    _: *mut c_void,
    _: *mut c_void,
) {
    // SAFETY: the context is the test's Ctx.
    let ctx = unsafe { &*context.cast::<Ctx>() };
    // SAFETY: a zeroed lock, deliberately not released.
    unsafe { sys::KeAcquireSpinLockAtDpcLevel(ctx.a()) };
}

#[test]
fn spin_lock_held_on_return_from_a_dpc_does_not_hang_the_test() {
    let kernel = kernel(2);
    let ctx = Ctx::new();
    // SAFETY: zeroed DPC storage in the Ctx, which outlives it.
    unsafe {
        sys::KeInitializeDpc(ctx.dpc.get(), Some(dpc_keeping_a_lock), ctx.ptr());
        sys::KeInsertQueueDpc(ctx.dpc.get(), std::ptr::null_mut(), std::ptr::null_mut());
    }
    kernel.wait_quiescent();
    let violations = expect(&kernel, &[Rule::SpinLockHeldOnReturn]);
    assert_eq!(violations[0].site.entry, Entry::Dpc);
    assert!(
        violations[0].message.contains("host_model_verifier.rs:"),
        "names where it was acquired"
    );
    // The model released it: acquiring it here does not spin forever.
    // SAFETY: the lock is free again.
    unsafe {
        let old = sys::KeAcquireSpinLockRaiseToDpc(ctx.a());
        sys::KeReleaseSpinLock(ctx.a(), old);
    }
}

// ---- IRQL -----------------------------------------------------------------------------------

/// Releases with the wrong "old" IRQL: returns at DISPATCH_LEVEL.
unsafe fn return_at_dispatch(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: a zeroed lock; the IRQL passed back is deliberately wrong.
    unsafe {
        sys::KeAcquireSpinLockRaiseToDpc(ctx.a());
        sys::KeReleaseSpinLock(ctx.a(), DISPATCH_LEVEL);
        complete(irp, NtStatus::SUCCESS, 0)
    }
}

unsafe extern "system" fn work_at_dispatch(_: *mut DEVICE_OBJECT, context: *mut c_void) {
    // SAFETY: the context is the test's Ctx.
    let ctx = unsafe { &*context.cast::<Ctx>() };
    // SAFETY: a zeroed lock; the IRQL passed back is deliberately wrong.
    unsafe {
        sys::KeAcquireSpinLockRaiseToDpc(ctx.a());
        sys::KeReleaseSpinLock(ctx.a(), DISPATCH_LEVEL);
        sys::IoFreeWorkItem(ctx.item.load(Ordering::Acquire));
    }
}

unsafe extern "system" fn dpc_lowering(
    _: *mut KDPC,
    context: *mut c_void,
    _: *mut c_void,
    _: *mut c_void,
) {
    // SAFETY: the context is the test's Ctx.
    let ctx = unsafe { &*context.cast::<Ctx>() };
    // SAFETY: a zeroed lock; released to PASSIVE_LEVEL from a DPC, deliberately.
    unsafe {
        sys::KeAcquireSpinLockAtDpcLevel(ctx.a());
        sys::KeReleaseSpinLock(ctx.a(), PASSIVE_LEVEL);
    }
}

#[test]
fn irql_not_restored_by_dispatch_dpc_and_work_item_routines() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, return_at_dispatch);
    assert_eq!(send(&kernel, &fake), NtStatus::SUCCESS);
    assert_eq!(current_irql(), PASSIVE_LEVEL, "restored by the model");
    let violations = expect(&kernel, &[Rule::IrqlNotRestored]);
    assert_eq!(violations[0].site.entry, SEND_ENTRY);
    assert!(
        violations[0]
            .message
            .contains("called at IRQL 0 and returned at IRQL 2")
    );

    // SAFETY: a device of the driver; the item is freed by its routine.
    unsafe {
        let item = sys::IoAllocateWorkItem(fake.device);
        ctx.item.store(item, Ordering::Release);
        sys::IoQueueWorkItem(item, Some(work_at_dispatch), DELAYED_WORK_QUEUE, ctx.ptr());
    }
    kernel.wait_quiescent();
    assert_eq!(
        expect(&kernel, &[Rule::IrqlNotRestored])[0].site.entry,
        Entry::WorkItem
    );

    // SAFETY: zeroed DPC storage in the Ctx, which outlives it.
    unsafe {
        sys::KeInitializeDpc(ctx.dpc.get(), Some(dpc_lowering), ctx.ptr());
        sys::KeInsertQueueDpc(ctx.dpc.get(), std::ptr::null_mut(), std::ptr::null_mut());
    }
    kernel.wait_quiescent();
    let violations = expect(&kernel, &[Rule::IrqlNotRestored]);
    assert_eq!(violations[0].site.entry, Entry::Dpc);
    assert!(
        violations[0]
            .message
            .contains("called at IRQL 2 and returned at IRQL 0")
    );
    let report = fake.driver.unload();
    assert!(report.is_clean(), "{report}");
}

unsafe fn lower_to_higher(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: a zeroed lock; "lowered" to a higher IRQL, deliberately.
    unsafe {
        sys::KeAcquireSpinLockRaiseToDpc(ctx.a());
        sys::KeReleaseSpinLock(ctx.a(), DISPATCH_LEVEL + 1);
        complete(irp, NtStatus::SUCCESS, 0)
    }
}

#[test]
fn invalid_irql_transition() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, lower_to_higher);
    assert_eq!(send(&kernel, &fake), NtStatus::SUCCESS);
    let violations = expect(
        &kernel,
        &[Rule::InvalidIrqlTransition, Rule::IrqlNotRestored],
    );
    at_this_file(&violations[0]);
    assert!(
        violations[0]
            .message
            .contains("lower from IRQL 2 to the higher IRQL 3")
    );
    let old = raise_irql(DISPATCH_LEVEL);
    raise_irql(PASSIVE_LEVEL);
    lower_irql(old);
    at_this_file(&expect(&kernel, &[Rule::InvalidIrqlTransition])[0]);
    assert!(fake.driver.unload().is_clean());
}

// ---- Waits ----------------------------------------------------------------------------------

unsafe extern "system" fn dpc_flushing(
    _: *mut KDPC,
    _: *mut c_void,
    _: *mut c_void,
    _: *mut c_void,
) {
    // SAFETY: deliberately called at DISPATCH_LEVEL.
    unsafe { sys::KeFlushQueuedDpcs() };
}

#[test]
fn wait_at_dispatch() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    // SAFETY: zeroed DPC storage in the Ctx, which outlives it.
    unsafe {
        sys::KeInitializeDpc(ctx.dpc.get(), Some(dpc_flushing), ctx.ptr());
        sys::KeInsertQueueDpc(ctx.dpc.get(), std::ptr::null_mut(), std::ptr::null_mut());
    }
    kernel.wait_quiescent();
    let violations = expect(&kernel, &[Rule::WaitAtDispatch]);
    at_this_file(&violations[0]);
    assert_eq!(violations[0].site.entry, Entry::Dpc);

    let event = Event::new(&kernel, EventType::Notification, true);
    let mutex = KMutex::new(&kernel);
    let old = raise_irql(DISPATCH_LEVEL);
    assert!(event.wait(Some(Duration::ZERO)), "polling is allowed");
    assert!(event.wait(Some(Duration::from_millis(1))));
    assert!(mutex.acquire(None));
    mutex.release();
    lower_irql(old);
    let violations = expect(&kernel, &[Rule::WaitAtDispatch, Rule::WaitAtDispatch]);
    at_this_file(&violations[0]);
    assert!(violations[1].message.contains("KeWaitForMutexObject"));
}

#[test]
fn mutex_not_owned() {
    let kernel = kernel(1);
    let mutex = std::sync::Arc::new(KMutex::new(&kernel));
    assert!(mutex.acquire(None));
    assert!(
        mutex.acquire(Some(Duration::ZERO)),
        "recursive for the owner"
    );
    let other = mutex.clone();
    kernel
        .spawn("other", move || {
            assert!(
                !other.acquire(Some(Duration::ZERO)),
                "owned by the test thread"
            );
            other.release();
        })
        .join()
        .unwrap();
    at_this_file(&expect(&kernel, &[Rule::MutexNotOwned])[0]);
    mutex.release();
    mutex.release();
}

// ---- Completion -----------------------------------------------------------------------------

unsafe fn complete_twice(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: the first completion is legitimate; the second is deliberate.
    unsafe {
        if let Some(status) = other_request(irp) {
            return status;
        }
        complete(irp, NtStatus::SUCCESS, 0);
        sys::IofCompleteRequest(irp, IO_NO_INCREMENT);
    }
    0
}

#[test]
fn irp_completed_twice() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, complete_twice);
    assert_eq!(send(&kernel, &fake), NtStatus::SUCCESS);
    let violations = expect(&kernel, &[Rule::IrpCompletedTwice]);
    at_this_file(&violations[0]);
    assert!(violations[0].message.contains("already completed"));
    assert!(fake.driver.unload().is_clean());
}

unsafe extern "system" fn never_called(_: *mut DEVICE_OBJECT, _: *mut IRP) {}

unsafe fn complete_armed(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: completing with the cancel routine still set, deliberately.
    unsafe {
        set_cancel_routine(irp, Some(never_called));
        complete(irp, NtStatus::SUCCESS, 0)
    }
}

#[test]
fn complete_with_cancel_routine() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, complete_armed);
    assert_eq!(send(&kernel, &fake), NtStatus::SUCCESS);
    let violations = expect(&kernel, &[Rule::CompleteWithCancelRoutine]);
    at_this_file(&violations[0]);
    assert!(
        violations[0]
            .message
            .contains("IRP_MJ_INTERNAL_DEVICE_CONTROL")
    );
    assert!(fake.driver.unload().is_clean());
}

unsafe fn complete_pending_status(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: marks pending, then completes with STATUS_PENDING, deliberately.
    unsafe {
        mark_pending(irp);
        complete(irp, NtStatus::PENDING, 0)
    }
}

#[test]
fn complete_with_pending() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, complete_pending_status);
    send(&kernel, &fake);
    at_this_file(&expect(&kernel, &[Rule::CompleteWithPending])[0]);
    assert!(fake.driver.unload().is_clean());
}

unsafe fn pending_unmarked(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: completes, then returns STATUS_PENDING without IoMarkIrpPending, deliberately.
    unsafe {
        if let Some(status) = other_request(irp) {
            return status;
        }
        complete(irp, NtStatus::SUCCESS, 0);
    }
    NtStatus::PENDING.raw()
}

#[test]
fn pending_not_marked() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, pending_unmarked);
    assert_eq!(send(&kernel, &fake), NtStatus::SUCCESS);
    let violations = expect(&kernel, &[Rule::PendingNotMarked]);
    assert_eq!(violations[0].site.entry, SEND_ENTRY);
    assert!(
        violations[0]
            .to_string()
            .contains("dispatch IRP_MJ_INTERNAL_DEVICE_CONTROL (minor 0x07)")
    );
    assert!(fake.driver.unload().is_clean());
}

unsafe fn marked_but_success(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: marks pending, completes, and returns the status, deliberately.
    unsafe {
        if let Some(status) = other_request(irp) {
            return status;
        }
        mark_pending(irp);
        complete(irp, NtStatus::SUCCESS, 0)
    }
}

#[test]
fn pending_marked_not_returned() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, marked_but_success);
    assert_eq!(send(&kernel, &fake), NtStatus::SUCCESS);
    assert_eq!(
        expect(&kernel, &[Rule::PendingMarkedNotReturned])[0]
            .site
            .entry,
        SEND_ENTRY
    );
    assert!(fake.driver.unload().is_clean());
}

unsafe fn forget_to_complete(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: returns success without completing, deliberately.
    unsafe {
        if let Some(status) = other_request(irp) {
            return status;
        }
    }
    ctx(device).pending.store(irp, Ordering::Release);
    0
}

#[test]
fn not_completed_not_pending() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, forget_to_complete);
    let irp = send_async(&kernel, &fake, CompletionFlags::ALWAYS);
    assert_eq!(
        expect(&kernel, &[Rule::NotCompletedNotPending])[0]
            .site
            .entry,
        Entry::Dispatch {
            major: IRP_MJ_INTERNAL_DEVICE_CONTROL,
            minor: TDI_RECEIVE
        }
    );
    // The driver completes it late, so nothing leaks.
    // SAFETY: the driver's IRP; the test plays the driver.
    unsafe { complete(irp, NtStatus::SUCCESS, 0) };
    assert!(fake.driver.unload().is_clean());
}

unsafe fn complete_under_lock(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: completes while holding a spin lock (at DISPATCH_LEVEL), deliberately.
    unsafe {
        let old = sys::KeAcquireSpinLockRaiseToDpc(ctx.a());
        let status = complete(irp, NtStatus::SUCCESS, 0);
        sys::KeReleaseSpinLock(ctx.a(), old);
        status
    }
}

#[test]
fn passive_completion_at_dispatch() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, complete_under_lock);
    send_async(&kernel, &fake, CompletionFlags::ALWAYS);
    assert!(
        kernel.take_violations().is_empty(),
        "no PASSIVE_LEVEL requirement"
    );
    send_async(&kernel, &fake, CompletionFlags::ALWAYS_PASSIVE);
    let violations = expect(&kernel, &[Rule::PassiveCompletionAtDispatch]);
    at_this_file(&violations[0]);
    assert!(violations[0].message.contains("completed at IRQL 2"));
    assert!(fake.driver.unload().is_clean());
}

// ---- Cancellation ---------------------------------------------------------------------------

unsafe extern "system" fn cancel_without_completing(_: *mut DEVICE_OBJECT, irp: *mut IRP) {
    // SAFETY: releases the cancel lock but does not complete, deliberately.
    unsafe { sys::IoReleaseCancelSpinLock((*irp).CancelIrql) };
}

unsafe extern "system" fn cancel_keeping_the_lock(_: *mut DEVICE_OBJECT, irp: *mut IRP) {
    // SAFETY: completes but keeps the cancel lock, deliberately.
    unsafe { complete(irp, NtStatus::CANCELLED, 0) };
}

unsafe fn pend_with(
    irp: *mut IRP,
    device: *mut DEVICE_OBJECT,
    routine: PDRIVER_CANCEL,
) -> NTSTATUS {
    // SAFETY: a live IRP in this driver.
    unsafe {
        if let Some(status) = other_request(irp) {
            return status;
        }
        mark_pending(irp);
        set_cancel_routine(irp, routine);
    }
    ctx(device).pending.store(irp, Ordering::Release);
    NtStatus::PENDING.raw()
}

unsafe fn pend_lazy_cancel(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: forwarded dispatch contract.
    unsafe { pend_with(irp, device, Some(cancel_without_completing)) }
}

unsafe fn pend_locked_cancel(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: forwarded dispatch contract.
    unsafe { pend_with(irp, device, Some(cancel_keeping_the_lock)) }
}

#[test]
fn cancel_routine_did_not_complete() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, pend_lazy_cancel);
    let irp = send_async(&kernel, &fake, CompletionFlags::ALWAYS);
    assert!(kernel.cancel_irp(irp));
    let violations = expect(&kernel, &[Rule::CancelRoutineDidNotComplete]);
    assert_eq!(violations[0].site.entry, Entry::Cancel);
    assert!(violations[0].message.contains("without completing"));
    // SAFETY: the driver's IRP; the test plays the driver completing it late.
    unsafe { complete(irp, NtStatus::CANCELLED, 0) };
    assert!(fake.driver.unload().is_clean());
}

#[test]
fn cancel_spin_lock_not_released() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, pend_locked_cancel);
    let irp = send_async(&kernel, &fake, CompletionFlags::ALWAYS);
    assert!(kernel.cancel_irp(irp));
    assert_eq!(current_irql(), PASSIVE_LEVEL, "restored by the model");
    let violations = expect(&kernel, &[Rule::CancelSpinLockNotReleased]);
    assert_eq!(violations[0].site.entry, Entry::Cancel);
    // The cancel lock is usable again.
    let mut irql = 0;
    // SAFETY: a valid out pointer; released right away.
    unsafe {
        sys::IoAcquireCancelSpinLock(&mut irql);
        sys::IoReleaseCancelSpinLock(irql);
    }
    assert!(fake.driver.unload().is_clean());
}

// ---- Work items -----------------------------------------------------------------------------

unsafe extern "system" fn blocking_work(_: *mut DEVICE_OBJECT, context: *mut c_void) {
    // SAFETY: the context is the test's Ctx.
    let ctx = unsafe { &*context.cast::<Ctx>() };
    ctx.blocked.store(true, Ordering::Release);
    spin_until("the test to open the gate", || {
        ctx.gate.load(Ordering::Acquire)
    });
}

unsafe extern "system" fn idle_work(_: *mut DEVICE_OBJECT, _: *mut c_void) {}

/// Occupies the only worker thread, then allocates a second item (in `ctx.item`).
fn block_the_worker(fake: &Fake, ctx: &Ctx) {
    // SAFETY: a device of the driver; the items are freed by the tests.
    unsafe {
        let blocker = sys::IoAllocateWorkItem(fake.device);
        ctx.blocker.store(blocker, Ordering::Release);
        sys::IoQueueWorkItem(blocker, Some(blocking_work), DELAYED_WORK_QUEUE, ctx.ptr());
        ctx.item
            .store(sys::IoAllocateWorkItem(fake.device), Ordering::Release);
    }
    spin_until("the blocker to run", || ctx.blocked.load(Ordering::Acquire));
}

fn release_the_worker(kernel: &KernelHandle, ctx: &Ctx) {
    ctx.gate.store(true, Ordering::Release);
    kernel.wait_quiescent();
    // SAFETY: both items are live and no longer queued.
    unsafe {
        sys::IoFreeWorkItem(ctx.blocker.load(Ordering::Acquire));
        sys::IoFreeWorkItem(ctx.item.load(Ordering::Acquire));
    }
}

fn one_worker() -> Kernel {
    Kernel::new(Config {
        processors: 1,
        workers: 1,
        ..Config::default()
    })
}

#[test]
fn work_item_queued_twice() {
    let kernel = one_worker();
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, dpc_level_acquire_at_passive);
    block_the_worker(&fake, &ctx);
    let item = ctx.item.load(Ordering::Acquire);
    // SAFETY: a live item; the second queueing is deliberate.
    unsafe {
        sys::IoQueueWorkItem(
            item,
            Some(idle_work),
            DELAYED_WORK_QUEUE,
            std::ptr::null_mut(),
        );
        sys::IoQueueWorkItem(
            item,
            Some(idle_work),
            DELAYED_WORK_QUEUE,
            std::ptr::null_mut(),
        );
    }
    at_this_file(&expect(&kernel, &[Rule::WorkItemQueuedTwice])[0]);
    release_the_worker(&kernel, &ctx);
    assert!(fake.driver.unload().is_clean());
}

#[test]
fn work_item_freed_while_queued() {
    let kernel = one_worker();
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, dpc_level_acquire_at_passive);
    block_the_worker(&fake, &ctx);
    let item = ctx.item.load(Ordering::Acquire);
    // SAFETY: a live item; freeing it while queued is deliberate (the model refuses).
    unsafe {
        sys::IoQueueWorkItem(
            item,
            Some(idle_work),
            DELAYED_WORK_QUEUE,
            std::ptr::null_mut(),
        );
        sys::IoFreeWorkItem(item);
    }
    at_this_file(&expect(&kernel, &[Rule::WorkItemFreedWhileQueued])[0]);
    release_the_worker(&kernel, &ctx);
    assert!(fake.driver.unload().is_clean());
}

// ---- Pool and objects -----------------------------------------------------------------------

const TAG_ONE: u32 = u32::from_le_bytes(*b"Tst1");
const TAG_TWO: u32 = u32::from_le_bytes(*b"Tst2");

unsafe fn free_with_wrong_tag(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: a pool block freed with the wrong tag (refused), then with its own; a Box passed
    // to ExFreePoolWithTag (refused), then dropped.
    unsafe {
        if let Some(status) = other_request(irp) {
            return status;
        }
        let block = sys::ExAllocatePoolWithTag(NON_PAGED_POOL, 8, TAG_ONE);
        sys::ExFreePoolWithTag(block, TAG_TWO);
        sys::ExFreePoolWithTag(block, TAG_ONE);
        let boxed = Box::into_raw(Box::new(5u64));
        sys::ExFreePoolWithTag(boxed.cast(), tcpip::nt::pool::TAG);
        drop(Box::from_raw(boxed));
        complete(irp, NtStatus::SUCCESS, 0)
    }
}

#[test]
fn bad_pool_free() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, free_with_wrong_tag);
    assert_eq!(send(&kernel, &fake), NtStatus::SUCCESS);
    let violations = expect(&kernel, &[Rule::BadPoolFree, Rule::BadPoolFree]);
    at_this_file(&violations[0]);
    assert!(
        violations[0]
            .message
            .contains("'Tst2') on a block tagged 'Tst1'")
    );
    assert!(
        violations[1]
            .message
            .contains("not from ExAllocatePoolWithTag")
    );
    assert!(fake.driver.unload().is_clean());
}

unsafe fn dereference_garbage(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let mut not_an_object = 0u64;
    // SAFETY: the model checks the pointer against its objects before touching it.
    unsafe {
        if let Some(status) = other_request(irp) {
            return status;
        }
        sys::ObfDereferenceObject((&raw mut not_an_object).cast());
        sys::IoFreeWorkItem((&raw mut not_an_object).cast());
        complete(irp, NtStatus::SUCCESS, 0)
    }
}

#[test]
fn invalid_object() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, dereference_garbage);
    assert_eq!(send(&kernel, &fake), NtStatus::SUCCESS);
    let violations = expect(&kernel, &[Rule::InvalidObject, Rule::InvalidObject]);
    at_this_file(&violations[0]);
    assert!(violations[0].message.contains("ObDereferenceObject"));
    assert!(violations[1].message.contains("IoFreeWorkItem"));
    assert!(fake.driver.unload().is_clean());
}

// ---- Leaks at unload --------------------------------------------------------------------------

unsafe fn leak_everything(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let ctx = ctx(device);
    // SAFETY: a live IRP; the driver deliberately leaks pool, a work item, a timer, a file
    // reference, and this IRP itself.
    unsafe {
        if let Some(status) = other_request(irp) {
            return status;
        }
        let kept = try_box(17u64).expect("no fault injected");
        ctx.kept.store(Box::into_raw(kept), Ordering::Release);
        ctx.item
            .store(sys::IoAllocateWorkItem(device), Ordering::Release);
        sys::KeInitializeTimer(ctx.timer.get());
        sys::KeSetTimer(ctx.timer.get(), -10_000_000, std::ptr::null_mut());
        let handle = ctx.pending.load(Ordering::Acquire) as HANDLE;
        let mut object = std::ptr::null_mut();
        sys::ObReferenceObjectByHandle(
            handle,
            0,
            sys::io_file_object_type(),
            KERNEL_MODE,
            &mut object,
            std::ptr::null_mut(),
        );
        mark_pending(irp);
    }
    NtStatus::PENDING.raw()
}

#[test]
fn leaks_at_unload() {
    let kernel = kernel(1);
    let ctx = Ctx::new();
    let fake = load(&kernel, &ctx, leak_everything);
    kernel.create_foreign_device("\\Device\\Afd").unwrap();
    let theirs = kernel.create_file("\\Device\\Afd", None, 0).unwrap();
    ctx.pending.store(theirs.as_raw().cast(), Ordering::Release);
    let open = kernel.create_file(FAKE, None, 0).unwrap();
    send_async(&kernel, &fake, CompletionFlags::ALWAYS);
    let report = fake.driver.unload();
    let rules: Vec<Rule> = report.leaks.iter().map(|l| l.rule).collect();
    for rule in [
        Rule::PoolLeak,
        Rule::IrpLeak,
        Rule::WorkItemLeak,
        Rule::TimerLeak,
        Rule::FileObjectLeak,
    ] {
        assert!(rules.contains(&rule), "{rule:?} missing from {report}");
    }
    assert_eq!(report.leaks_of(Rule::FileObjectLeak).count(), 2, "{report}");
    assert!(
        report.to_string().contains("host_model_verifier.rs:"),
        "{report}"
    );
    assert!(
        report
            .to_string()
            .contains("received by dispatch IRP_MJ_INTERNAL_DEVICE_CONTROL")
    );
    assert!(
        report
            .to_string()
            .contains("reference(s) taken by the driver")
    );
    assert!(report.to_string().contains("still open"));
    let violations = kernel.take_violations();
    let mut fired: Vec<Rule> = violations.iter().map(|v| v.rule).collect();
    fired.dedup();
    assert_eq!(
        fired,
        [
            Rule::PoolLeak,
            Rule::IrpLeak,
            Rule::WorkItemLeak,
            Rule::FileObjectLeak,
            Rule::TimerLeak
        ]
    );
    assert!(
        violations
            .iter()
            .all(|v| v.site.entry == Entry::DriverUnload)
    );
    assert_ne!(theirs, open);
    // SAFETY: the leaked block, freed now that the report was checked.
    drop(unsafe { Box::from_raw(ctx.kept.load(Ordering::Acquire)) });
}

unsafe extern "system" fn entry_keeping_devices(
    driver: *mut DRIVER_OBJECT,
    _: *const UNICODE_STRING,
) -> NTSTATUS {
    unsafe extern "system" fn unload_nothing(_: *mut DRIVER_OBJECT) {}
    // SAFETY: the driver object passed to DriverEntry.
    unsafe {
        (*driver).DriverUnload = Some(unload_nothing);
        create_device(driver, FAKE, 0).raw()
    }
}

#[test]
fn device_leak() {
    let kernel = kernel(1);
    kernel.expect_violation(Rule::DeviceLeak);
    let driver = kernel.load_driver(entry_keeping_devices).unwrap();
    let report = driver.unload();
    assert_eq!(report.leaks.len(), 1, "{report}");
    assert_eq!(report.leaks[0].rule, Rule::DeviceLeak);
    assert!(report.leaks[0].detail.contains("not deleted"));
}

unsafe extern "system" fn entry_failing_after_allocating(
    driver: *mut DRIVER_OBJECT,
    _: *const UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: the driver object passed to DriverEntry; the work item is leaked deliberately.
    unsafe {
        let status = create_device(driver, FAKE, 0);
        if status.is_success() {
            sys::IoDeleteDevice((*driver).DeviceObject);
        }
        let _ = sys::IoAllocateWorkItem(std::ptr::null_mut());
    }
    NtStatus::INSUFFICIENT_RESOURCES.raw()
}

#[test]
fn a_failed_driver_entry_is_checked_for_leaks() {
    let kernel = kernel(1);
    assert_eq!(
        kernel.load_driver(entry_failing_after_allocating).err(),
        Some(NtStatus::INSUFFICIENT_RESOURCES)
    );
    let violations = expect(&kernel, &[Rule::WorkItemLeak]);
    assert!(violations[0].message.contains("after DriverEntry failed"));
    assert!(kernel.device_by_name(FAKE).is_none());
}

unsafe extern "system" fn entry_without_devices(
    driver: *mut DRIVER_OBJECT,
    _: *const UNICODE_STRING,
) -> NTSTATUS {
    unsafe extern "system" fn unload_nothing(_: *mut DRIVER_OBJECT) {}
    // SAFETY: the driver object passed to DriverEntry.
    unsafe { (*driver).DriverUnload = Some(unload_nothing) };
    NtStatus::SUCCESS.raw()
}

/// Found in the ReactOS VM: a driver with a `DriverUnload` but no device object cannot be
/// stopped there (the tdiecho driver once dropped its device and its service stop failed).
#[test]
fn a_driver_without_a_device_cannot_be_unloaded() {
    let kernel = kernel(1);
    let driver = kernel.load_driver(entry_without_devices).unwrap();
    let report = driver.unload();
    assert_eq!(report.leaks.len(), 1, "{report}");
    assert_eq!(report.leaks[0].rule, Rule::UnloadRefused);
    // With a device the stop goes through (that driver forgets to delete it: another rule).
    kernel.expect_violation(Rule::DeviceLeak);
    let driver = kernel.load_driver(entry_keeping_devices).unwrap();
    let report = driver.unload();
    assert!(
        report.leaks_of(Rule::UnloadRefused).next().is_none(),
        "{report}"
    );
}
