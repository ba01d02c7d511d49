//! File objects: open by name with an EA buffer, `IRP_MJ_CLEANUP`/`IRP_MJ_CLOSE`, and
//! synchronous device I/O control as the I/O manager does it.
//!
//! Opening `\Device\RawIp\6` finds the device whose name is the longest prefix of the path
//! (case-insensitively) and sends `IRP_MJ_CREATE` with `FILE_OBJECT.FileName` set to the rest
//! of the path (`\6`), the EA buffer in `AssociatedIrp.SystemBuffer`, and `EaLength` and
//! `ShareAccess` in `Parameters.Create`. A failed create frees the file object without
//! `IRP_MJ_CLEANUP` or `IRP_MJ_CLOSE`, as on NT.

use super::device;
use super::io::{IoStatus, StackLocation};
use super::kernel::{KernelHandle, KernelInner};
use super::object::{Handle, ObjectKind, ObjectRecord};
use super::user::{Access, Mapping, UserSpace};
use crate::nt::NtStatus;
use crate::nt::types::*;
use std::ffi::c_void;
use std::sync::Arc;

/// `IRP::Flags` bits the I/O manager sets.
const IRP_SYNCHRONOUS_API: u32 = 0x0004;
const IRP_BUFFERED_IO: u32 = 0x0010;
const IRP_INPUT_OPERATION: u32 = 0x0040;
const IRP_CREATE_OPERATION: u32 = 0x0080;
const IRP_CLOSE_OPERATION: u32 = 0x0400;
/// `FILE_OBJECT::Flags`: cleanup was sent.
const FO_CLEANUP_COMPLETE: u32 = 0x4000;
/// `FILE_OBJECT::Flags`: a handle was created for the object.
const FO_HANDLE_CREATED: u32 = 0x0004_0000;

/// `METHOD_*`: the buffering method in the low bits of an I/O control code.
const METHOD_BUFFERED: u32 = 0;
const METHOD_NEITHER: u32 = 3;

/// The model's data of a file object.
pub(crate) struct FileData {
    /// The `FileName` buffer.
    name: Box<[u16]>,
    /// The device it was opened on.
    pub(crate) device: usize,
}

/// How [`KernelHandle::device_io_control_with`] builds its IRP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoctlOptions {
    /// `IRP::RequestorMode`: `KERNEL_MODE` or `USER_MODE`.
    pub requestor_mode: KPROCESSOR_MODE,
    /// Send `IRP_MJ_INTERNAL_DEVICE_CONTROL` instead of `IRP_MJ_DEVICE_CONTROL`.
    pub internal: bool,
    /// What a METHOD_NEITHER request's `Type3InputBuffer` is (ignored by other methods).
    pub input: UserBuffer,
    /// What a METHOD_NEITHER request's `Irp->UserBuffer` is (ignored by other methods).
    pub output: UserBuffer,
}

impl Default for IoctlOptions {
    fn default() -> IoctlOptions {
        IoctlOptions {
            requestor_mode: USER_MODE,
            internal: false,
            input: UserBuffer::Mapped,
            output: UserBuffer::Mapped,
        }
    }
}

/// A METHOD_NEITHER buffer of a user-mode request, as the model maps it in the requester's
/// address space (`host::user`) for the duration of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserBuffer {
    /// The caller's slice: input mapped readable, output readable and writable.
    Mapped,
    /// The caller's slice, mapped read-only: a write to it faults.
    ReadOnly,
    /// This address instead of the slice, mapped nowhere (0x1000, a freed buffer, an address
    /// at or past `MmUserProbeAddress`, a kernel address): any access to it faults. Only for
    /// user-mode requests (a kernel-mode requester's pointers are trusted).
    Unmapped(usize),
}

/// A zeroed, 8-byte aligned buffer holding `bytes` and `len` bytes in all (as the pool copy the
/// I/O manager makes of a system buffer).
fn system_buffer(bytes: &[u8], len: usize) -> Vec<u64> {
    let mut buffer = vec![0u64; len.max(bytes.len()).div_ceil(8)];
    // SAFETY: the Vec holds at least `bytes.len()` bytes; u64 has no invalid bit patterns.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buffer.as_mut_ptr().cast(), bytes.len())
    };
    buffer
}

