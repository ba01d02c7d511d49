//! The kernel services of `crate::nt::sys` on the host: one function per function of the
//! kernel contract (`src/nt/sys/kernel.rs`, x64 names and signatures), implemented by the model.
//!
//! Each function enters a `ModelScope` first, so allocations the model makes on the driver's
//! behalf are not attributed to the driver, and forwards to the module that models the service.
//! Functions whose misuse the verifier reports are `#[track_caller]`, so the report names the
//! driver's call site (through `#[track_caller]` wrappers in `nt`). To add a function to the
//! contract: add it here, in the section of its kernel component, with the same signature.
#![allow(
    non_snake_case,
    reason = "the NT kernel's export names, as in src/nt/sys/kernel.rs"
)]

use super::context::{self, ModelScope};
use super::verifier::Site;
use super::{cancel, clock, debug, device, dpc, io, mdl, object, pool, spinlock, thread, work};
use crate::nt::NtStatus;
use crate::nt::types::*;
use std::ffi::c_void;

// ---- Executive pool -------------------------------------------------------------------------

/// `ExAllocatePoolWithTag`: a 16-byte aligned block, attributed to the driver and recorded
/// with its tag and call site; null when fault injection fails it.
///
/// # Safety
/// IRQL ≤ DISPATCH_LEVEL for non-paged pool.
pub unsafe fn ExAllocatePoolWithTag(pool_type: u32, size: usize, tag: u32) -> *mut c_void {
    let _ = pool_type;
    let _model = ModelScope::enter();
    pool::allocate_pool(size, tag).cast()
}

/// `ExFreePoolWithTag`: the tag must be the block's.
///
/// # Safety
/// `p` was returned by `ExAllocatePoolWithTag` and is freed once.
#[track_caller]
pub unsafe fn ExFreePoolWithTag(p: *mut c_void, tag: u32) {
    let site = Site::caller();
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe { pool::free_pool(p.cast(), tag, site) };
}

// ---- DPCs -----------------------------------------------------------------------------------

/// `KeInitializeDpc`.
///
/// # Safety
/// `dpc` points to writable `KDPC` storage that is not queued.
pub unsafe fn KeInitializeDpc(dpc: *mut KDPC, routine: PKDEFERRED_ROUTINE, context: *mut c_void) {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe { dpc::initialize(dpc, routine, context) };
}

/// `KeInsertQueueDpc`: FALSE if the DPC is already queued.
///
/// # Safety
/// `dpc` is initialised and stays valid until its routine has run or it is removed.
pub unsafe fn KeInsertQueueDpc(dpc: *mut KDPC, arg1: *mut c_void, arg2: *mut c_void) -> BOOLEAN {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    BOOLEAN::from(unsafe { dpc::insert(&context::current(), dpc, arg1, arg2) })
}

/// `KeRemoveQueueDpc`: TRUE if the DPC was queued.
///
/// # Safety
/// `dpc` is initialised.
pub unsafe fn KeRemoveQueueDpc(dpc: *mut KDPC) -> BOOLEAN {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    BOOLEAN::from(unsafe { dpc::remove(&context::current(), dpc) })
}

/// `KeFlushQueuedDpcs`: waits for every DPC queued before the call. PASSIVE_LEVEL.
///
/// # Safety
/// No other precondition than the IRQL, which the verifier checks.
#[track_caller]
pub unsafe fn KeFlushQueuedDpcs() {
    let site = Site::caller();
    let _model = ModelScope::enter();
    dpc::flush(&context::current(), site);
}

// ---- Timers ---------------------------------------------------------------------------------

/// `KeInitializeTimer`.
///
/// # Safety
/// `timer` points to writable `KTIMER` storage that is not set.
pub unsafe fn KeInitializeTimer(timer: *mut KTIMER) {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe { clock::initialize(timer) };
}

/// `KeSetTimer`: relative (negative) or absolute due time in 100 ns units; TRUE if the timer
/// was already set.
///
/// # Safety
/// `timer` is initialised, `dpc` null or initialised; both stay valid while the timer is set.
pub unsafe fn KeSetTimer(timer: *mut KTIMER, due_time: LARGE_INTEGER, dpc: *mut KDPC) -> BOOLEAN {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    BOOLEAN::from(unsafe { clock::set(&context::current(), timer, due_time, dpc) })
}

