//! `KSPIN_LOCK` as a [`Lock`] backend.

use super::lock::{Backend, Lock};
use crate::nt::irql::Irql;
use crate::nt::sys;
use crate::nt::types::{KIRQL, KSPIN_LOCK};

/// A spin lock protecting a `T`. Acquiring it raises to DISPATCH_LEVEL; the guard lowers back.
/// Callable at IRQL ≤ DISPATCH_LEVEL; the code holding the guard runs at DISPATCH_LEVEL and must
/// not wait, touch pageable memory or complete IRPs.
pub type SpinLock<T> = Lock<T, SpinLockBackend>;

/// The `KSPIN_LOCK` backend: `KeAcquireSpinLockRaiseToDpc`/`KeReleaseSpinLock` from below
/// DISPATCH_LEVEL, and the cheaper `…AtDpcLevel` pair when the caller is already there.
pub struct SpinLockBackend;

/// How the lock was taken, so it is released the same way.
pub enum SpinGuardState {
    /// Raised from this IRQL.
    Raised(KIRQL),
    /// Taken at DISPATCH_LEVEL; the IRQL is unchanged.
    AtDispatch,
}

// SAFETY: KeAcquireSpinLock* gives exclusive access until the matching release, and `unlock`
// releases with the variant that matches the acquisition.
unsafe impl Backend for SpinLockBackend {
    type State = KSPIN_LOCK;
    type GuardState = SpinGuardState;

    fn init() -> KSPIN_LOCK {
        0
    }

    unsafe fn lock(state: *mut KSPIN_LOCK) -> SpinGuardState {
        if Irql::current() == Irql::DISPATCH {
            // SAFETY: we are at DISPATCH_LEVEL and `state` is a valid lock word (caller).
            unsafe { sys::KeAcquireSpinLockAtDpcLevel(state) };
            SpinGuardState::AtDispatch
        } else {
            // SAFETY: IRQL < DISPATCH_LEVEL and `state` is a valid lock word (caller).
            SpinGuardState::Raised(unsafe { sys::KeAcquireSpinLockRaiseToDpc(state) })
        }
    }

    unsafe fn unlock(state: *mut KSPIN_LOCK, guard: &SpinGuardState) {
        match guard {
            // SAFETY: held by this processor, acquired with the raise variant from `irql`.
            SpinGuardState::Raised(irql) => unsafe { sys::KeReleaseSpinLock(state, *irql) },
            // SAFETY: held by this processor, acquired at DISPATCH_LEVEL.
            SpinGuardState::AtDispatch => unsafe { sys::KeReleaseSpinLockFromDpcLevel(state) },
        }
    }
}
