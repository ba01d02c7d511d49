//! Suite 1: the lwIP-port test — a serial echo server (one connection at a time, echo the
//! first message, shut down) against a 64-thread client making 50 connections per thread
//! (reduced in CI: 16 threads × 8; `TCPIP_FULL_SUITES=1` for the full size).

mod echo_support;

use echo_support::{Env, serial_echo, size};
use tcpip::host::FaultInjection;

#[test]
fn serial_echo_server_with_a_multithreaded_client() {
    let env = Env::start("suite 1 serial echo", 2, FaultInjection::None);
    serial_echo(&env, 5001, size(64, 16), size(50, 8));
    env.finish();
}
