//! Suite 5: edge cases through Winsock and AFD — the errors a program sees for a refused
//! connect and an abortive close, FIN while a receive is pending, closesocket with unsent data,
//! closing a listener with unaccepted connections, getsockname/getpeername on accepted
//! sockets, and a seeded loop of ≥ 10,000 iterations that cancels each kind of pending request
//! at random moments.

mod echo_support;

use echo_support::{Env, Rng, loopback};
use std::net::Ipv4Addr;
use std::sync::Arc;
use tcpip::host::FaultInjection;
use tcpip::host::afd::RequestKind;
use tcpip::host::winsock::{Shutdown, Socket, Winsock, WsaError};

fn listener(ws: &Winsock, port: u16) -> Socket {
    let s = ws.socket().unwrap();
    ws.bind(s, loopback(port)).unwrap();
    ws.listen(s, 16).unwrap();
    s
}

/// (client, accepted) on `listener`. Connections an earlier race left in the accept queue
/// (a connect abandoned by closesocket that the listener had already taken, whose accept
/// arrived after the race's drain) are accepted and closed on the way: the accepted socket is
/// the one whose peer is the client.
fn connected(ws: &Winsock, listener: Socket, port: u16) -> (Socket, Socket) {
    let c = ws.socket().unwrap();
    ws.connect(c, loopback(port)).expect("connect");
    let local = ws.getsockname(c).expect("getsockname");
    loop {
        let (a, peer) = ws.accept(listener).expect("accept");
        if peer == local {
            return (c, a);
        }
        let _ = ws.closesocket(a);
    }
}

#[test]
fn edge_cases() {
    let env = Env::start("suite 5 edge cases", 2, FaultInjection::None);
    let ws = &env.ws;

    // A port nobody listens on: the RST is WSAECONNREFUSED.
    let s = ws.socket().unwrap();
    assert_eq!(
        ws.connect(s, loopback(5999)),
        Err(WsaError::WSAECONNREFUSED)
    );
    ws.closesocket(s).unwrap();

    let port = 5005;
    let l = listener(ws, port);

    // getsockname/getpeername on an accepted socket.
    let (c, a) = connected(ws, l, port);
    let client_name = ws.getsockname(c).unwrap();
    assert_eq!(
        ws.getpeername(a).unwrap(),
        client_name,
        "accepted peer = client"
    );
    assert_eq!(ws.getpeername(c).unwrap(), loopback(port));
    let accepted_name = ws.getsockname(a).unwrap();
    assert_eq!(accepted_name.port(), port, "accepted local port");
    assert_eq!(
        *accepted_name.ip(),
        Ipv4Addr::LOCALHOST,
        "accepted local address"
    );
    assert_eq!(
        *client_name.ip(),
        Ipv4Addr::LOCALHOST,
        "client local address"
    );
    assert_ne!(client_name.port(), 0);

    // The peer closes while a receive is pending: success with 0 bytes.
    let receiver = {
        let ws = ws.clone();
        env.kernel.spawn("pending-recv", move || {
            let mut buf = [0u8; 16];
            ws.recv(a, &mut buf)
        })
    };
    let afd_a = ws.afd_socket(a).unwrap();
    assert_eq!(
        ws.afd().in_flight(afd_a).unwrap(),
        vec![RequestKind::Receive]
    );
    ws.closesocket(c).unwrap();
    assert_eq!(receiver.join().unwrap(), Ok(0));
    ws.closesocket(a).unwrap();

    // Abortive close (SO_LINGER {1, 0}): the peer sees a reset.
    let (c, a) = connected(ws, l, port);
    ws.set_linger(c, Some(0)).unwrap();
    ws.closesocket(c).unwrap();
    let mut buf = [0u8; 16];
    let error = ws
        .recv(a, &mut buf)
        .expect_err("a reset, not a graceful close");
    assert!(
        matches!(error, WsaError::WSAECONNRESET | WsaError::WSAECONNREFUSED),
        "an RST through msafd is WSAECONNRESET (FILE_CLOSED) or WSAECONNREFUSED \
         (REMOTE_DISCONNECT): {error}"
    );
    ws.closesocket(a).unwrap();

    // closesocket with unsent data: the peer still gets every byte, then FIN.
    let (c, a) = connected(ws, l, port);
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7 % 253) as u8).collect();
    let sender = {
        let ws = ws.clone();
        let data = data.clone();
        env.kernel.spawn("unsent-sender", move || {
            ws.send_all(c, &data).unwrap();
            ws.closesocket(c).unwrap();
        })
    };
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = ws.recv(a, &mut chunk).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    sender.join().unwrap();
    assert!(
        got == data,
        "all {} bytes before FIN (got {})",
        data.len(),
        got.len()
    );
    ws.closesocket(a).unwrap();

    // Closing the listening socket with queued, unaccepted connections.
    let clients: Vec<Socket> = (0..5)
        .map(|_| {
            let c = ws.socket().unwrap();
            ws.connect(c, loopback(port)).unwrap();
            c
        })
        .collect();
    ws.closesocket(l).unwrap();
    for c in clients {
        let mut buf = [0u8; 4];
        match ws.recv(c, &mut buf) {
            Ok(0) | Err(WsaError::WSAECONNRESET | WsaError::WSAECONNREFUSED) => {}
            other => panic!("an unaccepted connection of a closed listener: {other:?}"),
        }
        let _ = ws.closesocket(c);
    }
    // The port is free again for a new listener.
    let l = listener(ws, port);
    ws.closesocket(l).unwrap();

    env.finish();
}

