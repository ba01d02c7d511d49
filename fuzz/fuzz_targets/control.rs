//! Device I/O control requests through the driver's dispatch (`tcpip_fuzz::control`): every
//! IOCTL the driver serves (query and set information, IP address set and delete, interface
//! info, echo requests, ARP resolution) and codes it does not, with fuzzed input and output
//! sizes, from user mode, on a control channel and on address and connection files, with the
//! world of the `ingress` target open (so that queries list connections in several states).
//!
//! Checked after each input: no panic, no verifier violation, and either the world put back
//! as the setup left it (kept for the next input, `tcpip_fuzz::session`) or, after closing
//! everything, every request completed and the unload's leak report clean.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tcpip_fuzz::control::run(data);
});