/// `KeCancelTimer`: TRUE if the timer was set.
///
/// # Safety
/// `timer` is initialised.
pub unsafe fn KeCancelTimer(timer: *mut KTIMER) -> BOOLEAN {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    BOOLEAN::from(unsafe { clock::cancel(&context::current(), timer) })
}

// ---- Work items -----------------------------------------------------------------------------

/// `IoAllocateWorkItem`: null when fault injection fails it.
///
/// # Safety
/// `device` is a device object of the driver.
pub unsafe fn IoAllocateWorkItem(device: *mut DEVICE_OBJECT) -> *mut IO_WORKITEM {
    let _model = ModelScope::enter();
    work::allocate(&context::current(), device)
}

/// `IoQueueWorkItem`: runs `routine(device, context)` on a worker thread at PASSIVE_LEVEL.
///
/// # Safety
/// `item` is a live work item and `context` valid for the routine.
#[track_caller]
pub unsafe fn IoQueueWorkItem(
    item: *mut IO_WORKITEM,
    routine: PIO_WORKITEM_ROUTINE,
    queue_type: u32,
    context: *mut c_void,
) {
    let _ = queue_type;
    let site = Site::caller();
    let _model = ModelScope::enter();
    work::queue(&context::current(), item, routine, context, site);
}

/// `IoFreeWorkItem`.
///
/// # Safety
/// `item` is a live work item that is not queued.
#[track_caller]
pub unsafe fn IoFreeWorkItem(item: *mut IO_WORKITEM) {
    let site = Site::caller();
    let _model = ModelScope::enter();
    work::free(&context::current(), item, site);
}

// ---- Devices --------------------------------------------------------------------------------

/// `IoCreateDevice`.
///
/// # Safety
/// `driver` is the driver's object, `name` null or a valid `UNICODE_STRING`, `device` a valid
/// out pointer.
#[track_caller]
pub unsafe fn IoCreateDevice(
    driver: *mut DRIVER_OBJECT,
    extension_size: u32,
    name: *mut UNICODE_STRING,
    device_type: u32,
    characteristics: u32,
    exclusive: BOOLEAN,
    device: *mut *mut DEVICE_OBJECT,
) -> NTSTATUS {
    let site = Site::caller();
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    let status = unsafe {
        device::create_device(
            &context::current(),
            driver,
            extension_size,
            name,
            device_type,
            characteristics,
            exclusive != 0,
            device,
            site,
        )
    };
    status.raw()
}

/// `IoCreateSymbolicLink`. PASSIVE_LEVEL.
///
/// # Safety
/// `link` and `target` are valid `UNICODE_STRING`s.
pub unsafe fn IoCreateSymbolicLink(
    link: *mut UNICODE_STRING,
    target: *mut UNICODE_STRING,
) -> NTSTATUS {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe { device::create_link(&context::current(), link, target) }.raw()
}

/// `IoDeleteSymbolicLink`. PASSIVE_LEVEL.
///
/// # Safety
/// `link` is a valid `UNICODE_STRING`.
pub unsafe fn IoDeleteSymbolicLink(link: *mut UNICODE_STRING) -> NTSTATUS {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe { device::delete_link(&context::current(), link) }.raw()
}

/// `IoDeleteDevice`.
///
/// # Safety
/// `device` was created by the driver and is not used by it afterwards.
#[track_caller]
pub unsafe fn IoDeleteDevice(device: *mut DEVICE_OBJECT) {
    let site = Site::caller();
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe { device::delete_device(&context::current(), device, site) };
}

// ---- Cancel spin lock -----------------------------------------------------------------------

/// `IoAcquireCancelSpinLock`: raises to DISPATCH_LEVEL; stores the previous IRQL in `*irql`.
///
/// # Safety
/// `irql` is a valid out pointer.
#[track_caller]
pub unsafe fn IoAcquireCancelSpinLock(irql: *mut KIRQL) {
    let site = Site::caller();
    let _model = ModelScope::enter();
    let old = cancel::acquire(&context::current(), site);
    // SAFETY: forwarded caller contract.
    unsafe { irql.write(old) };
}

