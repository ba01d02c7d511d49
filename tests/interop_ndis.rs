//! The driver against Linux over a TAP whose NDIS miniport behaves like ReactOS's PCnet
//! (lookahead indications: `ProtocolReceive`, not `ProtocolReceivePacket`) and, harder, like a
//! miniport that indicates only a short lookahead and pends every send and transfer: the
//! driver's `Receive` + `NdisTransferData` path and its send completions under real traffic.
#![feature(tcp_linger)]

mod interop_support;

use interop_support::Namespace;
use interop_support::driver::{self, DriverOnTap};
use interop_support::peers;
use std::net::SocketAddr;
use tcpip::host::{Indication, MiniportOptions};

fn echo_through(options: MiniportOptions, port: u16) {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start_with_miniport(&namespace, options);
    let (connections, size) = (20, 256 * 1024);
    let server = driver::echo_server(&setup, port, connections);
    let addr = SocketAddr::from((namespace.driver_ip(), port));
    let done = namespace
        .run(move || peers::echo_clients(addr, connections, 1, size))
        .expect("Linux echo clients");
    assert_eq!(done, connections);
    assert_eq!(server.join().expect("server"), (connections * size) as u64);
    setup.finish();
}

#[test]
fn echo_with_whole_frame_lookahead_indications() {
    echo_through(
        MiniportOptions {
            indication: Indication::Lookahead(usize::MAX),
            ..MiniportOptions::default()
        },
        7100,
    );
}

#[test]
fn echo_with_short_lookahead_and_pended_sends_and_transfers() {
    echo_through(
        MiniportOptions {
            indication: Indication::Lookahead(64),
            pend_sends: true,
            pend_transfers: true,
            ..MiniportOptions::default()
        },
        7101,
    );
}
