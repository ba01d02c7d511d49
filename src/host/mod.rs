//! A model of the NT kernel that runs the driver on the host, and checks it like Driver
//! Verifier.
//!
//! [`sys`] implements every kernel function the driver imports (`crate::nt::sys` is
//! `crate::host::sys` on the host), with NT semantics: per-thread IRQL, real spin locks, DPCs on
//! simulated processors, timers on a virtual or real clock, work items on worker threads, IRPs
//! with their real layouts and completion rules, cancellation, MDLs, file and device objects
//! with handles and reference counts, and tracked pool with fault injection. The rest of this
//! module is the host API that tests (and the AFD model) use to drive it: [`Kernel`],
//! [`KernelHandle`] and the types they take and return. Each function that acts on the kernel
//! documents the IRQL it may be called at. [`tap`] (Linux) puts a TAP device under the Ethernet
//! link as its adapter, the model's stand-in for an NDIS miniport, optionally over an impaired
//! wire ([`impair`]) and counting TCP retransmissions ([`retransmissions`]).
//!
//! The verifier ([`Rule`]) records every violation with the rule, a message and the site
//! (source location and driver entry point); the test fails when the [`Kernel`] is dropped
//! unless it took or expected them.
//!
//! What the model does not reproduce: paging (all memory is resident; IRQL rules about pageable
//! code are not checked), APCs and thread alertability, real preemption (raising the IRQL does
//! not stop other threads; DPCs of a processor do not preempt the threads that queued them),
//! processor affinity of PASSIVE_LEVEL threads, thread-exit IRP cancellation, real user-mode
//! address spaces (user buffers are ranges the model maps for a request, see `user`), security and access checks, and the I/O manager's fast I/O
//! and device queues.

pub mod afd;
#[cfg(target_os = "linux")]
pub mod binding;
mod cancel;
mod clock;
mod context;
mod debug;
mod device;
mod dpc;
mod driver;
mod file;
#[cfg(target_os = "linux")]
pub mod impair;
mod io;
mod irql;
mod kernel;
mod mdl;
pub mod ndis;
mod object;
pub mod pool;
#[cfg(target_os = "linux")]
pub mod retransmissions;
mod spinlock;
pub mod stats;
mod sync;
pub mod sys;
#[cfg(target_os = "linux")]
pub mod tap;
mod thread;
pub use file::UserBuffer;
/// The calling thread's CPU time less its waits for spin locks held by descheduled threads:
/// the host model's processor time of a core pass (`nt::time::processor_nanos`). Any IRQL.
pub(crate) fn pass_nanos() -> u64 {
    thread::cpu_nanos().saturating_sub(spinlock::spun_nanos())
}
pub use thread::{SYSTEM_PROCESS_ID, as_unprivileged_user, in_process};
mod user;
mod verifier;
pub mod winsock;
mod work;

/// The model's tables keyed by an address (pool blocks, IRPs, timers, objects, work items,
/// MDLs). They are looked up at every allocation, IRP and timer, so they hash with foldhash's
/// fast hasher rather than SipHash: the model makes the keys itself, no adversary picks them.
type AddressMap<V> = std::collections::HashMap<usize, V, foldhash::fast::FixedState>;

pub use clock::{BOOT_SYSTEM_TIME, Clock};
pub use debug::DBGPRINT_ENV;
pub use device::{STATUS_NO_SUCH_DEVICE, STATUS_OBJECT_NAME_COLLISION};
pub use dpc::DpcDurations;
pub use driver::{Driver, DriverInitialize, Leak, UnloadReport};
pub use file::IoctlOptions;
pub use io::{CompletionFlags, IoStatus, StackLocation};
pub use irql::{APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL, current_irql, lower_irql, raise_irql};
pub use kernel::{
    Config, EnteredKernel, Kernel, KernelHandle, NONPAGED_POOL_1GIB, PHYSICAL_MEMORY_1GIB,
};
pub use mdl::MdlKind;
pub use ndis::{Indication, MiniportOptions, RegValue};
pub use object::{Handle, ObjectRef};
pub use pool::{FaultInjection, PoolRecord, PoolStats, tag_name};
pub use sync::{Event, EventType, KMutex};
pub use verifier::{Entry, Rule, Site, Violation, major_name};
