//! Initial sequence numbers on the Ethernet link follow RFC 6528: a new connection of the
//! same 4-tuple starts where a 4 µs clock has moved since the last one, while another
//! 4-tuple's number is unrelated. (The arithmetic of the seed that makes smoltcp draw them is
//! unit-tested against smoltcp itself in `core::isn`.)

mod ethernet_support;
mod tdi_support;

use ethernet_support::*;
use smoltcp::wire::TcpControl;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};
use tcpip::nt::NtStatus;
use tdi_support::*;

/// Clock ticks (4 µs) allowed between the core's clock and the test's around an open.
const SLACK: u32 = 10_000;

/// Whether `later` is `earlier` moved on by the ticks of `elapsed`, within [`SLACK`].
fn follows_clock(earlier: u32, later: u32, elapsed: Duration) -> bool {
    let ticks = (elapsed.as_micros() / 4) as u32;
    let moved = later.wrapping_sub(earlier);
    moved.abs_diff(ticks) <= SLACK
}

/// Waits up to 10 s for the SYN the driver sends to `to` (after `skip` earlier ones) and
/// returns its sequence number.
fn syn_to(recorder: &Recorder, to: SocketAddrV4, skip: usize) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let syns: Vec<u32> = sent_to(recorder, to)
            .into_iter()
            .filter(|&(syn, ack, _, _)| syn && !ack)
            .map(|(_, _, _, seq)| seq)
            .collect();
        if let Some(&seq) = syns.get(skip) {
            return seq;
        }
        assert!(Instant::now() < deadline, "no SYN to {to}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn passive_opens_on_ethernet_take_rfc_6528_isns() {
    let (t, recorder) = bound();
    indicate(&t, &arp_reply(PEER, PEER_MAC, OURS));
    let server = SocketAddrV4::new(OURS, 80);
    let address = t.open_address(server, 0).expect("server address");
    let endpoint = t.open_connection().expect("endpoint");
    assert_eq!(t.associate(endpoint, address), NtStatus::SUCCESS);
    let listen = start_listen(&t, endpoint);

    let client = SocketAddrV4::new(PEER, 40_000);
    let open = |seq| {
        indicate(
            &t,
            &segment(client, server, TcpControl::Syn, seq, None, &[]),
        );
        let isn = syn_ack(&recorder, client);
        // The peer resets the half-open connection: the 4-tuple is free again.
        indicate(
            &t,
            &segment(client, server, TcpControl::Rst, seq + 1, None, &[]),
        );
        recorder.forget();
        isn
    };
    let started = Instant::now();
    let first = open(1000);
    std::thread::sleep(Duration::from_millis(200));
    let second = open(5000);
    let elapsed = started.elapsed();
    assert!(
        follows_clock(first, second, elapsed),
        "same 4-tuple: {first:#x} then {second:#x} after {elapsed:?}"
    );
    // Another port of the same peer, at about the same time: nothing like the clock's step.
    let other = SocketAddrV4::new(PEER, 40_001);
    indicate(
        &t,
        &segment(other, server, TcpControl::Syn, 9000, None, &[]),
    );
    let unrelated = syn_ack(&recorder, other);
    assert!(
        !follows_clock(second, unrelated, started.elapsed() - elapsed),
        "another 4-tuple: {unrelated:#x} next to {second:#x}"
    );
    indicate(
        &t,
        &segment(other, server, TcpControl::Rst, 9001, None, &[]),
    );
    close_unused_listener(t, &recorder, address, endpoint, listen);
}

#[test]
fn active_opens_on_ethernet_take_rfc_6528_isns() {
    let (t, recorder) = bound();
    indicate(&t, &arp_reply(PEER, PEER_MAC, OURS));
    let remote = SocketAddrV4::new(PEER, 80);
    let local = SocketAddrV4::new(OURS, 5555);
    // Connects from `local` (an explicit port, so the 4-tuple repeats) and gives up at once.
    let open = |skip| {
        let address = t.open_address(local, 0).expect("client address");
        let endpoint = t.open_connection().expect("endpoint");
        assert_eq!(t.associate(endpoint, address), NtStatus::SUCCESS);
        let connecting = start_connect(&t, endpoint, remote);
        let isn = syn_to(&recorder, remote, skip);
        t.close(endpoint);
        t.close(address);
        connecting.wait();
        isn
    };
    let started = Instant::now();
    let first = open(0);
    std::thread::sleep(Duration::from_millis(200));
    let second = open(1);
    let elapsed = started.elapsed();
    assert!(
        follows_clock(first, second, elapsed),
        "same 4-tuple: {first:#x} then {second:#x} after {elapsed:?}"
    );
    recorder.forget();
    t.unload();
}
