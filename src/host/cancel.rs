//! IRP cancellation: the cancel spin lock and `IoCancelIrp`.
//!
//! `IoSetCancelRoutine` is not a kernel export (it is an atomic exchange of
//! `IRP.CancelRoutine`, done inline by the `nt` layer). `IoCancelIrp` follows NT: with the
//! cancel spin lock held (at DISPATCH_LEVEL) it sets `Irp->Cancel`, takes the cancel routine
//! with an atomic exchange, and if there was one stores the caller's IRQL in
//! `Irp->CancelIrql` and calls it with the lock still held; the routine releases the lock with
//! `IoReleaseCancelSpinLock(Irp->CancelIrql)`. The AFD contract (§4.0 rule 5) adds that the
//! routine must have completed the IRP when it returns.
//!
//! `IoCancelThreadIo` runs when a thread made by [`KernelHandle::spawn`] ends: every IRP still
//! queued to it ([`KernelHandle::queue_thread_irp`]) is cancelled, and the thread waits for
//! them to be finished, as `PspExitThread` does.

use super::context::EntryScope;
use super::kernel::{KernelHandle, KernelInner};
use super::spinlock;
use super::verifier::{self, Entry, RoutineFrame, Rule, Site};
use crate::nt::types::{IRP, KIRQL, PDRIVER_CANCEL};
use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// How long an ending thread waits for its cancelled IRPs (NT: 5 minutes, then it
/// disassociates them from the thread, `IopDisassociateThreadIrp`; the model leaves them).
const THREAD_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// `IoAcquireCancelSpinLock`: returns the previous IRQL.
pub(crate) fn acquire(kernel: &KernelInner, site: Site) -> KIRQL {
    // SAFETY: the cancel lock lives in the kernel, which outlives every caller.
    unsafe { spinlock::acquire_raise_to_dpc(kernel.cancel_lock.as_ptr(), site) }
}

/// `IoReleaseCancelSpinLock(irql)`.
pub(crate) fn release(kernel: &KernelInner, irql: KIRQL, site: Site) {
    // SAFETY: as in `acquire`.
    unsafe { spinlock::release_lower(kernel.cancel_lock.as_ptr(), irql, site) };
}

impl KernelHandle {
    /// `IoCancelIrp`. Returns TRUE if a cancel routine was called. Callable from any thread at
    /// IRQL ≤ DISPATCH_LEVEL, concurrently with the IRP's completion: an IRP that is no longer
    /// live is not touched (false). The cancel routine runs on the calling thread.
    #[track_caller]
    #[expect(
        clippy::not_unsafe_ptr_arg_deref,
        reason = "the IRP is checked against the kernel's live IRPs and held while it is used"
    )]
    pub fn cancel_irp(&self, irp: *mut IRP) -> bool {
        let site = Site::caller();
        let _api = self.api();
        let kernel: &Arc<KernelInner> = &self.0;
        if !kernel.irps.hold(irp) {
            return false;
        }
        let completions = kernel.irps.completions(irp);
        let frame = RoutineFrame::begin();
        let old = acquire(kernel, site);
        // SAFETY: the IRP is live and held. `Cancel` and `CancelRoutine` are accessed atomically
        // by everyone; `CancelRoutine` is an `Option<fn>`, pointer-sized with null for None.
        let routine = unsafe {
            AtomicU8::from_ptr(&raw mut (*irp).Cancel).store(1, Ordering::SeqCst);
            AtomicPtr::<c_void>::from_ptr((&raw mut (*irp).CancelRoutine).cast())
                .swap(std::ptr::null_mut(), Ordering::AcqRel)
        };
        if routine.is_null() {
            release(kernel, old, site);
            kernel.irps.release(irp);
            return false;
        }
        // SAFETY: a non-null value of a `PDRIVER_CANCEL` field.
        let routine: PDRIVER_CANCEL = unsafe { std::mem::transmute(routine) };
        // SAFETY: the IRP is live and held; its current location is read only if it exists
        // (the IRP was sent to a driver).
        let device = unsafe {
            (*irp).CancelIrql = old;
            if (*irp).CurrentLocation <= (*irp).StackCount {
                (*(*irp).Tail.Overlay.CurrentStackLocation).DeviceObject
            } else {
                std::ptr::null_mut()
            }
        };
        if let Some(routine) = routine {
            let _scope = EntryScope::enter(Arc::as_ptr(&kernel.pool), Entry::Cancel);
            // SAFETY: the cancel routine the driver installed, called as NT does, with the
            // cancel spin lock held.
            unsafe { routine(device, irp) };
        }
        let routine_address = routine.map_or(0, |r| r as usize);
        if spinlock::holds(kernel.cancel_lock.as_ptr()) {
            verifier::report(
                Rule::CancelSpinLockNotReleased,
                Site::entry(Entry::Cancel),
                format!(
                    "cancel routine {routine_address:#x} of IRP {irp:p} returned without \
                     releasing the cancel spin lock"
                ),
            );
            release(kernel, old, Site::entry(Entry::Cancel));
        }
        frame.end(Entry::Cancel, routine_address);
        if kernel.irps.completions(irp) == completions {
            verifier::report(
                Rule::CancelRoutineDidNotComplete,
                Site::entry(Entry::Cancel),
                format!(
                    "cancel routine {routine_address:#x} returned without completing IRP {irp:p} \
                     (AFD frees its state right after IoCancelIrp returns)"
                ),
            );
        }
        kernel.irps.release(irp);
        true
    }

    /// `IoCancelThreadIo` for the calling thread, which is ending: `IoCancelIrp` on each IRP
    /// queued to it, then a wait (polling, as NT does every 100 ms) until the I/O manager has
    /// finished with all of them or [`THREAD_IO_TIMEOUT`] has passed. PASSIVE_LEVEL.
    pub(crate) fn cancel_thread_io(&self) {
        let thread = std::thread::current().id();
        for irp in self.0.irps.hold_of_thread(thread) {
            self.cancel_irp(irp);
            self.0.irps.release(irp);
        }
        let started = Instant::now();
        while self.0.irps.count_of_thread(thread) > 0 && started.elapsed() < THREAD_IO_TIMEOUT {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
