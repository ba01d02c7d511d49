//! UDP on `\Device\Udp` at the TDI level, one request at a time, as AFD sends them: address
//! files in UDP's own port space, TDI_SEND_DATAGRAM and TDI_RECEIVE_DATAGRAM over the loopback,
//! the bounded receive queue and its drop counter, truncation, broadcast, cancellation and
//! close, and a clear status for every malformed request. Every test unloads the driver with
//! the leak check.

mod tdi_support;
mod udp_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use tcpip::core::state::CoreConfig;
use tcpip::core::udp::UdpConfig;
use tcpip::host::afd::wire;
use tcpip::host::{Clock, Handle};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tdi_support::{Loaded, any, loaded, local};
use udp_support::*;

/// The largest datagram the loopback carries without fragmentation (its MTU − 28 bytes of
/// IPv4 and UDP headers).
fn loopback_max() -> usize {
    CoreConfig::default().loopback_mtu - 28
}

fn pair(t: &Loaded, a: u16, b: u16) -> (Handle, Handle) {
    (
        open_udp(t, local(a), 0).expect("A"),
        open_udp(t, local(b), 0).expect("B"),
    )
}

#[test]
fn udp_has_its_own_port_space() {
    let t = loaded();
    let tcp = t.open_address(local(7000), 0).expect("tcp 7000");
    let udp = open_udp(&t, local(7000), 0).expect("udp on the port TCP holds");
    assert_eq!(
        open_udp(&t, any(7000), 0),
        Err(NtStatus::ADDRESS_ALREADY_EXISTS)
    );
    let shared_a = open_udp(&t, any(7001), wire::SHARE_READ_WRITE).expect("shared");
    let shared_b = open_udp(&t, any(7001), wire::SHARE_READ_WRITE).expect("SO_REUSEADDR");
    let ephemeral = open_udp(&t, any(0), 0).expect("port 0");
    let port = t.query_address(ephemeral).expect("query").port();
    assert!((49152..=65535).contains(&port), "ephemeral port {port}");
    assert_eq!(t.query_address(udp), Ok(local(7000)));
    assert_eq!(
        open_udp(&t, SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 7002), 0),
        Err(NtStatus::INVALID_ADDRESS),
        "not a local address"
    );
    for handle in [tcp, udp, shared_a, shared_b, ephemeral] {
        t.close(handle);
    }
    // The port is free again once its address file is closed.
    t.close(open_udp(&t, any(7000), 0).expect("rebind"));
    t.unload();
}

#[test]
fn a_datagram_reaches_a_pending_receive_with_its_sender() {
    let t = loaded();
    let (a, b) = pair(&t, 7010, 7011);
    let pending = start_receive(&t.kernel, b, 0x2000);
    let sent = send_to(&t.kernel, a, local(7011), b"hello");
    assert_eq!((sent.status, sent.information), (NtStatus::SUCCESS, 5));
    let (status, data, from) = pending.wait();
    assert_eq!(status.status, NtStatus::SUCCESS);
    assert_eq!(data, b"hello");
    assert_eq!(from, Some(local(7010)));
    let stats = udp_stats(&t);
    assert_eq!((stats.datagrams_out, stats.datagrams_in), (1, 1));
    t.close(a);
    t.close(b);
    t.unload();
}

#[test]
fn every_size_up_to_the_loopback_mtu_round_trips() {
    let t = loaded();
    let (a, b) = pair(&t, 7020, 7021);
    let max = loopback_max();
    let mut sizes: Vec<usize> = (0..64).collect();
    sizes.extend((64..max).step_by(997));
    sizes.extend([1471, 1472, 1473, 8192, max - 1, max]);
    for size in sizes {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        // Sent before the receive is posted: it waits in the queue.
        let sent = send_to(&t.kernel, a, local(7021), &data);
        assert_eq!((sent.status, sent.information), (NtStatus::SUCCESS, size));
        let (status, got, from) = receive(&t.kernel, b, max);
        assert_eq!(status.status, NtStatus::SUCCESS, "size {size}");
        assert_eq!(got, data, "size {size}");
        assert_eq!(from, Some(local(7020)));
    }
    // Past 65,507 bytes no IPv4 datagram carries it (larger sizes: tests/udp_fragments.rs).
    let too_big = vec![0u8; 65_508];
    let sent = send_to(&t.kernel, a, local(7021), &too_big);
    assert_eq!(sent.status, NtStatus::INVALID_BUFFER_SIZE);
    t.close(a);
    t.close(b);
    t.unload();
}