/// `IoReleaseCancelSpinLock`: releases and lowers to `irql`.
///
/// # Safety
/// The cancel spin lock is held by this thread.
#[track_caller]
pub unsafe fn IoReleaseCancelSpinLock(irql: KIRQL) {
    let site = Site::caller();
    let _model = ModelScope::enter();
    cancel::release(&context::current(), irql, site);
}

// ---- Memory manager -------------------------------------------------------------------------

/// `MmMapLockedPagesSpecifyCache` into system space: null on (injected) failure.
///
/// # Safety
/// `mdl` is a valid MDL describing locked pages.
#[track_caller]
pub unsafe fn MmMapLockedPagesSpecifyCache(
    mdl: *mut MDL,
    access_mode: KPROCESSOR_MODE,
    cache_type: u32,
    base_address: *mut c_void,
    bug_check_on_failure: u32,
    priority: u32,
) -> *mut c_void {
    let _ = (
        access_mode,
        cache_type,
        base_address,
        bug_check_on_failure,
        priority,
    );
    let site = Site::caller();
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe { mdl::map(&context::current(), mdl, site) }
}

/// The guarded copy from user memory (`__try { RtlCopyMemory } __except`): copies what is
/// mapped readable of `[src, src + len)` into `dst`; 0, or `STATUS_ACCESS_VIOLATION` where the
/// range leaves the model's mapped user ranges (`host::user`).
///
/// # Safety
/// `dst` is writable for `len` bytes; `src` is a user-mode address range.
pub unsafe fn read_user(dst: *mut u8, src: usize, len: usize) -> i32 {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe { super::user::read_user(&context::current(), dst, src, len) }
}

/// The guarded copy to user memory: copies `src` into what is mapped writable of
/// `[dst, dst + len)`; 0, or `STATUS_ACCESS_VIOLATION` at the first unmapped or read-only byte.
///
/// # Safety
/// `src` is readable for `len` bytes (or is `dst` itself, a write probe); `dst` is a user-mode
/// address range.
pub unsafe fn write_user(dst: usize, src: *const u8, len: usize) -> i32 {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe { super::user::write_user(&context::current(), dst, src, len) }
}

// ---- Object manager -------------------------------------------------------------------------

/// `ObReferenceObjectByHandle`: `STATUS_INVALID_HANDLE`, `STATUS_OBJECT_TYPE_MISMATCH`, or
/// success with one more reference on the object.
///
/// # Safety
/// `object` is a valid out pointer.
pub unsafe fn ObReferenceObjectByHandle(
    handle: HANDLE,
    access: ACCESS_MASK,
    object_type: *mut c_void,
    access_mode: KPROCESSOR_MODE,
    object: *mut *mut c_void,
    handle_information: *mut c_void,
) -> NTSTATUS {
    let _ = (access, access_mode, handle_information);
    let model = ModelScope::enter();
    let result = object::reference_by_handle(
        &context::current(),
        handle,
        object_type,
        model.called_by_driver(),
    );
    match result {
        Ok(referenced) => {
            // SAFETY: forwarded caller contract.
            unsafe { object.write(referenced) };
            NtStatus::SUCCESS.raw()
        }
        Err(status) => status.raw(),
    }
}

/// `ObfDereferenceObject`: returns the new reference count; the last reference of a file
/// object sends `IRP_MJ_CLOSE` (from a worker thread when called at DISPATCH_LEVEL).
///
/// # Safety
/// `object` is an object the caller holds a reference on.
#[track_caller]
pub unsafe fn ObfDereferenceObject(object: *mut c_void) -> isize {
    let site = Site::caller();
    let model = ModelScope::enter();
    object::dereference(&context::current(), object, model.called_by_driver(), site)
}

/// The `IoFileObjectType` data export.
///
/// # Safety
/// No precondition.
pub unsafe fn io_file_object_type() -> *mut c_void {
    std::ptr::from_ref(&object::FILE_OBJECT_TYPE)
        .cast_mut()
        .cast()
}

// ---- Bug checks and debugger ----------------------------------------------------------------

/// `KeBugCheckEx`: on the host, a panic naming the code and parameters.
///
/// # Safety
/// No precondition; it does not return.
pub unsafe fn KeBugCheckEx(code: u32, p1: usize, p2: usize, p3: usize, p4: usize) -> ! {
    let _model = ModelScope::enter();
    panic!(
        "KeBugCheckEx({code:#010x}, {p1:#x}, {p2:#x}, {p3:#x}, {p4:#x}): the driver crashed the system"
    );
}

