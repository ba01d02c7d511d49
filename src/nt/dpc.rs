//! Deferred procedure calls.

use crate::nt::sys;
use crate::nt::types::*;
use core::cell::UnsafeCell;
use core::ffi::c_void;

/// What a [`Dpc`] runs. `run` is called at DISPATCH_LEVEL on any processor, possibly on two
/// processors at once (a DPC may be queued again while it runs).
pub trait DpcHandler: Sync + 'static {
    /// The deferred routine. DISPATCH_LEVEL.
    fn run_dpc(&'static self);
}

/// A `KDPC` embedded in a driver structure at a fixed address.
pub struct Dpc {
    raw: UnsafeCell<KDPC>,
}

// SAFETY: the KDPC is only touched through KeInitializeDpc and KeInsertQueueDpc,
// which synchronise internally.
unsafe impl Sync for Dpc {}
// SAFETY: a KDPC is plain memory until it is initialised and queued at its final address.
unsafe impl Send for Dpc {}

impl Dpc {
    /// A zeroed, uninitialised DPC. Call [`Dpc::init`] once it is at its final address.
    pub fn new() -> Self {
        // SAFETY: KDPC is plain data; all-zero is its state before KeInitializeDpc.
        let raw = unsafe { core::mem::zeroed() };
        Self {
            raw: UnsafeCell::new(raw),
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut KDPC {
        self.raw.get()
    }

    /// `KeInitializeDpc` with `handler` as the deferred routine's context. Any IRQL.
    pub fn init<T: DpcHandler>(&'static self, handler: &'static T) {
        // SAFETY: `self` is static so the KDPC never moves; `handler` outlives every run.
        unsafe {
            sys::KeInitializeDpc(
                self.as_ptr(),
                Some(trampoline::<T>),
                handler as *const T as *mut c_void,
            )
        };
    }

    /// `KeInsertQueueDpc`: `false` if it was already queued. Any IRQL.
    #[track_caller]
    pub fn queue(&self) -> bool {
        // SAFETY: initialised by `init` at a fixed address.
        unsafe {
            sys::KeInsertQueueDpc(self.as_ptr(), core::ptr::null_mut(), core::ptr::null_mut()) != 0
        }
    }
}

impl Default for Dpc {
    fn default() -> Self {
        Self::new()
    }
}

/// `KeFlushQueuedDpcs`: returns once every DPC queued before the call has run. PASSIVE_LEVEL.
pub fn flush_queued_dpcs() {
    // SAFETY: no preconditions beyond PASSIVE_LEVEL.
    unsafe { sys::KeFlushQueuedDpcs() };
}

unsafe extern "system" fn trampoline<T: DpcHandler>(
    _dpc: *mut KDPC,
    context: *mut c_void,
    _arg1: *mut c_void,
    _arg2: *mut c_void,
) {
    // SAFETY: `context` is the `&'static T` given to `Dpc::init`.
    let handler = unsafe { &*(context as *const T) };
    handler.run_dpc();
}
