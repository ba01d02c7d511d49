//! UDP through the AFD model and the Winsock-style API, as Winsock programs use it: an echo
//! server and many client threads over the loopback (with sendto/recvfrom and with connected
//! sockets), broadcast with SO_BROADCAST, the receive filter of a connected socket, a datagram
//! larger than recvfrom's buffer, and the datagram path with 1% of the driver's allocations
//! failing. Verifier on, leak check at unload.

mod echo_support;

use echo_support::{Env, loopback, size};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tcpip::host::FaultInjection;
use tcpip::host::stats::udp_stats;
use tcpip::host::winsock::{Socket, Winsock, WsaError};

fn any(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)
}

/// An echo server on `port`: echoes `expected` datagrams to their senders, raises `echoed`,
/// then waits in recvfrom until its socket is closed under it (AFD fails that recvfrom with
/// `STATUS_FILE_CLOSED` or `STATUS_CANCELLED`; `WSAENOTSOCK` if the close came first).
fn echo_server(
    env: &Env,
    port: u16,
    expected: usize,
    echoed: Arc<AtomicBool>,
) -> (Socket, std::thread::JoinHandle<()>) {
    let ws = env.ws.clone();
    let server = ws.socket_datagram().unwrap();
    ws.bind(server, loopback(port)).unwrap();
    let thread = env.kernel.spawn("udp-echo-server", move || {
        let mut buffer = [0u8; 2048];
        for _ in 0..expected {
            let (n, from) = ws
                .recvfrom(server, &mut buffer)
                .expect("echo server recvfrom");
            ws.sendto(server, &buffer[..n], from)
                .expect("echo server sendto");
        }
        echoed.store(true, Ordering::Release);
        let last = ws.recvfrom(server, &mut buffer);
        assert!(
            matches!(
                last,
                Err(WsaError::WSA_OPERATION_ABORTED
                    | WsaError::WSAECONNRESET
                    | WsaError::WSAENOTSOCK)
            ),
            "recvfrom pending at close: {last:?}"
        );
    });
    (server, thread)
}

#[test]
fn udp_echo_over_loopback_with_many_threads() {
    let env = Env::start("udp echo", 2, FaultInjection::None);
    let port = 5301;
    let threads = size(64, 16);
    let per_thread = size(1000, 100);
    let echoed = Arc::new(AtomicBool::new(false));
    let (server, thread) = echo_server(&env, port, threads * per_thread, echoed.clone());
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let ws = env.ws.clone();
            env.kernel.spawn("udp-echo-client", move || {
                let s = ws.socket_datagram().unwrap();
                let connected = t % 2 == 1;
                if connected {
                    ws.connect(s, loopback(port)).unwrap();
                    assert_eq!(ws.getpeername(s), Ok(loopback(port)));
                }
                let mut buffer = [0u8; 2048];
                for i in 0..per_thread {
                    let message = format!("client {t} datagram {i} {}", "x".repeat(i % 700));
                    let (n, from) = if connected {
                        assert_eq!(ws.send(s, message.as_bytes()), Ok(message.len()));
                        (ws.recv(s, &mut buffer).unwrap(), loopback(port))
                    } else {
                        let sent = ws.sendto(s, message.as_bytes(), loopback(port));
                        assert_eq!(sent, Ok(message.len()));
                        ws.recvfrom(s, &mut buffer).unwrap()
                    };
                    assert_eq!(from, loopback(port));
                    assert_eq!(&buffer[..n], message.as_bytes(), "byte-exact echo");
                }
                ws.closesocket(s).unwrap();
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    while !echoed.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Closed with the server's recvfrom (and AFD's TDI_RECEIVE_DATAGRAM) pending.
    env.ws.closesocket(server).unwrap();
    thread.join().expect("server");
    let stats = udp_stats(env.driver()).unwrap();
    assert_eq!(stats.queue_full, 0, "{stats:?}");
    assert_eq!(
        stats.datagrams_in,
        2 * (threads * per_thread) as u64,
        "{stats:?}"
    );
    env.finish();
}

#[test]
fn broadcast_needs_so_broadcast_and_reaches_every_socket_sharing_the_port() {
    let env = Env::start("udp broadcast", 2, FaultInjection::None);
    let ws = &env.ws;
    let receivers = [ws.socket_datagram().unwrap(), ws.socket_datagram().unwrap()];
    for r in receivers {
        ws.set_reuse_address(r, true).unwrap();
        ws.bind(r, any(5302)).unwrap();
    }
    let sender = ws.socket_datagram().unwrap();
    ws.bind(sender, any(5303)).unwrap();
    let unshared = ws.socket_datagram().unwrap();
    assert_eq!(ws.bind(unshared, any(5302)), Err(WsaError::WSAEADDRINUSE));
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, 5302);
    assert_eq!(
        ws.sendto(sender, b"offer", broadcast),
        Err(WsaError::WSAEACCES)
    );
    ws.set_broadcast(sender, true).unwrap();
    assert_eq!(ws.sendto(sender, b"offer", broadcast), Ok(5));
    let mut buffer = [0u8; 64];
    for r in receivers {
        let (n, from) = ws.recvfrom(r, &mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"offer");
        assert_eq!(from, any(5303), "no address configured: sent from 0.0.0.0");
    }
    assert_eq!(ws.getsockname(sender), Ok(any(5303)));
    for s in receivers.into_iter().chain([sender, unshared]) {
        ws.closesocket(s).unwrap();
    }
    env.finish();
}

