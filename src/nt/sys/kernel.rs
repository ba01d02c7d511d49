//! `raw-dylib` imports from `ntoskrnl.exe` and `hal.dll` (kernel targets only).
//!
//! Every import must be exported by ReactOS for the target architecture; `tests/image_checks.rs`
//! verifies the built images against the export lists. `+verbatim` keeps the DLL names as
//! written, and on x86 `import_name_type = "undecorated"` imports `KeSetTimer` rather than
//! `_KeSetTimer@16`.
#![allow(non_snake_case, clippy::missing_safety_doc)]

use crate::nt::types::*;
use core::ffi::c_void;

macro_rules! imports {
    ($dll:literal, $abi:literal { $($item:tt)* }) => {
        #[cfg_attr(target_arch = "x86", link(name = $dll, kind = "raw-dylib", modifiers = "+verbatim", import_name_type = "undecorated"))]
        #[cfg_attr(not(target_arch = "x86"), link(name = $dll, kind = "raw-dylib", modifiers = "+verbatim"))]
        unsafe extern $abi { $($item)* }
    };
}

imports!("ntoskrnl.exe", "system" {
    pub fn SeCaptureSubjectContext(context: *mut SECURITY_SUBJECT_CONTEXT);
    pub fn SeReleaseSubjectContext(context: *mut SECURITY_SUBJECT_CONTEXT);
    pub fn SeLockSubjectContext(context: *mut SECURITY_SUBJECT_CONTEXT);
    pub fn SeUnlockSubjectContext(context: *mut SECURITY_SUBJECT_CONTEXT);
    pub fn SeTokenIsAdmin(token: *mut c_void) -> BOOLEAN;
    pub fn ExAllocatePoolWithTag(pool_type: u32, size: usize, tag: u32) -> *mut c_void;
    pub fn ExFreePoolWithTag(p: *mut c_void, tag: u32);
    pub fn KeInitializeDpc(dpc: *mut KDPC, routine: PKDEFERRED_ROUTINE, context: *mut c_void);
    pub fn KeInsertQueueDpc(dpc: *mut KDPC, arg1: *mut c_void, arg2: *mut c_void) -> BOOLEAN;
    pub fn KeRemoveQueueDpc(dpc: *mut KDPC) -> BOOLEAN;
    pub fn KeFlushQueuedDpcs();
    pub fn KeInitializeTimer(timer: *mut KTIMER);
    pub fn KeSetTimer(timer: *mut KTIMER, due_time: LARGE_INTEGER, dpc: *mut KDPC) -> BOOLEAN;
    pub fn KeCancelTimer(timer: *mut KTIMER) -> BOOLEAN;
    pub fn IoAllocateWorkItem(device: *mut DEVICE_OBJECT) -> *mut IO_WORKITEM;
    pub fn IoQueueWorkItem(
        item: *mut IO_WORKITEM,
        routine: PIO_WORKITEM_ROUTINE,
        queue_type: u32,
        context: *mut c_void,
    );
    pub fn IoFreeWorkItem(item: *mut IO_WORKITEM);
    pub fn IoCreateDevice(
        driver: *mut DRIVER_OBJECT,
        extension_size: u32,
        name: *mut UNICODE_STRING,
        device_type: u32,
        characteristics: u32,
        exclusive: BOOLEAN,
        device: *mut *mut DEVICE_OBJECT,
    ) -> NTSTATUS;
    pub fn IoDeleteDevice(device: *mut DEVICE_OBJECT);
    pub fn IoCreateSymbolicLink(link: *mut UNICODE_STRING, target: *mut UNICODE_STRING) -> NTSTATUS;
    pub fn IoDeleteSymbolicLink(link: *mut UNICODE_STRING) -> NTSTATUS;
    pub fn IoAcquireCancelSpinLock(irql: *mut KIRQL);
    pub fn IoReleaseCancelSpinLock(irql: KIRQL);
    pub fn MmMapLockedPagesSpecifyCache(
        mdl: *mut MDL,
        access_mode: KPROCESSOR_MODE,
        cache_type: u32,
        base_address: *mut c_void,
        bug_check_on_failure: u32,
        priority: u32,
    ) -> *mut c_void;
    pub fn ObReferenceObjectByHandle(
        handle: HANDLE,
        access: ACCESS_MASK,
        object_type: *mut c_void,
        access_mode: KPROCESSOR_MODE,
        object: *mut *mut c_void,
        handle_information: *mut c_void,
    ) -> NTSTATUS;
    pub fn KeBugCheckEx(code: u32, p1: usize, p2: usize, p3: usize, p4: usize) -> !;
    pub fn PsGetCurrentThread() -> *mut c_void;
    pub fn IoGetStackLimits(low_limit: *mut usize, high_limit: *mut usize);
    pub fn PsGetCurrentProcessId() -> HANDLE;
    pub fn ZwQuerySystemInformation(
        class: u32,
        information: *mut c_void,
        length: u32,
        return_length: *mut u32,
    ) -> NTSTATUS;
    pub fn KeDelayExecutionThread(
        wait_mode: KPROCESSOR_MODE,
        alertable: BOOLEAN,
        interval: *mut LARGE_INTEGER,
    ) -> NTSTATUS;
    // A TDI client's calls (`nt::tdi_client`, the tdiecho image).
    pub fn ZwCreateFile(
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
    ) -> NTSTATUS;
    pub fn ZwClose(handle: HANDLE) -> NTSTATUS;
    pub fn IoGetRelatedDeviceObject(file: *mut FILE_OBJECT) -> *mut DEVICE_OBJECT;
    pub fn IoAllocateIrp(stack_size: CCHAR, charge_quota: BOOLEAN) -> *mut IRP;
    pub fn IoFreeIrp(irp: *mut IRP);
    pub fn IoAllocateMdl(
        va: *mut c_void,
        length: u32,
        secondary: BOOLEAN,
        charge_quota: BOOLEAN,
        irp: *mut IRP,
    ) -> *mut MDL;
    pub fn MmBuildMdlForNonPagedPool(mdl: *mut MDL);
    pub fn IoFreeMdl(mdl: *mut MDL);
});

