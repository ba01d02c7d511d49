//! Frames, and sequences of frames, through the core's ingress (the Ethernet link, the
//! pre-filter, the demultiplexer, UDP, ICMP, raw IP, reassembly, smoltcp, the follow-up) with
//! a listener, an established connection, a connection in SYN-SENT, a UDP and a raw address
//! file open (`tcpip_fuzz::world`); the input format is `tcpip_fuzz::ingress`.
//!
//! Checked after each input: no panic, no verifier violation, and either the world put back
//! as the setup left it (what the input changed made again; the input's requests completed,
//! the driver's pool and timers back to their post-setup baseline: it is kept for the next
//! input, `tcpip_fuzz::session`) or, after closing everything, every request completed and
//! the unload's leak report clean.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tcpip_fuzz::ingress::run(data);
});
