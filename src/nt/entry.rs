//! The glue between the NT loader and the driver: `DriverEntry`, `DriverUnload`, and the
//! dispatch and cancel routines, which turn raw pointers into the safe types of this module and
//! call the [`Driver`] implementation.

use crate::nt::NtStatus;
use crate::nt::device::{Device, Extension};
use crate::nt::irp::{CancelRoutine, Dispatched, Irp, IrpId};
use crate::nt::pool;
use crate::nt::sys;
use crate::nt::types::*;
use alloc::boxed::Box;
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

/// A driver: its state lives from `DriverEntry` to `DriverUnload`, behind every device.
pub trait Driver: Sync + Sized + 'static {
    /// The device names to create, e.g. `\Device\Tcp`; a device's index in this list is passed
    /// to [`Driver::dispatch`].
    const DEVICES: &'static [&'static str];

    /// Symbolic links made once the devices are up and removed at unload, as (link, device):
    /// the names user mode opens, e.g. `\DosDevices\Tcp` for `\\.\Tcp`.
    const SYMBOLIC_LINKS: &'static [(&'static str, &'static str)] = &[];

    /// Builds the driver state. PASSIVE_LEVEL. The devices exist but receive no requests yet.
    fn init(devices: &[Device]) -> Result<Self, NtStatus>;

    /// Called once the state is at its final address (to initialise DPCs, timers, work items
    /// that refer to it). PASSIVE_LEVEL.
    fn start(&'static self);

    /// Handles an IRP sent to device `device`. PASSIVE_LEVEL (APC_LEVEL at most).
    fn dispatch(&'static self, device: usize, irp: Irp) -> Dispatched;

    /// The cancel routine of IRPs armed with [`cancel_routine`]: called after the cancel spin
    /// lock has been released, at the IRQL of the `IoCancelIrp` caller (≤ DISPATCH_LEVEL). It
    /// must find the IRP and complete it before returning.
    fn cancel(&'static self, irp: IrpId);

    /// Stops all activity (timers, DPCs, work items) before the state is freed. PASSIVE_LEVEL.
    fn stop(&'static self);
}

/// The cancel routine that forwards to `D::cancel`.
pub fn cancel_routine<D: Driver>() -> CancelRoutine {
    CancelRoutine(cancel::<D>)
}

/// `DriverEntry` of tcpip.sys. PASSIVE_LEVEL, system process.
///
/// # Safety
/// Called once by the I/O manager with a valid driver object and registry path.
pub unsafe extern "system" fn driver_entry(
    driver: *mut DRIVER_OBJECT,
    registry_path: *const UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: forwarded caller contract.
    unsafe { driver_entry_for::<crate::driver::Tcpip>(driver, registry_path) }
}

/// `DriverEntry` for driver `D`.
///
/// # Safety
/// As for [`driver_entry`].
pub unsafe fn driver_entry_for<D: Driver>(
    driver: *mut DRIVER_OBJECT,
    _registry_path: *const UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: the I/O manager passes a valid driver object.
    let Some(driver) = (unsafe { driver.as_mut() }) else {
        return NtStatus::INVALID_PARAMETER.raw();
    };
    match start::<D>(driver) {
        Ok(()) => NtStatus::SUCCESS.raw(),
        Err(status) => {
            delete_devices(driver);
            crate::log!(crate::nt::log::Level::Error, "DriverEntry failed: {status}");
            status.raw()
        }
    }
}

fn start<D: Driver>(driver: &mut DRIVER_OBJECT) -> Result<(), NtStatus> {
    let mut devices = pool::try_vec(D::DEVICES.len())?;
    for (index, name) in D::DEVICES.iter().enumerate() {
        devices.push(create_device(driver, name, index)?);
    }
    let state = build::<D>(&devices)?;
    for device in &devices {
        let extension = extension(*device);
        extension
            .state
            .store(state as *const D as *mut c_void, Ordering::Release);
    }
    state.start();
    driver.DriverUnload = Some(unload::<D>);
    for major in [
        IRP_MJ_CREATE,
        IRP_MJ_CLEANUP,
        IRP_MJ_CLOSE,
        IRP_MJ_DEVICE_CONTROL,
        IRP_MJ_INTERNAL_DEVICE_CONTROL,
    ] {
        // The majors are constants below IRP_MJ_MAXIMUM_FUNCTION, the table's last index.
        if let Some(slot) = driver.MajorFunction.get_mut(usize::from(major)) {
            *slot = Some(dispatch::<D>);
        }
    }
    for device in &devices {
        // SAFETY: our device, not yet visible to requests while DO_DEVICE_INITIALIZING is set.
        let raw = unsafe { &mut *device.as_ptr() };
        raw.Flags = (raw.Flags | DO_DIRECT_IO) & !DO_DEVICE_INITIALIZING;
    }
    for (link, target) in D::SYMBOLIC_LINKS {
        let status = with_unicode(link, |link| {
            with_unicode(target, |target| {
                // SAFETY: two valid names on our stack, copied by the object manager.
                NtStatus(unsafe { sys::IoCreateSymbolicLink(link, target) })
            })
        });
        // A missing convenience name does not stop the driver; it is said.
        if !status.is_success() {
            crate::log!(
                crate::nt::log::Level::Error,
                "symbolic link {link} -> {target}: {status}"
            );
        }
    }
    Ok(())
}

/// Calls `f` with `name` (ASCII, at most 64 characters) as a `UNICODE_STRING` on the stack.
/// PASSIVE_LEVEL.
fn with_unicode<R>(name: &str, f: impl FnOnce(*mut UNICODE_STRING) -> R) -> R {
    let mut wide = [0u16; 64];
    let len = name.len().min(wide.len());
    for (slot, byte) in wide.iter_mut().zip(name.bytes()) {
        *slot = u16::from(byte);
    }
    let mut unicode = UNICODE_STRING {
        Length: (len * 2) as u16,
        MaximumLength: (len * 2) as u16,
        Buffer: wide.as_mut_ptr(),
    };
    f(&mut unicode)
}

/// Builds the driver state in pool. Not inlined: the state is assembled on the stack before it
/// is moved into the pool, and that frame (several KiB) must be gone before [`Driver::start`]
/// runs, which registers the NDIS protocol and binds adapters inside the call, deep in NDIS,
/// on the 12 KiB stack of an x86 `DriverEntry`.
#[inline(never)]
fn build<D: Driver>(devices: &[Device]) -> Result<&'static D, NtStatus> {
    Ok(Box::leak(pool::try_box(D::init(devices)?)?))
}

fn create_device(driver: &mut DRIVER_OBJECT, name: &str, index: usize) -> Result<Device, NtStatus> {
    let mut raw: *mut DEVICE_OBJECT = core::ptr::null_mut();
    let status = with_unicode(name, |unicode| {
        // SAFETY: valid driver object, name and out pointer; the name is copied by
        // IoCreateDevice.
        unsafe {
            sys::IoCreateDevice(
                driver,
                core::mem::size_of::<Extension>() as u32,
                unicode,
                FILE_DEVICE_NETWORK,
                0,
                FALSE,
                &mut raw,
            )
        }
    });
    NtStatus(status).ok()?;
    let device = Device::from_raw(NonNull::new(raw).ok_or(NtStatus::UNSUCCESSFUL)?);
    let slot = extension_ptr(device);
    // SAFETY: the extension is ours, zeroed, sized and aligned for `Extension` by IoCreateDevice.
    unsafe {
        slot.write(Extension {
            state: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
            index,
        })
    };
    Ok(device)
}

fn extension_ptr(device: Device) -> *mut Extension {
    // SAFETY: every device of this driver has an `Extension` as its device extension.
    unsafe { (*device.as_ptr()).DeviceExtension.cast::<Extension>() }
}

fn extension(device: Device) -> &'static Extension {
    // SAFETY: initialised in `create_device`; lives as long as the device, which outlives every
    // request and DPC that reaches it.
    unsafe { &*extension_ptr(device) }
}

/// The state of a loaded driver, found through its first device: how host-side helpers
/// (`host::binding`) reach the stack of the driver they bound an adapter to. `driver` must be a driver
/// object that `driver_entry::<D>` initialised and that is still loaded. PASSIVE_LEVEL.
#[cfg(not(kernel))]
pub fn loaded_state<D: Driver>(driver: NonNull<DRIVER_OBJECT>) -> Option<&'static D> {
    // SAFETY: a loaded driver's object is live; its device list is only changed at load and
    // unload.
    let device = unsafe { driver.as_ref() }.DeviceObject;
    state::<D>(device).map(|(state, _)| state)
}

