//! The event-driven half of TDI (issue 18), end to end: a kernel TDI client
//! (`tdi_client_support`) that uses no TDI_LISTEN and posts no receives — connect, receive,
//! disconnect and receive-datagram handlers, TDI_ACCEPT, sends from inside handlers — against
//! Winsock programs through the AFD model, with the verifier on (handlers must be called at
//! DISPATCH_LEVEL with no spin lock of the driver held) and the leak check at unload.

mod echo_support;
mod tdi_client_support;

use echo_support::{Env, clean_low_resource_error, loopback};
use std::net::SocketAddrV4;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tcpip::host::FaultInjection;
use tcpip::host::winsock::{Shutdown, WsaError};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tdi_client_support::{Peer, Take};

/// A message of `len` bytes, different per connection.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ seed) as u8)
        .collect()
}

/// An event-driven echo server on `port` with `endpoints` endpoints for accepted connections.
fn echo_server(env: &Env, port: u16, endpoints: usize) -> Box<Peer> {
    let server = Peer::open(
        &env.kernel.handle(),
        "\\Device\\Tcp",
        loopback(port),
        endpoints,
        true,
    );
    for event in [TDI_EVENT_CONNECT, TDI_EVENT_RECEIVE, TDI_EVENT_DISCONNECT] {
        assert_eq!(server.register(event, true), NtStatus::SUCCESS);
    }
    server
}

#[test]
fn an_event_driven_echo_server_serves_winsock_clients() {
    let env = Env::start("events: echo server", 2, FaultInjection::None);
    let (threads, per_thread) = (4, 6);
    let total = threads * per_thread;
    let server = echo_server(&env, 7401, total);
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let ws = env.ws.clone();
            env.kernel.spawn("echo-client", move || {
                for i in 0..per_thread {
                    let len = [32, 1500, 70_000][i % 3];
                    let message = pattern(t * 100 + i, len);
                    let s = ws.socket().unwrap();
                    ws.connect(s, loopback(7401)).expect("connect");
                    ws.send_all(s, &message).expect("send");
                    ws.shutdown(s, Shutdown::Send).expect("shutdown");
                    let mut echo = vec![0; len];
                    assert!(ws.recv_exact(s, &mut echo).expect("recv"), "echo");
                    assert!(echo == message, "byte-exact echo of {len} bytes");
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
    server.wait_until(10, |conns| {
        conns
            .iter()
            .all(|c| c.disconnects == [TDI_DISCONNECT_RELEASE])
    });
    assert_eq!(server.stats.connects.load(Ordering::Relaxed), total);
    assert_eq!(server.stats.bad_indications.load(Ordering::Relaxed), 0);
    assert!(server.stats.receives.load(Ordering::Relaxed) >= total);
    assert!(
        server
            .conns
            .lock()
            .unwrap()
            .iter()
            .all(|c| c.accepted == Some(NtStatus::SUCCESS)),
        "every TDI_ACCEPT completed with success"
    );
    server.close();
    env.finish();
}
