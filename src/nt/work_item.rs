//! Work items: run driver code at PASSIVE_LEVEL on a system worker thread.

use crate::nt::NtStatus;
use crate::nt::device::Device;
use crate::nt::sys;
use crate::nt::thread;
use crate::nt::types::*;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// What a [`WorkItem`] runs, at PASSIVE_LEVEL.
pub trait WorkHandler: Sync + 'static {
    /// The work routine. PASSIVE_LEVEL, system worker thread, arbitrary process context.
    fn run_work(&'static self);
}

/// An `IO_WORKITEM` that is queued at most once at a time, like a DPC: [`WorkItem::queue`]
/// returns `false` while it is queued, and the flag is cleared just before the routine runs, so
/// work that arrives during a run queues it again, and two runs may overlap. `IoQueueWorkItem`
/// keeps the device (and so the driver image) referenced until the routine returns; dropping
/// the item waits until no run is queued or running.
pub struct WorkItem<T: WorkHandler> {
    raw: *mut IO_WORKITEM,
    queued: AtomicBool,
    /// Runs queued and not yet returned.
    outstanding: AtomicUsize,
    handler: AtomicPtr<T>,
}

// SAFETY: IO_WORKITEM is used only through IoQueueWorkItem/IoFreeWorkItem; `queued` guards
// against queueing it twice; the handler is `Sync`.
unsafe impl<T: WorkHandler> Sync for WorkItem<T> {}
// SAFETY: the work item is not tied to a thread.
unsafe impl<T: WorkHandler> Send for WorkItem<T> {}

impl<T: WorkHandler> WorkItem<T> {
    /// `IoAllocateWorkItem` for `device`. IRQL ≤ DISPATCH_LEVEL.
    pub fn allocate(device: &Device) -> Result<Self, NtStatus> {
        // SAFETY: `device` is a live device object of this driver.
        let raw = unsafe { sys::IoAllocateWorkItem(device.as_ptr()) };
        if raw.is_null() {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        Ok(Self {
            raw,
            queued: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
            handler: AtomicPtr::new(core::ptr::null_mut()),
        })
    }

    /// Queues the item to run `handler.run_work()`; `false` if it is already queued.
    /// IRQL ≤ DISPATCH_LEVEL.
    #[track_caller]
    pub fn queue(&'static self, handler: &'static T) -> bool {
        if self.queued.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.handler
            .store(handler as *const T as *mut T, Ordering::Release);
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        // SAFETY: allocated and not queued (flag above); `self` is static, so the context
        // outlives the run.
        unsafe {
            sys::IoQueueWorkItem(
                self.raw,
                Some(trampoline::<T>),
                DELAYED_WORK_QUEUE,
                self as *const Self as *mut c_void,
            )
        };
        true
    }
}

/// How long [`WorkItem`]'s drop sleeps between looks at a run that has not returned yet.
const DRAIN_POLL_MICROS: u32 = 1_000;

impl<T: WorkHandler> Drop for WorkItem<T> {
    /// Waits for the runs still queued or running (a DPC may have queued one more while the
    /// last run drained the work), then frees the item. PASSIVE_LEVEL, at unload, after the
    /// DPCs that queue the item have stopped.
    fn drop(&mut self) {
        while self.outstanding.load(Ordering::Acquire) != 0 {
            thread::sleep_micros(DRAIN_POLL_MICROS);
        }
        // SAFETY: allocated by IoAllocateWorkItem, and neither queued nor running (above).
        unsafe { sys::IoFreeWorkItem(self.raw) };
    }
}

unsafe extern "system" fn trampoline<T: WorkHandler>(
    _device: *mut DEVICE_OBJECT,
    context: *mut c_void,
) {
    // SAFETY: `context` is the `&'static WorkItem<T>` that queued this run.
    let item = unsafe { &*(context as *const WorkItem<T>) };
    item.queued.store(false, Ordering::Release);
    // SAFETY: stored by `queue` before queueing, from a `&'static T`.
    let handler = unsafe { &*item.handler.load(Ordering::Acquire) };
    handler.run_work();
    // The last touch of the item: once this reaches zero, unload may free it.
    item.outstanding.fetch_sub(1, Ordering::AcqRel);
}