#[test]
fn a_connected_socket_hears_only_its_peer() {
    let env = Env::start("udp connected filter", 2, FaultInjection::None);
    let ws = &env.ws;
    let a = ws.socket_datagram().unwrap();
    ws.bind(a, loopback(5304)).unwrap();
    let peer = ws.socket_datagram().unwrap();
    ws.bind(peer, loopback(5305)).unwrap();
    let stranger = ws.socket_datagram().unwrap();
    ws.connect(a, loopback(5305)).unwrap();
    ws.sendto(stranger, b"not for you", loopback(5304)).unwrap();
    ws.sendto(peer, b"for you", loopback(5304)).unwrap();
    let mut buffer = [0u8; 64];
    let n = ws.recv(a, &mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"for you");
    // send() goes to the connected peer.
    assert_eq!(ws.send(a, b"reply"), Ok(5));
    assert_eq!(
        ws.recvfrom(peer, &mut buffer)
            .map(|(n, from)| (buffer[..n].to_vec(), from)),
        Ok((b"reply".to_vec(), loopback(5304)))
    );
    // An unconnected datagram socket has no destination for send().
    assert_eq!(ws.send(stranger, b"?"), Err(WsaError::WSAENOTCONN));
    for s in [a, peer, stranger] {
        ws.closesocket(s).unwrap();
    }
    env.finish();
}

#[test]
fn recvfrom_with_a_short_buffer_is_wsaemsgsize_with_the_start_of_the_datagram() {
    let env = Env::start("udp short buffer", 2, FaultInjection::None);
    let ws = &env.ws;
    let a = ws.socket_datagram().unwrap();
    ws.bind(a, loopback(5306)).unwrap();
    let b = ws.socket_datagram().unwrap();
    let data: Vec<u8> = (0..100u8).collect();
    ws.sendto(b, &data, loopback(5306)).unwrap();
    ws.sendto(b, b"next", loopback(5306)).unwrap();
    let mut small = [0u8; 10];
    assert_eq!(ws.recvfrom(a, &mut small), Err(WsaError::WSAEMSGSIZE));
    assert_eq!(small, data[..10]);
    // The rest of that datagram is gone; the socket still receives.
    let mut buffer = [0u8; 64];
    let (n, _) = ws.recvfrom(a, &mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"next");
    assert_eq!(ws.stats().datagram_receives_stopped, 0);
    ws.closesocket(a).unwrap();
    ws.closesocket(b).unwrap();
    env.finish();
}