/// Builds an IRP for a file object's device with one request in its next location.
fn file_irp(
    kernel: &Arc<KernelInner>,
    file: *mut FILE_OBJECT,
    location: StackLocation,
) -> *mut IRP {
    // SAFETY: a live file object of this kernel and its live device.
    let stack_size = unsafe { (*(*file).DeviceObject).StackSize };
    let irp = super::io::allocate(kernel, stack_size);
    // SAFETY: a fresh IRP owned here.
    unsafe {
        (*irp).Tail.Overlay.OriginalFileObject = file;
        (*irp).RequestorMode = KERNEL_MODE;
        (*irp).Flags = IRP_SYNCHRONOUS_API;
    }
    KernelHandle(kernel.clone()).set_next_stack(irp, location);
    irp
}

/// Sends a request on a file object and waits for it. PASSIVE_LEVEL.
fn send_file_request(kernel: &Arc<KernelInner>, file: *mut FILE_OBJECT, major: u8, flags: u32) {
    let irp = file_irp(kernel, file, StackLocation::new(major, 0, file));
    // SAFETY: a fresh IRP owned here; the file object is live.
    let device = unsafe {
        (*irp).Flags |= flags;
        (*file).DeviceObject
    };
    KernelHandle(kernel.clone()).call_driver_sync(device, irp);
}

/// Sends `IRP_MJ_CLEANUP` for a file object whose last handle was closed. PASSIVE_LEVEL.
pub(crate) fn cleanup_file(kernel: &Arc<KernelInner>, file: *mut FILE_OBJECT) {
    send_file_request(kernel, file, IRP_MJ_CLEANUP, 0);
    // SAFETY: the file object is live until its close.
    unsafe { (*file).Flags |= FO_CLEANUP_COMPLETE };
}

/// Sends `IRP_MJ_CLOSE` for a file object whose last reference was dropped, and frees it.
/// PASSIVE_LEVEL.
pub(crate) fn close_file(kernel: &Arc<KernelInner>, file: *mut FILE_OBJECT) {
    send_file_request(kernel, file, IRP_MJ_CLOSE, IRP_CLOSE_OPERATION);
    free_file(kernel, file);
}

/// Removes a file object from the object table and frees it.
fn free_file(kernel: &KernelInner, file: *mut FILE_OBJECT) {
    let mut state = kernel.objects.lock();
    let Some(ObjectRecord {
        kind: ObjectKind::File(data),
        ..
    }) = state.objects.remove(&(file as usize))
    else {
        return;
    };
    let free_device = device::file_closed(&mut state, data.device);
    drop(state);
    drop(data.name);
    // SAFETY: allocated as a Box<FILE_OBJECT> by `create_file`, freed once (its record is gone).
    drop(unsafe { Box::from_raw(file) });
    if let Some(device) = free_device {
        device::free_device(device);
    }
}

