//! Kernel threads: who is running, and waiting by sleeping.

use crate::nt::sys;
use crate::nt::types::LARGE_INTEGER;

/// The identity of a kernel thread (its `ETHREAD` address), compared, never dereferenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadId(usize);

impl ThreadId {
    /// The calling thread (`PsGetCurrentThread`). Any IRQL.
    pub fn current() -> Self {
        // SAFETY: no preconditions.
        ThreadId(unsafe { sys::PsGetCurrentThread() } as usize)
    }
}

/// Sleeps for at least `micros` microseconds (`KeDelayExecutionThread`, kernel mode, not
/// alertable). PASSIVE_LEVEL.
#[track_caller]
pub fn sleep_micros(micros: u32) {
    let mut interval: LARGE_INTEGER = -(i64::from(micros) * 10);
    // SAFETY: `interval` is a valid relative time; the status of a non-alertable kernel-mode
    // delay is always STATUS_SUCCESS.
    unsafe { sys::KeDelayExecutionThread(0, 0, &mut interval) };
}