// Data imports live in their own block: on x86 `import_name_type` (which only applies to
// functions) makes rustc crash on a static, and a data export's name is undecorated anyway.
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    static IoFileObjectType: *mut c_void;
    static MmUserProbeAddress: usize;
}

/// `MmUserProbeAddress`: the first address above user space.
pub fn user_probe_address() -> usize {
    // SAFETY: ntoskrnl initialises MmUserProbeAddress at boot and never changes it.
    unsafe { MmUserProbeAddress }
}

/// The `IoFileObjectType` data export: the `POBJECT_TYPE` to pass to
/// `ObReferenceObjectByHandle` when the object must be a file object.
///
/// # Safety
/// Kernel mode only.
pub unsafe fn io_file_object_type() -> *mut c_void {
    // SAFETY: ntoskrnl initialises IoFileObjectType before any driver is loaded and never
    // changes it afterwards.
    unsafe { IoFileObjectType }
}

imports!("ntoskrnl.exe", "C" {
    /// `DbgPrintEx(ComponentId, Level, Format, ...)`; the driver always passes `"%s"` and one
    /// string, so the host model can implement it with a fixed signature.
    pub fn DbgPrintEx(component: u32, level: u32, format: *const u8, ...) -> u32;
});

imports!("hal.dll", "system" {
    pub fn KeQueryPerformanceCounter(frequency: *mut LARGE_INTEGER) -> LARGE_INTEGER;
});

#[cfg(target_arch = "x86")]
mod arch {
    use crate::nt::types::*;
    use core::ffi::c_void;

