//! The verifier: the rules the model checks, where a violation happened, and the per-kernel
//! record of violations that fails the test at teardown.
//!
//! Like Driver Verifier, the model checks the driver's use of the kernel as it happens. Unlike
//! Driver Verifier it does not bug-check: a violation is logged to stderr and recorded in the
//! [`Kernel`](super::Kernel), the model repairs what it must so that nothing hangs (it restores
//! the IRQL, releases forgotten spin locks), and the test fails when the `Kernel` is dropped,
//! unless the test took the violation ([`KernelHandle::take_violations`]) or declared it
//! ([`KernelHandle::expect_violation`]).
//!
//! [`KernelHandle::take_violations`]: super::KernelHandle::take_violations
//! [`KernelHandle::expect_violation`]: super::KernelHandle::expect_violation

use super::context::{self, ModelScope};
use super::irql;
use super::spinlock;
use crate::nt::types::KIRQL;
use std::fmt;
use std::panic::Location;
use std::sync::Mutex;

/// A rule of the NT driver contract that the model checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// A spin lock acquired above DISPATCH_LEVEL, or an `…AtDpcLevel` acquire/release below it.
    SpinLockIrql,
    /// A spin lock acquired by the thread that already holds it (a self-deadlock on NT).
    SpinLockRecursion,
    /// Spin locks released in a different order than they were acquired.
    SpinLockReleaseOrder,
    /// A spin lock released by a thread that does not hold it.
    SpinLockNotHeld,
    /// A dispatch, DPC, work-item, cancel or entry routine returned holding a spin lock.
    SpinLockHeldOnReturn,
    /// A routine returned at another IRQL than the one it was called at.
    IrqlNotRestored,
    /// An IRQL "raise" to a lower level or "lower" to a higher level.
    InvalidIrqlTransition,
    /// A wait with a non-zero timeout at DISPATCH_LEVEL or above.
    WaitAtDispatch,
    /// `IoCompleteRequest` on an IRP that was already completed (or is not a live IRP).
    IrpCompletedTwice,
    /// `IoCompleteRequest` on an IRP whose cancel routine is still set.
    CompleteWithCancelRoutine,
    /// `IoCompleteRequest` with `IoStatus.Status == STATUS_PENDING`.
    CompleteWithPending,
    /// A dispatch routine returned `STATUS_PENDING` without `IoMarkIrpPending`.
    PendingNotMarked,
    /// A dispatch routine marked the IRP pending but returned another status.
    PendingMarkedNotReturned,
    /// A dispatch routine returned a status other than `STATUS_PENDING` without completing the
    /// IRP.
    NotCompletedNotPending,
    /// An IRP completed at DISPATCH_LEVEL although a completion routine in its stack needs
    /// PASSIVE_LEVEL (AFD's completion routines wait on a KMUTEX).
    PassiveCompletionAtDispatch,
    /// A cancel routine returned without having completed its IRP (contract §4.0 rule 5).
    CancelRoutineDidNotComplete,
    /// A cancel routine returned without releasing the cancel spin lock.
    CancelSpinLockNotReleased,
    /// `IoQueueWorkItem` on a work item that is already queued.
    WorkItemQueuedTwice,
    /// `IoFreeWorkItem` on a work item that is still queued.
    WorkItemFreedWhileQueued,
    /// `ExFreePoolWithTag` with a wrong tag, or on a block that is not pool.
    BadPoolFree,
    /// An object call (`ObfDereferenceObject`, `IoQueueWorkItem`, `IoDeleteDevice`, …) on a
    /// pointer that is not a live object of the right kind, or a reference count underflow.
    InvalidObject,
    /// A `KMUTEX` released by a thread that does not own it.
    MutexNotOwned,
    /// Pool attributed to the driver still allocated at unload.
    PoolLeak,
    /// An IRP sent to the driver and never completed, at unload.
    IrpLeak,
    /// A work item still allocated at unload.
    WorkItemLeak,
    /// A device object still present at unload.
    DeviceLeak,
    /// A stop request for a driver that has no device object: ReactOS's `IopUnloadDriver`
    /// refuses it (the service stop fails with ERROR_INVALID_SERVICE_CONTROL and the driver
    /// stays loaded), whatever its `DriverUnload`. The model unloads it anyway, to tear down.
    UnloadRefused,
    /// A file object referenced by the driver and never dereferenced, or still open, at unload.
    FileObjectLeak,
    /// A timer still set at unload.
    TimerLeak,
    /// An NDIS packet or buffer freed twice, or freed while it is not the protocol's (a
    /// packet NDIS still owns for a send or a transfer), or a descriptor that is not live.
    NdisPacketOwnership,
    /// A packet passed to `NdisSend` while an earlier send of it is not complete (the
    /// protocol would see two completions of one packet).
    NdisSendInFlight,
    /// A packet returned (`NdisReturnPackets`) that the protocol did not hold, or held past
    /// its binding; or a receive indication's packet, buffer or receive context used after the
    /// indication returned.
    NdisReceiveOwnership,
    /// `NdisCloseAdapter` with sends or transfers outstanding, or a binding left open when
    /// the protocol deregistered.
    NdisCloseWithOutstanding,
    /// A packet or buffer pool freed while descriptors from it are allocated.
    NdisPoolInUse,
    /// A protocol registration, binding or pool still present at unload.
    NdisLeak,
    /// An NDIS function called at an IRQL it does not allow.
    NdisIrql,
    /// A TDI client's event handler called at another IRQL than DISPATCH_LEVEL.
    ClientEventIrql,
    /// A TDI client's event handler called while the driver holds a spin lock (the handler
    /// may call back into the driver, which would take the lock again).
    ClientEventLockHeld,
}

