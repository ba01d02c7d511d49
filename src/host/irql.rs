//! Interrupt request levels, per thread.
//!
//! On NT the IRQL belongs to the processor; in the model every thread has its own, which is
//! what a thread running on a processor observes. DPC processor threads run at DISPATCH_LEVEL,
//! worker threads and client threads at PASSIVE_LEVEL. Raising the IRQL does not stop the
//! model's scheduler (there is no real preemption to disable); the verifier checks the rules
//! that depend on it instead: no spin lock above DISPATCH_LEVEL, no wait at DISPATCH_LEVEL,
//! routines return at the IRQL they were called at.

use super::context::ModelScope;
use super::verifier::{self, Rule, Site};
use crate::nt::types::KIRQL;
use std::cell::Cell;

pub const PASSIVE_LEVEL: KIRQL = 0;
pub const APC_LEVEL: KIRQL = 1;
pub const DISPATCH_LEVEL: KIRQL = 2;

thread_local! {
    static IRQL: Cell<KIRQL> = const { Cell::new(PASSIVE_LEVEL) };
}

/// `KeGetCurrentIrql`. Any IRQL.
pub fn current_irql() -> KIRQL {
    IRQL.try_with(Cell::get).unwrap_or(PASSIVE_LEVEL)
}

/// Sets the current thread's IRQL without checks (the model's own transitions).
pub(crate) fn set(irql: KIRQL) {
    IRQL.with(|i| i.set(irql));
}

/// `KeRaiseIrql`: raises to `new` and returns the previous IRQL. Raising to a lower level is an
/// [`Rule::InvalidIrqlTransition`] (the IRQL is still set). Any IRQL.
#[track_caller]
pub fn raise_irql(new: KIRQL) -> KIRQL {
    let _model = ModelScope::enter();
    let old = current_irql();
    if new < old {
        verifier::report(
            Rule::InvalidIrqlTransition,
            Site::caller(),
            format!("raise from IRQL {old} to the lower IRQL {new}"),
        );
    }
    set(new);
    old
}

/// `KeLowerIrql`: lowers to `new`. Lowering to a higher level is an
/// [`Rule::InvalidIrqlTransition`] (the IRQL is still set). Any IRQL.
#[track_caller]
pub fn lower_irql(new: KIRQL) {
    lower_to(new, Site::caller());
}

pub(crate) fn lower_to(new: KIRQL, site: Site) {
    let _model = ModelScope::enter();
    let old = current_irql();
    if new > old {
        verifier::report(
            Rule::InvalidIrqlTransition,
            site,
            format!("lower from IRQL {old} to the higher IRQL {new}"),
        );
    }
    set(new);
}
