//! UDP on an Ethernet link at the frame level: a recording adapter bound under the driver
//! (as NDIS will bind a miniport) shows the frames the driver sends, and frames indicated to it
//! are built here. UDP checksums are generated on the way out and verified on the way in (a
//! corrupted datagram is dropped and counted, never delivered), and a datagram for another
//! host on the link is not taken. A datagram waiting for a neighbour that never answers is
//! dropped after three seconds of ARP requests, and the wait costs the core a few passes.

mod ethernet_support;
mod tdi_support;
mod udp_support;

use ethernet_support::*;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use tcpip::nt::NtStatus;
use udp_support::*;

/// An Ethernet frame from the peer carrying a UDP datagram, with correct checksums.
fn frame(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let ip = Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    let ethernet = EthernetRepr {
        src_addr: EthernetAddress(PEER_MAC),
        dst_addr: EthernetAddress(OUR_MAC),
        ethertype: EthernetProtocol::Ipv4,
    };
    let caps = ChecksumCapabilities::default();
    let mut out = vec![0; ethernet.buffer_len() + ip.buffer_len() + ip.payload_len];
    let mut eth = EthernetFrame::new_unchecked(&mut out[..]);
    ethernet.emit(&mut eth);
    let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut packet, &caps);
    udp.emit(
        &mut UdpPacket::new_unchecked(packet.payload_mut()),
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &caps,
    );
    out
}

#[test]
fn checksums_are_verified_on_the_way_in() {
    let (t, recorder) = bound();
    let stack = tcpip(&t).stack();
    let socket = open_udp(&t, SocketAddrV4::new(OURS, 53), 0).expect("bind 10.13.0.2:53");
    let from = SocketAddrV4::new(PEER, 5353);
    let mut corrupted = frame(from, SocketAddrV4::new(OURS, 53), b"bad query");
    let last = corrupted.len() - 1;
    corrupted[last] ^= 0x01;
    assert!(stack.indicate_receive(1, &corrupted));
    let other_host = frame(
        from,
        SocketAddrV4::new(Ipv4Addr::new(10, 13, 0, 9), 53),
        b"not ours",
    );
    assert!(stack.indicate_receive(1, &other_host));
    assert!(stack.indicate_receive(1, &frame(from, SocketAddrV4::new(OURS, 53), b"good query")));
    let (status, data, sender) = receive(&t.kernel, socket, 64);
    assert_eq!(status.status, NtStatus::SUCCESS);
    assert_eq!((data.as_slice(), sender), (&b"good query"[..], Some(from)));
    let stats = udp_stats(&t);
    assert_eq!(stats.checksum_errors, 1, "{stats:?}");
    assert_eq!(stats.datagrams_in, 1, "only the good datagram: {stats:?}");
    t.close(socket);
    stack.detach_link(1);
    assert!(
        recorder.sent.lock().unwrap().is_empty(),
        "nothing to answer"
    );
    drop(recorder);
    t.unload();
}

#[test]
fn a_broadcast_leaves_with_a_valid_checksum() {
    let (t, recorder) = bound();
    let socket = open_udp(&t, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68), 0).expect("bind");
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    assert_eq!(
        send_to(&t.kernel, socket, to, b"DISCOVER").status,
        NtStatus::SUCCESS
    );
    let sent = std::mem::take(&mut *recorder.sent.lock().unwrap());
    let udp_frames: Vec<_> = sent
        .iter()
        .filter_map(|f| {
            let eth = EthernetFrame::new_checked(&f[..]).ok()?;
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            (ip.next_header() == IpProtocol::Udp).then(|| (eth.dst_addr(), f.clone()))
        })
        .collect();
    assert_eq!(udp_frames.len(), 1, "one datagram on the wire");
    let (dst_mac, f) = &udp_frames[0];
    assert_eq!(*dst_mac, EthernetAddress::BROADCAST);
    let eth = EthernetFrame::new_checked(&f[..]).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr(), ip.dst_addr()), (OURS, Ipv4Addr::BROADCAST));
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_ne!(udp.checksum(), 0, "a checksum was computed");
    assert!(udp.verify_checksum(
        &IpAddress::Ipv4(OURS),
        &IpAddress::Ipv4(Ipv4Addr::BROADCAST)
    ));
    assert_eq!(
        (udp.src_port(), udp.dst_port(), udp.payload()),
        (68, 67, &b"DISCOVER"[..])
    );
    t.close(socket);
    tcpip(&t).stack().detach_link(1);
    // The recorded frames were allocated in the driver's DPC: free them before the leak check.
    drop((udp_frames, sent, recorder));
    t.unload();
}

#[test]
fn a_datagram_for_a_silent_neighbour_is_dropped_after_its_arp_requests_at_little_cost() {
    let (t, recorder) = bound_virtual();
    let socket = open_udp(&t, SocketAddrV4::new(OURS, 7000), 0).expect("bind");
    let silent = SocketAddrV4::new(Ipv4Addr::new(10, 13, 0, 99), 9);
    let stack = tcpip(&t).stack();
    stack.reset_pass_stats();
    let send = start_send(&t.kernel, socket, silent, b"anyone?");
    // Four seconds in clock ticks of 10 ms: the datagram gives up after three.
    for _ in 0..400 {
        t.kernel.advance(Duration::from_millis(10));
    }
    assert_eq!(send.wait().status, NtStatus::SUCCESS);
    assert_eq!(udp_stats(&t).send_dropped, 1);
    let asked = arp_requests(&recorder)
        .iter()
        .filter(|&&(_, target)| target == *silent.ip())
        .count();
    assert!((3..=4).contains(&asked), "{asked} ARP requests");
    // The ARP reply would run a pass of its own: the waiting datagram needs few more.
    let passes = stack.pass_stats().count;
    assert!(passes <= 40, "{passes} core passes for one datagram's wait");
    t.close(socket);
    recorder.forget();
    t.unload();
}
