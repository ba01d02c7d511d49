//! Suite 3: bulk echo — one connection streams 64 MiB (reduced in CI: 8 MiB) through an echo
//! server in 1–64 KiB chunks, both directions at once, checked by hash.

mod echo_support;

use echo_support::{Env, bulk, size};
use tcpip::host::FaultInjection;

#[test]
fn bulk_full_duplex_echo_is_hash_exact() {
    let env = Env::start("suite 3 bulk echo", 2, FaultInjection::None);
    bulk(&env, 5003, size(64 << 20, 8 << 20), 0x5eed_0003);
    env.finish();
}
