//! UDP against Linux over a TAP link: Linux clients against the driver's Winsock echo server
//! and the driver against a Linux echo server (every size up to the largest unfragmented
//! datagram, 1472 bytes, checksums verified by both stacks), broadcast both ways, and the ICMP
//! port unreachable the driver answers a datagram for a closed port with, as Linux reports it.

#![feature(tcp_linger)]

mod interop_support;

use interop_support::Namespace;
use interop_support::driver::DriverOnTap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;
use tcpip::host::afd::RequestKind;
use tcpip::host::stats::{icmp_stats, udp_stats};
use tcpip::host::winsock::WsaError;

/// The largest UDP payload a 1500-byte Ethernet MTU carries unfragmented.
const ETHERNET_MAX: usize = 1472;

fn sizes() -> Vec<usize> {
    let mut sizes: Vec<usize> = (0..32).collect();
    sizes.extend((32..ETHERNET_MAX).step_by(61));
    sizes.push(ETHERNET_MAX);
    sizes
}

fn datagram(size: usize, tag: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31) ^ tag)
        .collect()
}

#[test]
fn linux_clients_echo_through_the_driver() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let ws = setup.ws.clone();
    let server = ws.socket_datagram().unwrap();
    ws.bind(server, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7100))
        .unwrap();
    // Four clients: while the server echoes one datagram, the others (at most 3 × 1472 bytes)
    // stay under AFD's 8 KiB store, past which ReactOS's AFD stops receiving for good.
    let clients = 4;
    let expected = clients * sizes().len();
    let echo = {
        let ws = ws.clone();
        setup.kernel.spawn("driver-udp-echo", move || {
            let mut buffer = [0u8; 2048];
            for _ in 0..expected {
                let (n, from) = ws.recvfrom(server, &mut buffer).expect("driver recvfrom");
                ws.sendto(server, &buffer[..n], from)
                    .expect("driver sendto");
            }
        })
    };
    let target = SocketAddrV4::new(namespace.driver_ip(), 7100);
    let echoed: usize = namespace.run(move || {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..clients)
                .map(|c| {
                    scope.spawn(move || {
                        let socket = UdpSocket::bind("0.0.0.0:0").expect("Linux socket");
                        socket
                            .set_read_timeout(Some(Duration::from_secs(5)))
                            .unwrap();
                        let mut buffer = [0u8; 2048];
                        for size in sizes() {
                            let sent = datagram(size, c as u8);
                            socket.send_to(&sent, target).expect("send_to");
                            let (n, from) = socket
                                .recv_from(&mut buffer)
                                .unwrap_or_else(|e| panic!("client {c}: echo of {size}: {e}"));
                            assert_eq!(from, target.into());
                            assert_eq!(&buffer[..n], &sent[..], "size {size}");
                        }
                        sizes().len()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("client")).sum()
        })
    });
    echo.join().expect("echo server");
    assert_eq!(echoed, expected);
    ws.closesocket(server).unwrap();
    let stats = udp_stats(setup.driver()).unwrap();
    assert_eq!(stats.checksum_errors, 0, "{stats:?}");
    drop(ws);
    setup.finish();
}

