//! Neighbour resolution between the driver and Linux over a TAP link (issue #6): the driver
//! resolves Linux with ARP to connect, Linux resolves the driver to ping it, and the driver
//! follows Linux to a new MAC address once Linux announces it with an ARP request.
#![feature(tcp_linger)]

mod interop_support;

use interop_support::Namespace;
use interop_support::driver::{self, DriverOnTap};
use interop_support::peers;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use tcpip::info::wire::{IFEntry, IPNetToMediaEntry};
use tcpip::nt::types::*;
use zerocopy::FromBytes;

/// The MAC address Linux's side of the TAP moves to.
const NEW_LINUX_MAC: &str = "02:77:77:00:00:01";

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// `ping -c 3` from Linux to the driver; panics with ping's output unless all three echoes
/// came back.
fn ping_driver(namespace: &Namespace) {
    let output = namespace
        .ping(namespace.driver_ip(), 3)
        .join()
        .expect("ping");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("3 received"),
        "ping {}: {text}{}",
        namespace.driver_ip(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `connections` echo round trips from the driver to a Linux echo server at `port`.
fn driver_echoes(namespace: &Namespace, setup: &DriverOnTap, port: u16, connections: usize) {
    let addr = SocketAddr::from((namespace.linux_ip(), port));
    let listener = namespace
        .run(move || TcpListener::bind(addr))
        .expect("Linux listener");
    let server = namespace.spawn("linux-echo-server", move || {
        peers::echo_server(listener, connections)
    });
    let peer = SocketAddrV4::new(namespace.linux_ip(), port);
    for i in 0..connections {
        driver::echo_once(&setup.ws, peer, format!("echo {i} over ARP").as_bytes())
            .unwrap_or_else(|e| panic!("driver echo {i} to {peer}: {e}"));
    }
    server.join().expect("Linux server").expect("Linux echo");
}

/// Linux's MAC on its side of the TAP, from `ip link show`.
fn linux_mac(namespace: &Namespace) -> String {
    let link = namespace.ip(&["link", "show", namespace.tap()]);
    let after = link
        .split("link/ether ")
        .nth(1)
        .expect("link/ether in `ip link`");
    after.split_whitespace().next().expect("MAC").to_owned()
}

/// `ping -n 1` from the driver (iphlpapi's `IcmpSendEcho` on `\\Device\\Ip`): the reply's
/// source and status, and whether the 32 bytes came back.
fn driver_pings(setup: &DriverOnTap, to: Ipv4Addr) -> ([u8; 4], u32, bool) {
    use tcpip::nt::types::icmp::{ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST};
    use zerocopy::IntoBytes;
    let ip = setup.kernel.create_file("\\Device\\Ip", None, 0).unwrap();
    let request = ICMP_ECHO_REQUEST {
        Address: to.octets(),
        Timeout: 4000,
        DataOffset: 20,
        DataSize: 32,
        OptionsOffset: 20,
        ..ICMP_ECHO_REQUEST::default()
    };
    let mut input = request.as_bytes().to_vec();
    input.extend_from_slice(&[0x5A; 32]);
    let mut out = vec![0u8; size_of::<ICMP_ECHO_REPLY>() + 40];
    let (status, _) = setup
        .kernel
        .device_io_control(ip, IOCTL_ICMP_ECHO_REQUEST, &input, &mut out);
    assert_eq!(status, tcpip::nt::NtStatus::SUCCESS);
    setup.kernel.close(ip);
    let (reply, _) = ICMP_ECHO_REPLY::read_from_prefix(&out).unwrap();
    let offset = reply.Data.wrapping_sub(out.as_ptr() as usize);
    let echoed = out.get(offset..offset + 32) == Some(&[0x5A; 32][..]);
    (reply.Address, reply.Status, echoed)
}

/// The driver's ARP table as `arp -a` reads it: (IP, MAC text) rows.
fn arp_table(setup: &DriverOnTap) -> Vec<(Ipv4Addr, String)> {
    let table = setup.query_information(AT_ENTITY, 1, 0x101);
    <[IPNetToMediaEntry]>::ref_from_bytes(&table)
        .expect("rows")
        .iter()
        .map(|row| {
            let mac: [u8; 6] = row.inme_physaddr[..6].try_into().unwrap();
            (Ipv4Addr::from(row.inme_addr), mac_text(mac))
        })
        .collect()
}

#[test]
fn both_sides_resolve_each_other_and_follow_a_mac_change() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let driver_mac = mac_text(namespace.driver_mac());

    // The driver speaks first: it must resolve Linux itself.
    driver_echoes(&namespace, &setup, 7200, 2);
    // `arp -a` on the driver shows what it resolved, and the interface what it carried.
    let old_mac = linux_mac(&namespace);
    assert_eq!(arp_table(&setup), [(namespace.linux_ip(), old_mac.clone())]);
    let entry = setup.query_information(IF_ENTITY, 1, 1);
    let (interface, _) = IFEntry::read_from_prefix(&entry).unwrap();
    assert_eq!(interface.if_physaddr[..6], namespace.driver_mac());
    assert_eq!((interface.if_type, interface.if_operstatus), (6, 5));
    assert!(
        interface.if_inoctets > 0 && interface.if_outucastpkts > 0,
        "{interface:?}"
    );
    // The driver's ping reaches Linux over the link and its echo comes back.
    assert_eq!(
        driver_pings(&setup, namespace.linux_ip()),
        (namespace.linux_ip().octets(), 0, true)
    );
    // Linux learnt the driver's MAC from that exchange, and can ping it.
    ping_driver(&namespace);
    let neighbours = namespace.neighbours();
    let entry = format!("{} lladdr {driver_mac}", namespace.driver_ip());
    assert!(
        neighbours.contains(&entry),
        "Linux's neighbour table has `{entry}`: {neighbours}"
    );

    // Linux moves to a new MAC. Frames the driver still sends to the old one are not for
    // Linux any more (its stack drops them as PACKET_OTHERHOST). Linux forgets its neighbours
    // when its address changes (the flush only makes that explicit), so its next ping starts
    // with an ARP request for the driver from the new MAC: smoltcp learns from requests aimed
    // at its address, and the replies can only reach Linux if it did. (Had the driver spoken
    // first, its entry for Linux would have had to expire first: smoltcp keeps entries for
    // 60 s and ignores gratuitous ARP, whose target is the sender itself.)
    let tap = namespace.tap().to_owned();
    namespace.ip(&["link", "set", &tap, "address", NEW_LINUX_MAC]);
    namespace.ip(&["neigh", "flush", "dev", &tap]);
    ping_driver(&namespace);
    driver_echoes(&namespace, &setup, 7201, 2);
    assert_eq!(
        arp_table(&setup),
        [(namespace.linux_ip(), NEW_LINUX_MAC.to_owned())],
        "the driver's ARP table follows Linux's move"
    );
    let neighbours = namespace.neighbours();
    assert!(
        neighbours.contains(&entry),
        "Linux re-resolved the driver: {neighbours}"
    );
    let stats = setup.tap_stats();
    assert_eq!(stats.transmit_errors, 0, "{stats:?}");
    setup.finish();
}