/// The driver state behind `device`, once published.
fn state<D: Driver>(device: *mut DEVICE_OBJECT) -> Option<(&'static D, usize)> {
    let extension = extension(Device::from_raw(NonNull::new(device)?));
    let state = extension.state.load(Ordering::Acquire).cast::<D>();
    // SAFETY: published by `start` from a leaked `Box<D>` that stays until unload.
    unsafe { state.as_ref() }.map(|state| (state, extension.index))
}

fn delete_devices(driver: &mut DRIVER_OBJECT) {
    // Read each link before deleting the device it belongs to: IoDeleteDevice may free the
    // device while it is still on the driver's list (Wine frees it at once; NT keeps it listed
    // until its last reference goes), so the list cannot be re-read after a deletion.
    let mut next = NonNull::new(driver.DeviceObject);
    while let Some(device) = next {
        // SAFETY: a live device of this driver, not yet deleted.
        next = NonNull::new(unsafe { device.as_ref() }.NextDevice);
        // SAFETY: a device this driver created; nothing uses it any more (unload, or a failed
        // DriverEntry before any request could reach it).
        unsafe { sys::IoDeleteDevice(device.as_ptr()) };
    }
}

unsafe extern "system" fn unload<D: Driver>(driver: *mut DRIVER_OBJECT) {
    // SAFETY: the I/O manager passes our driver object.
    let driver = unsafe { &mut *driver };
    for (link, _) in D::SYMBOLIC_LINKS {
        // SAFETY: a valid name on our stack. A link DriverEntry could not make is not there
        // (STATUS_OBJECT_NAME_NOT_FOUND, nothing to do).
        with_unicode(link, |link| unsafe { sys::IoDeleteSymbolicLink(link) });
    }
    if let Some((state, _)) = state::<D>(driver.DeviceObject) {
        state.stop();
        // SAFETY: the state was leaked from a Box in `start`; `stop` has ended every activity
        // that could still reach it, and no request can arrive during unload.
        drop(unsafe { Box::from_raw(state as *const D as *mut D) });
    }
    delete_devices(driver);
}