impl KernelHandle {
    /// `ZwCreateFile` of `path` with an optional EA buffer and the given share access, as a
    /// kernel-mode caller: sends `IRP_MJ_CREATE` and returns a kernel handle on success.
    /// `STATUS_OBJECT_NAME_NOT_FOUND` if no device matches. PASSIVE_LEVEL.
    pub fn create_file(
        &self,
        path: &str,
        ea: Option<&[u8]>,
        share_access: u16,
    ) -> Result<Handle, NtStatus> {
        let _api = self.api();
        let kernel = &self.0;
        let (device, tail) = device::lookup_path(kernel, path)?;
        let mut name: Box<[u16]> = tail.encode_utf16().collect();
        // SAFETY: FILE_OBJECT is plain data; all-zero is a valid empty value.
        let mut object: Box<FILE_OBJECT> = unsafe { Box::new_zeroed().assume_init() };
        object.Type = IO_TYPE_FILE;
        object.Size = size_of::<FILE_OBJECT>() as CSHORT;
        object.DeviceObject = device;
        object.FileName = UNICODE_STRING {
            Length: (name.len() * 2) as u16,
            MaximumLength: (name.len() * 2) as u16,
            Buffer: if name.is_empty() {
                std::ptr::null_mut()
            } else {
                name.as_mut_ptr()
            },
        };
        let file = Box::into_raw(object);
        {
            let mut state = kernel.objects.lock();
            device::file_opened(&mut state, device as usize);
            state.objects.insert(
                file as usize,
                ObjectRecord {
                    kind: ObjectKind::File(FileData {
                        name,
                        device: device as usize,
                    }),
                    pointer_count: 1,
                    handle_count: 0,
                    driver_refs: 0,
                },
            );
        }
        let ea_bytes = ea.unwrap_or_default();
        let mut ea_buffer = system_buffer(ea_bytes, ea_bytes.len());
        let mut location = StackLocation::new(IRP_MJ_CREATE, 0, file);
        location.parameters = IoStackParameters {
            Create: CreateParameters::new(share_access, ea_bytes.len() as u32),
        };
        let irp = file_irp(kernel, file, location);
        // SAFETY: a fresh IRP owned here; the EA copy outlives the request.
        unsafe {
            (*irp).Flags |= IRP_CREATE_OPERATION;
            if ea.is_some() {
                (*irp).AssociatedIrp.SystemBuffer = ea_buffer.as_mut_ptr().cast();
            }
        }
        let result = self.call_driver_sync(device, irp);
        if !result.status.is_success() {
            free_file(kernel, file);
            return Err(result.status);
        }
        let mut state = kernel.objects.lock();
        if let Some(record) = state.objects.get_mut(&(file as usize)) {
            record.handle_count = 1;
        }
        // SAFETY: the file object is live; only the model writes its flags here.
        unsafe { (*file).Flags |= FO_HANDLE_CREATED };
        Ok(state.insert_handle(file as usize))
    }

    /// An IRP for a request on a referenced file object, as a kernel-mode client such as AFD
    /// builds it (`TdiBuildInternalDeviceControlIrp`): as many stack locations as the file's
    /// device needs, the next one filled from `location` with `FileObject` set to the file,
    /// `RequestorMode` kernel and no `Tail.Overlay.OriginalFileObject`. Send it with
    /// [`KernelHandle::call_driver`] to [`ObjectRef::device`]. Any IRQL ≤ DISPATCH_LEVEL.
    ///
    /// [`ObjectRef::device`]: super::ObjectRef::device
    pub fn allocate_file_irp(&self, file: &super::ObjectRef, location: StackLocation) -> *mut IRP {
        let _api = self.api();
        // SAFETY: the reference keeps the file object and its device alive.
        let stack_size = unsafe { (*file.device()).StackSize };
        let irp = super::io::allocate(&self.0, stack_size);
        // SAFETY: a fresh IRP owned here.
        unsafe { (*irp).RequestorMode = KERNEL_MODE };
        self.set_next_stack(
            irp,
            StackLocation {
                file_object: file.as_file_object(),
                ..location
            },
        );
        irp
    }

    /// The address a request carries for a user buffer, and its mapping in the requester's
    /// address space while the request runs (none for an unmapped address).
    fn map_user(
        &self,
        buffer: UserBuffer,
        slice: *mut u8,
        len: usize,
        access: Access,
    ) -> (usize, Option<Mapping>) {
        let mapping = |access| UserSpace::map(&self.0, slice as usize, len, access);
        match buffer {
            UserBuffer::Mapped => (slice as usize, Some(mapping(access))),
            UserBuffer::ReadOnly => (slice as usize, Some(mapping(Access::ReadOnly))),
            UserBuffer::Unmapped(address) => (address, None),
        }
    }

