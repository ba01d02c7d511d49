//! Floods from the wire and from many connections: the non-paged pool the driver takes stays
//! within its documented bounds (`CoreConfig::half_open_limit`, `socket_memory_limit`, the
//! receive window), and real clients still connect while it lasts.
//!
//! The Ethernet tests play the peer with hand-built frames on a recording adapter: spoofed
//! SYNs from many addresses, and a real client that completes its handshake and sends data.

mod ethernet_support;
mod ip_helper_support;
mod tdi_support;

use ethernet_support::*;
use ip_helper_support::tcp_table;
use smoltcp::wire::TcpControl;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};
use tcpip::core::state::CoreConfig;
use tcpip::host::{Clock, Config, PHYSICAL_MEMORY_1GIB};
use tcpip::nt::NtStatus;
use tdi_support::*;

/// `MIB_TCP_STATE` of a half-open connection.
const SYN_RCVD: u32 = 4;
const SERVER_PORT: u16 = 80;

fn server() -> SocketAddrV4 {
    SocketAddrV4::new(OURS, SERVER_PORT)
}

/// `count` SYNs from spoofed on-link addresses (none of them [`PEER`]), numbered from `first`.
fn flood(t: &Loaded, first: u32, count: u32) {
    for n in first..first + count {
        let host = 3 + (n % 250) as u8;
        let port = 1024 + (n / 250) as u16;
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 13, 0, host), port);
        indicate(t, &segment(src, server(), TcpControl::Syn, n, None, &[]));
    }
}

/// The listening address file, with the ARP entry for [`PEER`] taught to the driver.
fn listening(t: &Loaded) -> tcpip::host::Handle {
    indicate(t, &arp_reply(PEER, PEER_MAC, OURS));
    t.open_address(server(), 0).expect("server address")
}

/// A TDI_LISTEN on a fresh endpoint of `address`.
fn listen_on(t: &Loaded, address: tcpip::host::Handle) -> (tcpip::host::Handle, PendingRequest) {
    let endpoint = t.open_connection().expect("endpoint");
    assert_eq!(t.associate(endpoint, address), NtStatus::SUCCESS);
    (endpoint, start_listen(t, endpoint))
}

/// Half-open connections as netstat shows them.
fn half_open(t: &Loaded) -> usize {
    let control = ip_helper_support::control(t);
    let rows = tcp_table(t, control);
    t.close(control);
    rows.iter().filter(|row| row.0 == SYN_RCVD).count()
}

