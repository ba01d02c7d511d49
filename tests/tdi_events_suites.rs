//! The event-driven TDI echo server (issue 18) at the sizes of the AFD echo suites (issue 5):
//! many serial connections, full-duplex bulk, many concurrent connections, and the same on 1
//! and 4 processors. CI runs reduced sizes; `TCPIP_FULL_SUITES=1` runs the full ones. The
//! server uses no TDI_LISTEN and posts no receive: connect, receive and disconnect handlers
//! and sends from inside them.

mod echo_support;
mod tdi_client_support;

use echo_support::{Env, lockstep_echo, loopback, message, size, stream_and_check};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use tcpip::host::FaultInjection;
use tcpip::host::winsock::Shutdown;
use tcpip::nt::types::*;
use tdi_client_support::Peer;

/// Waits until every connection the server accepted was released by its client and answered,
/// checks the server saw nothing odd, and closes it.
fn finish_server(server: Box<Peer>, connections: usize) {
    server.wait_until(60, |conns| {
        conns
            .iter()
            .take(connections)
            .all(|c| c.disconnects == [TDI_DISCONNECT_RELEASE])
    });
    assert_eq!(server.stats.connects.load(Ordering::Relaxed), connections);
    assert_eq!(server.stats.bad_indications.load(Ordering::Relaxed), 0);
    assert_eq!(server.stats.send_failures.load(Ordering::Relaxed), 0);
    server.close();
}

/// Suite 1's shape: `threads` clients making `per_thread` connections one after the other,
/// each one message echoed, then the client's release and the server's.
fn serial(env: &Env, port: u16, threads: usize, per_thread: usize) {
    let server = Peer::echo_server(&env.kernel.handle(), port, threads * per_thread);
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let ws = env.ws.clone();
            env.kernel.spawn("serial-client", move || {
                for i in 0..per_thread {
                    let s = ws.socket().unwrap();
                    ws.connect(s, loopback(port))
                        .unwrap_or_else(|e| panic!("client {t} connection {i}: connect: {e}"));
                    let m = message(t, i);
                    ws.send_all(s, &m).expect("send");
                    let mut echo = [0u8; 32];
                    assert!(ws.recv_exact(s, &mut echo).expect("recv"), "echo");
                    assert_eq!(echo, m, "byte-exact echo");
                    ws.shutdown(s, Shutdown::Send).expect("shutdown");
                    let mut rest = [0u8; 1];
                    assert_eq!(ws.recv(s, &mut rest).expect("FIN"), 0, "server released");
                    ws.closesocket(s).expect("close");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client");
    }
    finish_server(server, threads * per_thread);
}

/// Suite 3's shape: one connection, `total` bytes in random-sized sends while a reader
/// checks the echo as it comes (full duplex).
fn bulk(env: &Env, port: u16, total: usize, seed: u64) {
    let server = Peer::echo_server(&env.kernel.handle(), port, 1);
    let ws = &env.ws;
    let client = ws.socket().unwrap();
    ws.connect(client, loopback(port)).expect("connect");
    stream_and_check(env, client, total, seed);
    ws.shutdown(client, Shutdown::Send).expect("shutdown");
    let mut rest = [0u8; 1];
    assert_eq!(ws.recv(client, &mut rest).expect("FIN"), 0);
    ws.closesocket(client).expect("close");
    finish_server(server, 1);
}

/// Suite 4's shape: `n` concurrent connections, each echoing `size` bytes in 4 KiB pieces,
/// each read back before the next.
fn many(env: &Env, port: u16, n: usize, size: usize) {
    let server = Peer::echo_server(&env.kernel.handle(), port, n);
    let barrier = Arc::new(Barrier::new(n));
    let clients: Vec<_> = (0..n)
        .map(|t| {
            let ws = env.ws.clone();
            let barrier = barrier.clone();
            env.kernel.spawn("many-client", move || {
                let s = ws.socket().unwrap();
                ws.connect(s, loopback(port))
                    .unwrap_or_else(|e| panic!("client {t}: connect: {e}"));
                barrier.wait();
                lockstep_echo(&ws, s, t, size);
                ws.shutdown(s, Shutdown::Send).expect("shutdown");
                let mut rest = [0u8; 1];
                assert_eq!(ws.recv(s, &mut rest).expect("FIN"), 0);
                ws.closesocket(s).expect("close");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    finish_server(server, n);
}

#[test]
fn serial_connections_through_the_event_driven_echo_server() {
    let env = Env::start("events suite: serial", 2, FaultInjection::None);
    serial(&env, 7501, size(64, 16), size(50, 8));
    env.finish();
}

#[test]
fn bulk_through_the_event_driven_echo_server() {
    let env = Env::start("events suite: bulk", 2, FaultInjection::None);
    bulk(&env, 7502, size(64 << 20, 8 << 20), 0x1803);
    env.finish();
}

#[test]
fn many_connections_through_the_event_driven_echo_server() {
    let env = Env::start("events suite: many", 2, FaultInjection::None);
    many(&env, 7503, size(1000, 100), 64 * 1024);
    env.finish();
}

#[test]
fn the_event_driven_echo_server_on_one_and_four_processors() {
    for processors in [1, 4] {
        let env = Env::start("events suite: processors", processors, FaultInjection::None);
        serial(&env, 7504, size(64, 8), size(50, 4));
        bulk(&env, 7505, size(64 << 20, 2 << 20), 0x1804);
        many(&env, 7506, size(1000, 32), 64 * 1024);
        env.finish();
    }
}
