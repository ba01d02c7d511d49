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
use tcpip::host::winsock::{Shutdown, WsaError};
use tcpip::host::{FaultInjection, Rule};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tdi_client_support::{Peer, Take};

/// A message of `len` bytes, different per connection.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ seed) as u8)
        .collect()
}

#[test]
fn an_event_driven_echo_server_serves_winsock_clients() {
    let env = Env::start("events: echo server", 2, FaultInjection::None);
    let (threads, per_thread) = (4, 6);
    let total = threads * per_thread;
    let server = Peer::echo_server(&env.kernel.handle(), 7401, total);
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

/// A receiving client (no echo) with a connect and a receive handler, and one Winsock client
/// connected to it: (server, client socket, server slot).
fn receiver(env: &Env, port: u16, take: Take) -> (Box<Peer>, tcpip::host::winsock::Socket) {
    let server = Peer::open(
        &env.kernel.handle(),
        "\\Device\\Tcp",
        loopback(port),
        1,
        false,
    );
    *server.take.lock().unwrap() = take;
    for event in [TDI_EVENT_CONNECT, TDI_EVENT_RECEIVE, TDI_EVENT_DISCONNECT] {
        assert_eq!(server.register(event, true), NtStatus::SUCCESS);
    }
    let s = env.ws.socket().unwrap();
    env.ws.connect(s, loopback(port)).expect("connect");
    server.wait_until(5, |conns| conns[0].accepted.is_some());
    (server, s)
}

#[test]
fn a_handler_that_takes_part_leaves_the_rest_for_a_receive_until_more_arrives() {
    let env = Env::start("events: partial take", 2, FaultInjection::None);
    let (server, s) = receiver(&env, 7402, Take::Part(5));
    env.ws.send_all(s, b"hello world").unwrap();
    server.wait_until(5, |conns| conns[0].received == b"hello");
    // What was shown and left is not indicated again without new data.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.received(0), b"hello");
    assert_eq!(server.stats.receives.load(Ordering::Relaxed), 1);
    // New data: the rest is indicated again with it.
    env.ws.send_all(s, b"!!").unwrap();
    server.wait_until(5, |conns| conns[0].received == b"hello worl");
    // A TDI_RECEIVE takes what the handler left.
    let (status, rest) = server.receive_sync(0, 100);
    assert_eq!(status, NtStatus::SUCCESS);
    assert_eq!(rest, b"d!!");
    env.ws.send_all(s, b"x").unwrap();
    server.wait_until(5, |conns| conns[0].received == b"hello worlx");
    assert_eq!(server.stats.bad_indications.load(Ordering::Relaxed), 0);
    env.ws.closesocket(s).unwrap();
    server.wait_until(5, |conns| !conns[0].disconnects.is_empty());
    server.close();
    env.finish();
}

#[test]
fn a_handler_that_returns_an_irp_gets_the_data_in_order() {
    let env = Env::start("events: returned IRP", 2, FaultInjection::None);
    let server = Peer::echo_server(&env.kernel.handle(), 7403, 1);
    *server.take.lock().unwrap() = Take::Irp;
    let s = env.ws.socket().unwrap();
    env.ws.connect(s, loopback(7403)).expect("connect");
    let message = pattern(7, 200_000);
    let ws = env.ws.clone();
    let sent = message.clone();
    // The writer stays until the echo is read: AFD's TDI_SENDs are threaded IRPs, cancelled
    // if the thread that built them ends first (as on ReactOS).
    let (read, wait_read) = std::sync::mpsc::channel::<()>();
    let writer = env.kernel.spawn("writer", move || {
        ws.send_all(s, &sent).expect("send");
        let _ = wait_read.recv();
    });
    let mut echo = vec![0; message.len()];
    assert!(env.ws.recv_exact(s, &mut echo).expect("recv"), "echo");
    let _ = read.send(());
    writer.join().unwrap();
    assert!(echo == message, "byte-exact through returned receive IRPs");
    assert!(server.stats.irps_returned.load(Ordering::Relaxed) > 0);
    env.ws.closesocket(s).unwrap();
    server.wait_until(5, |conns| !conns[0].disconnects.is_empty());
    server.close();
    env.finish();
}

#[test]
fn a_reset_is_indicated_as_an_abortive_disconnect() {
    let env = Env::start("events: RST", 2, FaultInjection::None);
    let (server, s) = receiver(&env, 7404, Take::All);
    env.ws.send_all(s, b"bye").unwrap();
    server.wait_until(5, |conns| conns[0].received == b"bye");
    env.ws.set_linger(s, Some(0)).unwrap();
    env.ws.closesocket(s).unwrap();
    server.wait_until(5, |conns| !conns[0].disconnects.is_empty());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        server.conns.lock().unwrap()[0].disconnects,
        [TDI_DISCONNECT_ABORT]
    );
    server.close();
    env.finish();
}

