//! Interrupt request levels.

use crate::nt::sys;

/// An IRQL. The driver runs at [`Irql::PASSIVE`] in dispatch routines and work items and at
/// [`Irql::DISPATCH`] in DPCs, cancel routines and while holding a spin lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Irql(pub u8);

impl Irql {
    pub const PASSIVE: Irql = Irql(0);
    pub const APC: Irql = Irql(1);
    pub const DISPATCH: Irql = Irql(2);

    /// The current processor's IRQL. Callable at any IRQL.
    pub fn current() -> Irql {
        // SAFETY: KeGetCurrentIrql has no preconditions.
        Irql(unsafe { sys::KeGetCurrentIrql() })
    }
}
