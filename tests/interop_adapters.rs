//! Two adapters at once against Linux: the namespace's TAP (10.77.N.0/24, interface 1) and a
//! second TAP on another subnet (10.78.N.0/24, interface 2), both bound through the NDIS
//! model, each with its own address. Linux pings both addresses and echoes TCP through both,
//! the driver reaches a Linux server and sends UDP on each subnet from that subnet's address,
//! the IP helper lists both interfaces, and unbinding the second adapter under traffic resets
//! its connections while the first keeps working.

#![feature(tcp_linger)]

mod interop_support;

use interop_support::driver::{DriverOnTap, echo_once, echo_server};
use interop_support::{Namespace, peers};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tcpip::host::binding::TapBinding;
use tcpip::info::wire::{IFEntry, IPAddrEntry, IPRouteEntry};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use zerocopy::FromBytes;

/// A Linux echo server on `ip:port` for one connection; the thread returns the peer's address
/// as Linux saw it.
fn linux_echo(namespace: &Namespace, ip: Ipv4Addr, port: u16) -> JoinHandle<SocketAddr> {
    let listener = namespace
        .run(|| TcpListener::bind((ip, port)))
        .expect("Linux listener");
    std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().expect("accept");
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).expect("read");
            if n == 0 {
                break;
            }
            stream.write_all(&buffer[..n]).expect("write");
        }
        peer
    })
}

#[test]
fn two_adapters_carry_traffic_on_their_own_subnets_and_one_goes_alone() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let (tap, second) = namespace.second_tap();
    let binding = TapBinding::bind(setup.driver(), Arc::new(tap)).expect("bind the second TAP");
    assert_eq!(
        binding.interface(),
        Some(2),
        "the second adapter is interface 2"
    );
    assert_eq!(
        setup.set_ip_address(2, second.driver_ip()),
        NtStatus::SUCCESS
    );
    assert_eq!(
        setup.set_ip_address(7, Ipv4Addr::new(10, 79, 0, 2)),
        NtStatus::DEVICE_DOES_NOT_EXIST,
        "no interface 7"
    );
    let first = (namespace.driver_ip(), namespace.linux_ip());
    let other = (second.driver_ip(), second.linux_ip());

    // Linux reaches both addresses, each over its own TAP.
    namespace.assert_pings(first.0, 3);
    namespace.assert_pings(other.0, 3);

    // TCP: Linux clients to both addresses of one listener on 0.0.0.0, at once.
    let server = echo_server(&setup, 7, 2);
    namespace.run(|| {
        std::thread::scope(|scope| {
            for ip in [first.0, other.0] {
                scope.spawn(move || {
                    let message: Vec<u8> = (0..100_000u32).map(|i| (i * 13) as u8).collect();
                    peers::echo_once(SocketAddr::from((ip, 7)), &message).expect("echo");
                });
            }
        })
    });
    assert_eq!(server.join().expect("server"), 200_000);

    // The driver as a client on each subnet: the connection leaves from that subnet's
    // address.
    for (driver, linux) in [first, other] {
        let peer = linux_echo(&namespace, linux, 9007);
        echo_once(
            &setup.ws,
            SocketAddrV4::new(linux, 9007),
            b"from the driver",
        )
        .expect("echo");
        assert_eq!(peer.join().expect("Linux echo").ip(), driver);
    }

    // UDP from one wildcard socket to both subnets: each datagram leaves from its subnet's
    // address.
    let ws = setup.ws.clone();
    let udp = ws.socket_datagram().expect("socket");
    ws.bind(udp, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5300))
        .expect("bind");
    for (driver, linux) in [first, other] {
        let receiver = namespace
            .run(|| UdpSocket::bind((linux, 5301)))
            .expect("Linux UDP");
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        ws.sendto(udp, b"datagram", SocketAddrV4::new(linux, 5301))
            .expect("sendto");
        let mut buffer = [0u8; 64];
        let (n, from) = receiver.recv_from(&mut buffer).expect("the datagram");
        assert_eq!(&buffer[..n], b"datagram");
        assert_eq!(from, SocketAddr::from((driver, 5300)));
    }
    ws.closesocket(udp).expect("close");

    // The IP helper lists both interfaces with their addresses, MACs and subnet routes.
    let addresses = setup.query_information(CL_NL_ENTITY, 1, 0x102);
    let addresses: Vec<_> = <[IPAddrEntry]>::ref_from_bytes(&addresses)
        .unwrap()
        .iter()
        .map(|a| (Ipv4Addr::from(a.iae_addr), a.iae_index))
        .collect();
    assert_eq!(
        addresses,
        [(Ipv4Addr::LOCALHOST, 0), (first.0, 1), (other.0, 2)]
    );
    let (entry, _) = IFEntry::read_from_prefix(&setup.query_information(IF_ENTITY, 2, 1)).unwrap();
    assert_eq!(entry.if_physaddr[..6], second.driver_mac());
    // Each IP entity answers its own interface's routes, as iphlpapi reads them.
    for (index, subnet) in [(1, first.0), (2, other.0)] {
        let routes = setup.query_information(CL_NL_ENTITY, index, 0x101);
        let routes = <[IPRouteEntry]>::ref_from_bytes(&routes).unwrap();
        let [a, b, c, _] = subnet.octets();
        assert!(routes.iter().all(|r| r.ire_index == index), "{routes:?}");
        assert!(
            routes
                .iter()
                .any(|r| r.ire_dest == [a, b, c, 0] && r.ire_mask == [255, 255, 255, 0]),
            "{routes:?}"
        );
    }

    // A connection through the second adapter, then the adapter goes: the connection is
    // reset for the driver's side, and the first adapter keeps working.
    let server = ws.socket().expect("socket");
    ws.bind(server, SocketAddrV4::new(other.0, 8000))
        .expect("bind");
    ws.listen(server, 4).expect("listen");
    let refused = namespace.run(|| std::net::TcpStream::connect((first.0, 8000)));
    assert_eq!(
        refused.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "a listener on the second adapter's address does not listen on the first's"
    );
    let client = namespace
        .run(|| std::net::TcpStream::connect((other.0, 8000)))
        .expect("Linux connects");
    let (accepted, _) = ws.accept(server).expect("accept");
    let reader = {
        let ws = ws.clone();
        setup.kernel.spawn("driver-reader", move || {
            let mut buffer = [0u8; 256];
            ws.recv(accepted, &mut buffer)
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    binding
        .unbind()
        .expect("the second TAP's reader ended cleanly");
    let outcome = reader.join().expect("reader");
    assert!(
        outcome.is_err(),
        "the receive on the gone interface fails: {outcome:?}"
    );
    ws.closesocket(accepted).expect("close");
    ws.closesocket(server).expect("close");
    drop(client);
    let addresses = setup.query_information(CL_NL_ENTITY, 1, 0x102);
    let addresses: Vec<_> = <[IPAddrEntry]>::ref_from_bytes(&addresses)
        .unwrap()
        .iter()
        .map(|a| a.iae_index)
        .collect();
    assert_eq!(addresses, [0, 1], "interface 2 went with its adapter");
    namespace.assert_pings(first.0, 3);
    let peer = linux_echo(&namespace, first.1, 9008);
    echo_once(&setup.ws, SocketAddrV4::new(first.1, 9008), b"still here").expect("echo");
    assert_eq!(peer.join().expect("Linux echo").ip(), first.0);
    drop(ws);
    setup.finish();
}