    /// `ZwDeviceIoControlFile` on a handle, from user mode: see
    /// [`KernelHandle::device_io_control_with`]. PASSIVE_LEVEL.
    pub fn device_io_control(
        &self,
        handle: Handle,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> (NtStatus, usize) {
        self.device_io_control_with(handle, code, input, output, IoctlOptions::default())
    }

    /// A synchronous device I/O control request, buffered as the I/O manager does for the
    /// code's method:
    /// - `METHOD_BUFFERED`: one system buffer of `max(input, output)` bytes holding the input,
    ///   `IRP::UserBuffer` at `output`; on a non-error status, `Information` bytes are copied
    ///   back to `output`;
    /// - `METHOD_NEITHER`: `Parameters.DeviceIoControl.Type3InputBuffer` points at (a copy
    ///   of) the input and `IRP::UserBuffer` at `output`, both mapped as user memory for the
    ///   request, or at what `options.input`/`options.output` say ([`UserBuffer`]);
    /// - `METHOD_IN_DIRECT`/`METHOD_OUT_DIRECT`: the input in the system buffer and `output`
    ///   described by an unmapped MDL.
    ///
    /// For those methods the I/O manager touches the caller's buffers itself: a user-mode
    /// request whose `options` name a buffer other than [`UserBuffer::Mapped`] fails with
    /// `STATUS_ACCESS_VIOLATION` before any IRP is built, as NT's probe does.
    ///
    /// Returns the final status and `Information`. PASSIVE_LEVEL.
    pub fn device_io_control_with(
        &self,
        handle: Handle,
        code: u32,
        input: &[u8],
        output: &mut [u8],
        options: IoctlOptions,
    ) -> (NtStatus, usize) {
        let _api = self.api();
        let file = match self.reference_file(handle) {
            Ok(file) => file,
            Err(status) => return (status, 0),
        };
        let method = code & 3;
        let mapped = options.input == UserBuffer::Mapped && options.output == UserBuffer::Mapped;
        if method != METHOD_NEITHER && options.requestor_mode == USER_MODE && !mapped {
            // The I/O manager probes and copies the buffers of the other methods itself, under
            // SEH: the request fails before any IRP is built.
            return (NtStatus::ACCESS_VIOLATION, 0);
        }
        let mut input_copy = system_buffer(input, input.len());
        let mut buffer = system_buffer(input, output.len());
        let (input_address, _input_mapping) = self.map_user(
            options.input,
            input_copy.as_mut_ptr().cast(),
            input.len(),
            Access::ReadOnly,
        );
        let (output_address, _output_mapping) = self.map_user(
            options.output,
            output.as_mut_ptr(),
            output.len(),
            Access::ReadWrite,
        );
        let type3 = if method == METHOD_NEITHER {
            input_address as *mut c_void
        } else {
            std::ptr::null_mut()
        };
        let major = if options.internal {
            IRP_MJ_INTERNAL_DEVICE_CONTROL
        } else {
            IRP_MJ_DEVICE_CONTROL
        };
        let mut location = StackLocation::new(major, 0, file.as_file_object());
        location.parameters = IoStackParameters {
            DeviceIoControl: DeviceIoControlParameters::new(
                code,
                input.len() as u32,
                output.len() as u32,
                type3,
            ),
        };
        let irp = file_irp(&self.0, file.as_file_object(), location);
        let output_mdl =
            if method != METHOD_BUFFERED && method != METHOD_NEITHER && !output.is_empty() {
                self.build_mdl(
                    output.as_mut_ptr(),
                    output.len(),
                    super::mdl::MdlKind::Locked,
                )
            } else {
                std::ptr::null_mut()
            };
        // SAFETY: a fresh IRP owned here; the buffers outlive the request.
        unsafe {
            (*irp).RequestorMode = options.requestor_mode;
            match method {
                METHOD_BUFFERED => {
                    (*irp).AssociatedIrp.SystemBuffer = buffer.as_mut_ptr().cast();
                    (*irp).UserBuffer = output.as_mut_ptr().cast();
                    (*irp).Flags |= IRP_BUFFERED_IO | IRP_INPUT_OPERATION;
                    // As NT's I/O manager: the caller's output buffer, where the system buffer
                    // is copied back (drivers put caller-space pointers relative to it).
                    (*irp).UserBuffer = output.as_mut_ptr().cast();
                }
                METHOD_NEITHER => {
                    (*irp).UserBuffer = output_address as *mut c_void;
                }
                _ => {
                    (*irp).AssociatedIrp.SystemBuffer = input_copy.as_mut_ptr().cast();
                    (*irp).MdlAddress = output_mdl;
                }
            }
        }
        let result: IoStatus = self.call_driver_sync(file.device(), irp);
        let status = result.status;
        let information = result.information;
        let is_error = (status.raw() as u32) >> 30 == 3;
        if method == METHOD_BUFFERED && !is_error {
            let n = information.min(output.len());
            // SAFETY: `buffer` holds at least output.len() bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(buffer.as_ptr().cast(), output.as_mut_ptr(), n)
            };
        }
        (status, information)
    }
}
