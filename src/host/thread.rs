//! Threads: `PsGetCurrentThread` and `KeDelayExecutionThread`.
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
}

/// `PsGetCurrentThread`. Any IRQL.
pub(crate) fn current() -> *mut c_void {
    ETHREAD.with(|cell| cell.as_ptr().cast())
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
    std::thread::sleep(Duration::from_nanos(
        interval.unsigned_abs().saturating_mul(100),
    ));
}
