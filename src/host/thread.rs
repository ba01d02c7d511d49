//! Threads: `PsGetCurrentThread`, `PsGetCurrentProcessId` and `KeDelayExecutionThread`.
//!
//! Every host thread that calls into the model is a kernel thread of it. Its `ETHREAD` is the
//! address of a thread-local cell: unique among the live threads, as on NT, and never
//! dereferenced by the driver.

use super::irql::{self, DISPATCH_LEVEL};
use super::verifier::{self, Rule, Site};
use std::cell::Cell;
use std::ffi::c_void;
use std::time::Duration;

thread_local! {
    static ETHREAD: Cell<u8> = const { Cell::new(0) };
    /// Whether this thread's token is an ordinary user's rather than an administrator's.
    static UNPRIVILEGED: Cell<bool> = const { Cell::new(false) };
    /// The process the calling thread runs in (`PsGetCurrentProcessId`).
    static PROCESS_ID: Cell<usize> = const { Cell::new(SYSTEM_PROCESS_ID) };
    /// This thread's stack bounds, read once (for the main thread glibc reads /proc to find them).
    static STACK: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

/// The System process's id: the process of threads a test did not place in another one.
pub const SYSTEM_PROCESS_ID: usize = 4;

/// Runs `f` with the calling thread in the process `id` (what `PsGetCurrentProcessId` reports
/// in the requester's context). Restored afterwards.
pub fn in_process<R>(id: usize, f: impl FnOnce() -> R) -> R {
    let before = PROCESS_ID.with(|cell| cell.replace(id));
    let result = f();
    PROCESS_ID.with(|cell| cell.set(before));
    result
}

/// `PsGetCurrentProcessId`. Any IRQL.
pub(crate) fn process_id() -> usize {
    PROCESS_ID.with(Cell::get)
}

/// The two tokens of the model, told apart by address.
static ADMIN_TOKEN: u8 = 0;
static USER_TOKEN: u8 = 0;

/// The calling thread's primary token. Any IRQL.
pub(crate) fn token() -> *mut c_void {
    let token = if UNPRIVILEGED.with(Cell::get) {
        &USER_TOKEN
    } else {
        &ADMIN_TOKEN
    };
    std::ptr::from_ref(token).cast_mut().cast()
}

/// Whether `token` is the administrator's. Any IRQL.
pub(crate) fn is_admin_token(token: *mut c_void) -> bool {
    std::ptr::eq(token.cast_const().cast::<u8>(), &ADMIN_TOKEN)
}

/// Runs `f` with the calling thread holding an ordinary user's token: what a process without
/// administrator rights sends. Restored afterwards.
pub fn as_unprivileged_user<R>(f: impl FnOnce() -> R) -> R {
    let before = UNPRIVILEGED.with(|cell| cell.replace(true));
    let result = f();
    UNPRIVILEGED.with(|cell| cell.set(before));
    result
}

/// `PsGetCurrentThread`. Any IRQL.
pub(crate) fn current() -> *mut c_void {
    ETHREAD.with(|cell| cell.as_ptr().cast())
}

/// The calling thread's CPU time in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`): what
/// `nt::time::processor_nanos` measures core passes with on the host. Any IRQL.
pub(crate) fn cpu_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-pointer; the clock id is one Linux always has.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0;
    if !ok {
        return 0;
    }
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0))
}

/// `IoGetStackLimits`: the calling thread's stack, `(low, high)`, from pthreads (a Linux host
/// thread's stack plays the kernel stack: it is larger, so the driver's depth checks pass where
/// a 12 KiB x86 kernel stack may not; the numbers are real). Any IRQL.
pub(crate) fn stack_limits() -> (usize, usize) {
    if let Some(limits) = STACK.with(Cell::get) {
        return limits;
    }
    let limits = read_stack_limits();
    STACK.with(|cell| cell.set(Some(limits)));
    limits
}

fn read_stack_limits() -> (usize, usize) {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    let (mut base, mut size) = (std::ptr::null_mut::<c_void>(), 0usize);
    // SAFETY: `attr` is initialised by pthread_getattr_np before pthread_attr_getstack reads it
    // and destroyed once; `base` and `size` are valid out-pointers.
    let ok = unsafe {
        libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) == 0 && {
            let got = libc::pthread_attr_getstack(attr.as_ptr(), &mut base, &mut size) == 0;
            libc::pthread_attr_destroy(attr.as_mut_ptr());
            got
        }
    };
    if !ok {
        return (0, 0);
    }
    (base as usize, (base as usize).saturating_add(size))
}

/// `KeDelayExecutionThread` with a relative `interval` (negative, in 100 ns units; a positive,
/// absolute one is taken as its magnitude). It sleeps in real time: the model clock, which
/// tests may drive, does not move. IRQL ≤ APC_LEVEL; at DISPATCH_LEVEL the model reports
/// [`Rule::WaitAtDispatch`] and returns at once.
pub(crate) fn delay(interval: i64, site: Site) {
    let irql = irql::current_irql();
    if irql >= DISPATCH_LEVEL {
        verifier::report(
            Rule::WaitAtDispatch,
            site,
            format!("KeDelayExecutionThread at IRQL {irql}"),
        );
        return;
    }
    // With inline DPCs the sleeping thread runs the queued ones first: the delay may be a
    // driver waiting for its DPC.
    if let Some(kernel) = super::context::try_current() {
        super::dpc::run_inline(&kernel);
    }
    std::thread::sleep(Duration::from_nanos(
        interval.unsigned_abs().saturating_mul(100),
    ));
}
