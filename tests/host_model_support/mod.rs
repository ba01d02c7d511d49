//! Shared by the host model test crates: a configurable fake driver, an allocation-free event
//! log, and raw helpers for writing driver fragments against `tcpip::nt::sys`.
//!
//! The fake driver creates two devices, `\Device\Fake` and `\Device\Fake2`. Every major
//! function of both goes to one dispatch routine that calls the handler the test installed on
//! that device (or completes the IRP with `STATUS_SUCCESS` when there is none). Handlers are
//! plain functions; they reach per-test state through the device's context pointer, so tests
//! running in parallel (each with its own kernel) never share state.
#![allow(
    dead_code,
    reason = "each test crate uses a different subset of these helpers"
)]

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use tcpip::host::{Config, Driver, Kernel, KernelHandle};
use tcpip::nt::NtStatus;
use tcpip::nt::sys;
use tcpip::nt::types::*;

pub const FAKE: &str = "\\Device\\Fake";
pub const FAKE2: &str = "\\Device\\Fake2";

/// A kernel with `processors` processors and the virtual clock.
pub fn kernel(processors: usize) -> Kernel {
    Kernel::new(Config {
        processors,
        ..Config::default()
    })
}

/// What the fake driver does with an IRP sent to a device.
pub type Handler = unsafe fn(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS;

/// The fake driver's device extension.
#[repr(C)]
struct FakeExtension {
    handler: AtomicUsize,
    context: AtomicPtr<c_void>,
}

fn unicode(units: &mut [u16]) -> UNICODE_STRING {
    UNICODE_STRING {
        Length: (units.len() * 2) as u16,
        MaximumLength: (units.len() * 2) as u16,
        Buffer: units.as_mut_ptr(),
    }
}

/// Creates a device named `name` for `driver`.
///
/// # Safety
/// `driver` is the driver object passed to `DriverEntry`.
pub unsafe fn create_device(driver: *mut DRIVER_OBJECT, name: &str, extension: u32) -> NtStatus {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    let mut name = unicode(&mut units);
    let mut device = std::ptr::null_mut();
    // SAFETY: a valid driver object, name and out pointer.
    NtStatus(unsafe {
        sys::IoCreateDevice(
            driver,
            extension,
            &mut name,
            FILE_DEVICE_NETWORK,
            0,
            FALSE,
            &mut device,
        )
    })
}

/// The fake driver's `DriverEntry`.
///
/// # Safety
/// Called by the model's loader.
pub unsafe extern "system" fn fake_entry(
    driver: *mut DRIVER_OBJECT,
    _registry: *const UNICODE_STRING,
) -> NTSTATUS {
    for name in [FAKE, FAKE2] {
        // SAFETY: the driver object passed to DriverEntry.
        let status = unsafe { create_device(driver, name, size_of::<FakeExtension>() as u32) };
        if !status.is_success() {
            return status.raw();
        }
    }
    // SAFETY: the driver object is ours during DriverEntry.
    unsafe {
        (*driver).MajorFunction = [Some(fake_dispatch); IRP_MJ_COUNT];
        (*driver).DriverUnload = Some(fake_unload);
    }
    0
}

/// Deletes every device of the driver.
///
/// # Safety
/// Called by the model at unload.
pub unsafe extern "system" fn fake_unload(driver: *mut DRIVER_OBJECT) {
    // SAFETY: the driver's device list is valid; each device is deleted once.
    unsafe {
        while !(*driver).DeviceObject.is_null() {
            sys::IoDeleteDevice((*driver).DeviceObject);
        }
    }
}

unsafe extern "system" fn fake_dispatch(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: the fake driver's devices all have a FakeExtension.
    let handler = unsafe { extension(device) }.handler.load(Ordering::Acquire);
    if handler == 0 {
        // SAFETY: a live IRP owned by this dispatch routine.
        return unsafe { complete(irp, NtStatus::SUCCESS, 0) };
    }
    // SAFETY: stored from a `Handler` by `Fake::set_handler`.
    let handler: Handler = unsafe { std::mem::transmute::<usize, Handler>(handler) };
    // SAFETY: the handler's contract is the dispatch routine's.
    unsafe { handler(device, irp) }
}

/// # Safety
/// `device` is one of the fake driver's devices.
unsafe fn extension<'a>(device: *mut DEVICE_OBJECT) -> &'a FakeExtension {
    // SAFETY: the extension was allocated zeroed with FakeExtension's size; atomics are valid
    // when zero.
    unsafe { &*(*device).DeviceExtension.cast::<FakeExtension>() }
}

/// The test context stored on a fake device.
///
/// # Safety
/// `device` is a fake device whose context was set to a `T` that is still alive.
pub unsafe fn context<'a, T>(device: *mut DEVICE_OBJECT) -> &'a T {
    // SAFETY: forwarded caller contract.
    unsafe {
        &*extension(device)
            .context
            .load(Ordering::Acquire)
            .cast::<T>()
    }
}

/// The loaded fake driver and its devices.
pub struct Fake {
    pub driver: Driver,
    pub device: *mut DEVICE_OBJECT,
    pub device2: *mut DEVICE_OBJECT,
}

impl Fake {
    pub fn load(kernel: &KernelHandle) -> Fake {
        let driver = kernel
            .load_driver(fake_entry)
            .expect("load the fake driver");
        Fake {
            driver,
            device: kernel.device_by_name(FAKE).expect("\\Device\\Fake"),
            device2: kernel.device_by_name(FAKE2).expect("\\Device\\Fake2"),
        }
    }

    /// Installs `handler` (and `context`) on `device`.
    pub fn set(&self, device: *mut DEVICE_OBJECT, handler: Handler, context: *const c_void) {
        // SAFETY: a fake device, live while the driver is loaded.
        let ext = unsafe { extension(device) };
        ext.context.store(context.cast_mut(), Ordering::Release);
        ext.handler.store(handler as usize, Ordering::Release);
    }

    /// Installs `handler` and `context` on the first device.
    pub fn handle<T>(&self, handler: Handler, context: &T) {
        self.set(self.device, handler, std::ptr::from_ref(context).cast());
    }
}

/// Completes an IRP with a status and information; returns the status (for dispatch).
///
/// # Safety
/// The caller owns `irp`.
#[track_caller]
pub unsafe fn complete(irp: *mut IRP, status: NtStatus, information: usize) -> NTSTATUS {
    // SAFETY: forwarded caller contract.
    unsafe {
        (*irp).IoStatus.Status.Status = status.raw();
        (*irp).IoStatus.Information = information;
        sys::IofCompleteRequest(irp, IO_NO_INCREMENT);
    }
    status.raw()
}

/// `IoGetCurrentIrpStackLocation`.
///
/// # Safety
/// `irp` is live and in a driver.
pub unsafe fn current_stack<'a>(irp: *mut IRP) -> &'a mut IO_STACK_LOCATION {
    // SAFETY: forwarded caller contract.
    unsafe { &mut *(*irp).Tail.Overlay.CurrentStackLocation }
}

/// `IoMarkIrpPending`.
///
/// # Safety
/// `irp` is live and in a driver.
pub unsafe fn mark_pending(irp: *mut IRP) {
    // SAFETY: forwarded caller contract.
    unsafe { current_stack(irp).Control |= SL_PENDING_RETURNED };
}

/// `IoSetCancelRoutine`: an atomic exchange; returns the previous routine.
///
/// # Safety
/// `irp` is live.
pub unsafe fn set_cancel_routine(irp: *mut IRP, routine: PDRIVER_CANCEL) -> PDRIVER_CANCEL {
    // SAFETY: CancelRoutine is pointer-sized (Option<fn>, null for None) and exchanged
    // atomically by everyone.
    let old = unsafe {
        AtomicPtr::<c_void>::from_ptr((&raw mut (*irp).CancelRoutine).cast()).swap(
            routine.map_or(std::ptr::null_mut(), |r| r as *mut c_void),
            Ordering::AcqRel,
        )
    };
    // SAFETY: the old value was a PDRIVER_CANCEL.
    unsafe { std::mem::transmute::<*mut c_void, PDRIVER_CANCEL>(old) }
}

/// `Irp->Cancel`, read atomically.
///
/// # Safety
/// `irp` is live.
pub unsafe fn is_cancelled(irp: *mut IRP) -> bool {
    // SAFETY: forwarded caller contract.
    unsafe { AtomicU8::from_ptr(&raw mut (*irp).Cancel).load(Ordering::Acquire) != 0 }
}

/// An allocation-free, thread-safe log of small event codes (driver fragments run with their
/// allocations attributed to the driver, so they must not grow a `Vec` they leave behind).
pub struct Log {
    entries: [AtomicU32; 64],
    len: AtomicUsize,
}

impl Default for Log {
    fn default() -> Log {
        Log {
            entries: std::array::from_fn(|_| AtomicU32::new(0)),
            len: AtomicUsize::new(0),
        }
    }
}

impl Log {
    /// Appends a code; codes beyond the capacity are counted but dropped.
    pub fn push(&self, code: u32) {
        let index = self.len.fetch_add(1, Ordering::AcqRel);
        if let Some(entry) = self.entries.get(index) {
            entry.store(code, Ordering::Release);
        }
    }

    pub fn entries(&self) -> Vec<u32> {
        let len = self.len.load(Ordering::Acquire).min(self.entries.len());
        self.entries[..len]
            .iter()
            .map(|e| e.load(Ordering::Acquire))
            .collect()
    }
}

/// Spins (yielding) until `done` holds; panics after 10 s so a broken test fails instead of
/// hanging.
pub fn spin_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::yield_now();
    }
}

/// An IRP with one stack location for `device`'s file-less request, filled with `major` and
/// `minor`.
pub fn request(kernel: &KernelHandle, major: u8, minor: u8) -> *mut IRP {
    let irp = kernel.allocate_irp(1);
    kernel.set_next_stack(
        irp,
        tcpip::host::StackLocation::new(major, minor, std::ptr::null_mut()),
    );
    irp
}

/// A zeroed `KDPC`/`KTIMER`/`KSPIN_LOCK` the model can write through a shared reference.
pub struct Slot<T>(UnsafeCell<T>);

// SAFETY: the kernel structures inside are only touched by the model under its own locks (or
// atomically, for spin locks).
unsafe impl<T> Sync for Slot<T> {}

impl<T> Slot<T> {
    pub fn new() -> Slot<T> {
        // SAFETY: the NT structures used here are plain data, valid when zeroed.
        Slot(UnsafeCell::new(unsafe { std::mem::zeroed() }))
    }

    pub fn get(&self) -> *mut T {
        self.0.get()
    }
}