#[test]
fn a_graceful_close_is_indicated_once_the_data_before_it_is_taken() {
    let env = Env::start("events: FIN", 2, FaultInjection::None);
    let (server, s) = receiver(&env, 7405, Take::None);
    env.ws.send_all(s, b"data before FIN").unwrap();
    env.ws.shutdown(s, Shutdown::Send).unwrap();
    server.wait_until(5, |conns| {
        conns[0].received.is_empty() && server.stats.receives.load(Ordering::Relaxed) > 0
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        server.conns.lock().unwrap()[0].disconnects.is_empty(),
        "no release while data before the FIN is unread"
    );
    let (status, data) = server.receive_sync(0, 100);
    assert_eq!(
        (status, &data[..]),
        (NtStatus::SUCCESS, &b"data before FIN"[..])
    );
    server.wait_until(5, |conns| conns[0].disconnects == [TDI_DISCONNECT_RELEASE]);
    env.ws.closesocket(s).unwrap();
    server.close();
    env.finish();
}

#[test]
fn cleared_handlers_are_not_called_and_data_waits_for_receives() {
    let env = Env::start("events: clear under traffic", 2, FaultInjection::None);
    let (server, s) = receiver(&env, 7406, Take::All);
    let ws = env.ws.clone();
    // The writer stays until everything is received (AFD's TDI_SENDs are threaded IRPs,
    // cancelled if their thread ends first, as on ReactOS).
    let (received, wait_received) = std::sync::mpsc::channel::<()>();
    let (written, wait_written) = std::sync::mpsc::channel::<()>();
    let writer = env.kernel.spawn("writer", move || {
        for i in 0..200 {
            ws.send_all(s, &pattern(i, 500)).expect("send");
        }
        let _ = written.send(());
        let _ = wait_received.recv();
    });
    server.wait_until(5, |conns| conns[0].received.len() >= 10_000);
    assert_eq!(server.register(TDI_EVENT_RECEIVE, false), NtStatus::SUCCESS);
    let calls = server.stats.receives.load(Ordering::Relaxed);
    let shown = server.received(0).len();
    let _ = wait_written.recv();
    // The rest arrives through TDI_RECEIVE only; the handler is never called again.
    let mut rest = Vec::new();
    while shown + rest.len() < 200 * 500 {
        let (status, data) = server.receive_sync(0, 65536);
        assert_eq!(status, NtStatus::SUCCESS);
        assert!(!data.is_empty());
        rest.extend_from_slice(&data);
    }
    assert_eq!(server.stats.receives.load(Ordering::Relaxed), calls);
    let _ = received.send(());
    writer.join().unwrap();
    let mut all = server.received(0);
    all.extend_from_slice(&rest);
    let expected: Vec<u8> = (0..200).flat_map(|i| pattern(i, 500)).collect();
    assert!(
        all == expected,
        "every byte once, in order, across the switch"
    );
    env.ws.closesocket(s).unwrap();
    server.close();
    env.finish();
}

#[test]
fn a_handler_cleared_from_inside_itself_is_not_called_again() {
    let env = Env::start("events: clear in the handler", 2, FaultInjection::None);
    let (server, s) = receiver(&env, 7410, Take::All);
    server.clear_in_handler.store(true, Ordering::Relaxed);
    env.ws.send_all(s, b"first").unwrap();
    server.wait_until(5, |conns| conns[0].received == b"first");
    env.ws.send_all(s, b"second").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.stats.receives.load(Ordering::Relaxed), 1);
    let (status, data) = server.receive_sync(0, 100);
    assert_eq!((status, &data[..]), (NtStatus::SUCCESS, &b"second"[..]));
    env.ws.closesocket(s).unwrap();
    server.close();
    env.finish();
}

