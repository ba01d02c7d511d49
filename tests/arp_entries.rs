//! ARP entries set through the IP helper (`arp -s`, `arp -d`: `IOCTL_TCP_SET_INFORMATION_EX`
//! with an `IPNetToMediaEntry` on the AT entity): the entry is in the ARP table iphlpapi reads,
//! with its type, and the stack sends by it without asking the wire; the wire does not change
//! a static entry; delete, bad entries, and the rights check. A recording adapter is the wire.

mod ethernet_support;
mod ip_helper_support;
mod tdi_support;
mod udp_support;

use ethernet_support::*;
use ip_helper_support::{control, provider, query, rows, set};
use smoltcp::wire::{EthernetFrame, EthernetProtocol};
use std::net::{Ipv4Addr, SocketAddrV4};
use tcpip::host::{Handle, as_unprivileged_user};
use tcpip::info::wire::IPNetToMediaEntry;
use tcpip::nt::NtStatus;
use tcpip::nt::types::AT_ENTITY;
use tdi_support::Loaded;
use zerocopy::IntoBytes;

const STATIC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x51];

/// The entry `arp -s ip mac` (type 4) or `arp -d ip` (type 2) sends for interface 1.
fn entry(ip: Ipv4Addr, mac: [u8; 6], kind: u32) -> IPNetToMediaEntry {
    let mut physaddr = [0u8; 8];
    physaddr[..6].copy_from_slice(&mac);
    IPNetToMediaEntry {
        inme_index: 1,
        inme_physaddrlen: 6,
        inme_physaddr: physaddr,
        inme_addr: ip.octets(),
        inme_type: kind,
    }
}

/// The ARP table of interface 1 as `arp -a` reads it: (IP, MAC, type).
fn arp_table(t: &Loaded, control: Handle) -> Vec<(Ipv4Addr, [u8; 6], u32)> {
    let table = query(t, control, provider(AT_ENTITY, 1, 0x101)).unwrap();
    rows::<IPNetToMediaEntry>(&table)
        .iter()
        .map(|e| {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&e.inme_physaddr[..6]);
            (Ipv4Addr::from(e.inme_addr), mac, e.inme_type)
        })
        .collect()
}

/// The frames sent so far: (destination MAC, is an ARP request).
fn sent(recorder: &Recorder) -> Vec<([u8; 6], bool)> {
    let sent = recorder.sent.lock().unwrap();
    sent.iter()
        .filter_map(|f| {
            let eth = EthernetFrame::new_checked(&f[..]).ok()?;
            Some((eth.dst_addr().0, eth.ethertype() == EthernetProtocol::Arp))
        })
        .collect()
}

#[test]
fn a_static_entry_is_listed_used_kept_and_deleted() {
    let (t, recorder) = bound();
    let control = control(&t);
    let id = provider(AT_ENTITY, 1, 0x101);
    let add = entry(PEER, STATIC_MAC, 4);
    assert_eq!(
        as_unprivileged_user(|| set(&t, control, id, add.as_bytes())),
        NtStatus::ACCESS_DENIED
    );
    assert!(
        arp_table(&t, control).is_empty(),
        "the refused set changed nothing"
    );
    assert_eq!(set(&t, control, id, add.as_bytes()), NtStatus::SUCCESS);
    assert_eq!(arp_table(&t, control), [(PEER, STATIC_MAC, 4)]);
    // A datagram to the peer leaves at once for the static MAC: no ARP request.
    let socket = udp_support::open_udp(&t, SocketAddrV4::new(OURS, 5000), 0).unwrap();
    let to = SocketAddrV4::new(PEER, 7);
    assert_eq!(
        udp_support::send_to(&t.kernel, socket, to, b"static").status,
        NtStatus::SUCCESS
    );
    assert_eq!(sent(&recorder), [(STATIC_MAC, false)]);
    // The wire says the peer is elsewhere: the static entry stays (in the table and in use).
    assert!(
        tcpip(&t)
            .stack()
            .indicate_receive(1, &arp_reply(PEER, PEER_MAC, OURS))
    );
    assert_eq!(arp_table(&t, control), [(PEER, STATIC_MAC, 4)]);
    // Deleted: gone from the table; a second delete finds nothing.
    let delete = entry(PEER, [0; 6], 2);
    assert_eq!(set(&t, control, id, delete.as_bytes()), NtStatus::SUCCESS);
    assert!(arp_table(&t, control).is_empty());
    assert_eq!(set(&t, control, id, delete.as_bytes()), NtStatus::NOT_FOUND);
    t.close(socket);
    t.close(control);
    tcpip(&t).stack().detach_link(1);
    recorder.forget();
    t.unload();
}