#[test]
fn a_datagram_larger_than_the_receive_is_cut_with_success() {
    // AFD stops re-posting its receive after any status but STATUS_SUCCESS.
    let t = loaded();
    let (a, b) = pair(&t, 7030, 7031);
    let data: Vec<u8> = (0..100u8).collect();
    assert_eq!(
        send_to(&t.kernel, a, local(7031), &data).status,
        NtStatus::SUCCESS
    );
    let (status, got, from) = receive(&t.kernel, b, 10);
    assert_eq!((status.status, status.information), (NtStatus::SUCCESS, 10));
    assert_eq!(got, &data[..10]);
    assert_eq!(from, Some(local(7030)));
    assert_eq!(udp_stats(&t).truncated, 1);
    t.close(a);
    t.close(b);
    t.unload();
}

#[test]
fn the_receive_queue_is_bounded_and_its_drops_are_counted() {
    let t = loaded();
    let (a, b) = pair(&t, 7040, 7041);
    let bound = UdpConfig::default().queue_datagrams;
    let extra = 40;
    for i in 0..bound + extra {
        let sent = send_to(&t.kernel, a, local(7041), &(i as u32).to_le_bytes());
        assert_eq!(sent.status, NtStatus::SUCCESS);
    }
    // The last sends may still be on the loopback: wait until every datagram is accounted for.
    let mut stats = udp_stats(&t);
    for _ in 0..1000 {
        if stats.datagrams_in + stats.queue_full == (bound + extra) as u64 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        stats = udp_stats(&t);
    }
    assert_eq!(stats.datagrams_in, bound as u64);
    assert_eq!(stats.queue_full, extra as u64);
    // The queued ones come out in order; the dropped ones are the newest.
    for i in 0..bound {
        let (status, got, _) = receive(&t.kernel, b, 16);
        assert_eq!(status.status, NtStatus::SUCCESS);
        assert_eq!(got, (i as u32).to_le_bytes());
    }
    let pending = start_receive(&t.kernel, b, 16);
    assert!(!pending.request.is_complete(), "the queue is empty");
    t.kernel.cancel_irp(pending.request.irp);
    assert_eq!(pending.wait().0.status, NtStatus::CANCELLED);
    t.close(a);
    t.close(b);
    t.unload();
}

#[test]
fn a_unicast_datagram_goes_to_the_most_specific_bind_only() {
    let t = loaded();
    let share = wire::SHARE_READ_WRITE;
    let wildcard = open_udp(&t, any(7080), share).expect("0.0.0.0");
    let exact = open_udp(&t, local(7080), share).expect("127.0.0.1");
    let sender = open_udp(&t, local(7081), 0).expect("sender");
    let on_wildcard = start_receive(&t.kernel, wildcard, 64);
    assert_eq!(
        send_to(&t.kernel, sender, local(7080), b"one").status,
        NtStatus::SUCCESS
    );
    let (status, data, _) = receive(&t.kernel, exact, 64);
    assert_eq!((status.status, data), (NtStatus::SUCCESS, b"one".to_vec()));
    // 127.0.0.2 is the host's too, and only the wildcard address file covers it.
    let other = std::net::SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 7080);
    assert_eq!(
        send_to(&t.kernel, sender, other, b"two").status,
        NtStatus::SUCCESS
    );
    let (status, data, _) = on_wildcard.wait();
    assert_eq!((status.status, data), (NtStatus::SUCCESS, b"two".to_vec()));
    for h in [wildcard, exact, sender] {
        t.close(h);
    }
    t.unload();
}

#[test]
fn close_cancels_the_pending_receive() {
    let t = loaded();
    let b = open_udp(&t, local(7050), 0).expect("B");
    let pending = start_receive(&t.kernel, b, 64);
    t.close(b);
    assert_eq!(pending.wait().0.status, NtStatus::CANCELLED);
    t.unload();
}

#[test]
fn broadcast_reaches_every_socket_on_the_port_from_0_0_0_0() {
    let t = loaded();
    let receivers = [
        open_udp(&t, any(68), wire::SHARE_READ_WRITE).expect("first"),
        open_udp(&t, any(68), wire::SHARE_READ_WRITE).expect("second"),
    ];
    let other = open_udp(&t, any(69), 0).expect("other port");
    let sender = open_udp(&t, any(67), 0).expect("sender");
    let pending: Vec<_> = receivers
        .iter()
        .map(|r| start_receive(&t.kernel, *r, 64))
        .collect();
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);
    assert_eq!(
        send_to(&t.kernel, sender, broadcast, b"DHCPDISCOVER").status,
        NtStatus::SUCCESS
    );
    for p in pending {
        let (status, data, from) = p.wait();
        assert_eq!(status.status, NtStatus::SUCCESS);
        assert_eq!(data, b"DHCPDISCOVER");
        // No address is configured: the source is 0.0.0.0, as DHCP needs.
        assert_eq!(from, Some(any(67)));
    }
    let pending = start_receive(&t.kernel, other, 64);
    assert!(!pending.request.is_complete());
    t.close(other);
    assert_eq!(pending.wait().0.status, NtStatus::CANCELLED);
    for h in receivers.into_iter().chain([sender]) {
        t.close(h);
    }
    t.unload();
}