/// `DbgPrintEx(component, level, "%s", arg)`.
///
/// # Safety
/// `format` and (for `"%s"`) `arg` are NUL-terminated strings.
pub unsafe fn DbgPrintEx(component: u32, level: u32, format: *const u8, arg: *const u8) -> u32 {
    let _ = component;
    let _model = ModelScope::enter();
    let kernel = context::try_current();
    // SAFETY: forwarded caller contract.
    unsafe { debug::print(kernel.as_deref(), level, format, arg) };
    0
}

// ---- Time -----------------------------------------------------------------------------------

/// `KeQueryPerformanceCounter`: the model clock at 10 MHz.
///
/// # Safety
/// `frequency` is null or a valid out pointer.
pub unsafe fn KeQueryPerformanceCounter(frequency: *mut LARGE_INTEGER) -> LARGE_INTEGER {
    let _model = ModelScope::enter();
    if !frequency.is_null() {
        // SAFETY: forwarded caller contract.
        unsafe { frequency.write(10_000_000) };
    }
    context::current().clock.now() as LARGE_INTEGER
}

/// `KeQueryInterruptTime`: the model clock in 100 ns units.
///
/// # Safety
/// No precondition.
pub unsafe fn KeQueryInterruptTime() -> u64 {
    let _model = ModelScope::enter();
    context::current().clock.now()
}

// ---- Threads --------------------------------------------------------------------------------

/// `PsGetCurrentThread`: the calling thread's identity.
///
/// # Safety
/// No precondition.
pub unsafe fn PsGetCurrentThread() -> *mut c_void {
    thread::current()
}

/// `IoGetStackLimits`: the calling thread's stack bounds.
///
/// # Safety
/// `low_limit` and `high_limit` are writable.
pub unsafe fn IoGetStackLimits(low_limit: *mut usize, high_limit: *mut usize) {
    let (low, high) = thread::stack_limits();
    // SAFETY: caller contract.
    unsafe {
        *low_limit = low;
        *high_limit = high;
    }
}

/// `PsGetCurrentProcessId`: the process the calling thread runs in (see
/// [`thread::in_process`]).
///
/// # Safety
/// No precondition.
pub unsafe fn PsGetCurrentProcessId() -> HANDLE {
    thread::process_id() as HANDLE
}

/// `ZwQuerySystemInformation`: `SystemBasicInformation` (0: page size and physical pages from
/// [`Config::physical_memory`](super::Config::physical_memory); the buffer must be exactly
/// `SYSTEM_BASIC_INFORMATION`'s 64 bytes, as the kernel wants) and `SystemTimeOfDayInformation`
/// (3: `CurrentTime` is the model's system time); any other class is
/// `STATUS_INVALID_INFO_CLASS`. PASSIVE_LEVEL.
///
/// # Safety
/// `information` points to `length` writable bytes; `return_length` is null or writable.
pub unsafe fn ZwQuerySystemInformation(
    class: u32,
    information: *mut c_void,
    length: u32,
    return_length: *mut u32,
) -> NTSTATUS {
    const BASIC: u32 = 0;
    const BASIC_SIZE: usize = 64;
    const TIME_OF_DAY: u32 = 3;
    const TIME_OF_DAY_SIZE: usize = 48;
    const PAGE: u64 = 4096;
    let _model = ModelScope::enter();
    let kernel = context::current();
    let mut answer = [0u8; 64];
    let size = match class {
        BASIC if length as usize == BASIC_SIZE => {
            let pages = u32::try_from(kernel.config.physical_memory / PAGE).unwrap_or(u32::MAX);
            answer[4..8].copy_from_slice(&156_250u32.to_le_bytes());
            answer[8..12].copy_from_slice(&(PAGE as u32).to_le_bytes());
            answer[12..16].copy_from_slice(&pages.to_le_bytes());
            answer[20..24].copy_from_slice(&pages.saturating_sub(1).to_le_bytes());
            answer[24..28].copy_from_slice(&65_536u32.to_le_bytes());
            answer[56] = kernel.config.processors.min(64) as u8;
            BASIC_SIZE
        }
        TIME_OF_DAY if length as usize >= TIME_OF_DAY_SIZE => {
            let now = super::clock::BOOT_SYSTEM_TIME + kernel.clock.now();
            answer[..8].copy_from_slice(&super::clock::BOOT_SYSTEM_TIME.to_le_bytes());
            answer[8..16].copy_from_slice(&now.to_le_bytes());
            TIME_OF_DAY_SIZE
        }
        BASIC | TIME_OF_DAY => return NtStatus::INFO_LENGTH_MISMATCH.raw(),
        _ => return NtStatus::INVALID_INFO_CLASS.raw(),
    };
    // SAFETY: forwarded caller contract; `size` ≤ `length`.
    unsafe {
        std::ptr::copy_nonoverlapping(answer.as_ptr(), information.cast(), size);
        if !return_length.is_null() {
            return_length.write(size as u32);
        }
    }
    NtStatus::SUCCESS.raw()
}

