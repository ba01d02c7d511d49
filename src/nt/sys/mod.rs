//! The NT kernel services the driver calls, with one Rust signature on every target.
//!
//! This is the seam between the two backends of [`crate::nt`]:
//! - on the kernel targets (`cfg(kernel)`), [`kernel`] declares them as `raw-dylib` imports from
//!   `ntoskrnl.exe` and `hal.dll`, and absorbs the per-architecture differences (fastcall
//!   `Kf*`/`Iof*`/`Obf*` on x86, inline CR8 and `KUSER_SHARED_DATA` reads on x64);
//! - on the host, `crate::host::sys` implements every one of them in the NT kernel model.
//!
//! Names are the x64 export names. Only [`crate::nt`] calls these functions; everything above it
//! uses the safe wrappers.

#[cfg(kernel)]
mod kernel;
#[cfg(kernel)]
pub use kernel::*;

#[cfg(not(kernel))]
pub use crate::host::sys::*;

/// `ndis.sys` and the registry: raw-dylib imports on the kernel, the host model's NDIS and
/// registry on Linux.
#[cfg(kernel)]
#[path = "ndis.rs"]
pub mod ndis;
#[cfg(not(kernel))]
pub mod ndis {
    pub use crate::host::ndis::sys::*;
}

/// The first address above user space. The host model has a single address space, so every
/// non-null host address counts as a user address there.
#[cfg(not(kernel))]
pub fn user_probe_address() -> usize {
    usize::MAX
}
