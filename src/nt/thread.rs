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

/// The calling thread's stack, `(low, high)` (`IoGetStackLimits`). IRQL ≤ APC_LEVEL (in a DPC
/// the bounds are the interrupted thread's, not the DPC stack's).
fn stack_limits() -> (usize, usize) {
    let (mut low, mut high) = (0usize, 0usize);
    // SAFETY: both are valid out-pointers.
    unsafe { sys::IoGetStackLimits(&mut low, &mut high) };
    (low, high)
}

/// The stack pointer, read from the register (the address of a local would not do: a host
/// build under AddressSanitizer keeps locals in "fake stack" frames on the heap). Any IRQL.
#[inline(always)]
fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reading the stack pointer register has no side effects.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: as above.
    #[cfg(target_arch = "x86")]
    unsafe {
        core::arch::asm!("mov {}, esp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    sp
}

/// The stack pointer if it lies within the thread's stack limits (on a kernel stack it always
/// does; the check keeps a host thread whose limits pthreads reports oddly from painting
/// anything).
fn stack_pointer_within(low: usize, high: usize) -> Option<usize> {
    let sp = stack_pointer();
    (low < sp && sp < high).then_some(sp)
}

/// How many bytes of the calling thread's stack are free below the caller's frame (`usize::MAX`
/// when the stack pointer cannot be placed in the stack, see [`stack_pointer_within`]). PASSIVE
/// or APC_LEVEL (see [`stack_limits`]).
pub fn remaining_stack() -> usize {
    let (low, high) = stack_limits();
    stack_pointer_within(low, high).map_or(usize::MAX, |sp| sp.saturating_sub(low))
}

/// The byte that [`StackPaint`] fills the free stack with.
const PAINT: u8 = 0xA5;
/// Left unpainted below the painting frame: `write_bytes`' own frame lives there (a host
/// build's sanitizer interceptors included).
const PAINT_GAP: usize = 2048;
/// Left unpainted above the stack's low limit.
const PAINT_FLOOR: usize = 64;

/// A stretch of the free stack below the caller filled with a pattern, to measure how deep the
/// calls that follow go: the deepest byte no longer holding the pattern marks the deepest use
/// (interrupts taken meanwhile count too, which errs on the safe side).
pub struct StackPaint {
    bottom: usize,
    top: usize,
}

impl StackPaint {
    /// Paints up to `depth` bytes of the free stack below the caller. PASSIVE or APC_LEVEL.
    #[inline(never)]
    pub fn new(depth: usize) -> Self {
        // Host builds do not paint: the fuzz targets' AddressSanitizer builds keep parts of
        // the stack for themselves, and the figure that matters is the kernel's.
        if cfg!(not(kernel)) {
            return Self { bottom: 0, top: 0 };
        }
        let (low, high) = stack_limits();
        let Some(sp) = stack_pointer_within(low, high) else {
            return Self { bottom: 0, top: 0 };
        };
        let top = sp.saturating_sub(PAINT_GAP);
        let bottom = top
            .saturating_sub(depth)
            .max(low.saturating_add(PAINT_FLOOR));
        if low != 0 && bottom < top {
            // SAFETY: [bottom, top) lies inside this thread's stack (bounds from
            // IoGetStackLimits) and below the deepest live frame, this function's, less a gap
            // for the fill's own call: nothing live is stored there, and whatever writes there
            // before `used` reads it (calls, interrupts) owns it only for its own duration.
            unsafe { core::ptr::write_bytes(bottom as *mut u8, PAINT, top - bottom) };
            Self { bottom, top }
        } else {
            Self { bottom: top, top }
        }
    }

    /// How many bytes below the painting frame the calls since [`StackPaint::new`] used at
    /// their deepest (at most the painted depth plus the gap). Same thread, PASSIVE or APC_LEVEL.
    #[inline(never)]
    pub fn used(&self) -> usize {
        let mut at = self.bottom;
        while at < self.top {
            // SAFETY: `at` is in the stretch `new` painted, which is stack memory of this
            // thread below the caller's frame; a volatile byte read of it has no effect.
            if unsafe { core::ptr::read_volatile(at as *const u8) } != PAINT {
                break;
            }
            at += 1;
        }
        if self.top == 0 {
            return 0;
        }
        self.top.saturating_sub(at).saturating_add(PAINT_GAP)
    }
}
