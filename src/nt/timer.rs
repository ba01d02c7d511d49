//! Kernel timers.

use crate::nt::dpc::Dpc;
use crate::nt::sys;
use crate::nt::types::*;
use core::cell::UnsafeCell;

/// A `KTIMER` embedded in a driver structure at a fixed address; expiry queues a [`Dpc`].
pub struct Timer {
    raw: UnsafeCell<KTIMER>,
}

// SAFETY: the KTIMER is only touched through KeSetTimer/KeCancelTimer, which synchronise
// internally.
unsafe impl Sync for Timer {}
// SAFETY: plain memory until initialised at its final address.
unsafe impl Send for Timer {}

impl Timer {
    /// A zeroed timer. Call [`Timer::init`] at its final address.
    pub fn new() -> Self {
        // SAFETY: KTIMER is plain data; all-zero is its state before KeInitializeTimer.
        let raw = unsafe { core::mem::zeroed() };
        Self {
            raw: UnsafeCell::new(raw),
        }
    }

    /// `KeInitializeTimer`. IRQL ≤ DISPATCH_LEVEL.
    pub fn init(&'static self) {
        // SAFETY: static, so it never moves.
        unsafe { sys::KeInitializeTimer(self.raw.get()) };
    }

    /// Arms the timer to queue `dpc` after `delay_100ns` (relative, in 100 ns units), replacing
    /// any earlier due time. Returns whether it was already set. IRQL ≤ DISPATCH_LEVEL.
    #[track_caller]
    pub fn set_relative(&self, delay_100ns: u64, dpc: &'static Dpc) -> bool {
        let due = -(i64::try_from(delay_100ns.max(1)).unwrap_or(i64::MAX));
        // SAFETY: both objects are initialised at fixed addresses.
        unsafe { sys::KeSetTimer(self.raw.get(), due, dpc.as_ptr()) != 0 }
    }

    /// `KeCancelTimer`: `true` if it was set. IRQL ≤ DISPATCH_LEVEL.
    #[track_caller]
    pub fn cancel(&self) -> bool {
        // SAFETY: initialised at a fixed address.
        unsafe { sys::KeCancelTimer(self.raw.get()) != 0 }
    }
}

impl Default for Timer {
    fn default() -> Self {
        Self::new()
    }
}
