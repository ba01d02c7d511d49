//! Device objects created by the driver.

use crate::nt::types::*;
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::AtomicPtr;

/// The device extension: which of the driver's devices this is and where its state lives.
#[repr(C)]
pub(crate) struct Extension {
    /// The driver state, published once `Driver::init` has succeeded.
    pub state: AtomicPtr<c_void>,
    /// The index of the device's name in `Driver::DEVICES`.
    pub index: usize,
}

/// One of the driver's device objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    raw: NonNull<DEVICE_OBJECT>,
}

// SAFETY: a device object is a kernel object usable from any thread while it exists; the driver
// deletes its devices only at unload, after all users are gone.
unsafe impl Send for Device {}
// SAFETY: as above.
unsafe impl Sync for Device {}

impl Device {
    pub(crate) fn from_raw(raw: NonNull<DEVICE_OBJECT>) -> Self {
        Self { raw }
    }

    pub(crate) fn as_ptr(&self) -> *mut DEVICE_OBJECT {
        self.raw.as_ptr()
    }

    /// The device's identity, as stored in the file objects opened on it.
    pub fn id(&self) -> usize {
        self.raw.as_ptr() as usize
    }

    /// The driver object owning it, as an identity.
    pub fn driver(&self) -> usize {
        // SAFETY: live device object of this driver.
        unsafe { self.raw.as_ref() }.DriverObject as usize
    }
}
