//! Device objects and the driver list.
//!
//! `IoCreateDevice` allocates a real `DEVICE_OBJECT` with a zeroed extension after it, sets
//! `DO_DEVICE_INITIALIZING` (cleared for the driver's devices when `DriverEntry` returns, as
//! the I/O manager does), links it at the head of `DriverObject->DeviceObject`, and registers
//! its name so files can be opened on it (a duplicate name is
//! `STATUS_OBJECT_NAME_COLLISION`). `IoDeleteDevice` unlinks and unnames it at once and frees
//! it when its last file object is gone.
//!
//! Besides the driver under test, the model has "foreign" drivers: dummy drivers owning devices
//! whose files the test can hand to the driver (someone else's file object). They complete
//! every request with `STATUS_SUCCESS`.

use super::context;
use super::kernel::{KernelHandle, KernelInner};
use super::object::{ObjectKind, ObjectRecord, ObjectState};
use super::verifier::{self, Rule, Site};
use crate::nt::NtStatus;
use crate::nt::types::*;
use std::alloc::Layout;
use std::sync::{Mutex, MutexGuard};

/// `STATUS_OBJECT_NAME_COLLISION`.
pub const STATUS_OBJECT_NAME_COLLISION: NtStatus = NtStatus(0xC000_0035_u32 as i32);
/// `STATUS_NO_SUCH_DEVICE`: the device is still initialising.
pub const STATUS_NO_SUCH_DEVICE: NtStatus = NtStatus(0xC000_000E_u32 as i32);
/// `DO_EXCLUSIVE`.
const DO_EXCLUSIVE: u32 = 0x0000_0008;
/// `DO_DEVICE_HAS_NAME`.
const DO_DEVICE_HAS_NAME: u32 = 0x0000_0040;
/// `IO_TYPE_DRIVER`.
const IO_TYPE_DRIVER: CSHORT = 4;

/// The model's data of a device object.
pub(crate) struct DeviceData {
    layout: Layout,
    /// The registered name, lower-cased; `None` when unnamed or deleted.
    name: Option<String>,
    open_files: usize,
    delete_pending: bool,
}

/// A device's memory, to free once nothing refers to it.
pub(crate) struct DeviceMemory {
    address: usize,
    layout: Layout,
}

/// Frees a deleted device's memory.
pub(crate) fn free_device(memory: DeviceMemory) {
    // SAFETY: allocated by `create_device` with this layout, freed once (its record is gone).
    unsafe { std::alloc::dealloc(memory.address as *mut u8, memory.layout) };
}

/// A driver known to the kernel.
pub(crate) struct DriverRecord {
    pub(crate) object: usize,
    pub(crate) foreign: bool,
}

/// The drivers of a kernel.
#[derive(Default)]
pub(crate) struct Drivers {
    list: Mutex<Vec<DriverRecord>>,
}

impl Drivers {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<DriverRecord>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `driver` is one of the model's dummy drivers.
    pub(crate) fn is_foreign(&self, driver: *mut DRIVER_OBJECT) -> bool {
        self.lock()
            .iter()
            .any(|d| d.object == driver as usize && d.foreign)
    }

    fn is_known(&self, driver: *mut DRIVER_OBJECT) -> bool {
        self.lock().iter().any(|d| d.object == driver as usize)
    }
}

/// A new, zeroed `DRIVER_OBJECT` whose major functions all go to `dispatch`.
pub(crate) fn new_driver_object(dispatch: PDRIVER_DISPATCH) -> *mut DRIVER_OBJECT {
    // SAFETY: DRIVER_OBJECT is plain data; all-zero is a valid empty value.
    let mut driver: Box<DRIVER_OBJECT> = unsafe { Box::new_zeroed().assume_init() };
    driver.Type = IO_TYPE_DRIVER;
    driver.Size = size_of::<DRIVER_OBJECT>() as CSHORT;
    driver.MajorFunction = [dispatch; IRP_MJ_COUNT];
    Box::into_raw(driver)
}

/// Reads a counted UTF-16 string.
///
/// # Safety
/// `name` is null or a valid `UNICODE_STRING`.
unsafe fn read_name(name: *const UNICODE_STRING) -> Option<String> {
    // SAFETY: forwarded caller contract.
    let name = unsafe { name.as_ref() }?;
    if name.Buffer.is_null() || name.Length == 0 {
        return None;
    }
    // SAFETY: a valid UNICODE_STRING has Length bytes at Buffer.
    let units = unsafe { std::slice::from_raw_parts(name.Buffer, usize::from(name.Length) / 2) };
    Some(String::from_utf16_lossy(units))
}