/// `KeDelayExecutionThread`: `STATUS_SUCCESS` after the interval. IRQL ≤ APC_LEVEL.
///
/// # Safety
/// `interval` points to a valid `LARGE_INTEGER`.
#[track_caller]
pub unsafe fn KeDelayExecutionThread(
    wait_mode: KPROCESSOR_MODE,
    alertable: BOOLEAN,
    interval: *mut LARGE_INTEGER,
) -> NTSTATUS {
    let _ = (wait_mode, alertable);
    let site = Site::caller();
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    thread::delay(unsafe { interval.read() }, site);
    NtStatus::SUCCESS.raw()
}

// ---- Security ------------------------------------------------------------------------------

/// `SeCaptureSubjectContext`: the calling thread's token, as the model keeps it (an
/// administrator's unless the test made the thread an ordinary user's).
///
/// # Safety
/// `context` points to writable memory for a `SECURITY_SUBJECT_CONTEXT`.
pub unsafe fn SeCaptureSubjectContext(context: *mut SECURITY_SUBJECT_CONTEXT) {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe {
        context.write(SECURITY_SUBJECT_CONTEXT {
            ClientToken: std::ptr::null_mut(),
            ImpersonationLevel: 0,
            PrimaryToken: thread::token(),
            ProcessAuditId: std::ptr::null_mut(),
        })
    };
}

/// `SeReleaseSubjectContext`: nothing to release in the model.
///
/// # Safety
/// `context` was filled by `SeCaptureSubjectContext`.
pub unsafe fn SeReleaseSubjectContext(context: *mut SECURITY_SUBJECT_CONTEXT) {
    let _ = context;
}

/// `SeLockSubjectContext`: the model's tokens never change, so there is nothing to lock.
///
/// # Safety
/// `context` was filled by `SeCaptureSubjectContext`.
pub unsafe fn SeLockSubjectContext(context: *mut SECURITY_SUBJECT_CONTEXT) {
    let _ = context;
}

/// `SeUnlockSubjectContext`: see `SeLockSubjectContext`.
///
/// # Safety
/// `context` was locked by `SeLockSubjectContext`.
pub unsafe fn SeUnlockSubjectContext(context: *mut SECURITY_SUBJECT_CONTEXT) {
    let _ = context;
}

/// `SeTokenIsAdmin`: whether the token is the model's administrator token.
///
/// # Safety
/// `token` came from a captured subject context.
pub unsafe fn SeTokenIsAdmin(token: *mut std::ffi::c_void) -> BOOLEAN {
    BOOLEAN::from(thread::is_admin_token(token))
}

// ---- Spin locks and IRQL --------------------------------------------------------------------

/// `KeAcquireSpinLockRaiseToDpc`: returns the previous IRQL.
///
/// # Safety
/// `lock` points to an initialised `KSPIN_LOCK` that outlives the hold.
#[track_caller]
pub unsafe fn KeAcquireSpinLockRaiseToDpc(lock: *mut KSPIN_LOCK) -> KIRQL {
    let site = Site::caller();
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe { spinlock::acquire_raise_to_dpc(lock, site) }
}

/// `KeReleaseSpinLock`: releases and lowers to `irql`.
///
/// # Safety
/// `lock` is held by this thread.
#[track_caller]
pub unsafe fn KeReleaseSpinLock(lock: *mut KSPIN_LOCK, irql: KIRQL) {
    let site = Site::caller();
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe { spinlock::release_lower(lock, irql, site) };
}

