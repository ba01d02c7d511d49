//! The object manager: object types, pointer and handle counts, and handles.
//!
//! Every object (file, device, event) has a pointer count and a handle count. A handle holds
//! one pointer reference. As on NT:
//! - closing the last handle of a file object sends `IRP_MJ_CLEANUP` (even if references
//!   remain);
//! - dropping the last reference sends `IRP_MJ_CLOSE` and frees the file object; if that
//!   happens at DISPATCH_LEVEL the close is deferred to a worker thread;
//! - `ObReferenceObjectByHandle` fails with `STATUS_INVALID_HANDLE` for an unknown handle and
//!   `STATUS_OBJECT_TYPE_MISMATCH` for an object of another type than requested.
//!
//! The model also counts the references the driver takes and drops, to report the ones it
//! leaks at unload.

use super::AddressMap;
use super::context;
use super::device::DeviceData;
use super::file::{self, FileData};
use super::irql::{self, DISPATCH_LEVEL};
use super::kernel::{KernelHandle, KernelInner};
use super::verifier::{self, Rule, Site};
use crate::nt::NtStatus;
use crate::nt::types::{DEVICE_OBJECT, FILE_OBJECT, HANDLE, KEVENT};
use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, MutexGuard};

/// An object type (`POBJECT_TYPE`): its address is what `ObReferenceObjectByHandle` compares.
pub(crate) struct ObjectType {
    pub(crate) name: &'static str,
}

/// `IoFileObjectType`.
pub(crate) static FILE_OBJECT_TYPE: ObjectType = ObjectType { name: "File" };
/// `IoDeviceObjectType`.
pub(crate) static DEVICE_OBJECT_TYPE: ObjectType = ObjectType { name: "Device" };
/// `ExEventObjectType`.
pub(crate) static EVENT_OBJECT_TYPE: ObjectType = ObjectType { name: "Event" };

/// A handle in the kernel's handle table (kernel handles, as AFD uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handle(usize);

impl Handle {
    /// The `HANDLE` value to pass to the driver.
    pub fn as_raw(self) -> HANDLE {
        self.0 as HANDLE
    }

    /// The handle a `HANDLE` value names (for `ZwClose` from a driver of the model).
    pub(crate) fn from_raw(raw: HANDLE) -> Handle {
        Handle(raw as usize)
    }

    /// A handle value that names no object (for negative tests).
    pub fn invalid() -> Handle {
        Handle(0x7ffc)
    }
}

/// The body of an event object made by [`KernelHandle::create_event_handle`].
pub(crate) struct EventBody(Box<UnsafeCell<KEVENT>>);

// SAFETY: the KEVENT is only reached through the object table, under its lock.
unsafe impl Send for EventBody {}
// SAFETY: as above.
unsafe impl Sync for EventBody {}

pub(crate) enum ObjectKind {
    File(FileData),
    Device(DeviceData),
    Event { _body: EventBody },
}

impl ObjectKind {
    fn object_type(&self) -> &'static ObjectType {
        match self {
            ObjectKind::File(_) => &FILE_OBJECT_TYPE,
            ObjectKind::Device(_) => &DEVICE_OBJECT_TYPE,
            ObjectKind::Event { .. } => &EVENT_OBJECT_TYPE,
        }
    }
}

pub(crate) struct ObjectRecord {
    pub(crate) kind: ObjectKind,
    pub(crate) pointer_count: isize,
    pub(crate) handle_count: usize,
    /// References taken by the driver minus those it dropped.
    pub(crate) driver_refs: isize,
}

#[derive(Default)]
pub(crate) struct Objects {
    state: Mutex<ObjectState>,
}

#[derive(Default)]
pub(crate) struct ObjectState {
    handles: AddressMap<usize>,
    last_handle: usize,
    pub(crate) objects: AddressMap<ObjectRecord>,
    /// Device names, lower-cased, to device addresses.
    pub(crate) names: HashMap<String, usize>,
    /// Symbolic links (`IoCreateSymbolicLink`), lower-cased with `\DosDevices` as `\??`, to
    /// the names they stand for.
    pub(crate) links: HashMap<String, String>,
}

impl ObjectState {
    pub(crate) fn insert_handle(&mut self, object: usize) -> Handle {
        self.last_handle += 4;
        self.handles.insert(self.last_handle, object);
        Handle(self.last_handle)
    }
}

impl Objects {
    pub(crate) fn lock(&self) -> MutexGuard<'_, ObjectState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_device(&self, device: *mut DEVICE_OBJECT) -> bool {
        matches!(
            self.lock().objects.get(&(device as usize)),
            Some(ObjectRecord {
                kind: ObjectKind::Device(_),
                ..
            })
        )
    }
}

/// `ObReferenceObjectByHandle`: the object, with one more reference.
pub(crate) fn reference_by_handle(
    kernel: &KernelInner,
    handle: HANDLE,
    object_type: *mut c_void,
    by_driver: bool,
) -> Result<*mut c_void, NtStatus> {
    let mut state = kernel.objects.lock();
    let object = *state
        .handles
        .get(&(handle as usize))
        .ok_or(NtStatus::INVALID_HANDLE)?;
    let record = state
        .objects
        .get_mut(&object)
        .ok_or(NtStatus::INVALID_HANDLE)?;
    let actual = std::ptr::from_ref(record.kind.object_type());
    if !object_type.is_null() && object_type.cast_const().cast() != actual {
        return Err(NtStatus::OBJECT_TYPE_MISMATCH);
    }
    record.pointer_count += 1;
    if by_driver {
        record.driver_refs += 1;
    }
    Ok(object as *mut c_void)
}

