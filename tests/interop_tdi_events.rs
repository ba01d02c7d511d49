//! The event-driven TDI echo server of `tdi_client_support` (issue 18) on the TAP link: Linux
//! clients get their data back byte-exact from a kernel TDI client that uses only the connect,
//! receive and disconnect events (no TDI_LISTEN, no posted receive) and sends from inside its
//! receive handler.
#![feature(tcp_linger)]

mod interop_support;
mod tdi_client_support;

use interop_support::Namespace;
use interop_support::driver::DriverOnTap;
use interop_support::peers;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering;
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tdi_client_support::Peer;

#[test]
fn linux_clients_echo_through_an_event_driven_server() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let (threads, per_thread, size) = (10, 5, 64 * 1024);
    let connections = threads * per_thread;
    let local = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7010);
    let server = Peer::open(
        &setup.kernel.handle(),
        "\\Device\\Tcp",
        local,
        connections,
        true,
    );
    for event in [TDI_EVENT_CONNECT, TDI_EVENT_RECEIVE, TDI_EVENT_DISCONNECT] {
        assert_eq!(server.register(event, true), NtStatus::SUCCESS);
    }
    let addr = SocketAddr::from((namespace.driver_ip(), 7010));
    let done = namespace
        .run(move || peers::echo_clients(addr, threads, per_thread, size))
        .expect("Linux echo clients");
    assert_eq!(done, connections);
    server.wait_until(20, |conns| {
        conns
            .iter()
            .all(|c| c.disconnects == [TDI_DISCONNECT_RELEASE])
    });
    assert_eq!(server.stats.connects.load(Ordering::Relaxed), connections);
    let echoed: usize = server
        .conns
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.received.len())
        .sum();
    assert_eq!(echoed, connections * size);
    assert_eq!(server.stats.bad_indications.load(Ordering::Relaxed), 0);
    server.close();
    setup.finish();
}
