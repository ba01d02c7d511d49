//! The NT kernel boundary: every contact with the kernel goes through this module.
//!
//! - [`types`]: `#[repr(C)]` NT structures with layout assertions for x86 and x64.
//! - [`sys`]: the kernel functions, one signature on every target; raw-dylib imports on the
//!   kernel, the host model (`crate::host`) on Linux.
//! - Safe wrappers: [`Irp`](irp::Irp) (completed exactly once), [`IoStack`](irp::IoStack),
//!   [`MdlChain`](mdl::MdlChain), [`SpinLock`](sync::SpinLock) with IRQL-restoring guards,
//!   [`Dpc`](dpc::Dpc), [`Timer`](timer::Timer), [`WorkItem`](work_item::WorkItem), pool
//!   allocation, pool blocks lent to smoltcp as socket rings ([`lend`]), logging, and the
//!   [`Driver`](entry::Driver) entry glue.
//!
//! `unsafe` code lives here (and in the host model); the layers above use only safe APIs.

pub mod client;
pub mod device;
pub mod dpc;
pub mod entry;
pub mod irp;
pub mod irql;
pub mod lend;
pub mod log;
pub mod mdl;
pub mod ndis;
pub mod object;
pub mod pool;
pub mod process;
#[cfg(kernel)]
mod rt;
pub mod security;
pub mod status;
pub mod sync;
pub mod sys;
pub mod system;
pub mod tdi_client;
pub mod thread;
pub mod time;
pub mod timer;
pub mod types;
pub mod user;
pub mod work_item;

pub use status::NtStatus;