#[test]
fn the_driver_echoes_through_linux_and_broadcasts_both_ways() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let linux = SocketAddrV4::new(namespace.linux_ip(), 7101);
    // The first datagram must not reach Linux before its socket is bound (Linux would answer
    // port unreachable and the datagram would be lost): the server says when it is.
    let (bound, is_bound) = std::sync::mpsc::channel();
    let server = namespace.spawn("linux-udp-echo", move || {
        let socket = UdpSocket::bind(linux).expect("Linux echo socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        bound.send(()).expect("the test waits");
        let mut buffer = [0u8; 2048];
        for _ in 0..sizes().len() {
            let (n, from) = socket
                .recv_from(&mut buffer)
                .expect("datagram from the driver");
            socket.send_to(&buffer[..n], from).expect("echo");
        }
    });
    is_bound.recv().expect("Linux echo socket bound");
    let ws = &setup.ws;
    let client = ws.socket_datagram().unwrap();
    ws.set_receive_timeout(client, Some(Duration::from_secs(5)))
        .unwrap();
    let mut buffer = [0u8; 2048];
    for size in sizes() {
        let sent = datagram(size, 0x5a);
        assert_eq!(ws.sendto(client, &sent, linux), Ok(size));
        let (n, from) = ws
            .recvfrom(client, &mut buffer)
            .unwrap_or_else(|e| panic!("echo of {size} bytes from Linux: {e:?}"));
        assert_eq!(from, linux);
        assert_eq!(&buffer[..n], &sent[..], "size {size}");
    }
    server.join().expect("Linux echo server");
    // Larger datagrams leave as fragments (tests/interop_icmp.rs); past 65,507 bytes none.
    let too_big = vec![0u8; 65_508];
    assert_eq!(
        ws.sendto(client, &too_big, linux),
        Err(WsaError::WSAENETDOWN),
        "STATUS_INVALID_BUFFER_SIZE (msafd has no WSAEMSGSIZE for it)"
    );

    // Broadcast from the driver (limited) reaches Linux; Linux's subnet broadcast reaches the
    // driver.
    let listener = namespace.run(|| {
        let socket = UdpSocket::bind("0.0.0.0:7102").expect("Linux broadcast listener");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
    });
    ws.set_broadcast(client, true).unwrap();
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, 7102);
    assert_eq!(ws.sendto(client, b"to everyone", broadcast), Ok(11));
    let (n, from) = listener.recv_from(&mut buffer).expect("driver's broadcast");
    assert_eq!(&buffer[..n], b"to everyone");
    assert_eq!(from.ip(), std::net::IpAddr::V4(namespace.driver_ip()));
    let receiver = ws.socket_datagram().unwrap();
    ws.bind(receiver, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7103))
        .unwrap();
    let subnet = namespace.linux_ip().octets();
    let subnet_broadcast =
        SocketAddrV4::new(Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 255), 7103);
    namespace.run(|| {
        let socket = UdpSocket::bind(SocketAddrV4::new(namespace.linux_ip(), 0)).unwrap();
        socket.set_broadcast(true).unwrap();
        socket.send_to(b"hello all", subnet_broadcast).unwrap();
    });
    let (n, _) = ws
        .recvfrom(receiver, &mut buffer)
        .expect("Linux's broadcast");
    assert_eq!(&buffer[..n], b"hello all");
    for s in [client, receiver] {
        ws.closesocket(s).unwrap();
    }
    drop(listener);
    setup.finish();
}

#[test]
fn a_datagram_to_a_closed_driver_port_is_refused() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let target = SocketAddrV4::new(namespace.driver_ip(), 7199);
    let outcome = namespace.run(move || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.connect(target).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        socket.send(b"anyone?").unwrap();
        let mut buffer = [0u8; 16];
        socket.recv(&mut buffer).map_err(|e| e.kind())
    });
    // Linux reports the driver's ICMP port unreachable on the connected socket.
    assert_eq!(outcome, Err(ErrorKind::ConnectionRefused));
    assert_eq!(udp_stats(setup.driver()).unwrap().no_port, 1);
    setup.finish();
}

