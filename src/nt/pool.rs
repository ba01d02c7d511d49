//! Non-paged pool allocation.
//!
//! On the kernel the global allocator is `ExAllocatePoolWithTag(NonPagedPool, …, TAG)` (see
//! `nt::rt`), so `Box`/`Vec` memory is pool memory, visible in `!poolused` under [`TAG`]. Driver
//! code allocates only through the fallible helpers here: a failed allocation becomes
//! `STATUS_INSUFFICIENT_RESOURCES`, never an abort (which would be a bugcheck). On the host, the
//! model's tracking allocator attributes these allocations to the driver, records the call site
//! passed by `#[track_caller]`, and can fail them on purpose.

use crate::nt::NtStatus;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// The driver's pool tag, shown as `Rtcp` by pool tools.
pub const TAG: u32 = u32::from_le_bytes(*b"Rtcp");

/// Tells the host model's pool tracker who asks for the next allocation (for a fallible
/// reservation made outside these helpers, such as a collection's own `try_reserve`). No-op on
/// the kernel. Any IRQL.
#[track_caller]
pub fn note_call_site() {
    #[cfg(not(kernel))]
    crate::host::pool::note_call_site(core::panic::Location::caller());
}

/// `Box::new` that reports pool exhaustion instead of aborting. Any IRQL ≤ DISPATCH_LEVEL.
#[track_caller]
pub fn try_box<T>(value: T) -> Result<Box<T>, NtStatus> {
    note_call_site();
    Box::try_new(value).map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)
}

/// An empty `Vec` with room for `capacity` elements, or `STATUS_INSUFFICIENT_RESOURCES`.
/// Any IRQL ≤ DISPATCH_LEVEL.
#[track_caller]
pub fn try_vec<T>(capacity: usize) -> Result<Vec<T>, NtStatus> {
    let mut vec = Vec::new();
    try_reserve(&mut vec, capacity)?;
    Ok(vec)
}

/// A `Vec<u8>` of `len` zero bytes, or `STATUS_INSUFFICIENT_RESOURCES`.
/// Any IRQL ≤ DISPATCH_LEVEL.
#[track_caller]
pub fn try_zeroed(len: usize) -> Result<Vec<u8>, NtStatus> {
    let mut vec = try_vec(len)?;
    vec.resize(len, 0);
    Ok(vec)
}

/// A block of `len` zero bytes, or `STATUS_INSUFFICIENT_RESOURCES`: a socket ring for the
/// core's lookaside (`crate::core::lookaside`), lent to smoltcp through [`crate::nt::lend`].
/// Any IRQL ≤ DISPATCH_LEVEL.
#[track_caller]
pub fn try_zeroed_block(len: usize) -> Result<Box<[u8]>, NtStatus> {
    let mut vec = Vec::new();
    note_call_site();
    vec.try_reserve_exact(len)
        .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
    vec.resize(len, 0);
    // An empty `Vec` reserved exactly holds `len`: `into_boxed_slice` has nothing to shrink,
    // so it makes no (infallible) reallocation.
    Ok(vec.into_boxed_slice())
}

/// `Vec::try_reserve` for `additional` more elements, with the NT status on failure.
/// Any IRQL ≤ DISPATCH_LEVEL.
#[track_caller]
pub fn try_reserve<T>(vec: &mut Vec<T>, additional: usize) -> Result<(), NtStatus> {
    note_call_site();
    vec.try_reserve(additional)
        .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)
}

/// Pushes onto `vec`, growing it fallibly. Any IRQL ≤ DISPATCH_LEVEL.
#[track_caller]
pub fn try_push<T>(vec: &mut Vec<T>, value: T) -> Result<(), NtStatus> {
    if vec.len() == vec.capacity() {
        try_reserve(vec, vec.capacity().max(4))?;
    }
    vec.push(value);
    Ok(())
}

/// `VecDeque::try_reserve` for `additional` more elements, with the NT status on failure.
/// Any IRQL ≤ DISPATCH_LEVEL.
#[track_caller]
pub fn try_reserve_deque<T>(queue: &mut VecDeque<T>, additional: usize) -> Result<(), NtStatus> {
    note_call_site();
    queue
        .try_reserve(additional)
        .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)
}
