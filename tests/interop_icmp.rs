//! ICMP and fragments against Linux over a TAP link: Linux's `ping` answered by the driver,
//! `IOCTL_ICMP_ECHO_REQUEST` from the driver answered by Linux (and timing out for a silent
//! host on the link), and 8 KiB UDP datagrams each way, fragmented on the wire: from Linux
//! (reassembled by the driver), and from the driver to a Linux echo server (fragmented by the
//! driver, reassembled by Linux, echoed back in fragments).

#![feature(tcp_linger)]

mod interop_support;

use interop_support::Namespace;
use interop_support::driver::DriverOnTap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use tcpip::core::icmp::reply::REPLY_LEN;
use tcpip::host::stats::{fragment_stats, icmp_stats};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use zerocopy::{FromBytes, IntoBytes};

/// One echo request through `\Device\Ip` as iphlpapi sends it: the status and the reply.
fn echo(
    setup: &DriverOnTap,
    dst: Ipv4Addr,
    data: &[u8],
    timeout_ms: u32,
) -> (NtStatus, ICMP_ECHO_REPLY, Vec<u8>) {
    let ip = setup
        .kernel
        .create_file("\\Device\\Ip", None, 0)
        .expect("\\Device\\Ip");
    let request = ICMP_ECHO_REQUEST {
        Address: dst.octets(),
        Timeout: timeout_ms,
        DataOffset: 20,
        DataSize: data.len() as u16,
        OptionsOffset: 20,
        ..ICMP_ECHO_REQUEST::default()
    };
    let mut input = request.as_bytes().to_vec();
    input.extend_from_slice(data);
    let mut output = vec![0u8; REPLY_LEN + data.len() + 8];
    let (status, _) =
        setup
            .kernel
            .device_io_control(ip, IOCTL_ICMP_ECHO_REQUEST, &input, &mut output);
    assert_eq!(setup.kernel.close(ip), NtStatus::SUCCESS);
    let reply = ICMP_ECHO_REPLY::read_from_prefix(&output).expect("reply").0;
    (status, reply, output)
}

#[test]
fn ping_both_ways() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    // Linux pings the driver (smoltcp answers).
    let output = namespace.ping(namespace.driver_ip(), 3).join().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "ping failed: {text}");
    assert!(text.contains("3 received"), "{text}");
    // The driver pings Linux, as ping.exe does through iphlpapi.
    let data: Vec<u8> = (0..32u8).collect();
    let (status, reply, bytes) = echo(&setup, namespace.linux_ip(), &data, 2000);
    assert_eq!(status, NtStatus::SUCCESS);
    assert_eq!(reply.Status, IP_SUCCESS);
    assert_eq!(Ipv4Addr::from(reply.Address), namespace.linux_ip());
    assert_eq!(usize::from(reply.DataSize), data.len());
    assert_eq!(&bytes[REPLY_LEN..REPLY_LEN + data.len()], &data[..]);
    assert_eq!(reply.Options.Ttl, 64, "Linux's TTL");
    // A host on the link that never answers ARP: the request times out.
    let silent = Ipv4Addr::from(u32::from(namespace.linux_ip()) + 100);
    let (status, reply, _) = echo(&setup, silent, b"anyone", 500);
    assert_eq!(
        (status, reply.Status, reply.Reserved),
        (NtStatus::TIMEOUT, IP_REQ_TIMED_OUT, 0)
    );
    let counters = icmp_stats(setup.driver()).unwrap();
    assert!(
        counters.echo_requests_in >= 3 && counters.echo_replies_in >= 1,
        "{counters:?}"
    );
    setup.finish();
}

#[test]
fn pings_past_the_mtu_both_ways() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    // Linux's 4000-byte request arrives in fragments; the driver's reply leaves in fragments,
    // and Linux reassembles it.
    let output = namespace
        .ping_sized(namespace.driver_ip(), 3, 4000)
        .join()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "ping -s 4000 failed: {text}");
    assert!(
        text.contains("3 received") && text.contains("4008 bytes from"),
        "{text}"
    );
    // The driver's 6000-byte request leaves in fragments; Linux's reply is reassembled.
    let data: Vec<u8> = (0..6000u32).map(|i| (i * 7) as u8).collect();
    let (status, reply, bytes) = echo(&setup, namespace.linux_ip(), &data, 2000);
    assert_eq!((status, reply.Status), (NtStatus::SUCCESS, IP_SUCCESS));
    assert_eq!(usize::from(reply.DataSize), data.len());
    assert_eq!(&bytes[REPLY_LEN..REPLY_LEN + data.len()], &data[..]);
    let (counters, held) = fragment_stats(setup.driver()).unwrap();
    assert!(
        counters.fragmented >= 4 && counters.reassembled >= 4,
        "{counters:?}"
    );
    assert_eq!(held, 0);
    setup.finish();
}