/// `IoCreateDevice`.
///
/// # Safety
/// `driver` is a driver object of this kernel, `name` null or a valid `UNICODE_STRING`, and
/// `device` a valid out pointer.
#[expect(clippy::too_many_arguments, reason = "IoCreateDevice's parameters")]
pub(crate) unsafe fn create_device(
    kernel: &KernelInner,
    driver: *mut DRIVER_OBJECT,
    extension_size: u32,
    name: *const UNICODE_STRING,
    device_type: u32,
    characteristics: u32,
    exclusive: bool,
    device: *mut *mut DEVICE_OBJECT,
    site: Site,
) -> NtStatus {
    if !kernel.drivers.is_known(driver) {
        verifier::report(
            Rule::InvalidObject,
            site,
            format!("IoCreateDevice with {driver:p}, which is not a driver object"),
        );
        return NtStatus::INVALID_PARAMETER;
    }
    // SAFETY: forwarded caller contract.
    let name = unsafe { read_name(name) };
    let key = name.as_ref().map(|n| n.to_ascii_lowercase());
    let mut state = kernel.objects.lock();
    if let Some(key) = &key
        && state.names.contains_key(key)
    {
        return STATUS_OBJECT_NAME_COLLISION;
    }
    let body = size_of::<DEVICE_OBJECT>().next_multiple_of(16);
    let layout = Layout::from_size_align(body + extension_size as usize, 16).expect("layout");
    // SAFETY: non-zero size.
    let object = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<DEVICE_OBJECT>();
    assert!(!object.is_null(), "out of memory allocating a device");
    // SAFETY: a fresh zeroed allocation; the driver object is live (checked above).
    unsafe {
        let d = &mut *object;
        d.Type = IO_TYPE_DEVICE;
        d.Size = (body + extension_size as usize) as u16;
        d.ReferenceCount = 0;
        d.DriverObject = driver;
        d.NextDevice = (*driver).DeviceObject;
        d.Flags = DO_DEVICE_INITIALIZING
            | if exclusive { DO_EXCLUSIVE } else { 0 }
            | if key.is_some() { DO_DEVICE_HAS_NAME } else { 0 };
        d.Characteristics = characteristics;
        d.DeviceExtension = if extension_size > 0 {
            object.cast::<u8>().add(body).cast()
        } else {
            std::ptr::null_mut()
        };
        d.DeviceType = device_type;
        d.StackSize = 1;
        (*driver).DeviceObject = object;
        *device = object;
    }
    if let Some(key) = &key {
        state.names.insert(key.clone(), object as usize);
    }
    state.objects.insert(
        object as usize,
        ObjectRecord {
            kind: ObjectKind::Device(DeviceData {
                layout,
                name: key,
                open_files: 0,
                delete_pending: false,
            }),
            pointer_count: 1,
            handle_count: 0,
            driver_refs: 0,
        },
    );
    NtStatus::SUCCESS
}

/// `IoDeleteDevice`: unlinks and unnames the device; frees it now or after its last file.
///
/// # Safety
/// `device` is null or a pointer the driver got from `IoCreateDevice`.
pub(crate) unsafe fn delete_device(kernel: &KernelInner, device: *mut DEVICE_OBJECT, site: Site) {
    let mut state = kernel.objects.lock();
    let Some(ObjectRecord {
        kind: ObjectKind::Device(data),
        ..
    }) = state.objects.get_mut(&(device as usize))
    else {
        drop(state);
        verifier::report(
            Rule::InvalidObject,
            site,
            format!("IoDeleteDevice({device:p}): not a live device object"),
        );
        return;
    };
    data.delete_pending = true;
    let name = data.name.take();
    let free_now = data.open_files == 0;
    if let Some(name) = name {
        state.names.remove(&name);
    }
    // SAFETY: a live device and its driver object; the driver's device list is only changed
    // under the object lock, held here.
    unsafe {
        let mut link: *mut *mut DEVICE_OBJECT = &raw mut (*(*device).DriverObject).DeviceObject;
        while !(*link).is_null() {
            if *link == device {
                *link = (*device).NextDevice;
                break;
            }
            link = &raw mut (**link).NextDevice;
        }
    }
    if free_now && let Some(memory) = remove_device(&mut state, device as usize) {
        drop(state);
        free_device(memory);
    }
}