#[test]
fn a_syn_flood_holds_at_most_the_half_open_limit_and_real_clients_still_get_in() {
    let config = CoreConfig::default();
    let (t, recorder) = bound();
    let address = listening(&t);
    // The first TDI_LISTEN arms the listener; its pool is the baseline.
    let (mut endpoint, mut listen) = listen_on(&t, address);
    recorder.forget();
    let baseline = t.kernel.pool_stats().live_bytes;
    // The documented bound: full-sized buffers only up to the buffer pressure mark, then
    // small ones, for at most `half_open_limit` half-open sockets (plus smoltcp's socket and
    // the core's bookkeeping, under 4 KiB each).
    let bound = config.buffer_pressure + config.half_open_limit * (2 * config.small_buffer + 4096);
    let mut sent = 0;
    let mut peak = 0;
    for round in 0..8u16 {
        flood(&t, sent, 600);
        sent += 600;
        // A real client: its handshake completes while the flood goes on, within fewer than
        // `half_open_limit` spoofed SYNs.
        let client = SocketAddrV4::new(PEER, 40_000 + round);
        indicate(
            &t,
            &segment(client, server(), TcpControl::Syn, 1000, None, &[]),
        );
        let ours = syn_ack(&recorder, client);
        flood(&t, sent, 100);
        sent += 100;
        let hello = format!("hello from round {round}");
        indicate(
            &t,
            &segment(
                client,
                server(),
                TcpControl::Psh,
                1001,
                Some(ours.wrapping_add(1)),
                hello.as_bytes(),
            ),
        );
        let status = listen.wait();
        assert_eq!(status.status, NtStatus::SUCCESS, "round {round}");
        assert_eq!(listen.returned_peer(), Some(client));
        let (status, data) = receive(&t, endpoint, 256);
        assert_eq!(status.status, NtStatus::SUCCESS);
        assert_eq!(data, hello.as_bytes());
        t.close(endpoint);
        (endpoint, listen) = listen_on(&t, address);

        let held = half_open(&t);
        assert!(
            held <= config.half_open_limit,
            "{held} half-open connections, limit {}",
            config.half_open_limit
        );
        recorder.forget();
        let used = t.kernel.pool_stats().live_bytes.saturating_sub(baseline);
        peak = peak.max(used);
        assert!(
            used <= bound,
            "round {round}: {used} bytes over the baseline, bound {bound}"
        );
    }
    eprintln!("syn flood: {sent} spoofed SYNs, peak {peak} bytes over the baseline, bound {bound}");

    // A client slower than the flood: more than `half_open_limit` SYNs come between its SYN
    // and its ACK, so its half-open connection was given up and its ACK meets a RST.
    let slow = SocketAddrV4::new(PEER, 41_000);
    indicate(
        &t,
        &segment(slow, server(), TcpControl::Syn, 5000, None, &[]),
    );
    let ours = syn_ack(&recorder, slow);
    flood(&t, sent, config.half_open_limit as u32 + 50);
    indicate(
        &t,
        &segment(
            slow,
            server(),
            TcpControl::None,
            5001,
            Some(ours.wrapping_add(1)),
            &[],
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sent_to(&recorder, slow).iter().any(|&(_, _, rst, _)| rst) {
        assert!(
            Instant::now() < deadline,
            "no RST for the evicted connection"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    close_unused_listener(t, &recorder, address, endpoint, listen);
}

#[test]
fn out_of_order_segments_take_no_memory_beyond_the_receive_window() {
    let (t, recorder) = bound();
    let address = listening(&t);
    let (endpoint, listen) = listen_on(&t, address);
    let client = SocketAddrV4::new(PEER, 40_100);
    let ours = handshake(&t, &recorder, client, server(), 0);
    assert_eq!(listen.wait().status, NtStatus::SUCCESS);
    recorder.forget();
    let baseline = t.kernel.pool_stats().live_bytes;

    // The stream's byte at offset k (sequence number k + 1) is `pattern(k)`, whatever segment
    // carries it.
    let pattern = |k: usize| (k % 251) as u8;
    let stream =
        |offset: usize, len: usize| (offset..offset + len).map(pattern).collect::<Vec<_>>();
    // 20,000 small segments, each past a hole, scattered over the 64 KiB window.
    for n in 0..20_000usize {
        let offset = 100 + (n * 7919) % 60_000;
        let frame = segment(
            client,
            server(),
            TcpControl::Psh,
            1 + offset as u32,
            Some(ours),
            &stream(offset, 10),
        );
        indicate(&t, &frame);
        if n % 1000 == 999 {
            recorder.forget();
        }
    }
    // Then the first bytes, in order: the connection delivers a consistent stream.
    indicate(
        &t,
        &segment(
            client,
            server(),
            TcpControl::Psh,
            1,
            Some(ours),
            &stream(0, 100),
        ),
    );
    let (status, data) = receive(&t, endpoint, 65536);
    assert_eq!(status.status, NtStatus::SUCCESS);
    assert!(data.len() >= 100);
    assert_eq!(data, stream(0, data.len()));
    recorder.forget();
    let used = t.kernel.pool_stats().live_bytes.saturating_sub(baseline);
    eprintln!("out-of-order flood: {used} bytes over the baseline");
    // The out-of-order bytes live in the receive ring the connection already had.
    assert!(used <= 64 * 1024, "{used} bytes over the baseline");

    t.close(address);
    t.close(endpoint);
    recorder.forget();
    t.unload();
}

/// Opens loopback connections until one is refused; returns how many were open, the refusal
/// and the pool they took over the baseline. Closes ten, checks a new one connects, then
/// closes everything.
fn connect_until_refused(t: &Loaded) -> (usize, NtStatus, usize) {
    let listen = local(7400);
    let server_address = t.open_address(listen, 0).expect("server address");
    let baseline = t.kernel.pool_stats().live_bytes;
    // As AFD does: an address file per client socket, on an ephemeral port.
    let connect = |t: &Loaded| {
        let server = t.open_connection().expect("server endpoint");
        assert_eq!(t.associate(server, server_address), NtStatus::SUCCESS);
        let listening = start_listen(t, server);
        let client_address = t.open_address(any(0), 0).expect("client address");
        let client = t.open_connection().expect("client endpoint");
        assert_eq!(t.associate(client, client_address), NtStatus::SUCCESS);
        let status = start_connect(t, client, listen).wait().status;
        (status, server, listening, [client_address, client])
    };
    let mut open = Vec::new();
    let refused = loop {
        let (status, server, listening, client) = connect(t);
        if status != NtStatus::SUCCESS {
            client.into_iter().for_each(|handle| t.close(handle));
            t.close(server);
            assert_eq!(listening.wait().status, NtStatus::CANCELLED);
            break status;
        }
        assert_eq!(listening.wait().status, NtStatus::SUCCESS);
        open.push((server, client));
        assert!(open.len() < 10_000, "no limit reached");
    };
    let used = t.kernel.pool_stats().live_bytes.saturating_sub(baseline);
    let connected = open.len();

    // Closing some makes room for new ones.
    for (server, client) in open.drain(..10) {
        client.into_iter().for_each(|handle| t.close(handle));
        t.close(server);
    }
    let (status, server, listening, client) = connect(t);
    assert_eq!(status, NtStatus::SUCCESS);
    assert_eq!(listening.wait().status, NtStatus::SUCCESS);
    open.push((server, client));
    for (server, client) in open {
        client.into_iter().for_each(|handle| t.close(handle));
        t.close(server);
    }
    t.close(server_address);
    (connected, refused, used)
}

/// Asserts the refusal and the bound: two sockets per loopback connection, each with its
/// smoltcp state and the core's bookkeeping (under 4 KiB) besides its buffers.
fn check_limit(label: &str, limit: usize, (connected, refused, used): (usize, NtStatus, usize)) {
    eprintln!("{label}: {connected} connected, then {refused:?}; {used} bytes over the baseline");
    assert_eq!(refused, NtStatus::INSUFFICIENT_RESOURCES);
    let bound = limit + 2 * connected * 4096;
    assert!(
        used <= bound,
        "{used} bytes over the baseline, bound {bound}"
    );
    // Most of the limit was usable: the connections stopped at it, not at something else.
    assert!(
        used >= limit / 2,
        "{used} bytes over the baseline, limit {limit}"
    );
}

#[test]
fn idle_connections_stop_at_the_socket_memory_limit_and_free_their_room_when_closed() {
    let t = loaded();
    let limit = CoreConfig::for_machine(Some(PHYSICAL_MEMORY_1GIB)).socket_memory_limit;
    check_limit("1 GiB machine", limit, connect_until_refused(&t));
    t.unload();
}

#[test]
fn the_socket_memory_limit_follows_the_machine_s_memory() {
    let physical_memory = 256 << 20;
    let t = Loaded::with_config(Config {
        clock: Clock::Real,
        physical_memory,
        ..Config::default()
    });
    let limit = CoreConfig::for_machine(Some(physical_memory)).socket_memory_limit;
    assert_eq!(limit, 16 << 20);
    check_limit("256 MiB machine", limit, connect_until_refused(&t));
    t.unload();
}
