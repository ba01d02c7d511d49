//! The kernel image `tcpip.sys`. All of the driver lives in the library; this file only gives
//! the image its `DriverEntry` symbol.
#![cfg_attr(kernel, no_std, no_main)]

#[cfg(kernel)]
use tcpip::nt::types::{DRIVER_OBJECT, NTSTATUS, UNICODE_STRING};

/// The image entry point, called by the I/O manager at PASSIVE_LEVEL in the system process.
///
/// # Safety
/// Called once by the kernel with a valid driver object and registry path.
#[cfg(kernel)]
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DriverEntry(
    driver: *mut DRIVER_OBJECT,
    registry_path: *const UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: forwarded from the kernel, which passes a valid driver object and registry path.
    unsafe { tcpip::nt::entry::driver_entry(driver, registry_path) }
}

#[cfg(not(kernel))]
fn main() {
    eprintln!("tcpip.sys is a kernel image: build it with `cargo xtask package`.");
    std::process::exit(2);
}
