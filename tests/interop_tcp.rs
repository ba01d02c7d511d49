//! The driver against Linux's TCP over a TAP link (issue #6): the driver, in the host kernel
//! model, has interface 1 on the namespace's TAP; Linux peers run inside the namespace.
//! Byte-exact echo both ways, and closes as each side sees them.
#![feature(tcp_linger)]

mod interop_support;

use interop_support::Namespace;
use interop_support::driver::{self, DriverOnTap};
use interop_support::peers;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, SocketAddrV4, TcpListener};
use tcpip::host::winsock::WsaError;

/// 200 Linux clients at once, 64 KiB each, against the driver's echo server.
#[test]
fn linux_clients_echo_through_the_driver() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let (connections, size) = (200, 64 * 1024);
    let server = driver::echo_server(&setup, 7000, connections);
    let addr = SocketAddr::from((namespace.driver_ip(), 7000));
    let done = namespace
        .run(move || peers::echo_clients(addr, connections, 1, size))
        .expect("Linux echo clients");
    assert_eq!(done, connections);
    assert_eq!(server.join().expect("server"), (connections * size) as u64);
    // The driver's 256-frame receive queue overflows under 200 full windows at once: Linux's
    // retransmissions show how much it dropped.
    eprintln!("200 Linux clients: {:?}", setup.tap_stats());
    setup.finish();
}

/// 32 driver client threads × 10 connections each against a Linux echo server: connect, send
/// one message, receive its echo, close. Nothing may be refused or reset.
#[test]
fn driver_clients_echo_through_linux() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let (threads, per_thread) = (32, 10);
    let message = |t: usize, i: usize| format!("driver client {t:2}, connection {i}: hello, Linux");
    let listener = linux_listener(&namespace, 7001);
    let server = namespace.spawn("linux-echo-server", move || {
        peers::echo_server(listener, threads * per_thread)
    });
    let peer = SocketAddrV4::new(namespace.linux_ip(), 7001);
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let ws = setup.ws.clone();
            setup.kernel.spawn("driver-echo-client", move || {
                for i in 0..per_thread {
                    driver::echo_once(&ws, peer, message(t, i).as_bytes())
                        .unwrap_or_else(|e| panic!("client {t}, connection {i}: {e}"));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("driver client");
    }
    let echoed = server.join().expect("Linux server").expect("Linux echo");
    let sent: usize = (0..threads)
        .flat_map(|t| (0..per_thread).map(move |i| message(t, i).len()))
        .sum();
    assert_eq!(echoed, sent as u64);
    setup.finish();
}

/// Graceful and abortive closes by the driver as Linux sees them, Linux's RST as the driver
/// sees it, and a connect to a port Linux does not listen on.
#[test]
fn closes_as_each_side_sees_them() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let ws = &setup.ws;
    let port = 7002;
    let peer = SocketAddrV4::new(namespace.linux_ip(), port);
    let listener = linux_listener(&namespace, port);

    // Graceful: Linux reads the data, then end of stream.
    let accepted = accept_and(&namespace, &listener, |mut stream| {
        let mut got = Vec::new();
        stream.read_to_end(&mut got).map(|_| got)
    });
    let s = ws.socket().expect("socket");
    ws.connect(s, peer).expect("connect");
    ws.send_all(s, b"goodbye").expect("send");
    ws.closesocket(s).expect("graceful closesocket");
    let got = accepted.join().expect("Linux reader");
    assert_eq!(got.expect("Linux sees a FIN, not an error"), b"goodbye");

    // Abortive (SO_LINGER {1, 0}): Linux's read fails with ECONNRESET.
    let accepted = accept_and(&namespace, &listener, |mut stream| {
        stream.read(&mut [0u8; 16])
    });
    let s = ws.socket().expect("socket");
    ws.connect(s, peer).expect("connect");
    ws.set_linger(s, Some(0)).expect("SO_LINGER");
    ws.closesocket(s).expect("abortive closesocket");
    let read = accepted.join().expect("Linux reader");
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset),
        "Linux sees the driver's abortive close as a reset"
    );

    // Linux resets (SO_LINGER 0): the driver's recv fails with WSAECONNRESET.
    let accepted = accept_and(&namespace, &listener, peers::reset_close);
    let s = ws.socket().expect("socket");
    ws.connect(s, peer).expect("connect");
    accepted.join().expect("Linux closer").expect("reset close");
    assert_eq!(ws.recv(s, &mut [0u8; 16]), Err(WsaError::WSAECONNRESET));
    ws.closesocket(s).expect("closesocket after a reset");

    // Nobody listens: Linux answers the SYN with a RST.
    let s = ws.socket().expect("socket");
    let closed = SocketAddrV4::new(namespace.linux_ip(), port + 1);
    assert_eq!(ws.connect(s, closed), Err(WsaError::WSAECONNREFUSED));
    ws.closesocket(s)
        .expect("closesocket after a refused connect");

    drop(listener);
    setup.finish();
}

/// A Linux listener at `port` on Linux's side of the TAP.
fn linux_listener(namespace: &Namespace, port: u16) -> TcpListener {
    let addr = SocketAddr::from((namespace.linux_ip(), port));
    namespace
        .run(move || TcpListener::bind(addr))
        .expect("Linux listener")
}

/// Accepts one connection on `listener` (in the namespace) and runs `then` on it.
fn accept_and<T: Send + 'static>(
    namespace: &Namespace,
    listener: &TcpListener,
    then: impl FnOnce(std::net::TcpStream) -> std::io::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<std::io::Result<T>> {
    let listener = listener.try_clone().expect("clone the listener");
    namespace.spawn("linux-accept", move || {
        let (stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(peers::TIMEOUT))?;
        then(stream)
    })
}
