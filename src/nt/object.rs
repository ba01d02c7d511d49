//! Object references taken from handles.

use crate::nt::NtStatus;
use crate::nt::irp::{FileObject, RequestorMode};
use crate::nt::sys;
use crate::nt::types::*;
use core::ffi::c_void;
use core::ptr::NonNull;

/// A referenced `FILE_OBJECT` (from `ObReferenceObjectByHandle`), dereferenced on drop.
pub struct ReferencedFile {
    raw: NonNull<FILE_OBJECT>,
}

impl ReferencedFile {
    /// Resolves `handle` to a file object with `ObReferenceObjectByHandle(handle, 0,
    /// IoFileObjectType, mode)`. PASSIVE_LEVEL, in the context of the process owning the handle
    /// (a dispatch routine's context). Errors: `STATUS_INVALID_HANDLE`,
    /// `STATUS_OBJECT_TYPE_MISMATCH` for a handle to anything but a file.
    pub fn from_handle(handle: usize, mode: RequestorMode) -> Result<Self, NtStatus> {
        let mode = match mode {
            RequestorMode::Kernel => KERNEL_MODE,
            RequestorMode::User => USER_MODE,
        };
        let mut object: *mut c_void = core::ptr::null_mut();
        // SAFETY: `object` is a valid out pointer; the object type restricts the result to
        // file objects, so the pointer we get back is a FILE_OBJECT.
        let status = unsafe {
            sys::ObReferenceObjectByHandle(
                handle as HANDLE,
                0,
                sys::io_file_object_type(),
                mode,
                &mut object,
                core::ptr::null_mut(),
            )
        };
        NtStatus(status).ok()?;
        NonNull::new(object.cast::<FILE_OBJECT>())
            .map(|raw| ReferencedFile { raw })
            .ok_or(NtStatus::INVALID_HANDLE)
    }

    /// The referenced file object.
    pub fn file(&self) -> FileObject<'_> {
        // SAFETY: we hold a reference, so the file object stays alive while borrowed.
        FileObject::from_ref(unsafe { self.raw.as_ref() })
    }
}

impl Drop for ReferencedFile {
    fn drop(&mut self) {
        // SAFETY: releases the reference taken in `from_handle`.
        unsafe { sys::ObfDereferenceObject(self.raw.as_ptr().cast()) };
    }
}
