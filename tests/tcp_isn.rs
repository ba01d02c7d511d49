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
const SLACK: u32 = 2_500;

/// When an ISN was drawn: between `before` (the request or segment that makes the driver
/// draw it was about to be sent) and `after` (its SYN was seen).
#[derive(Clone, Copy)]
struct Drawn {
    isn: u32,
    before: Instant,
    after: Instant,
}

/// Whether `later.isn` is `earlier.isn` moved on by the 4 µs ticks that can have passed
/// between the two draws (at least `later.before - earlier.after`, at most
/// `later.after - earlier.before`), within [`SLACK`].
fn follows_clock(earlier: Drawn, later: Drawn) -> bool {
    let ticks = |d: Duration| (d.as_micros() / 4) as u32;
    let least = ticks(later.before.saturating_duration_since(earlier.after));
    let most = ticks(later.after.duration_since(earlier.before));
    let moved = later.isn.wrapping_sub(earlier.isn);
    moved.wrapping_add(SLACK) >= least && moved <= most.wrapping_add(SLACK)
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
        let before = Instant::now();
        indicate(
            &t,
            &segment(client, server, TcpControl::Syn, seq, None, &[]),
        );
        let isn = syn_ack(&recorder, client);
        let drawn = Drawn {
            isn,
            before,
            after: Instant::now(),
        };
        // The peer resets the half-open connection: the 4-tuple is free again.
        indicate(
            &t,
            &segment(client, server, TcpControl::Rst, seq + 1, None, &[]),
        );
        recorder.forget();
        drawn
    };
    let first = open(1000);
    std::thread::sleep(Duration::from_millis(200));
    let second = open(5000);
    assert!(
        follows_clock(first, second),
        "same 4-tuple: {:#x} then {:#x}",
        first.isn,
        second.isn
    );
    // Another port of the same peer, at about the same time: nothing like the clock's step.
    let other = SocketAddrV4::new(PEER, 40_001);
    let before = Instant::now();
    indicate(
        &t,
        &segment(other, server, TcpControl::Syn, 9000, None, &[]),
    );
    let unrelated = Drawn {
        isn: syn_ack(&recorder, other),
        before,
        after: Instant::now(),
    };
    assert!(
        !follows_clock(second, unrelated),
        "another 4-tuple: {:#x} next to {:#x}",
        unrelated.isn,
        second.isn
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
        let before = Instant::now();
        let connecting = start_connect(&t, endpoint, remote);
        let isn = syn_to(&recorder, remote, skip);
        let drawn = Drawn {
            isn,
            before,
            after: Instant::now(),
        };
        t.close(endpoint);
        t.close(address);
        connecting.wait();
        drawn
    };
    let first = open(0);
    std::thread::sleep(Duration::from_millis(200));
    let second = open(1);
    assert!(
        follows_clock(first, second),
        "same 4-tuple: {:#x} then {:#x}",
        first.isn,
        second.isn
    );
    recorder.forget();
    t.unload();
}