/// The driver entry point the current thread is executing, as far as the model knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Not in the driver: test code, the AFD model, or the kernel model itself.
    Client,
    DriverEntry,
    DriverUnload,
    /// A dispatch routine, with the major and minor function of its IRP.
    Dispatch {
        major: u8,
        minor: u8,
    },
    Dpc,
    WorkItem,
    Cancel,
    /// A completion routine (the IRP's owner's code, running in the completing thread).
    Completion,
    /// The driver's receive handler, called by the adapter's receive path at DISPATCH_LEVEL
    /// (`ProtocolReceive` under NDIS; the TAP adapter's reader thread in the model).
    ReceiveIndication,
    /// An NDIS protocol handler, called by the model's NDIS (`BindAdapter`, `SendComplete`,
    /// `Status`, ...).
    Ndis(&'static str),
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Entry::Client => f.write_str("client code"),
            Entry::DriverEntry => f.write_str("DriverEntry"),
            Entry::DriverUnload => f.write_str("DriverUnload"),
            Entry::Dispatch { major, minor } => {
                write!(f, "dispatch {} (minor {minor:#04x})", major_name(major))
            }
            Entry::Dpc => f.write_str("DPC routine"),
            Entry::WorkItem => f.write_str("work item routine"),
            Entry::Cancel => f.write_str("cancel routine"),
            Entry::Completion => f.write_str("completion routine"),
            Entry::ReceiveIndication => f.write_str("receive indication"),
            Entry::Ndis(handler) => write!(f, "NDIS handler Protocol{handler}"),
        }
    }
}

/// The `IRP_MJ_*` name of a major function code.
pub fn major_name(major: u8) -> String {
    let name = match major {
        0x00 => "CREATE",
        0x02 => "CLOSE",
        0x03 => "READ",
        0x04 => "WRITE",
        0x0e => "DEVICE_CONTROL",
        0x0f => "INTERNAL_DEVICE_CONTROL",
        0x10 => "SHUTDOWN",
        0x12 => "CLEANUP",
        other => return format!("IRP_MJ_{other:#04x}"),
    };
    format!("IRP_MJ_{name}")
}

/// Where something happened: the caller's source location when the model has it
/// (`#[track_caller]` through the `sys` functions and the `nt` wrappers), and the driver entry
/// point the thread was executing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    pub location: Option<&'static Location<'static>>,
    pub entry: Entry,
}