#[test]
fn closing_the_address_file_waits_for_a_handler_being_called() {
    // A kernel client frees its handlers' context once its address file is closed: the close
    // must not complete while a handler of the file still runs (on another processor here).
    let env = Env::start("events: close during a handler", 4, FaultInjection::None);
    let (server, s) = receiver(&env, 7413, Take::All);
    server.handler_delay_ms.store(300, Ordering::Relaxed);
    env.ws.send_all(s, b"slow").unwrap();
    while server.stats.entered.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = server.stats.clone();
    server.close();
    assert_eq!(
        stats.left.load(Ordering::SeqCst),
        stats.entered.load(Ordering::SeqCst),
        "the address file's close completed while its receive handler was running"
    );
    env.ws.closesocket(s).unwrap();
    env.finish();
}

#[test]
fn datagrams_are_indicated_to_the_receive_datagram_handler() {
    let env = Env::start("events: UDP", 2, FaultInjection::None);
    let kernel = env.kernel.handle();
    let local = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 7407);
    let receiver = Peer::open(&kernel, "\\Device\\Udp", local, 0, false);
    let sender = Peer::open(&kernel, "\\Device\\Udp", loopback(0), 0, false);
    // An empty connection slot for the datagrams.
    receiver.conns.lock().unwrap().push(Default::default());
    assert_eq!(
        receiver.register(TDI_EVENT_RECEIVE_DATAGRAM, true),
        NtStatus::SUCCESS
    );
    assert_eq!(
        sender.send_datagram_sync(local, b"first"),
        NtStatus::SUCCESS
    );
    receiver.wait_until(5, |conns| conns[0].received == b"first");
    *receiver.take.lock().unwrap() = Take::Irp;
    assert_eq!(
        sender.send_datagram_sync(local, b"second"),
        NtStatus::SUCCESS
    );
    receiver.wait_until(5, |conns| conns[0].received == b"firstsecond");
    assert_eq!(receiver.stats.datagrams.load(Ordering::Relaxed), 2);
    assert_eq!(receiver.stats.bad_indications.load(Ordering::Relaxed), 0);
    receiver.close();
    sender.close();
    env.finish();
}

#[test]
fn a_port_unreachable_is_indicated_to_the_error_ex_handler() {
    let env = Env::start("events: ErrorEx", 2, FaultInjection::None);
    let kernel = env.kernel.handle();
    let sender = Peer::open(&kernel, "\\Device\\Udp", loopback(7411), 0, false);
    assert_eq!(sender.register(TDI_EVENT_ERROR_EX, true), NtStatus::SUCCESS);
    // Nobody is bound to 7412: smoltcp answers with an ICMP port unreachable.
    assert_eq!(
        sender.send_datagram_sync(loopback(7412), b"anyone?"),
        NtStatus::SUCCESS
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sender.errors.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no ErrorEx event");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        sender.errors.lock().unwrap()[..],
        [(NtStatus::PORT_UNREACHABLE, loopback(7412))]
    );
    sender.close();
    env.finish();
}

#[test]
fn raw_ip_datagrams_are_indicated_with_their_header() {
    let env = Env::start("events: raw IP", 2, FaultInjection::None);
    let kernel = env.kernel.handle();
    let any = SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);
    let receiver = Peer::open(&kernel, "\\Device\\RawIp\\253", any, 0, false);
    let sender = Peer::open(&kernel, "\\Device\\RawIp\\254", any, 0, false);
    receiver.conns.lock().unwrap().push(Default::default());
    assert_eq!(
        receiver.register(TDI_EVENT_RECEIVE_DATAGRAM, true),
        NtStatus::SUCCESS
    );
    // Protocol 254's file sends; only a file of protocol 253 would see it: nothing here.
    assert_eq!(
        sender.send_datagram_sync(loopback(0), b"not for 253"),
        NtStatus::SUCCESS
    );
    let writer = Peer::open(&kernel, "\\Device\\RawIp\\253", any, 0, false);
    assert_eq!(
        writer.send_datagram_sync(loopback(0), b"hello raw"),
        NtStatus::SUCCESS
    );
    receiver.wait_until(5, |conns| conns[0].received.len() == 20 + 9);
    assert_eq!(
        &receiver.received(0)[20..],
        b"hello raw",
        "the IPv4 header, then the data"
    );
    assert_eq!(receiver.stats.datagrams.load(Ordering::Relaxed), 1);
    receiver.close();
    sender.close();
    writer.close();
    env.finish();
}

