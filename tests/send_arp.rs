//! `IOCTL_QUERY_IP_HW_ADDRESS` on `\Device\Ip`, as iphlpapi's `SendARP` sends it (and ReactOS's
//! DHCP client, to find out whether an offered address is already in use): the statuses of
//! ReactOS's `SendARP` API test (taken on Windows Server 2003) for bad buffers, the unspecified
//! address and the host's own address; a neighbour resolved by an ARP request on the wire; the
//! timeout with the requests repeated; an ARP probe from 0.0.0.0 before DHCP has set an
//! address; cancellation. A recording adapter is the wire. Verifier on, leak check at unload.

mod ethernet_support;
mod ip_helper_support;
mod tdi_support;

use ethernet_support::*;
use ip_helper_support::start_buffered_ioctl;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use tcpip::host::Handle;
use tcpip::nt::NtStatus;
use tcpip::nt::types::IOCTL_QUERY_IP_HW_ADDRESS;
use tdi_support::{Loaded, loaded};

fn open_ip(t: &Loaded) -> Handle {
    t.kernel
        .create_file("\\Device\\Ip", None, 0)
        .expect("\\Device\\Ip")
}

/// `SendARP`'s input: the target, then the source.
fn input(target: Ipv4Addr, source: Ipv4Addr) -> Vec<u8> {
    [target.octets(), source.octets()].concat()
}

/// One synchronous request: status, information and the output.
fn query(t: &Loaded, ip: Handle, input: &[u8], room: usize) -> (NtStatus, usize, Vec<u8>) {
    let mut out = vec![0u8; room];
    let (status, information) =
        t.kernel
            .device_io_control(ip, IOCTL_QUERY_IP_HW_ADDRESS, input, &mut out);
    (status, information, out)
}