/// `KeAcquireSpinLockAtDpcLevel`.
///
/// # Safety
/// `lock` points to an initialised `KSPIN_LOCK`; IRQL is DISPATCH_LEVEL.
#[track_caller]
pub unsafe fn KeAcquireSpinLockAtDpcLevel(lock: *mut KSPIN_LOCK) {
    let site = Site::caller();
    let _model = ModelScope::enter();
    spinlock::check_at_dispatch(lock, site, "KeAcquireSpinLockAtDpcLevel");
    // SAFETY: forwarded caller contract.
    unsafe { spinlock::acquire(lock, site) };
}

/// `KeReleaseSpinLockFromDpcLevel`.
///
/// # Safety
/// `lock` is held by this thread at DISPATCH_LEVEL.
#[track_caller]
pub unsafe fn KeReleaseSpinLockFromDpcLevel(lock: *mut KSPIN_LOCK) {
    let site = Site::caller();
    let _model = ModelScope::enter();
    spinlock::check_at_dispatch(lock, site, "KeReleaseSpinLockFromDpcLevel");
    // SAFETY: forwarded caller contract.
    unsafe { spinlock::release(lock, site) };
}

/// `KeGetCurrentIrql`.
///
/// # Safety
/// No precondition.
pub unsafe fn KeGetCurrentIrql() -> KIRQL {
    let _model = ModelScope::enter();
    super::irql::current_irql()
}

// ---- I/O manager ----------------------------------------------------------------------------

/// `IoCompleteRequest`: runs the completion routines and the I/O manager's final stage.
///
/// # Safety
/// `irp` is an IRP the driver owns, completed once.
#[track_caller]
pub unsafe fn IofCompleteRequest(irp: *mut IRP, priority_boost: i8) {
    let _ = priority_boost;
    let site = Site::caller();
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract (a stale pointer is reported, not dereferenced).
    unsafe { io::complete(&context::current(), irp, site) };
}

// ---- A TDI client's calls (nt::tdi_client, the tdiecho driver) ------------------------------

/// `ZwCreateFile` as a kernel-mode caller: the object name's device and the EA buffer go to
/// [`KernelHandle::create_file`](super::KernelHandle::create_file) (share access as given; the
/// other arguments are not modelled).
///
/// # Safety
/// Valid pointers as for the kernel's `ZwCreateFile`; `ea` is null or `ea_length` bytes.
#[allow(clippy::too_many_arguments, reason = "the kernel's prototype")]
pub unsafe fn ZwCreateFile(
    handle: *mut HANDLE,
    access: ACCESS_MASK,
    attributes: *mut OBJECT_ATTRIBUTES,
    io_status: *mut IO_STATUS_BLOCK,
    allocation_size: *mut LARGE_INTEGER,
    file_attributes: u32,
    share_access: u32,
    disposition: u32,
    options: u32,
    ea: *mut c_void,
    ea_length: u32,
) -> NTSTATUS {
    let _ = (
        access,
        allocation_size,
        file_attributes,
        disposition,
        options,
    );
    let kernel = super::KernelHandle::current();
    // SAFETY: caller contract: the attributes and their name are valid for the call.
    let path = unsafe {
        let name = &*(*attributes).ObjectName;
        let wide = std::slice::from_raw_parts(name.Buffer, usize::from(name.Length / 2));
        String::from_utf16_lossy(wide)
    };
    let ea = (!ea.is_null()).then(|| {
        // SAFETY: caller contract.
        unsafe { std::slice::from_raw_parts(ea as *const u8, ea_length as usize) }
    });
    match kernel.create_file(&path, ea, share_access as u16) {
        Ok(opened) => {
            // SAFETY: caller contract: valid out pointers.
            unsafe {
                handle.write(opened.as_raw());
                (*io_status).Status.Status = 0;
                (*io_status).Information = 0;
            }
            NtStatus::SUCCESS.raw()
        }
        Err(status) => status.raw(),
    }
}