impl Site {
    /// The caller's location, in the current thread's entry point.
    #[track_caller]
    pub(crate) fn caller() -> Site {
        Site {
            location: Some(Location::caller()),
            entry: context::entry(),
        }
    }

    /// No source location: only the given entry point.
    pub(crate) fn entry(entry: Entry) -> Site {
        Site {
            location: None,
            entry,
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(location) => write!(f, "{location}, in {}", self.entry),
            None => write!(f, "in {}", self.entry),
        }
    }
}

/// One recorded violation.
#[derive(Clone, Debug)]
pub struct Violation {
    pub rule: Rule,
    pub message: String,
    pub site: Site,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {} (at {})", self.rule, self.message, self.site)
    }
}

/// The violations of one kernel.
#[derive(Default)]
pub(crate) struct Verifier {
    state: Mutex<VerifierState>,
}

#[derive(Default)]
struct VerifierState {
    /// Recorded and not yet taken by the test.
    violations: Vec<Violation>,
    /// Rules the test declared it expects; each must fire at least once.
    expected: Vec<Rule>,
    /// Every rule that fired, taken or not.
    fired: Vec<Rule>,
}

impl Verifier {
    pub(crate) fn record(&self, violation: Violation) {
        let _model = ModelScope::enter();
        eprintln!("tcpip host verifier: {violation}");
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.fired.contains(&violation.rule) {
            state.fired.push(violation.rule);
        }
        state.violations.push(violation);
    }

    pub(crate) fn take(&self) -> Vec<Violation> {
        let _model = ModelScope::enter();
        std::mem::take(
            &mut self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .violations,
        )
    }

    pub(crate) fn expect(&self, rule: Rule) {
        let _model = ModelScope::enter();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.expected.contains(&rule) {
            state.expected.push(rule);
        }
    }

    /// What makes the test fail at teardown: unexpected violations, and expected rules that
    /// never fired.
    pub(crate) fn teardown_failures(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for violation in &state.violations {
            if !state.expected.contains(&violation.rule) {
                out.push_str(&format!("  unexpected violation: {violation}\n"));
            }
        }
        for rule in &state.expected {
            if !state.fired.contains(rule) {
                out.push_str(&format!("  expected violation {rule:?} never fired\n"));
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Records a violation in the current thread's kernel.
pub(crate) fn report(rule: Rule, site: Site, message: String) {
    let _model = ModelScope::enter();
    let violation = Violation {
        rule,
        message,
        site,
    };
    match context::try_current() {
        Some(kernel) => kernel.verifier.record(violation),
        None => eprintln!("tcpip host verifier (no kernel on this thread): {violation}"),
    }
}

/// The state a driver routine must leave behind: the IRQL it was called at and the spin locks
/// held by its caller.
pub(crate) struct RoutineFrame {
    irql: KIRQL,
    locks: usize,
}

impl RoutineFrame {
    /// Taken just before the model calls a driver routine.
    pub(crate) fn begin() -> RoutineFrame {
        RoutineFrame {
            irql: irql::current_irql(),
            locks: spinlock::held_count(),
        }
    }

    /// Checks, just after the routine returned, that it released the spin locks it acquired
    /// and returned at its entry IRQL. Repairs both, so that a buggy routine cannot hang the
    /// test: forgotten locks are released, the IRQL is restored.
    pub(crate) fn end(self, entry: Entry, routine: usize) {
        let _model = ModelScope::enter();
        let extra = spinlock::release_held_above(self.locks);
        if !extra.is_empty() {
            report(
                Rule::SpinLockHeldOnReturn,
                Site::entry(entry),
                format!(
                    "{entry} {routine:#x} returned holding {} spin lock(s): {}",
                    extra.len(),
                    extra.join(", ")
                ),
            );
        }
        let now = irql::current_irql();
        if now != self.irql {
            report(
                Rule::IrqlNotRestored,
                Site::entry(entry),
                format!(
                    "{entry} {routine:#x} was called at IRQL {} and returned at IRQL {now}",
                    self.irql
                ),
            );
            irql::set(self.irql);
        }
    }
}