#[test]
fn eight_kib_datagrams_from_linux_are_reassembled() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let ws = setup.ws.clone();
    let server = ws.socket_datagram().unwrap();
    ws.bind(server, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7300))
        .unwrap();
    let target = SocketAddrV4::new(namespace.driver_ip(), 7300);
    let count = 20;
    // Linux sends while the driver's recvfrom waits: ReactOS's AFD stops posting receives once
    // it stores 8 KiB of datagrams nobody read, so a reader that falls behind goes deaf.
    let sender = namespace.spawn("linux-udp-8k", move || {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("Linux socket");
        for i in 0..count {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let sent: Vec<u8> = (0..8000u32).map(|b| (b as u8) ^ (i as u8)).collect();
            socket.send_to(&sent, target).expect("send_to");
        }
    });
    let mut buffer = vec![0u8; 8192];
    for i in 0..count {
        let (n, _) = ws.recvfrom(server, &mut buffer).expect("driver recvfrom");
        let expected: Vec<u8> = (0..8000u32).map(|b| (b as u8) ^ (i as u8)).collect();
        assert_eq!(&buffer[..n], &expected[..], "datagram {i}");
    }
    sender.join().unwrap();
    let (counters, held) = fragment_stats(setup.driver()).unwrap();
    assert_eq!(counters.reassembled, count as u64, "{counters:?}");
    assert_eq!(held, 0);
    ws.closesocket(server).unwrap();
    drop(ws);
    setup.finish();
}

#[test]
fn eight_kib_datagrams_from_the_driver_are_fragmented() {
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let linux = SocketAddrV4::new(namespace.linux_ip(), 7301);
    let sizes = [1473usize, 3000, 8000, 8192, 20_000, 65_507];
    // The server says when it is bound: a datagram sent before that would be refused.
    let (bound, ready) = std::sync::mpsc::channel();
    let server = namespace.spawn("linux-udp-echo-8k", move || {
        let socket = UdpSocket::bind(linux).expect("Linux echo socket");
        bound.send(()).expect("the test waits");
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut buffer = vec![0u8; 65_536];
        for _ in 0..sizes.len() {
            let (n, from) = socket
                .recv_from(&mut buffer)
                .expect("datagram from the driver");
            // Echo once the driver's recvfrom() waits: ReactOS's AFD stops receiving for good
            // when it has to store 8 KiB that nobody asked for yet (the AFD model does too).
            std::thread::sleep(std::time::Duration::from_millis(300));
            socket.send_to(&buffer[..n], from).expect("echo");
        }
    });
    ready.recv().expect("the Linux echo server is bound");
    let ws = setup.ws.clone();
    let client = ws.socket_datagram().unwrap();
    ws.set_receive_timeout(client, Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buffer = vec![0u8; 65_536];
    for size in sizes {
        let sent: Vec<u8> = (0..size).map(|i| (i * 11 + size) as u8).collect();
        assert_eq!(ws.sendto(client, &sent, linux), Ok(size));
        // Past 8 KiB the echo exceeds AFD's receive window: what comes back is cut to it.
        let (n, from) = ws.recvfrom(client, &mut buffer).unwrap_or_else(|e| {
            let fragments = fragment_stats(setup.driver());
            let udp = tcpip::host::stats::udp_stats(setup.driver());
            panic!("echo of {size} bytes from Linux: {e:?}; {fragments:?} {udp:?}")
        });
        assert_eq!(from, linux);
        let expected = size.min(n);
        assert_eq!(&buffer[..expected], &sent[..expected], "size {size}");
        assert!(n == size || n == 8192, "size {size}: {n} bytes back");
    }
    server.join().expect("Linux echo server");
    let (counters, _) = fragment_stats(setup.driver()).unwrap();
    assert_eq!(counters.fragmented, sizes.len() as u64, "{counters:?}");
    ws.closesocket(client).unwrap();
    drop(ws);
    setup.finish();
}
