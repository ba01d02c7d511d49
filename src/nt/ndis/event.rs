//! `NDIS_EVENT`: a notification event a PASSIVE_LEVEL thread waits on while NDIS completes a
//! request it pended.

use crate::nt::sys::ndis as sys;
use crate::nt::types::NDIS_EVENT;
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

/// How long one `NdisWaitEvent` call waits, in milliseconds.
pub const WAIT_SLICE_MS: u32 = 100;

/// An `NDIS_EVENT`, initialised in place on first use (it must not move afterwards: it lives
/// inside the `Arc` of its binding).
pub struct NdisEvent {
    event: UnsafeCell<MaybeUninit<NDIS_EVENT>>,
    initialised: AtomicBool,
}

// SAFETY: the event is only touched through NdisXxxEvent, which synchronise internally.
unsafe impl Sync for NdisEvent {}
// SAFETY: an unsignalled, unwaited event can move between threads.
unsafe impl Send for NdisEvent {}

impl Default for NdisEvent {
    fn default() -> Self {
        Self {
            event: UnsafeCell::new(MaybeUninit::uninit()),
            initialised: AtomicBool::new(false),
        }
    }
}

impl NdisEvent {
    /// Initialises the event (unsignalled) at its final address, or resets it. PASSIVE_LEVEL,
    /// before the operation that will signal it is started.
    pub fn reset(&self) {
        let event = self.event.get().cast::<NDIS_EVENT>();
        if self.initialised.swap(true, Ordering::AcqRel) {
            // SAFETY: initialised, and the owner of the event does not move it.
            unsafe { sys::NdisResetEvent(event) };
        } else {
            // SAFETY: writable storage for an NDIS_EVENT that stays at this address.
            unsafe { sys::NdisInitializeEvent(event) };
        }
    }

    /// Signals the event. IRQL ≤ DISPATCH_LEVEL. Does nothing on an event never reset.
    pub fn set(&self) {
        if self.initialised.load(Ordering::Acquire) {
            // SAFETY: initialised by `reset`.
            unsafe { sys::NdisSetEvent(self.event.get().cast()) };
        }
    }

    /// Waits until the event is signalled. PASSIVE_LEVEL; the event was reset before the
    /// operation that signals it began.
    ///
    /// Waits in slices of [`WAIT_SLICE_MS`]: on Windows `NdisWaitEvent(_, 0)` waits forever, but
    /// ReactOS passes 0 ms to `KeWaitForSingleObject` as the timeout, which returns at once
    /// (and its wait is alertable, so a slice may also end early).
    pub fn wait(&self) {
        if !self.initialised.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: initialised by `reset`.
        while unsafe { sys::NdisWaitEvent(self.event.get().cast(), WAIT_SLICE_MS) } == 0 {}
    }
}