#[test]
fn an_event_driven_client_talks_to_a_winsock_echo_server() {
    let env = Env::start("events: client", 2, FaultInjection::None);
    let ws = env.ws.clone();
    let listener = ws.socket().unwrap();
    ws.bind(listener, loopback(7408)).unwrap();
    ws.listen(listener, 5).unwrap();
    let server = env.kernel.spawn("winsock-echo", move || {
        let (s, _) = ws.accept(listener).expect("accept");
        let mut buffer = vec![0; 65536];
        loop {
            let n = ws.recv(s, &mut buffer).expect("recv");
            if n == 0 {
                break;
            }
            ws.send_all(s, &buffer[..n]).expect("echo");
        }
        ws.closesocket(s).unwrap();
        ws.closesocket(listener).unwrap();
    });
    let client = Peer::open(&env.kernel.handle(), "\\Device\\Tcp", loopback(0), 1, false);
    for event in [TDI_EVENT_RECEIVE, TDI_EVENT_DISCONNECT] {
        assert_eq!(client.register(event, true), NtStatus::SUCCESS);
    }
    let slot = client.take_endpoint();
    assert_eq!(slot, 0);
    assert_eq!(client.connect(slot, loopback(7408)), NtStatus::SUCCESS);
    let message = pattern(3, 150_000);
    client.send(slot, &message);
    client.wait_until(10, |conns| conns[0].received.len() >= message.len());
    assert!(
        client.received(0) == message,
        "byte-exact echo through receive events"
    );
    // Our release; the server's FIN comes back as a release event.
    client.release(slot);
    client.wait_until(5, |conns| conns[0].disconnects == [TDI_DISCONNECT_RELEASE]);
    server.join().unwrap();
    client.close();
    env.finish();
}

#[test]
fn an_event_driven_echo_server_with_one_percent_allocation_failures() {
    let env = Env::start(
        "events: echo server, 1% pool failures",
        2,
        FaultInjection::None,
    );
    let total = 40;
    let server = Peer::echo_server(&env.kernel.handle(), 7409, total);
    // Failures start once the server is set up: the test is about the event paths.
    env.kernel.set_fault_injection(FaultInjection::Random {
        seed: 0x1801,
        percent: 1,
    });
    let mut echoes = 0;
    let mut errors = 0;
    for i in 0..total {
        let ws = &env.ws;
        let result: Result<(), WsaError> = (|| {
            let s = ws.socket()?;
            ws.set_receive_timeout(s, Some(Duration::from_secs(2)))?;
            let outcome = (|| {
                ws.connect(s, loopback(7409))?;
                let message = pattern(i, 4000);
                ws.send_all(s, &message)?;
                let mut echo = vec![0; message.len()];
                if ws.recv_exact(s, &mut echo)? {
                    assert!(echo == message, "what is echoed is byte-exact");
                    echoes += 1;
                }
                Ok(())
            })();
            let _ = ws.closesocket(s);
            outcome
        })();
        if let Err(e) = result {
            assert!(
                clean_low_resource_error(e) || e == WsaError::WSAETIMEDOUT,
                "unexpected Winsock error {e}"
            );
            eprintln!("connection {i}: {e}");
            errors += 1;
        }
    }
    eprintln!("events at 1%: {echoes} echoes, {errors} clean errors");
    assert!(echoes > 0, "some connections get through at 1% failures");
    std::thread::sleep(Duration::from_millis(200));
    env.kernel.set_fault_injection(FaultInjection::None);
    server.close();
    env.finish();
}

#[test]
fn the_verifier_rejects_handler_calls_below_dispatch_or_under_a_lock() {
    // The rules the driver's deliveries are checked against, shown to fire.
    let env = Env::start("events: verifier rules", 1, FaultInjection::None);
    env.kernel.expect_violation(Rule::ClientEventIrql);
    env.kernel.expect_violation(Rule::ClientEventLockHeld);
    let kernel = env.kernel.handle();
    let probe = env.kernel.spawn("probe", move || {
        let _entered = kernel.enter();
        // PASSIVE_LEVEL: a handler must be called at DISPATCH_LEVEL.
        tcpip::nt::sys::call_client_handler(|| ());
        // A spin lock held (at DISPATCH_LEVEL): the handler could call back and deadlock.
        let lock = tcpip::nt::sync::SpinLock::new(0u32);
        let guard = lock.lock();
        tcpip::nt::sys::call_client_handler(|| ());
        drop(guard);
    });
    probe.join().unwrap();
    env.finish();
}