#[test]
fn a_datagram_to_a_closed_linux_port_comes_back_as_port_unreachable() {
    // Linux answers with an ICMP port unreachable. The driver counts it and keeps receiving on
    // the socket: completing the pending TDI_RECEIVE_DATAGRAM with an error would stop
    // ReactOS's AFD from ever posting another (a connected UDP socket is AFD's own notion:
    // the transport sees no connect), so Windows' WSAECONNRESET on the next recvfrom() is not
    // reproduced; kernel TDI clients get ClientEventErrorEx instead.
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let ws = &setup.ws;
    let socket = ws.socket_datagram().unwrap();
    ws.bind(socket, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7198))
        .unwrap();
    ws.set_receive_timeout(socket, Some(Duration::from_secs(5)))
        .unwrap();
    let before = icmp_stats(setup.driver()).unwrap().unreachables_in;
    let closed = SocketAddrV4::new(namespace.linux_ip(), 7197);
    assert_eq!(ws.sendto(socket, b"anyone?", closed), Ok(7));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while icmp_stats(setup.driver()).unwrap().unreachables_in == before {
        assert!(
            std::time::Instant::now() < deadline,
            "no port unreachable came back"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The socket still hears from Linux.
    let from = namespace.run(|| UdpSocket::bind((namespace.linux_ip(), 7196)).unwrap());
    let to = SocketAddrV4::new(namespace.driver_ip(), 7198);
    namespace.run(|| from.send_to(b"still here", to).unwrap());
    let mut buffer = [0u8; 32];
    let (n, _) = ws
        .recvfrom(socket, &mut buffer)
        .expect("the socket still receives");
    assert_eq!(&buffer[..n], b"still here");
    ws.closesocket(socket).unwrap();
    setup.finish();
}

#[test]
fn a_send_waiting_for_an_unresolved_neighbour_can_be_cancelled_and_is_dropped_in_time() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let ws = setup.ws.clone();
    let socket = ws.socket_datagram().unwrap();
    ws.bind(socket, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7104))
        .unwrap();
    let subnet = namespace.linux_ip().octets();
    let silent = SocketAddrV4::new(Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 99), 9);
    let sending = {
        let ws = ws.clone();
        setup.kernel.spawn("udp-to-nobody", move || {
            ws.sendto(socket, b"hello?", silent)
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let afd_socket = ws.afd_socket(socket).unwrap();
    assert_eq!(
        ws.afd().cancel_in_flight(afd_socket, RequestKind::Send),
        Ok(Some(true)),
        "the send waits in the driver for ARP, cancellably"
    );
    assert_eq!(
        sending.join().expect("sender"),
        Err(WsaError::WSA_OPERATION_ABORTED)
    );
    // Nobody answers ARP: the datagram is dropped (and counted) after 3 s and the next send
    // completes.
    let started = std::time::Instant::now();
    assert_eq!(ws.sendto(socket, b"again?", silent), Ok(6));
    assert!(started.elapsed() < Duration::from_secs(10));
    let stats = udp_stats(setup.driver()).unwrap();
    assert!(stats.send_dropped >= 1, "{stats:?}");
    ws.closesocket(socket).unwrap();
    drop(ws);
    setup.finish();
}

#[test]
fn dhcp_broadcasts_from_an_unconfigured_driver_and_hears_the_broadcast_reply() {
    // The exchange DHCP needs before the interface has an address: DISCOVER from 0.0.0.0:68
    // to 255.255.255.255:67, an OFFER broadcast back to port 68.
    let namespace = Namespace::new();
    let setup = DriverOnTap::start_unconfigured(&namespace);
    let server = namespace.run(|| {
        let socket = UdpSocket::bind("0.0.0.0:67").expect("Linux port 67");
        socket.set_broadcast(true).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
    });
    let ws = &setup.ws;
    let client = ws.socket_datagram().unwrap();
    ws.set_broadcast(client, true).unwrap();
    ws.bind(client, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))
        .unwrap();
    let discover = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    assert_eq!(ws.sendto(client, b"DHCPDISCOVER", discover), Ok(12));
    let mut buffer = [0u8; 64];
    let (n, from) = server
        .recv_from(&mut buffer)
        .expect("the DISCOVER on Linux");
    assert_eq!(&buffer[..n], b"DHCPDISCOVER");
    assert_eq!(from, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into());
    let offer = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);
    // The namespace has no default route: send the limited broadcast out of the TAP.
    namespace.ip(&["route", "add", "255.255.255.255/32", "dev", namespace.tap()]);
    namespace.run(|| {
        server
            .send_to(b"DHCPOFFER", offer)
            .expect("the OFFER from Linux")
    });
    let (n, from) = ws.recvfrom(client, &mut buffer).expect("the OFFER");
    assert_eq!(&buffer[..n], b"DHCPOFFER");
    assert_eq!(from, SocketAddrV4::new(namespace.linux_ip(), 67));
    ws.closesocket(client).unwrap();
    drop(server);
    setup.finish();
}
