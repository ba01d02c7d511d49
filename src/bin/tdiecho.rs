//! The kernel image `tdiecho.sys`: a test driver of the project, a kernel TDI client of
//! `\Device\Tcp` that serves TCP echo on port 7400 through TDI event handlers (issue 18; the
//! VM runner's `kdriver` scenario loads it as a service). Its logic is `tcpip::echo`; this
//! file only gives the image its `DriverEntry` symbol.
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
    _registry_path: *const UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: forwarded from the kernel, which passes a valid driver object.
    unsafe { tcpip::nt::entry::client_entry::<tcpip::echo::EchoDriver>(driver) }
}

#[cfg(not(kernel))]
fn main() {
    eprintln!("tdiecho.sys is a kernel image: build it with `cargo xtask package`.");
    std::process::exit(2);
}
