//! A connection whose peer goes silent while data waits for its acknowledgment gives up after
//! `CoreConfig::data_timeout` (its requests then fail with STATUS_LOCAL_DISCONNECT, which
//! msafd turns into WSAECONNABORTED); an idle connection whose peer is silent lives on. A
//! connection its endpoint left behind (an orphan: closing, FIN or RST still to be
//! acknowledged or sent) goes once its peer has been silent for the data timeout, and a RST
//! (an orphan's or a timed-out connection's) waits a few seconds at most for the peer's ARP
//! reply: otherwise a peer that vanished (or never closes) would keep the socket, its buffers
//! and ARP requests for ever. On a virtual clock, with the peer played by hand-built frames.

mod ethernet_support;
mod ip_helper_support;
mod tdi_client_support;
mod tdi_support;

use ethernet_support::*;
use smoltcp::wire::TcpControl;
use std::net::SocketAddrV4;
use std::time::Duration;
use tcpip::core::state::CoreConfig;
use tcpip::host::Handle;
use tcpip::nt::NtStatus;
use tcpip::nt::types::{
    TDI_DISCONNECT_ABORT, TDI_EVENT_CONNECT, TDI_EVENT_DISCONNECT, TDI_EVENT_RECEIVE,
};
use tdi_client_support::Peer;
use tdi_support::*;

const CLIENT_ISN: u32 = 1000;
/// Our listening address, and the peer's end of the connection to it.
const SERVER: SocketAddrV4 = SocketAddrV4::new(OURS, 80);
const CLIENT: SocketAddrV4 = SocketAddrV4::new(PEER, 40_000);

/// An accepted connection from `PEER:40000` to our port 80: (address file, endpoint, our
/// next sequence number).
fn accepted(t: &Loaded, recorder: &Recorder) -> (Handle, Handle, u32) {
    indicate(t, &arp_reply(PEER, PEER_MAC, OURS));
    let address = t.open_address(SERVER, 0).expect("server address");
    let endpoint = t.open_connection().expect("endpoint");
    assert_eq!(t.associate(endpoint, address), NtStatus::SUCCESS);
    let listen = start_listen(t, endpoint);
    let ours = handshake(t, recorder, CLIENT, SERVER, CLIENT_ISN);
    assert_eq!(listen.wait().status, NtStatus::SUCCESS);
    recorder.forget();
    (address, endpoint, ours)
}

/// The peer's next segment on the accepted connection (its sequence number right after its
/// SYN), acknowledging `ack`.
fn from_client(t: &Loaded, control: TcpControl, ack: u32, payload: &[u8]) {
    indicate(
        t,
        &segment(CLIENT, SERVER, control, CLIENT_ISN + 1, Some(ack), payload),
    );
}

/// Whether the driver has reset the connection to the peer.
fn reset_sent(recorder: &Recorder) -> bool {
    sent_to(recorder, CLIENT).iter().any(|&(_, _, rst, _)| rst)
}

/// The TCP table, as netstat reads it: (state, local, remote) per connection.
fn tcp_table(t: &Loaded) -> Vec<(u32, SocketAddrV4, SocketAddrV4)> {
    let control = ip_helper_support::control(t);
    let rows = ip_helper_support::tcp_table(t, control);
    t.close(control);
    rows
}

/// Connections in ESTABLISHED, as netstat shows them.
fn established(t: &Loaded) -> usize {
    const ESTABLISHED: u32 = 5;
    tcp_table(t)
        .iter()
        .filter(|row| row.0 == ESTABLISHED)
        .count()
}

/// The state of the connection to [`CLIENT`] in the TCP table (`MIB_TCP_STATE`), if it is
/// listed.
fn state_of_client(t: &Loaded) -> Option<u32> {
    tcp_table(t)
        .iter()
        .find(|row| row.2 == CLIENT)
        .map(|&(state, _, _)| state)
}

const FIN_WAIT_1: u32 = 6;
const FIN_WAIT_2: u32 = 7;

/// Moves the clock on by `seconds`, a second at a time (the retransmission timers fire in
/// between).
fn wait(t: &Loaded, seconds: u64) {
    for _ in 0..seconds {
        t.kernel.advance(Duration::from_secs(1));
    }
}

#[test]
fn data_to_a_silent_peer_gives_up_after_the_data_timeout() {
    let timeout = CoreConfig::default().data_timeout.secs();
    let (t, recorder) = bound_virtual();
    let (address, endpoint, _) = accepted(&t, &recorder);
    let sent = send(&t, endpoint, b"anyone there?");
    assert_eq!(sent.status, NtStatus::SUCCESS);
    // The peer never acknowledges (nor answers ARP, once its entry has aged out): the data
    // is sent again and again until the timeout.
    wait(&t, timeout - 10);
    let retransmissions = sent_to(&recorder, CLIENT).len();
    assert!(
        retransmissions >= 3,
        "{retransmissions} segments before the timeout"
    );
    assert!(!reset_sent(&recorder), "gave up before the timeout");
    assert_eq!(established(&t), 1, "gave up before the timeout");
    wait(&t, 20);
    assert_eq!(established(&t), 0, "still trying after the timeout");
    // The RST that ends it waits a few seconds for the peer's ARP reply, not for ever, although
    // the endpoint stays open.
    let asked = arp_requests(&recorder).len();
    wait(&t, 30);
    assert_eq!(
        arp_requests(&recorder).len(),
        asked,
        "still asking for the peer of a connection that timed out"
    );
    let (status, data) = receive(&t, endpoint, 64);
    assert_eq!((status.status, data.len()), (NtStatus::LOCAL_DISCONNECT, 0));
    assert_eq!(
        send(&t, endpoint, b"late").status,
        NtStatus::LOCAL_DISCONNECT
    );
    t.close(endpoint);
    t.close(address);
    recorder.forget();
    t.unload();
}

