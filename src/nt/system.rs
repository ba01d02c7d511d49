//! What `ZwQuerySystemInformation` tells about the machine: the system time and the size of
//! physical memory.

use crate::nt::sys;
use core::ffi::c_void;

/// `SystemBasicInformation`: `SYSTEM_BASIC_INFORMATION`, 44 bytes on x86 and 64 on x64 (the
/// kernel wants the exact size); `PageSize` at 8 and `NumberOfPhysicalPages` at 12 on both.
const SYSTEM_BASIC_INFORMATION: u32 = 0;
const BASIC_INFORMATION_SIZE: u32 = if cfg!(target_pointer_width = "64") {
    64
} else {
    44
};
/// `SystemTimeOfDayInformation`: `SYSTEM_TIMEOFDAY_INFORMATION` (48 bytes; `CurrentTime` at 8).
const SYSTEM_TIME_OF_DAY_INFORMATION: u32 = 3;
const TIME_OF_DAY_SIZE: u32 = 48;

/// Queries `class` into a 64-byte buffer, `size` bytes of it. PASSIVE_LEVEL.
fn query(class: u32, size: u32) -> Option<[u64; 8]> {
    let mut information = [0u64; 8];
    let mut written = 0u32;
    // SAFETY: `information` is 64 writable bytes, at least `size`; `written` a writable ULONG;
    // PASSIVE_LEVEL.
    let status = unsafe {
        sys::ZwQuerySystemInformation(
            class,
            information.as_mut_ptr().cast::<c_void>(),
            size,
            &mut written,
        )
    };
    (status >= 0).then_some(information)
}

/// The current system time, in 100 ns units since 1601 (`SystemTimeOfDayInformation`:
/// exported on both architectures, where `KeQuerySystemTime` is not on x64). PASSIVE_LEVEL.
pub fn system_time() -> Option<u64> {
    query(SYSTEM_TIME_OF_DAY_INFORMATION, TIME_OF_DAY_SIZE).map(|information| information[1])
}

/// The machine's physical memory in bytes (`SystemBasicInformation`: pages × page size);
/// `None` if the kernel does not say (old kernels answered 0 pages). PASSIVE_LEVEL.
pub fn physical_memory() -> Option<u64> {
    let information = query(SYSTEM_BASIC_INFORMATION, BASIC_INFORMATION_SIZE)?;
    // Bytes 8..12 and 12..16: the low and high halves of the second u64.
    let page_size = information[1] & 0xffff_ffff;
    let pages = information[1] >> 32;
    Some(page_size.saturating_mul(pages)).filter(|&bytes| bytes != 0)
}