/// Waits (a few seconds at most) until the driver has sent `n` ARP requests.
fn wait_for_requests(recorder: &Recorder, n: usize) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let start = Instant::now();
    loop {
        let requests = arp_requests(recorder);
        if requests.len() >= n || start.elapsed() > Duration::from_secs(5) {
            return requests;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn bad_buffers_the_unspecified_address_and_our_own_address_as_windows_answers_them() {
    let (t, recorder) = bound();
    let ip = open_ip(&t);
    let zero = input(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED);
    // Less than both addresses, or no output buffer: the buffer size is wrong.
    for (input, room) in [
        (&[][..], 0),
        (&zero[..], 0),
        (&zero[..4], 4),
        (&zero[..4], 6),
    ] {
        let (status, information, _) = query(&t, ip, input, room);
        assert_eq!(
            (status, information),
            (NtStatus::INVALID_BUFFER_SIZE, 0),
            "{input:?} {room}"
        );
    }
    // The unspecified address has no MAC, whatever the room.
    for room in [4, 6, 8] {
        let (status, information, _) = query(&t, ip, &zero, room);
        assert_eq!((status, information), (NtStatus::UNSUCCESSFUL, 0));
    }
    // Our own address: our MAC, if 6 bytes fit; the source address is not looked at.
    for source in [Ipv4Addr::UNSPECIFIED, OURS, Ipv4Addr::new(8, 8, 8, 8)] {
        let (status, information, _) = query(&t, ip, &input(OURS, source), 4);
        assert_eq!((status, information), (NtStatus::INSUFFICIENT_RESOURCES, 0));
        let (status, information, out) = query(&t, ip, &input(OURS, source), 8);
        assert_eq!((status, information), (NtStatus::SUCCESS, 6));
        assert_eq!(out[..6], OUR_MAC);
    }
    // Off the subnet, a broadcast, loopback.
    let (status, ..) = query(&t, ip, &input(Ipv4Addr::new(192, 0, 2, 1), OURS), 6);
    assert_eq!(status, NtStatus::NETWORK_UNREACHABLE);
    for target in [Ipv4Addr::BROADCAST, Ipv4Addr::LOCALHOST] {
        assert_eq!(
            query(&t, ip, &input(target, OURS), 6).0,
            NtStatus::UNSUCCESSFUL
        );
    }
    assert!(
        arp_requests(&recorder).is_empty(),
        "none of these asked the wire"
    );
    t.close(ip);
    tcpip(&t).stack().detach_link(1);
    recorder.forget();
    t.unload();
}

#[test]
fn a_neighbour_is_resolved_by_arp_and_then_known() {
    let (t, recorder) = bound();
    let ip = open_ip(&t);
    let pending = start_buffered_ioctl(
        &t.kernel,
        ip,
        IOCTL_QUERY_IP_HW_ADDRESS,
        input(PEER, OURS),
        6,
    );
    assert_eq!(pending.returned, NtStatus::PENDING);
    assert_eq!(wait_for_requests(&recorder, 1).first(), Some(&(OURS, PEER)));
    // Someone else's answer does not complete it.
    let stack = tcpip(&t).stack();
    assert!(stack.indicate_receive(
        1,
        &arp_reply(Ipv4Addr::new(10, 13, 0, 7), [2, 0, 0, 0, 0, 7], OURS)
    ));
    assert!(stack.indicate_receive(1, &arp_reply(PEER, PEER_MAC, OURS)));
    let done = pending.wait();
    assert_eq!((done.status, done.information), (NtStatus::SUCCESS, 6));
    assert_eq!(pending.buffer()[..6], PEER_MAC);
    // Now in the ARP cache: answered without asking the wire again.
    let asked = arp_requests(&recorder).len();
    let (status, information, out) = query(&t, ip, &input(PEER, OURS), 6);
    assert_eq!(
        (status, information, &out[..]),
        (NtStatus::SUCCESS, 6, &PEER_MAC[..])
    );
    assert_eq!(arp_requests(&recorder).len(), asked);
    t.close(ip);
    stack.detach_link(1);
    recorder.forget();
    t.unload();
}

#[test]
fn a_silent_neighbour_times_out_after_a_second_of_repeated_requests() {
    let (t, recorder) = bound();
    let ip = open_ip(&t);
    let silent = Ipv4Addr::new(10, 13, 0, 99);
    let start = Instant::now();
    let (status, information, _) = query(&t, ip, &input(silent, OURS), 6);
    let waited = start.elapsed();
    assert_eq!((status, information), (NtStatus::UNSUCCESSFUL, 0));
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let requests = arp_requests(&recorder);
    assert!(
        requests.len() >= 3,
        "asked again while waiting: {requests:?}"
    );
    assert!(requests.iter().all(|&r| r == (OURS, silent)));
    // Cancelled while waiting.
    let pending = start_buffered_ioctl(
        &t.kernel,
        ip,
        IOCTL_QUERY_IP_HW_ADDRESS,
        input(silent, OURS),
        6,
    );
    assert_eq!(pending.returned, NtStatus::PENDING);
    t.kernel.cancel_irp(pending.irp);
    assert_eq!(pending.wait().status, NtStatus::CANCELLED);
    t.close(ip);
    tcpip(&t).stack().detach_link(1);
    recorder.forget();
    t.unload();
}

#[test]
fn before_dhcp_sets_an_address_the_request_is_an_arp_probe() {
    let (t, recorder) = bound_with(None);
    let ip = open_ip(&t);
    let offered = Ipv4Addr::new(10, 13, 0, 15);
    let pending = start_buffered_ioctl(
        &t.kernel,
        ip,
        IOCTL_QUERY_IP_HW_ADDRESS,
        input(offered, Ipv4Addr::UNSPECIFIED),
        6,
    );
    assert_eq!(
        wait_for_requests(&recorder, 1).first(),
        Some(&(Ipv4Addr::UNSPECIFIED, offered)),
        "a probe: sender 0.0.0.0"
    );
    // A host that already has the address answers the probe (to 0.0.0.0): it is in use.
    let holder = [2, 0, 0, 0, 0, 0x15];
    assert!(
        tcpip(&t)
            .stack()
            .indicate_receive(1, &arp_reply(offered, holder, Ipv4Addr::UNSPECIFIED))
    );
    let done = pending.wait();
    assert_eq!((done.status, done.information), (NtStatus::SUCCESS, 6));
    assert_eq!(pending.buffer()[..6], holder);
    t.close(ip);
    tcpip(&t).stack().detach_link(1);
    recorder.forget();
    t.unload();
}

#[test]
fn without_a_network_card_the_network_is_unreachable() {
    let t = loaded();
    let ip = open_ip(&t);
    let (status, ..) = query(
        &t,
        ip,
        &input(Ipv4Addr::new(10, 0, 2, 2), Ipv4Addr::UNSPECIFIED),
        6,
    );
    assert_eq!(status, NtStatus::NETWORK_UNREACHABLE);
    t.close(ip);
    t.unload();
}
