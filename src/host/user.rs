//! The user-mode address space of the model's requesters, as far as the driver can reach it.
//!
//! The model has one address space, so it cannot let the hardware decide whether a user address
//! is mapped. Instead it keeps a registry of the user ranges it has mapped for a request (the
//! METHOD_NEITHER buffers of [`KernelHandle::device_io_control_with`], read-only or read-write)
//! and the guarded copy of `nt::sys` ([`read_user`], [`write_user`]) is the page fault: it copies
//! only within a mapped range with the needed access, and reports `STATUS_ACCESS_VIOLATION` for
//! the first byte outside one, after copying the bytes before it, as a real copy that faults
//! half-way would. An address the model has not mapped (0x1000, a freed buffer, a kernel
//! address) faults on its first byte.
//!
//! [`KernelHandle::device_io_control_with`]: super::KernelHandle::device_io_control_with

use crate::nt::NtStatus;
use std::sync::{Arc, Mutex};

/// The access a mapped user range grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    ReadOnly,
    ReadWrite,
}

/// One mapped range.
#[derive(Clone, Copy, Debug)]
struct Range {
    start: usize,
    len: usize,
    access: Access,
    /// Tells apart identical ranges mapped twice (the same buffer in two requests).
    id: u64,
}

/// The registry of mapped user ranges of one kernel.
#[derive(Default)]
pub(crate) struct UserSpace {
    ranges: Mutex<(Vec<Range>, u64)>,
}

/// A mapping: the range is unmapped again when this is dropped.
pub(crate) struct Mapping {
    space: Arc<super::kernel::KernelInner>,
    id: u64,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let mut ranges = self.space.user_space.lock();
        ranges.0.retain(|range| range.id != self.id);
    }
}

impl UserSpace {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Range>, u64)> {
        self.ranges.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Maps `[start, start + len)` with `access` until the returned mapping is dropped.
    pub(crate) fn map(
        kernel: &Arc<super::kernel::KernelInner>,
        start: usize,
        len: usize,
        access: Access,
    ) -> Mapping {
        let mut ranges = kernel.user_space.lock();
        ranges.1 += 1;
        let id = ranges.1;
        ranges.0.push(Range {
            start,
            len,
            access,
            id,
        });
        Mapping {
            space: kernel.clone(),
            id,
        }
    }

    /// How many bytes from `address` on lie in mapped ranges granting `access` (at most `len`):
    /// the byte after them is where a real copy would fault.
    fn reachable(&self, address: usize, len: usize, access: Access) -> usize {
        let ranges = self.lock();
        let mut at = address;
        let end = address.saturating_add(len);
        while at < end {
            let next = ranges.0.iter().find(|range| {
                range.start <= at
                    && at < range.start + range.len
                    && (access == Access::ReadOnly || range.access == Access::ReadWrite)
            });
            match next {
                Some(range) => at = (range.start + range.len).min(end),
                None => break,
            }
        }
        at - address
    }
}

/// The guarded copy from user memory: copies what is readable of `[src, src + len)` into
/// `dst`, and returns 0 or `STATUS_ACCESS_VIOLATION` if the range runs into unmapped memory.
///
/// # Safety
/// `dst` is writable for `len` bytes; the mapped ranges are live memory (their mappers keep
/// them alive while mapped).
pub(crate) unsafe fn read_user(
    kernel: &super::kernel::KernelInner,
    dst: *mut u8,
    src: usize,
    len: usize,
) -> i32 {
    let readable = kernel.user_space.reachable(src, len, Access::ReadOnly);
    // SAFETY: `readable` bytes from `src` lie in mapped (live) ranges; `dst` is the caller's.
    unsafe { std::ptr::copy(src as *const u8, dst, readable) };
    fault_status(readable, len)
}

/// The guarded copy to user memory: copies `src` into what is writable of `[dst, dst + len)`,
/// and returns 0 or `STATUS_ACCESS_VIOLATION` at the first byte that is unmapped or read-only.
///
/// # Safety
/// `src` is readable for `len` bytes, or lies in the mapped ranges (a write probe copies a
/// user byte onto itself); the mapped ranges are live memory.
pub(crate) unsafe fn write_user(
    kernel: &super::kernel::KernelInner,
    dst: usize,
    src: *const u8,
    len: usize,
) -> i32 {
    let writable = kernel.user_space.reachable(dst, len, Access::ReadWrite);
    // SAFETY: `writable` bytes from `dst` lie in mapped read-write ranges; `src` is readable.
    unsafe { std::ptr::copy(src, dst as *mut u8, writable) };
    fault_status(writable, len)
}

fn fault_status(copied: usize, len: usize) -> i32 {
    if copied == len {
        0
    } else {
        NtStatus::ACCESS_VIOLATION.raw()
    }
}
