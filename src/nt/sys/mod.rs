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
#[cfg(kernel)]
mod seh;

/// The guarded copy from user memory: copies `len` bytes from the user address `src` to `dst`
/// under SEH; 0, or the exception code of a fault (bytes before it may have been copied).
///
/// # Safety
/// `dst` is writable for `len` bytes; `src` is a user-mode range (below `MmUserProbeAddress`).
/// IRQL < DISPATCH_LEVEL, in the context of the process that owns `src`.
#[cfg(kernel)]
pub unsafe fn read_user(dst: *mut u8, src: usize, len: usize) -> i32 {
    // SAFETY: forwarded caller contract; faults on `src` are caught.
    unsafe { seh::guarded_copy(dst, src as *const u8, len) }
}

/// The guarded copy to user memory: copies `len` bytes from `src` to the user address `dst`
/// under SEH; 0, or the exception code of a fault (bytes before it may have been copied).
///
/// # Safety
/// `src` is readable for `len` bytes, or is `dst` itself (a write probe); `dst` is a user-mode
/// range. IRQL < DISPATCH_LEVEL, in the context of the process that owns `dst`.
#[cfg(kernel)]
pub unsafe fn write_user(dst: usize, src: *const u8, len: usize) -> i32 {
    // SAFETY: forwarded caller contract; faults on `dst` are caught.
    unsafe { seh::guarded_copy(dst as *mut u8, src, len) }
}

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

/// The first address above user space: x64 Windows' `MmUserProbeAddress`. The host model has
/// one address space, whose heap lies below it (Linux user space ends at 2^47); a user range is
/// only reachable where the model mapped it (`host::user`).
#[cfg(not(kernel))]
pub fn user_probe_address() -> usize {
    0x7FFF_FFFF_0000
}