/// Removes a device's record; returns its memory to free.
fn remove_device(state: &mut ObjectState, device: usize) -> Option<DeviceMemory> {
    match state.objects.remove(&device) {
        Some(ObjectRecord {
            kind: ObjectKind::Device(data),
            ..
        }) => Some(DeviceMemory {
            address: device,
            layout: data.layout,
        }),
        _ => None,
    }
}

/// Counts a new file object on `device`.
pub(crate) fn file_opened(state: &mut ObjectState, device: usize) {
    if let Some(ObjectRecord {
        kind: ObjectKind::Device(data),
        ..
    }) = state.objects.get_mut(&device)
    {
        data.open_files += 1;
    }
}

/// Counts a file object of `device` gone; returns the device's memory if it was deleted and
/// this was its last file.
pub(crate) fn file_closed(state: &mut ObjectState, device: usize) -> Option<DeviceMemory> {
    let Some(ObjectRecord {
        kind: ObjectKind::Device(data),
        ..
    }) = state.objects.get_mut(&device)
    else {
        return None;
    };
    data.open_files -= 1;
    if data.open_files == 0 && data.delete_pending {
        remove_device(state, device)
    } else {
        None
    }
}

/// The device a path names and the rest of the path: the longest device name that is a
/// prefix of `path` (case-insensitively) followed by nothing or a backslash.
/// A link name as the model keys it: lower-cased, `\DosDevices\` spelt `\??\` (the same
/// directory on NT). Any IRQL.
pub(crate) fn link_key(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.strip_prefix("\\dosdevices\\") {
        Some(rest) => format!("\\??\\{rest}"),
        None => lower,
    }
}

/// `IoCreateSymbolicLink`: `link` names `target`; `STATUS_OBJECT_NAME_COLLISION` if it exists.
///
/// # Safety
/// Both are valid `UNICODE_STRING`s.
pub(crate) unsafe fn create_link(
    kernel: &KernelInner,
    link: *const UNICODE_STRING,
    target: *const UNICODE_STRING,
) -> NtStatus {
    // SAFETY: forwarded caller contract.
    let (Some(link), Some(target)) = (unsafe { read_name(link) }, unsafe { read_name(target) })
    else {
        return NtStatus::INVALID_PARAMETER;
    };
    let mut state = kernel.objects.lock();
    let key = link_key(&link);
    if state.links.contains_key(&key) {
        return STATUS_OBJECT_NAME_COLLISION;
    }
    state.links.insert(key, target);
    NtStatus::SUCCESS
}

/// `IoDeleteSymbolicLink`: `STATUS_OBJECT_NAME_NOT_FOUND` if there is no such link.
///
/// # Safety
/// `link` is a valid `UNICODE_STRING`.
pub(crate) unsafe fn delete_link(kernel: &KernelInner, link: *const UNICODE_STRING) -> NtStatus {
    // SAFETY: forwarded caller contract.
    let Some(link) = (unsafe { read_name(link) }) else {
        return NtStatus::INVALID_PARAMETER;
    };
    match kernel.objects.lock().links.remove(&link_key(&link)) {
        Some(_) => NtStatus::SUCCESS,
        None => NtStatus::OBJECT_NAME_NOT_FOUND,
    }
}

pub(crate) fn lookup_path(
    kernel: &KernelInner,
    path: &str,
) -> Result<(*mut DEVICE_OBJECT, String), NtStatus> {
    let path = &resolve_link(kernel, path);
    let lower = path.to_ascii_lowercase();
    let state = kernel.objects.lock();
    let (name, &device) = state
        .names
        .iter()
        .filter(|(name, _)| {
            lower.starts_with(name.as_str())
                && (lower.len() == name.len() || lower.as_bytes()[name.len()] == b'\\')
        })
        .max_by_key(|(name, _)| name.len())
        .ok_or(NtStatus::OBJECT_NAME_NOT_FOUND)?;
    let device = device as *mut DEVICE_OBJECT;
    // SAFETY: a named device is live (names are removed when it is deleted).
    if unsafe { (*device).Flags } & DO_DEVICE_INITIALIZING != 0 {
        return Err(STATUS_NO_SUCH_DEVICE);
    }
    Ok((device, path[name.len()..].to_owned()))
}

/// `path` with a symbolic link at its start replaced by the name it stands for (one level, as
/// `\\.\\Tcp` → `\??\Tcp` → `\Device\Tcp`). Any IRQL.
fn resolve_link(kernel: &KernelInner, path: &str) -> String {
    let key = link_key(path);
    let state = kernel.objects.lock();
    let found = state.links.iter().find(|(link, _)| {
        key.starts_with(link.as_str())
            && (key.len() == link.len() || key.as_bytes()[link.len()] == b'\\')
    });
    match found {
        Some((link, target)) => format!("{target}{}", key.get(link.len()..).unwrap_or("")),
        None => path.to_owned(),
    }
}