unsafe extern "system" fn dispatch<D: Driver>(
    device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the I/O manager hands us the IRP; it is ours until we complete it.
    let Some(irp) = (unsafe { Irp::from_raw(irp) }) else {
        return NtStatus::INVALID_PARAMETER.raw();
    };
    match state::<D>(device) {
        Some((state, index)) => state.dispatch(index, irp).status().raw(),
        None => irp
            .complete(NtStatus::INVALID_DEVICE_REQUEST, 0)
            .status()
            .raw(),
    }
}

unsafe extern "system" fn cancel<D: Driver>(device: *mut DEVICE_OBJECT, irp: *mut IRP) {
    // SAFETY: called by IoCancelIrp with the cancel spin lock held and CancelIrql set; we
    // release it first, as the contract requires, and continue at the caller's IRQL.
    unsafe { sys::IoReleaseCancelSpinLock((*irp).CancelIrql) };
    if let Some((state, _)) = state::<D>(device) {
        state.cancel(IrpId::from_raw(irp));
    }
}

/// A driver with no devices of its own that works from `DriverEntry` to `DriverUnload`: a
/// kernel TDI client such as the tdiecho test image.
pub trait ClientDriver: Sync + Sized + 'static {
    /// The name of the one device the driver creates. It serves no requests (the I/O
    /// manager's default routine refuses them), but ReactOS refuses to unload a driver that
    /// has none: without it `ControlService(STOP)` fails with ERROR_INVALID_SERVICE_CONTROL
    /// and the kernel logs "No DriverUnload function!" (seen in the VM).
    const DEVICE: &'static str;

    /// Builds the state. PASSIVE_LEVEL.
    fn init() -> Result<Self, NtStatus>;

    /// Starts work once the state is at its final address. On an error, [`ClientDriver::stop`]
    /// runs next. PASSIVE_LEVEL.
    fn start(&'static self) -> Result<(), NtStatus>;

    /// Ends all work; `true` if nothing can reach the state any more, so that it may be freed
    /// (otherwise it is left allocated). PASSIVE_LEVEL.
    fn stop(&'static self) -> bool;
}

/// The state of the loaded client driver (one per image).
static CLIENT_STATE: core::sync::atomic::AtomicPtr<c_void> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// `DriverEntry` of a [`ClientDriver`]. PASSIVE_LEVEL, system process.
///
/// # Safety
/// Called once by the I/O manager with a valid driver object.
pub unsafe fn client_entry<C: ClientDriver>(driver: *mut DRIVER_OBJECT) -> NTSTATUS {
    // SAFETY: the I/O manager passes a valid driver object.
    let Some(driver) = (unsafe { driver.as_mut() }) else {
        return NtStatus::INVALID_PARAMETER.raw();
    };
    let state = create_device(driver, C::DEVICE, 0)
        .and_then(|_| C::init())
        .and_then(pool::try_box);
    let state: &'static C = match state {
        Ok(state) => Box::leak(state),
        Err(status) => {
            delete_devices(driver);
            return status.raw();
        }
    };
    if let Err(status) = state.start() {
        release(state);
        delete_devices(driver);
        return status.raw();
    }
    CLIENT_STATE.store(state as *const C as *mut c_void, Ordering::Release);
    driver.DriverUnload = Some(client_unload::<C>);
    NtStatus::SUCCESS.raw()
}

/// Stops a client state and frees it if `stop` allows.
fn release<C: ClientDriver>(state: &'static C) {
    if state.stop() {
        // SAFETY: leaked from a Box in `client_entry`; `stop` said nothing reaches it any more.
        drop(unsafe { Box::from_raw(state as *const C as *mut C) });
    }
}

unsafe extern "system" fn client_unload<C: ClientDriver>(driver: *mut DRIVER_OBJECT) {
    let state = CLIENT_STATE.swap(core::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: published by `client_entry` from a leaked `Box<C>`; taken once.
    if let Some(state) = unsafe { state.cast::<C>().as_ref() } {
        release(state);
    }
    // SAFETY: the I/O manager passes our driver object.
    delete_devices(unsafe { &mut *driver });
}

/// The state of the loaded client driver `C` (host tests read its counters). Any IRQL.
#[cfg(not(kernel))]
pub fn loaded_client<C: ClientDriver>() -> Option<&'static C> {
    // SAFETY: published by `client_entry` from a leaked `Box<C>`, freed only after it is taken
    // out at unload; the caller names the one client driver type of the process.
    unsafe { CLIENT_STATE.load(Ordering::Acquire).cast::<C>().as_ref() }
}