    imports!("hal.dll", "fastcall" {
        pub fn KfAcquireSpinLock(lock: *mut KSPIN_LOCK) -> KIRQL;
        pub fn KfReleaseSpinLock(lock: *mut KSPIN_LOCK, irql: KIRQL);
    });
    imports!("hal.dll", "system" {
        pub fn KeGetCurrentIrql() -> KIRQL;
    });
    imports!("ntoskrnl.exe", "fastcall" {
        pub fn IofCompleteRequest(irp: *mut IRP, priority_boost: i8);
        pub fn IofCallDriver(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS;
        pub fn ObfDereferenceObject(object: *mut c_void) -> isize;
        pub fn KefAcquireSpinLockAtDpcLevel(lock: *mut KSPIN_LOCK);
        pub fn KefReleaseSpinLockFromDpcLevel(lock: *mut KSPIN_LOCK);
    });
    imports!("ntoskrnl.exe", "system" {
        pub fn KeQueryInterruptTime() -> u64;
    });
}

/// The MSVC 64-bit arithmetic helpers LLVM calls on x86 (`i64`/`u64` division, remainder,
/// multiplication and shifts; callee-pops). ntoskrnl exports them as `_alldiv` & co. Rust never
/// calls them: they are declared only so that the import library resolves LLVM's libcalls.
///
/// The names carry one extra `_`: a cdecl item with `import_name_type = "undecorated"` keeps
/// its Rust name as the symbol (`__alldiv`, which is what LLVM calls) and the import name is
/// the symbol without its first `_` (`_alldiv`, what ntoskrnl exports).
#[cfg(target_arch = "x86")]
pub mod crt {
    imports!("ntoskrnl.exe", "C" {
        pub fn __alldiv();
        pub fn __aulldiv();
        pub fn __allrem();
        pub fn __aullrem();
        pub fn __allmul();
        pub fn __alldvrm();
        pub fn __aulldvrm();
        pub fn __allshl();
        pub fn __allshr();
        pub fn __aullshr();
    });
}

#[cfg(target_arch = "x86")]
pub use arch::{
    IofCallDriver, IofCompleteRequest, KeGetCurrentIrql, KeQueryInterruptTime, ObfDereferenceObject,
};

/// `KeAcquireSpinLockRaiseToDpc`: on x86 this is hal's fastcall `KfAcquireSpinLock`.
///
/// # Safety
/// `lock` points to an initialised `KSPIN_LOCK`; IRQL ≤ DISPATCH_LEVEL.
#[cfg(target_arch = "x86")]
pub unsafe fn KeAcquireSpinLockRaiseToDpc(lock: *mut KSPIN_LOCK) -> KIRQL {
    // SAFETY: forwarded caller contract.
    unsafe { arch::KfAcquireSpinLock(lock) }
}

/// `KeReleaseSpinLock`: on x86 this is hal's fastcall `KfReleaseSpinLock`.
///
/// # Safety
/// The lock is held by this processor and `irql` is the value its acquisition returned.
#[cfg(target_arch = "x86")]
pub unsafe fn KeReleaseSpinLock(lock: *mut KSPIN_LOCK, irql: KIRQL) {
    // SAFETY: forwarded caller contract.
    unsafe { arch::KfReleaseSpinLock(lock, irql) }
}

/// `KeAcquireSpinLockAtDpcLevel` (fastcall `Kef…` on x86).
///
/// # Safety
/// IRQL is DISPATCH_LEVEL and `lock` is initialised.
#[cfg(target_arch = "x86")]
pub unsafe fn KeAcquireSpinLockAtDpcLevel(lock: *mut KSPIN_LOCK) {
    // SAFETY: forwarded caller contract.
    unsafe { arch::KefAcquireSpinLockAtDpcLevel(lock) }
}

/// `KeReleaseSpinLockFromDpcLevel` (fastcall `Kef…` on x86).
///
/// # Safety
/// The lock is held by this processor at DISPATCH_LEVEL.
#[cfg(target_arch = "x86")]
pub unsafe fn KeReleaseSpinLockFromDpcLevel(lock: *mut KSPIN_LOCK) {
    // SAFETY: forwarded caller contract.
    unsafe { arch::KefReleaseSpinLockFromDpcLevel(lock) }
}

#[cfg(target_arch = "x86_64")]
mod arch {
    use crate::nt::types::*;
    use core::ffi::c_void;

    imports!("ntoskrnl.exe", "system" {
        pub fn KeAcquireSpinLockRaiseToDpc(lock: *mut KSPIN_LOCK) -> KIRQL;
        pub fn KeReleaseSpinLock(lock: *mut KSPIN_LOCK, irql: KIRQL);
        pub fn KeAcquireSpinLockAtDpcLevel(lock: *mut KSPIN_LOCK);
        pub fn KeReleaseSpinLockFromDpcLevel(lock: *mut KSPIN_LOCK);
        pub fn IofCompleteRequest(irp: *mut IRP, priority_boost: i8);
        pub fn IofCallDriver(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS;
        pub fn ObfDereferenceObject(object: *mut c_void) -> isize;
    });

    /// `KeGetCurrentIrql`: on x64 the IRQL is CR8 (the WDK's inline implementation).
    ///
    /// # Safety
    /// Kernel mode only.
    pub unsafe fn KeGetCurrentIrql() -> KIRQL {
        let irql: u64;
        // SAFETY: reading CR8 is allowed at CPL 0 and has no side effects.
        unsafe {
            core::arch::asm!("mov {}, cr8", out(reg) irql, options(nomem, nostack, preserves_flags))
        };
        irql as KIRQL
    }

    /// `KeQueryInterruptTime` (100 ns units since boot). ReactOS does not export it on x64,
    /// where the WDK inlines a read of `KUSER_SHARED_DATA`; this derives it from hal's
    /// performance counter instead, which also works where that page is not mapped (Wine).
    ///
    /// # Safety
    /// Kernel mode only.
    pub unsafe fn KeQueryInterruptTime() -> u64 {
        let mut frequency: i64 = 0;
        // SAFETY: `frequency` is a valid out pointer.
        let counter = unsafe { super::KeQueryPerformanceCounter(&mut frequency) };
        let (counter, frequency) = (counter as u64, frequency.max(1) as u64);
        // Split to stay within u64: the remainder is below the frequency (a few GHz at most).
        (counter / frequency) * 10_000_000 + (counter % frequency) * 10_000_000 / frequency
    }
}

#[cfg(target_arch = "x86_64")]
pub use arch::*;

/// Calls a TDI client's event handler: on the kernel, simply `f` (the host model checks the
/// calling rules here). DISPATCH_LEVEL, no lock of the driver held.
#[inline(always)]
pub fn call_client_handler<R>(f: impl FnOnce() -> R) -> R {
    f()
}
