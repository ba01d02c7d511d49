//! Suite 2: burst accept — 1,000 connects issued at once (reduced in CI: 200) against one
//! listener that accepts slowly; all are accepted and echo, none is reset.

mod echo_support;

use echo_support::{Env, burst_accept, size};
use tcpip::host::FaultInjection;

#[test]
fn a_burst_of_connects_is_all_accepted_by_a_slow_listener() {
    let env = Env::start("suite 2 burst accept", 2, FaultInjection::None);
    burst_accept(&env, 5002, size(1000, 200));
    env.finish();
}
