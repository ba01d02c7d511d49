//! Suite 7: suites 1–4 with the model running 1, 2 and 4 simulated processors (reduced sizes
//! in CI; `TCPIP_FULL_SUITES=1` runs each at full size).

mod echo_support;

use echo_support::{Env, bulk, burst_accept, many, serial_echo, size};
use tcpip::host::FaultInjection;

fn all_suites(processors: usize) {
    let env = Env::start(
        &format!("suite 7 on {processors} processor(s)"),
        processors,
        FaultInjection::None,
    );
    serial_echo(&env, 6001, size(64, 8), size(50, 4));
    burst_accept(&env, 6002, size(1000, 64));
    bulk(
        &env,
        6003,
        size(64 << 20, 2 << 20),
        0x5eed_0007 + processors as u64,
    );
    many(&env, 6004, size(1000, 32), 64 * 1024);
    env.finish();
}

#[test]
fn suites_1_to_4_on_one_processor() {
    all_suites(1);
}

#[test]
fn suites_1_to_4_on_two_processors() {
    all_suites(2);
}

#[test]
fn suites_1_to_4_on_four_processors() {
    all_suites(4);
}
