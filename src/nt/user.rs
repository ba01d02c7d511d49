//! Fault-safe access to user-mode memory: the only way the driver reads or writes a buffer a
//! user-mode requester passed by address (the METHOD_NEITHER buffers of `DeviceIoControl`).
//!
//! A user address is never dereferenced: bytes are copied between it and a kernel buffer by
//! `sys::read_user`/`sys::write_user`, under a structured exception handler on the kernel
//! targets (see `nt/sys/seh.rs`) and against the model's registry of mapped user ranges on the host. Each
//! copy first checks the range ([`probe`]): it must not wrap and must end at or below
//! `MmUserProbeAddress`, as `ProbeForRead`/`ProbeForWrite` require; a copy to user memory first
//! touches every page of the destination for writing ([`copy_to_user`]), so a read-only or
//! unmapped page is found before any byte of the answer is written.
//!
//! All functions run at PASSIVE_LEVEL (or APC_LEVEL), in the context of the process whose
//! address space holds the range: a page fault on user memory must be able to page in.

use crate::nt::NtStatus;
use crate::nt::sys;

/// The page size used to probe a destination for writing (4 KiB on x86 and x64).
const PAGE: usize = 0x1000;

/// Checks that `[address, address + len)` is a user-mode range: non-null, not wrapping, and
/// ending at or below `MmUserProbeAddress`. An empty range is always valid. Any IRQL.
pub fn probe(address: usize, len: usize) -> Result<(), NtStatus> {
    if len == 0 {
        return Ok(());
    }
    match address.checked_add(len) {
        Some(end) if address != 0 && end <= sys::user_probe_address() => Ok(()),
        _ => Err(NtStatus::INVALID_PARAMETER),
    }
}

/// Copies `into.len()` bytes from the user-mode address `src` into `into`. A range outside
/// user space is `STATUS_INVALID_PARAMETER`; a fault on the way is its exception code
/// (`STATUS_ACCESS_VIOLATION`), with `into` partly written. PASSIVE_LEVEL, in the context of
/// the process that owns `src`.
pub fn copy_from_user(src: usize, into: &mut [u8]) -> Result<(), NtStatus> {
    probe(src, into.len())?;
    if into.is_empty() {
        return Ok(());
    }
    // SAFETY: `into` is our own buffer of `into.len()` bytes; `src` is a user-mode range
    // (checked above), whose faults the guarded copy catches; user and kernel memory do not
    // overlap.
    let code = unsafe { sys::read_user(into.as_mut_ptr(), src, into.len()) };
    status_of(code)
}

/// Copies `from` to the user-mode address `dst`. A range outside user space is
/// `STATUS_INVALID_PARAMETER`. Every page of the destination is first probed for writing (one
/// byte of each read and written back, as `ProbeForWrite` does), so a read-only or unmapped
/// page is reported (its exception code, `STATUS_ACCESS_VIOLATION`) before the copy writes
/// anything; a fault during the copy itself (the requester unmapped the page meanwhile) is
/// reported the same way. PASSIVE_LEVEL, in the context of the process that owns `dst`.
pub fn copy_to_user(dst: usize, from: &[u8]) -> Result<(), NtStatus> {
    probe(dst, from.len())?;
    if from.is_empty() {
        return Ok(());
    }
    let last = dst + (from.len() - 1);
    let mut page = dst;
    loop {
        // SAFETY: `page` lies in the user range checked above; copying its byte onto itself
        // is the write probe (the same routine, one byte, guarded).
        let code = unsafe { sys::write_user(page, page as *const u8, 1) };
        status_of(code)?;
        let next = (page & !(PAGE - 1)) + PAGE;
        if next > last {
            break;
        }
        page = next;
    }
    // SAFETY: `from` is our own buffer; `dst` is the user range probed above, whose faults
    // the guarded copy catches.
    let code = unsafe { sys::write_user(dst, from.as_ptr(), from.len()) };
    status_of(code)
}

/// The result of a guarded copy: 0 is success, an error code is the exception's, and an
/// exception code that is not an error (a guard-page warning) counts as an access violation.
fn status_of(code: i32) -> Result<(), NtStatus> {
    match NtStatus(code) {
        NtStatus::SUCCESS => Ok(()),
        status if status.is_success() => Err(NtStatus::ACCESS_VIOLATION),
        status => Err(status),
    }
}