#[test]
fn a_dynamic_entry_is_listed_as_dynamic_and_bad_entries_are_refused() {
    let (t, recorder) = bound();
    let control = control(&t);
    let id = provider(AT_ENTITY, 1, 0x101);
    let neighbour = Ipv4Addr::new(10, 13, 0, 8);
    let dynamic = entry(neighbour, [2, 0, 0, 0, 0, 8], 3);
    assert_eq!(set(&t, control, id, dynamic.as_bytes()), NtStatus::SUCCESS);
    assert_eq!(arp_table(&t, control), [(neighbour, [2, 0, 0, 0, 0, 8], 3)]);
    let bad = [
        // Off the interface's subnet, the interface's own address, a broadcast address.
        entry(Ipv4Addr::new(192, 0, 2, 1), STATIC_MAC, 4),
        entry(OURS, STATIC_MAC, 4),
        entry(Ipv4Addr::BROADCAST, STATIC_MAC, 4),
        // A multicast or empty MAC, an unknown type, a short physical address.
        entry(PEER, [0x01, 0, 0x5e, 0, 0, 1], 4),
        entry(PEER, [0; 6], 4),
        entry(PEER, STATIC_MAC, 7),
        IPNetToMediaEntry {
            inme_physaddrlen: 4,
            ..entry(PEER, STATIC_MAC, 4)
        },
    ];
    for bad in bad {
        assert_eq!(
            set(&t, control, id, bad.as_bytes()),
            NtStatus::INVALID_PARAMETER,
            "{bad:?}"
        );
    }
    // Short input; an AT entity no interface has.
    assert_eq!(
        set(&t, control, id, &dynamic.as_bytes()[..20]),
        NtStatus::INVALID_PARAMETER
    );
    assert_eq!(
        set(
            &t,
            control,
            provider(AT_ENTITY, 0, 0x101),
            dynamic.as_bytes()
        ),
        NtStatus::INVALID_PARAMETER
    );
    assert_eq!(arp_table(&t, control).len(), 1, "nothing else changed");
    t.close(control);
    tcpip(&t).stack().detach_link(1);
    recorder.forget();
    t.unload();
}

#[test]
fn an_entry_set_on_a_second_adapter_is_that_interface_s_own() {
    let (t, first) = bound();
    let second = bind_second(&t);
    let control = control(&t);
    let theirs = Ipv4Addr::new(10, 14, 0, 2);
    let neighbour = Ipv4Addr::new(10, 14, 0, 9);
    set_address(&t, 2, theirs);
    let add = IPNetToMediaEntry {
        inme_index: 2,
        ..entry(neighbour, STATIC_MAC, 4)
    };
    assert_eq!(
        set(&t, control, provider(AT_ENTITY, 1, 0x101), add.as_bytes()),
        NtStatus::INVALID_PARAMETER,
        "off interface 1's subnet"
    );
    assert_eq!(
        set(&t, control, provider(AT_ENTITY, 2, 0x101), add.as_bytes()),
        NtStatus::SUCCESS
    );
    assert!(arp_table(&t, control).is_empty(), "interface 1 has none");
    let table = query(&t, control, provider(AT_ENTITY, 2, 0x101)).unwrap();
    let rows: Vec<_> = rows::<IPNetToMediaEntry>(&table)
        .iter()
        .map(|e| (e.inme_index, Ipv4Addr::from(e.inme_addr), e.inme_type))
        .collect();
    assert_eq!(rows, [(2, neighbour, 4)]);
    // A datagram from a wildcard socket to the neighbour leaves by the second adapter, from
    // that interface's address, to the static MAC; the first adapter sees nothing.
    let socket =
        udp_support::open_udp(&t, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5000), 0).unwrap();
    assert_eq!(
        udp_support::send_to(
            &t.kernel,
            socket,
            SocketAddrV4::new(neighbour, 7),
            b"second"
        )
        .status,
        NtStatus::SUCCESS
    );
    assert_eq!(sent(&second), [(STATIC_MAC, false)]);
    assert!(sent(&first).is_empty());
    let source = {
        let frames = second.sent.lock().unwrap();
        let eth = EthernetFrame::new_checked(&frames[0][..]).unwrap();
        smoltcp::wire::Ipv4Packet::new_checked(eth.payload())
            .unwrap()
            .src_addr()
    };
    assert_eq!(source, theirs);
    t.close(socket);
    t.close(control);
    tcpip(&t).stack().detach_link(2);
    tcpip(&t).stack().detach_link(1);
    first.forget();
    second.forget();
    t.unload();
}