/// `ZwClose` of a kernel handle.
///
/// # Safety
/// No precondition (an unknown handle is `STATUS_INVALID_HANDLE`).
pub unsafe fn ZwClose(handle: HANDLE) -> NTSTATUS {
    super::KernelHandle::current()
        .close(super::Handle::from_raw(handle))
        .raw()
}

/// `IoGetRelatedDeviceObject`: the file object's device (the model stacks no devices).
///
/// # Safety
/// `file` is a referenced file object.
pub unsafe fn IoGetRelatedDeviceObject(file: *mut FILE_OBJECT) -> *mut DEVICE_OBJECT {
    // SAFETY: caller contract.
    unsafe { (*file).DeviceObject }
}

/// `IoAllocateIrp`.
///
/// # Safety
/// IRQL ≤ DISPATCH_LEVEL.
pub unsafe fn IoAllocateIrp(stack_size: CCHAR, charge_quota: BOOLEAN) -> *mut IRP {
    let _ = charge_quota;
    let _model = ModelScope::enter();
    io::allocate(&context::current(), stack_size)
}

/// `IoFreeIrp` of an IRP the caller owns.
///
/// # Safety
/// `irp` is an IRP of `IoAllocateIrp` the caller owns.
pub unsafe fn IoFreeIrp(irp: *mut IRP) {
    super::KernelHandle::current().free_irp(irp);
}

/// `IoCallDriver`.
///
/// # Safety
/// `irp` is a built IRP the caller owns, for `device`.
pub unsafe fn IofCallDriver(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    super::KernelHandle::current()
        .call_driver(device, irp)
        .raw()
}

/// `IoAllocateMdl` (no secondary buffer, no IRP): an MDL over `length` bytes at `va`, which
/// the model treats as non-paged pool.
///
/// # Safety
/// `va` is valid for `length` bytes while the MDL lives.
pub unsafe fn IoAllocateMdl(
    va: *mut c_void,
    length: u32,
    secondary: BOOLEAN,
    charge_quota: BOOLEAN,
    irp: *mut IRP,
) -> *mut MDL {
    let _ = (secondary, charge_quota, irp);
    let _model = ModelScope::enter();
    mdl::allocate(
        &context::current(),
        va.cast(),
        length as usize,
        mdl::MdlKind::NonPagedPool,
    )
}

/// `MmBuildMdlForNonPagedPool`: the model's MDLs of `IoAllocateMdl` are already built.
///
/// # Safety
/// `mdl` is an MDL of `IoAllocateMdl`.
pub unsafe fn MmBuildMdlForNonPagedPool(mdl: *mut MDL) {
    let _ = mdl;
}

/// `IoFreeMdl`.
///
/// # Safety
/// `mdl` is an MDL of `IoAllocateMdl`, freed once.
pub unsafe fn IoFreeMdl(mdl: *mut MDL) {
    let _model = ModelScope::enter();
    mdl::free(&context::current(), mdl);
}

// ---- TDI clients ----------------------------------------------------------------------------

/// Calls a TDI client's event handler (`f`, which calls the registered function) as code of
/// the client: the verifier checks the transport's calling rules first — DISPATCH_LEVEL
/// ([`Rule::ClientEventIrql`]) and no spin lock of the driver held
/// ([`Rule::ClientEventLockHeld`]) — and the client's allocations are not the driver's. The
/// kernel build calls `f` directly.
///
/// [`Rule::ClientEventIrql`]: super::verifier::Rule::ClientEventIrql
/// [`Rule::ClientEventLockHeld`]: super::verifier::Rule::ClientEventLockHeld
#[track_caller]
pub fn call_client_handler<R>(f: impl FnOnce() -> R) -> R {
    let site = Site::caller();
    {
        let _model = ModelScope::enter();
        let irql = super::irql::current_irql();
        if irql != super::irql::DISPATCH_LEVEL {
            super::verifier::report(
                super::verifier::Rule::ClientEventIrql,
                site,
                format!("TDI client event handler called at IRQL {irql}, not DISPATCH_LEVEL"),
            );
        }
        let held = spinlock::held_count();
        if held != 0 {
            super::verifier::report(
                super::verifier::Rule::ClientEventLockHeld,
                site,
                format!("TDI client event handler called with {held} spin lock(s) held"),
            );
        }
    }
    let _scope = context::EntryScope::enter(std::ptr::null(), super::verifier::Entry::Client);
    f()
}