#[test]
fn a_datagram_to_a_closed_port_is_counted() {
    let t = loaded();
    let a = open_udp(&t, local(7060), 0).expect("A");
    assert_eq!(
        send_to(&t.kernel, a, local(7061), b"anyone?").status,
        NtStatus::SUCCESS
    );
    let mut stats = udp_stats(&t);
    for _ in 0..1000 {
        if stats.no_port == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        stats = udp_stats(&t);
    }
    assert_eq!(stats.no_port, 1);
    t.close(a);
    t.unload();
}

#[test]
fn malformed_datagram_requests_get_clear_statuses_and_leak_nothing() {
    let t = Loaded::new(Clock::Real);
    let a = open_udp(&t, local(7070), 0).expect("A");
    let send = |info: *mut TDI_CONNECTION_INFORMATION, data: &[u8], length: u32| {
        send_with_info(&t.kernel, a, info, data, length).status
    };
    // No destination block at all.
    assert_eq!(
        send(std::ptr::null_mut(), b"x", 1),
        NtStatus::INVALID_ADDRESS
    );
    // A TRANSPORT_ADDRESS with a count of 0, and one cut short.
    let mut bad = wire::ConnectionInfo::new(local(7071));
    bad.address[..4].copy_from_slice(&0i32.to_le_bytes());
    assert_eq!(send(bad.as_ptr(), b"x", 1), NtStatus::INVALID_PARAMETER);
    let mut short = wire::ConnectionInfo::new(local(7071));
    short.info.RemoteAddressLength = 10;
    assert_eq!(send(short.as_ptr(), b"x", 1), NtStatus::INVALID_PARAMETER);
    // Port 0 and 0.0.0.0 destinations.
    let mut port0 = wire::ConnectionInfo::new(local(0));
    assert_eq!(send(port0.as_ptr(), b"x", 1), NtStatus::INVALID_ADDRESS);
    let mut unspecified = wire::ConnectionInfo::new(any(7071));
    assert_eq!(
        send(unspecified.as_ptr(), b"x", 1),
        NtStatus::INVALID_ADDRESS
    );
    // A SendLength past the buffer, and more than IPv4 can carry.
    let mut ok = wire::ConnectionInfo::new(local(7071));
    assert_eq!(send(ok.as_ptr(), b"xy", 3), NtStatus::INVALID_PARAMETER);
    let huge = vec![0u8; 65_508];
    assert_eq!(
        send(ok.as_ptr(), &huge, huge.len() as u32),
        NtStatus::INVALID_BUFFER_SIZE
    );
    // Datagram requests on a TCP address file and on a connection file.
    let tcp = t.open_address(local(7072), 0).expect("tcp");
    let on_tcp = send_with_info(&t.kernel, tcp, ok.as_ptr(), b"x", 1).status;
    assert_eq!(on_tcp, NtStatus::INVALID_DEVICE_REQUEST);
    let connection = t.open_connection().expect("connection");
    let on_connection = send_with_info(&t.kernel, connection, ok.as_ptr(), b"x", 1).status;
    assert_eq!(on_connection, NtStatus::INVALID_DEVICE_REQUEST);
    assert_eq!(
        receive(&t.kernel, connection, 8).0.status,
        NtStatus::INVALID_DEVICE_REQUEST
    );
    assert_eq!(
        receive(&t.kernel, tcp, 8).0.status,
        NtStatus::INVALID_DEVICE_REQUEST
    );
    // A UDP address file cannot take a TCP connection.
    assert_eq!(t.associate(connection, a), NtStatus::INVALID_ADDRESS);
    // Connection endpoints exist only on \Device\Tcp; raw IP address files are served
    // (tests/raw_ip.rs), a raw name that is no protocol number is not.
    assert_eq!(
        t.kernel
            .create_file(UDP_DEVICE, Some(&wire::connection_file_ea()), 0)
            .err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        t.kernel
            .create_file(
                "\\Device\\RawIp\\udp",
                Some(&wire::address_file_ea(any(0))),
                0
            )
            .err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    for device in ["\\Device\\RawIp\\1", "\\Device\\Ip"] {
        let control = t
            .kernel
            .create_file(device, None, 0)
            .expect("control channel");
        t.close(control);
    }
    assert_eq!(udp_stats(&t).datagrams_out, 0, "nothing was sent");
    for h in [a, tcp, connection] {
        t.close(h);
    }
    t.unload();
}