/// Whether a datagram-path error is one a Winsock program may see when the transport runs out
/// of memory: the low-resources run accepts these, nothing else.
fn clean_error(error: WsaError) -> bool {
    matches!(
        error,
        WsaError::WSAENOBUFS
            | WsaError::WSAETIMEDOUT
            | WsaError::WSAEINVAL
            | WsaError::WSAEADDRINUSE
            | WsaError::WSA_OPERATION_ABORTED
    )
}

#[test]
fn udp_echo_with_one_percent_allocation_failures() {
    let env = Env::start(
        "udp echo, 1% pool failures",
        2,
        FaultInjection::Random {
            seed: 0x1307,
            percent: 1,
        },
    );
    let echoes = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let threads = 4;
    let rounds = size(500, 100);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let ws: Arc<Winsock> = env.ws.clone();
            let (echoes, errors) = (echoes.clone(), errors.clone());
            env.kernel.spawn("udp-low-resources", move || {
                let note = |e: WsaError| {
                    assert!(clean_error(e), "unexpected Winsock error {e}");
                    errors.fetch_add(1, Ordering::Relaxed);
                };
                for round in 0..rounds {
                    // A fresh pair each round: AFD never re-posts a receive that failed.
                    let port = 5400 + (t * rounds + round) as u16 % 4000;
                    let (Ok(server), Ok(client)) = (ws.socket_datagram(), ws.socket_datagram())
                    else {
                        continue;
                    };
                    for s in [server, client] {
                        ws.set_receive_timeout(s, Some(Duration::from_millis(500)))
                            .unwrap();
                    }
                    let message = format!("worker {t} round {round}");
                    let mut buffer = [0u8; 64];
                    let result = ws
                        .bind(server, loopback(port))
                        .and_then(|()| ws.sendto(client, message.as_bytes(), loopback(port)))
                        .and_then(|_| ws.recvfrom(server, &mut buffer))
                        .and_then(|(n, from)| ws.sendto(server, &buffer[..n], from))
                        .and_then(|_| ws.recvfrom(client, &mut buffer));
                    match result {
                        Ok((n, _)) => {
                            assert_eq!(&buffer[..n], message.as_bytes());
                            echoes.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => note(e),
                    }
                    for s in [server, client] {
                        if let Err(e) = ws.closesocket(s) {
                            note(e);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let (echoes, errors) = (
        echoes.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    eprintln!("udp 1% failures: {echoes} echoes, {errors} clean errors");
    assert!(echoes > 0, "most datagrams get through at 1% failures");
    env.finish();
}

#[test]
fn reactos_afd_stops_receiving_once_its_8_kib_store_is_full() {
    // Not the driver's doing, but what a Winsock program on ReactOS sees: AFD re-posts its
    // TDI_RECEIVE_DATAGRAM only while it stores less than its 8 KiB window, and reading does
    // not restart it. The driver still takes the datagrams (its own bounded queue).
    let env = Env::start("udp AFD store full", 2, FaultInjection::None);
    let ws = &env.ws;
    let reader = ws.socket_datagram().unwrap();
    ws.bind(reader, loopback(5307)).unwrap();
    ws.set_receive_timeout(reader, Some(Duration::from_millis(200)))
        .unwrap();
    let writer = ws.socket_datagram().unwrap();
    let chunk = [7u8; 1024];
    for _ in 0..12 {
        ws.sendto(writer, &chunk, loopback(5307)).unwrap();
    }
    let mut buffer = [0u8; 2048];
    let mut read = 0;
    while ws.recvfrom(reader, &mut buffer).is_ok() {
        read += 1;
    }
    assert_eq!(read, 8, "AFD stored 8 KiB, then stopped posting receives");
    assert_eq!(ws.stats().datagram_receives_stopped, 1);
    let stats = udp_stats(env.driver()).unwrap();
    assert_eq!((stats.datagrams_in, stats.queue_full), (12, 0), "{stats:?}");
    ws.closesocket(writer).unwrap();
    ws.closesocket(reader).unwrap();
    env.finish();
}