/// The dispatch routine of every foreign driver: completes the IRP with `STATUS_SUCCESS`.
///
/// # Safety
/// Called by `IoCallDriver` with a live IRP.
unsafe extern "system" fn foreign_dispatch(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: a live IRP owned by this driver until completed.
    unsafe {
        (*irp).IoStatus.Status.Status = 0;
        (*irp).IoStatus.Information = 0;
        super::io::complete(&context::current(), irp, Site::entry(context::entry()));
    }
    0
}

/// Frees the foreign drivers and their devices (kernel teardown).
pub(crate) fn free_foreign(kernel: &KernelInner) {
    let foreign: Vec<usize> = {
        let mut drivers = kernel.drivers.lock();
        let (foreign, others): (Vec<DriverRecord>, Vec<DriverRecord>) =
            drivers.drain(..).partition(|d| d.foreign);
        *drivers = others;
        foreign.into_iter().map(|d| d.object).collect()
    };
    for driver in foreign {
        let driver = driver as *mut DRIVER_OBJECT;
        // SAFETY: a foreign driver object made by `new_driver_object`; its devices are live
        // until deleted here.
        unsafe {
            while !(*driver).DeviceObject.is_null() {
                delete_device(
                    kernel,
                    (*driver).DeviceObject,
                    Site::entry(context::entry()),
                );
            }
            retire_driver_object(kernel, driver);
        }
    }
}

/// Frees a driver object that is gone (unloaded, or a foreign driver at teardown), unless a
/// deleted device with open files still refers to it: then the object stays, with its major
/// functions sent to the I/O manager's default, so the remaining closes never reach code of
/// an unloaded driver.
///
/// # Safety
/// `driver` was made by [`new_driver_object`] and is not used by the model afterwards.
pub(crate) unsafe fn retire_driver_object(kernel: &KernelInner, driver: *mut DRIVER_OBJECT) {
    let referenced = {
        let state = kernel.objects.lock();
        state.objects.iter().any(|(&address, record)| {
            matches!(record.kind, ObjectKind::Device(_))
                // SAFETY: a device with a record is allocated.
                && unsafe { (*(address as *mut DEVICE_OBJECT)).DriverObject } == driver
        })
    };
    if referenced {
        // SAFETY: forwarded caller contract: the object is live.
        unsafe {
            (*driver).MajorFunction = [Some(super::io::invalid_device_request); IRP_MJ_COUNT];
            (*driver).DriverUnload = None;
        }
    } else {
        // SAFETY: forwarded caller contract: made by `new_driver_object`, freed once.
        drop(unsafe { Box::from_raw(driver) });
    }
}

impl KernelHandle {
    /// A device named `name` owned by a new dummy ("foreign") driver that completes every
    /// request with `STATUS_SUCCESS`: opening a file on it gives the test someone else's file
    /// object to hand to the driver. PASSIVE_LEVEL.
    pub fn create_foreign_device(&self, name: &str) -> Result<*mut DEVICE_OBJECT, NtStatus> {
        let _api = self.api();
        let driver = new_driver_object(Some(foreign_dispatch));
        self.0.drivers.lock().push(DriverRecord {
            object: driver as usize,
            foreign: true,
        });
        let mut units: Vec<u16> = name.encode_utf16().collect();
        let unicode = UNICODE_STRING {
            Length: (units.len() * 2) as u16,
            MaximumLength: (units.len() * 2) as u16,
            Buffer: units.as_mut_ptr(),
        };
        let mut device = std::ptr::null_mut();
        // SAFETY: a driver object of this kernel, a valid name and out pointer.
        let status = unsafe {
            create_device(
                &self.0,
                driver,
                0,
                &unicode,
                FILE_DEVICE_NETWORK,
                0,
                false,
                &mut device,
                Site::entry(context::entry()),
            )
        };
        status.ok()?;
        // SAFETY: the device was just created.
        unsafe { (*device).Flags &= !DO_DEVICE_INITIALIZING };
        Ok(device)
    }

    /// The live device named `name` (case-insensitive), if any. Any IRQL.
    pub fn device_by_name(&self, name: &str) -> Option<*mut DEVICE_OBJECT> {
        let _api = self.api();
        let state = self.0.objects.lock();
        state
            .names
            .get(&name.to_ascii_lowercase())
            .map(|&d| d as *mut DEVICE_OBJECT)
    }
}
