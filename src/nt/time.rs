//! Time and entropy sources.

use crate::nt::sys;

/// The interrupt time: 100 ns units since boot, monotonic. Any IRQL.
pub fn interrupt_time() -> u64 {
    // SAFETY: no preconditions.
    unsafe { sys::KeQueryInterruptTime() }
}

/// Microseconds since boot, for smoltcp's `Instant`. Any IRQL.
pub fn now_micros() -> i64 {
    i64::try_from(interrupt_time() / 10).unwrap_or(i64::MAX)
}

/// A clock for how long the core is held, in nanoseconds from an arbitrary start: the time
/// the processor spends on the calling thread. In the kernel that is the performance counter:
/// a core pass runs at DISPATCH_LEVEL under the core's spin lock, where nothing preempts it
/// (interrupts aside, which count), so its wall time is its processor time. In the host model
/// it is the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) less its spin-lock waits, so that
/// a model thread that Linux deschedules mid-pass (or while it holds a lock the pass needs)
/// does not make the pass look long. Any IRQL.
#[cfg(kernel)]
pub fn processor_nanos() -> u64 {
    let mut frequency = 0;
    // SAFETY: `frequency` is a valid out pointer.
    let ticks = unsafe { sys::KeQueryPerformanceCounter(&mut frequency) } as u64;
    let frequency = u64::try_from(frequency).unwrap_or(0).max(1);
    // Whole seconds and the rest apart: `ticks * 10^9` overflows after a few days' uptime, the
    // rest (below `frequency`, a few GHz at most) times 10^9 does not.
    (ticks / frequency)
        .saturating_mul(1_000_000_000)
        .saturating_add((ticks % frequency).saturating_mul(1_000_000_000) / frequency)
}

/// See the kernel version: the host model's thread CPU time, less the time the thread spent
/// spinning for a lock that a descheduled model thread held (which NT cannot do). Any IRQL.
#[cfg(not(kernel))]
pub fn processor_nanos() -> u64 {
    crate::host::pass_nanos()
}

/// Unpredictable bits gathered from the performance counter, the interrupt time and the time
/// stamp counter, mixed with SplitMix64. They seed the driver's CSPRNG; they are not random
/// numbers themselves. Any IRQL.
pub fn entropy() -> [u64; 4] {
    let mut frequency = 0;
    // SAFETY: `frequency` is a valid out pointer.
    let counter = unsafe { sys::KeQueryPerformanceCounter(&mut frequency) } as u64;
    let sources = [
        counter,
        interrupt_time(),
        timestamp_counter(),
        frequency as u64,
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    sources.map(|source| {
        state = state
            .wrapping_add(source)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

fn timestamp_counter() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: RDTSC has no preconditions on x86-64.
    let tsc = unsafe { core::arch::x86_64::_rdtsc() };
    #[cfg(target_arch = "x86")]
    // SAFETY: RDTSC exists on every CPU ReactOS supports (Pentium and later).
    let tsc = unsafe { core::arch::x86::_rdtsc() };
    tsc
}