/// Iterations of the cancellation race loop (`TCPIP_RACE_ITERATIONS`, default 10,000).
fn race_iterations() -> usize {
    std::env::var("TCPIP_RACE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// One kind of cancellation, at a moment chosen by the seeded generator (the number of
/// yields between starting the competing action and the cancelling one).
fn race_once(env: &Env, ws: &Arc<Winsock>, l: Socket, port: u16, rng: &mut Rng) {
    let delay = rng.below(4);
    let pause = |n: u64| {
        for _ in 0..n {
            std::thread::yield_now();
        }
    };
    match rng.below(6) {
        // A receive completing (data arriving) against closesocket cancelling it.
        0 => {
            let (c, a) = connected(ws, l, port);
            let sender = {
                let ws = ws.clone();
                env.kernel
                    .spawn("race-send", move || ws.send(c, &[1, 2, 3, 4]).map(|_| ()))
            };
            pause(delay);
            ws.closesocket(a).unwrap();
            let _ = sender.join().unwrap();
            let _ = ws.closesocket(c);
        }
        // The pending receive cancelled as on thread exit: AFD closes its receive side.
        1 => {
            let (c, a) = connected(ws, l, port);
            let afd_a = ws.afd_socket(a).unwrap();
            pause(delay);
            let _ = ws.afd().cancel_in_flight(afd_a, RequestKind::Receive);
            let mut buf = [0u8; 4];
            if let Err(e) = ws.recv(a, &mut buf) {
                assert_eq!(e, WsaError::WSA_OPERATION_ABORTED, "a cancelled receive");
            }
            let _ = ws.closesocket(a);
            let _ = ws.closesocket(c);
        }
        // A connect cancelled by closesocket while it is in flight.
        2 => {
            let c = ws.socket().unwrap();
            ws.bind(c, loopback(0)).unwrap();
            let afd_c = ws.afd_socket(c).unwrap();
            let pending = ws.afd().start_connect(afd_c, loopback(port));
            pause(delay);
            let _ = ws.closesocket(c);
            if let Ok(waiter) = pending {
                let _ = tcpip::host::afd::wait(&waiter, None);
            }
            // The listener may have accepted it: drain and close what it queued.
            while ws.select_acceptable(l, std::time::Duration::ZERO).unwrap() {
                let (a, _) = ws.accept(l).unwrap();
                let _ = ws.closesocket(a);
            }
        }
        // A send in flight to a peer that does not read, cancelled by closesocket (abort).
        3 => {
            let (c, a) = connected(ws, l, port);
            ws.set_linger(c, Some(0)).unwrap();
            let sender = {
                let ws = ws.clone();
                env.kernel
                    .spawn("race-bulk", move || ws.send_all(c, &[7u8; 64 * 1024]))
            };
            pause(delay * 8);
            let _ = ws.shutdown(c, Shutdown::Both);
            let _ = sender.join().unwrap();
            let _ = ws.closesocket(c);
            let _ = ws.closesocket(a);
        }
        // A graceful disconnect racing the peer's abortive close.
        4 => {
            let (c, a) = connected(ws, l, port);
            ws.set_linger(a, Some(0)).unwrap();
            let closer = {
                let ws = ws.clone();
                env.kernel.spawn("race-abort", move || ws.closesocket(a))
            };
            pause(delay);
            let _ = ws.shutdown(c, Shutdown::Send);
            let _ = closer.join().unwrap();
            let _ = ws.closesocket(c);
        }
        // A listen cancelled by closing its listener, with a connect racing it.
        _ => {
            let p = port + 1;
            let l2 = listener(ws, p);
            let c = ws.socket().unwrap();
            let connector = {
                let ws = ws.clone();
                env.kernel.spawn("race-connect", move || {
                    let _ = ws.connect(c, loopback(p));
                    c
                })
            };
            pause(delay);
            ws.closesocket(l2).unwrap();
            let c = connector.join().unwrap();
            let _ = ws.closesocket(c);
        }
    }
}

#[test]
fn cancellation_of_each_pending_request_kind_at_random_moments() {
    let env = Env::start("suite 5 cancellation race loop", 2, FaultInjection::None);
    let ws = env.ws.clone();
    let port = 5105;
    let l = listener(&ws, port);
    let mut rng = Rng::new(0x5eed_0005);
    let iterations = race_iterations();
    for i in 0..iterations {
        race_once(&env, &ws, l, port, &mut rng);
        assert_eq!(
            ws.stats().use_after_free,
            0,
            "iteration {i}: a completion after AfdCloseSocket freed the FCB"
        );
    }
    ws.closesocket(l).unwrap();
    drop(ws);
    env.finish();
}