/// `ObfDereferenceObject`: drops a reference; the last one deletes the object. Returns the new
/// pointer count.
pub(crate) fn dereference(
    kernel: &Arc<KernelInner>,
    object: *mut c_void,
    by_driver: bool,
    site: Site,
) -> isize {
    let mut state = kernel.objects.lock();
    let Some(record) = state.objects.get_mut(&(object as usize)) else {
        drop(state);
        verifier::report(
            Rule::InvalidObject,
            site,
            format!("ObDereferenceObject({object:p}): not a live object"),
        );
        return 0;
    };
    if record.pointer_count <= 0 {
        let name = record.kind.object_type().name;
        drop(state);
        verifier::report(
            Rule::InvalidObject,
            site,
            format!(
                "ObDereferenceObject({object:p}): reference count underflow on a {name} object"
            ),
        );
        return 0;
    }
    record.pointer_count -= 1;
    if by_driver {
        record.driver_refs -= 1;
    }
    let count = record.pointer_count;
    if count == 0 {
        delete(kernel, state, object as usize);
    }
    count
}

/// Deletes an object whose pointer count reached zero.
fn delete(kernel: &Arc<KernelInner>, mut state: MutexGuard<'_, ObjectState>, object: usize) {
    match state.objects.get(&object).map(|r| &r.kind) {
        Some(ObjectKind::File(_)) => {}
        Some(ObjectKind::Event { .. }) => {
            state.objects.remove(&object);
            return;
        }
        // Devices go away with IoDeleteDevice.
        _ => return,
    }
    drop(state);
    if irql::current_irql() >= DISPATCH_LEVEL {
        let owner = kernel.clone();
        kernel.workers.queue_model(
            kernel,
            Box::new(move || file::close_file(&owner, object as *mut FILE_OBJECT)),
        );
    } else {
        file::close_file(kernel, object as *mut FILE_OBJECT);
    }
}

/// A counted reference to an object, dropped (`ObDereferenceObject`) with the value.
pub struct ObjectRef {
    kernel: KernelHandle,
    object: usize,
}

impl ObjectRef {
    /// The object's address (a `PFILE_OBJECT` for file references). Any IRQL.
    pub fn as_ptr(&self) -> *mut c_void {
        self.object as *mut c_void
    }

    /// The object as a file object. Any IRQL.
    pub fn as_file_object(&self) -> *mut FILE_OBJECT {
        self.object as *mut FILE_OBJECT
    }

    /// The device a file object was opened on. Any IRQL.
    pub fn device(&self) -> *mut DEVICE_OBJECT {
        // SAFETY: the reference keeps the file object alive; DeviceObject is set at creation.
        unsafe { (*self.as_file_object()).DeviceObject }
    }
}

impl Drop for ObjectRef {
    fn drop(&mut self) {
        let _api = self.kernel.api();
        dereference(
            &self.kernel.0,
            self.as_ptr(),
            false,
            Site::entry(context::entry()),
        );
    }
}

impl KernelHandle {
    /// `ObReferenceObjectByHandle(handle, 0, IoFileObjectType, KernelMode, …)`: a counted
    /// reference to a file object. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn reference_file(&self, handle: Handle) -> Result<ObjectRef, NtStatus> {
        let _api = self.api();
        let object = reference_by_handle(
            &self.0,
            handle.as_raw(),
            std::ptr::from_ref(&FILE_OBJECT_TYPE).cast_mut().cast(),
            false,
        )?;
        Ok(ObjectRef {
            kernel: self.clone(),
            object: object as usize,
        })
    }

    /// `ZwClose`: closes a handle. The last handle of a file object sends `IRP_MJ_CLEANUP`,
    /// and the last reference `IRP_MJ_CLOSE`, both on the calling thread. PASSIVE_LEVEL.
    #[track_caller]
    pub fn close(&self, handle: Handle) -> NtStatus {
        let _api = self.api();
        let kernel = &self.0;
        let mut state = kernel.objects.lock();
        let Some(object) = state.handles.remove(&handle.0) else {
            return NtStatus::INVALID_HANDLE;
        };
        let Some(record) = state.objects.get_mut(&object) else {
            return NtStatus::INVALID_HANDLE;
        };
        record.handle_count -= 1;
        let cleanup = record.handle_count == 0 && matches!(record.kind, ObjectKind::File(_));
        drop(state);
        if cleanup {
            file::cleanup_file(kernel, object as *mut FILE_OBJECT);
        }
        dereference(kernel, object as *mut c_void, false, Site::caller());
        NtStatus::SUCCESS
    }

    /// A handle to an event object: not a file, for testing `STATUS_OBJECT_TYPE_MISMATCH`.
    /// Any IRQL.
    pub fn create_event_handle(&self) -> Handle {
        let _api = self.api();
        // SAFETY: KEVENT is plain data; all-zero is a valid (unsignalled notification) event.
        let body = EventBody(Box::new(UnsafeCell::new(unsafe { std::mem::zeroed() })));
        let object = body.0.get() as usize;
        let mut state = self.0.objects.lock();
        state.objects.insert(
            object,
            ObjectRecord {
                kind: ObjectKind::Event { _body: body },
                pointer_count: 1,
                handle_count: 1,
                driver_refs: 0,
            },
        );
        state.insert_handle(object)
    }
}
