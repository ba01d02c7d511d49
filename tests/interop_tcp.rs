//! The driver against Linux's TCP over a TAP link (issue #6): the driver, in the host kernel
//! model, has interface 1 on the namespace's TAP; Linux peers run inside the namespace.
//! Byte-exact echo both ways, closes as each side sees them, ARP.
#![feature(tcp_linger)]

mod interop_support;

use interop_support::Namespace;
use interop_support::driver::DriverOnTap;
use interop_support::peers;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use tcpip::host::winsock::{Socket, Winsock};

/// Serves `connections` echo connections on the driver at `port`, one thread each; each
/// echoes until the peer shuts down, then closes gracefully.
fn driver_echo_server(
    setup: &DriverOnTap,
    port: u16,
    connections: usize,
) -> std::thread::JoinHandle<u64> {
    let ws = setup.ws.clone();
    let listener = ws.socket().expect("socket");
    ws.bind(listener, SocketAddrV4::new([0, 0, 0, 0].into(), port))
        .expect("bind");
    ws.listen(listener, 200).expect("listen");
    setup.kernel.spawn("driver-echo-server", move || {
        let handlers: Vec<_> = (0..connections)
            .map(|_| {
                let (s, _) = ws.accept(listener).expect("accept");
                let ws = ws.clone();
                std::thread::spawn(move || echo(&ws, s))
            })
            .collect();
        let total = handlers.into_iter().map(|h| h.join().expect("echo")).sum();
        ws.closesocket(listener).expect("close listener");
        total
    })
}

fn echo(ws: &Arc<Winsock>, s: Socket) -> u64 {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = ws.recv(s, &mut buffer).expect("recv");
        if n == 0 {
            break;
        }
        ws.send_all(s, &buffer[..n]).expect("send");
        total += n as u64;
    }
    ws.closesocket(s).expect("close");
    total
}

#[test]
fn linux_clients_echo_through_the_driver() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let (threads, per_thread, size) = (8, 4, 4096);
    let server = driver_echo_server(&setup, 7000, threads * per_thread);
    let addr = SocketAddr::from((namespace.driver_ip(), 7000));
    let done = namespace
        .run(move || peers::echo_clients(addr, threads, per_thread, size))
        .expect("Linux echo clients");
    assert_eq!(done, threads * per_thread);
    assert_eq!(
        server.join().expect("server"),
        (threads * per_thread * size) as u64
    );
    setup.finish();
}