#[test]
fn an_idle_connection_outlives_the_data_timeout_and_its_sent_data_clears_it() {
    let timeout = CoreConfig::default().data_timeout.secs();
    let (t, recorder) = bound_virtual();
    let (address, endpoint, ours) = accepted(&t, &recorder);
    // Data the peer acknowledges, then a long silence with nothing in flight.
    assert_eq!(send(&t, endpoint, b"hello").status, NtStatus::SUCCESS);
    from_client(&t, TcpControl::None, ours.wrapping_add(5), &[]);
    wait(&t, 5 * timeout);
    assert!(!reset_sent(&recorder), "an idle connection was given up");
    // The peer speaks again: the connection is there.
    from_client(&t, TcpControl::Psh, ours.wrapping_add(5), b"still here");
    let (status, data) = receive(&t, endpoint, 64);
    assert_eq!(status.status, NtStatus::SUCCESS);
    assert_eq!(data, b"still here");
    t.close(endpoint);
    t.close(address);
    recorder.forget();
    t.unload();
}

#[test]
fn a_kernel_client_sees_an_abort_when_its_connection_times_out() {
    let timeout = CoreConfig::default().data_timeout.secs();
    let (t, recorder) = bound_virtual();
    indicate(&t, &arp_reply(PEER, PEER_MAC, OURS));
    let peer = Peer::open(&t.kernel, "\\Device\\Tcp", SERVER, 1, false);
    for event in [TDI_EVENT_CONNECT, TDI_EVENT_RECEIVE, TDI_EVENT_DISCONNECT] {
        assert_eq!(peer.register(event, true), NtStatus::SUCCESS);
    }
    handshake(&t, &recorder, CLIENT, SERVER, CLIENT_ISN);
    peer.wait_until(10, |conns| conns[0].accepted.is_some());
    peer.send(0, b"anyone there?");
    wait(&t, timeout + 10);
    peer.wait_until(10, |conns| !conns[0].disconnects.is_empty());
    assert_eq!(
        peer.conns.lock().unwrap()[0].disconnects,
        [TDI_DISCONNECT_ABORT]
    );
    peer.close();
    recorder.forget();
    t.unload();
}

#[test]
fn an_orphan_in_fin_wait_2_whose_peer_never_closes_goes_after_the_data_timeout() {
    let timeout = CoreConfig::default().data_timeout.secs();
    let (t, recorder) = bound_virtual();
    let (address, endpoint, ours) = accepted(&t, &recorder);
    // Nothing unread: closing the endpoint closes the connection gracefully, with a FIN.
    t.close(endpoint);
    // The peer acknowledges the FIN, and its application never closes its side.
    let fin_acked = ours.wrapping_add(1);
    from_client(&t, TcpControl::None, fin_acked, &[]);
    wait(&t, timeout - 10);
    assert_eq!(state_of_client(&t), Some(FIN_WAIT_2), "gave up too soon");
    wait(&t, 20);
    assert_eq!(
        state_of_client(&t),
        None,
        "an orphan outlived its silent peer"
    );
    // The peer's late FIN finds no connection, and is answered with a RST.
    recorder.forget();
    indicate(&t, &arp_reply(PEER, PEER_MAC, OURS));
    from_client(&t, TcpControl::Fin, fin_acked, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !reset_sent(&recorder) {
        assert!(
            std::time::Instant::now() < deadline,
            "no RST for the late FIN"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    t.close(address);
    recorder.forget();
    t.unload();
}

#[test]
fn an_orphan_whose_peer_vanished_stops_asking_for_it() {
    let timeout = CoreConfig::default().data_timeout.secs();
    let (t, recorder) = bound_virtual();
    let (address, endpoint, _) = accepted(&t, &recorder);
    // Data, then a graceful close: the data and the FIN wait for an acknowledgment that never
    // comes, and the peer's ARP entry ages out meanwhile (it answers no ARP request either).
    assert_eq!(
        send(&t, endpoint, b"anyone there?").status,
        NtStatus::SUCCESS
    );
    t.close(endpoint);
    wait(&t, timeout - 10);
    assert_eq!(state_of_client(&t), Some(FIN_WAIT_1), "gave up too soon");
    assert!(
        !arp_requests(&recorder).is_empty(),
        "the ARP entry did not age out"
    );
    wait(&t, 20);
    assert_eq!(
        state_of_client(&t),
        None,
        "an orphan outlived its silent peer"
    );
    let asked = arp_requests(&recorder).len();
    wait(&t, 60);
    assert_eq!(
        arp_requests(&recorder).len(),
        asked,
        "still asking for a peer whose connection was given up"
    );
    t.close(address);
    recorder.forget();
    t.unload();
}

#[test]
fn an_aborted_orphan_gives_up_its_reset_when_the_peer_answers_no_arp_request() {
    let (t, recorder) = bound_virtual();
    let (address, endpoint, ours) = accepted(&t, &recorder);
    // Data nobody reads, then a minute and more of silence: the peer's ARP entry ages out.
    from_client(&t, TcpControl::Psh, ours, b"unread");
    wait(&t, 70);
    let before = arp_requests(&recorder).len();
    // Unread data: closing the endpoint aborts the connection, and its RST needs the peer's
    // hardware address.
    t.close(endpoint);
    wait(&t, 60);
    let asked = arp_requests(&recorder).len() - before;
    assert!(
        (1..=4).contains(&asked),
        "{asked} ARP requests for an aborted connection's RST"
    );
    assert_eq!(
        state_of_client(&t),
        None,
        "the aborted orphan is still listed"
    );
    t.close(address);
    recorder.forget();
    t.unload();
}
