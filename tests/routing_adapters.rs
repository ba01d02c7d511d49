//! Routing between two adapters, recording adapters as the wires: a destination off every
//! subnet goes through the default gateway of the lowest-indexed interface that has one
//! (`route add` names the interface), from that interface's address, and nowhere while no
//! interface has a gateway; a connection that came in by an adapter is answered by it.

mod ethernet_support;
mod ip_helper_support;
mod tdi_support;
mod udp_support;

use ethernet_support::*;
use ip_helper_support::{control, provider, query, rows, set};
use smoltcp::wire::{EthernetFrame, Ipv4Packet, TcpControl};
use std::net::{Ipv4Addr, SocketAddrV4};
use tcpip::info::wire::{IPNetToMediaEntry, IPRouteEntry};
use tcpip::nt::NtStatus;
use tcpip::nt::types::{AT_ENTITY, CL_NL_ENTITY};
use zerocopy::IntoBytes;

/// The default route `route add 0.0.0.0 mask 0.0.0.0 GATEWAY if INDEX` sends.
fn default_route(index: u32, gateway: Ipv4Addr) -> IPRouteEntry {
    IPRouteEntry {
        ire_index: index,
        ire_metric1: 1,
        ire_nexthop: gateway.octets(),
        ire_type: 4,
        ire_proto: 3,
        ..IPRouteEntry::default()
    }
}

/// The static ARP entry `arp -s IP MAC` sends for interface `index`.
fn static_entry(index: u32, ip: Ipv4Addr, mac: [u8; 6]) -> IPNetToMediaEntry {
    let mut physaddr = [0u8; 8];
    physaddr[..6].copy_from_slice(&mac);
    IPNetToMediaEntry {
        inme_index: index,
        inme_physaddrlen: 6,
        inme_physaddr: physaddr,
        inme_addr: ip.octets(),
        inme_type: 4,
    }
}

/// The frames the adapter sent since the last call: (destination MAC, IPv4 source).
fn take_sent(recorder: &Recorder) -> Vec<([u8; 6], Option<Ipv4Addr>)> {
    let frames = std::mem::take(&mut *recorder.sent.lock().unwrap());
    frames
        .iter()
        .filter_map(|f| {
            let eth = EthernetFrame::new_checked(&f[..]).ok()?;
            let source = Ipv4Packet::new_checked(eth.payload())
                .ok()
                .map(|ip| ip.src_addr());
            Some((eth.dst_addr().0, source))
        })
        .collect()
}

#[test]
fn off_subnet_traffic_takes_the_lowest_indexed_interface_with_a_gateway() {
    let (t, first) = bound();
    let second = bind_second(&t);
    let control = control(&t);
    let theirs = Ipv4Addr::new(10, 14, 0, 2);
    set_address(&t, 2, theirs);
    // Each gateway's MAC as a static entry on its interface, so nothing waits for ARP.
    let (gateway1, mac1) = (PEER, [2, 0, 0, 0, 0, 0x61]);
    let (gateway2, mac2) = (Ipv4Addr::new(10, 14, 0, 1), [2, 0, 0, 0, 0, 0x62]);
    for (index, gateway, mac) in [(1, gateway1, mac1), (2, gateway2, mac2)] {
        let entry = static_entry(index, gateway, mac);
        let id = provider(AT_ENTITY, index, 0x101);
        assert_eq!(set(&t, control, id, entry.as_bytes()), NtStatus::SUCCESS);
    }
    let socket =
        udp_support::open_udp(&t, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5000), 0).unwrap();
    let far = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 7);
    let send = || udp_support::send_to(&t.kernel, socket, far, b"far").status;
    assert_eq!(send(), NtStatus::NETWORK_UNREACHABLE, "no gateway anywhere");
    first.forget();
    second.forget();

    // A gateway on interface 2 only: the datagram leaves by the second adapter, from its
    // address, to its gateway.
    let id = provider(CL_NL_ENTITY, 2, 0x101);
    let route = default_route(2, gateway2);
    assert_eq!(set(&t, control, id, route.as_bytes()), NtStatus::SUCCESS);
    let table = query(&t, control, id).unwrap();
    assert!(
        rows::<IPRouteEntry>(&table)
            .iter()
            .any(|r| r.ire_dest == [0; 4] && r.ire_nexthop == gateway2.octets()),
        "interface 2's IP entity lists its default route"
    );
    assert_eq!(send(), NtStatus::SUCCESS);
    assert_eq!(take_sent(&second), [(mac2, Some(theirs))]);
    assert!(take_sent(&first).is_empty());

    // A gateway on interface 1 too: the lowest index wins.
    let id = provider(CL_NL_ENTITY, 1, 0x101);
    let route = default_route(1, gateway1);
    assert_eq!(set(&t, control, id, route.as_bytes()), NtStatus::SUCCESS);
    assert_eq!(send(), NtStatus::SUCCESS);
    assert_eq!(take_sent(&first), [(mac1, Some(OURS))]);
    assert!(take_sent(&second).is_empty());

    // On-link destinations still go by their own interface.
    let neighbour = SocketAddrV4::new(gateway2, 7);
    assert_eq!(
        udp_support::send_to(&t.kernel, socket, neighbour, b"near").status,
        NtStatus::SUCCESS
    );
    assert_eq!(take_sent(&second), [(mac2, Some(theirs))]);
    assert!(take_sent(&first).is_empty());

    // A connection that came in by the second adapter is answered by it, from its address,
    // although the lowest-indexed gateway is the first's.
    let listener = t
        .open_address(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 0)
        .unwrap();
    let endpoint = t.open_connection().unwrap();
    assert_eq!(t.associate(endpoint, listener), NtStatus::SUCCESS);
    let listen = tdi_support::start_listen(&t, endpoint);
    let client = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 40_000);
    let syn = segment(
        client,
        SocketAddrV4::new(theirs, 80),
        TcpControl::Syn,
        1,
        None,
        &[],
    );
    indicate_on(&t, 2, &syn);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let answer = loop {
        let sent = take_sent(&second);
        if !sent.is_empty() {
            break sent;
        }
        assert!(std::time::Instant::now() < deadline, "no SYN-ACK");
        std::thread::yield_now();
    };
    assert_eq!(answer, [(mac2, Some(theirs))]);
    assert!(take_sent(&first).is_empty());

    t.close(listener);
    assert_eq!(listen.wait().status, NtStatus::CANCELLED);
    t.close(endpoint);
    t.close(socket);
    t.close(control);
    tcpip(&t).stack().detach_link(2);
    tcpip(&t).stack().detach_link(1);
    first.forget();
    second.forget();
    t.unload();
}
