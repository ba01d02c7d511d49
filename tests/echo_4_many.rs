//! Suite 4: many connections — 1,000 concurrent connections (reduced in CI: 100), each
//! echoing 64 KiB.

mod echo_support;

use echo_support::{Env, many, size};
use tcpip::host::FaultInjection;

#[test]
fn many_concurrent_connections_each_echo_64_kib() {
    let env = Env::start("suite 4 many connections", 2, FaultInjection::None);
    many(&env, 5004, size(1000, 100), 64 * 1024);
    env.finish();
}
