//! The IP helper's set requests and the IP device: routes and ARP entries (administrators
//! only), socket options by entity, `TDI_QUERY_INFORMATION` on control channels, and
//! `IOCTL_ICMP_ECHO_REQUEST` (ping).

mod ip_helper_support;
mod tdi_support;
mod udp_support;

use ip_helper_support::*;
use std::net::Ipv4Addr;
use tcpip::host::{Handle, as_unprivileged_user};
use tcpip::info::wire::*;
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tdi_support::*;
use zerocopy::{FromBytes, IntoBytes};

fn route(dest: [u8; 4], mask: [u8; 4], gateway: [u8; 4], kind: u32) -> IPRouteEntry {
    IPRouteEntry {
        ire_dest: dest,
        ire_index: 1,
        ire_metric1: 5,
        ire_nexthop: gateway,
        ire_type: kind,
        ire_proto: 3,
        ire_mask: mask,
        ..IPRouteEntry::default()
    }
}

/// A route as (destination, mask, next hop, type).
type RouteRow = ([u8; 4], [u8; 4], [u8; 4], u32);

fn routes(t: &Loaded, control: Handle, instance: u32) -> Vec<RouteRow> {
    rows::<IPRouteEntry>(&query(t, control, provider(CL_NL_ENTITY, instance, 0x101)).unwrap())
        .iter()
        .map(|r| (r.ire_dest, r.ire_mask, r.ire_nexthop, r.ire_type))
        .collect()
}

#[test]
fn routes_are_added_and_deleted_by_administrators_only() {
    let t = loaded();
    let control = control(&t);
    configure(&t, control);
    let subnet = ([10, 11, 12, 0], [255, 255, 255, 0], [10, 11, 12, 2], 3);
    assert_eq!(routes(&t, control, 1), [subnet]);
    let add_default = route([0; 4], [0; 4], [10, 11, 12, 1], 4);
    let add_net = route([192, 168, 7, 0], [255, 255, 255, 0], [10, 11, 12, 9], 4);
    let id = provider(CL_NL_ENTITY, 1, 0x101);
    // An unprivileged user-mode caller changes nothing.
    let denied = as_unprivileged_user(|| set(&t, control, id, add_default.as_bytes()));
    assert_eq!(denied, NtStatus::ACCESS_DENIED);
    assert_eq!(routes(&t, control, 1), [subnet]);
    // An administrator does, and the IP entity's route count follows.
    assert_eq!(
        set(&t, control, id, add_default.as_bytes()),
        NtStatus::SUCCESS
    );
    assert_eq!(set(&t, control, id, add_net.as_bytes()), NtStatus::SUCCESS);
    assert_eq!(
        routes(&t, control, 1),
        [
            subnet,
            ([0; 4], [0; 4], [10, 11, 12, 1], 4),
            ([192, 168, 7, 0], [255, 255, 255, 0], [10, 11, 12, 9], 4)
        ]
    );
    let ip =
        IPSNMPInfo::read_from_bytes(&query(&t, control, provider(CL_NL_ENTITY, 1, 1)).unwrap())
            .unwrap();
    assert_eq!(ip.ipsi_numroutes, 3);
    // Delete is ire_type 2, with the mask 255.255.255.255 as ReactOS's iphlpapi sends it
    // whatever the route's; the unprivileged caller cannot delete either.
    let delete_net = route([192, 168, 7, 0], [255; 4], [10, 11, 12, 9], 2);
    assert_eq!(
        as_unprivileged_user(|| set(&t, control, id, delete_net.as_bytes())),
        NtStatus::ACCESS_DENIED
    );
    assert_eq!(
        set(&t, control, id, delete_net.as_bytes()),
        NtStatus::SUCCESS
    );
    assert_eq!(
        set(&t, control, id, delete_net.as_bytes()),
        NtStatus::INVALID_PARAMETER,
        "already gone"
    );
    assert_eq!(routes(&t, control, 1).len(), 2);
    let delete_default = route([0; 4], [255; 4], [10, 11, 12, 1], 2);
    assert_eq!(
        set(&t, control, id, delete_default.as_bytes()),
        NtStatus::SUCCESS
    );
    assert_eq!(
        routes(&t, control, 1),
        [subnet],
        "back to the subnet route alone"
    );
    // Routes through loopback are refused; a short entry and a holey mask are invalid.
    assert_eq!(
        set(
            &t,
            control,
            provider(CL_NL_ENTITY, 0, 0x101),
            add_net.as_bytes()
        ),
        NtStatus::INVALID_PARAMETER
    );
    assert_eq!(
        set(&t, control, id, &add_net.as_bytes()[..51]),
        NtStatus::INVALID_PARAMETER
    );
    let holey = route([192, 168, 0, 0], [255, 0, 255, 0], [10, 11, 12, 9], 4);
    assert_eq!(
        set(&t, control, id, holey.as_bytes()),
        NtStatus::INVALID_PARAMETER
    );
    // A gateway must be one station: smoltcp asserts that a next hop is unicast, so a route
    // through 0.0.0.0, a broadcast or a multicast group would panic (a bugcheck) at the first
    // packet sent through it (found by the `control` fuzz target: a static route through
    // 0.0.0.0, then a ping).
    for gateway in [[0; 4], [255; 4], [224, 0, 0, 1]] {
        for add in [
            route([192, 168, 8, 0], [255, 255, 255, 0], gateway, 4),
            route([0; 4], [0; 4], gateway, 4),
        ] {
            assert_eq!(
                set(&t, control, id, add.as_bytes()),
                NtStatus::INVALID_PARAMETER,
                "a route through {gateway:?}"
            );
        }
    }
    assert_eq!(routes(&t, control, 1), [subnet], "nothing added");
    // ARP entries need a network card under the interface, but only after the rights check.
    let arp = IPNetToMediaEntry {
        inme_index: 1,
        inme_physaddrlen: 6,
        inme_physaddr: [2, 0, 0, 0, 0, 1, 0, 0],
        inme_addr: [10, 11, 12, 1],
        inme_type: 4,
    };
    let arp_id = provider(AT_ENTITY, 1, 0x101);
    assert_eq!(
        as_unprivileged_user(|| set(&t, control, arp_id, arp.as_bytes())),
        NtStatus::ACCESS_DENIED
    );
    assert_eq!(
        set(&t, control, arp_id, arp.as_bytes()),
        NtStatus::DEVICE_DOES_NOT_EXIST
    );
    t.close(control);
    t.unload();
}

#[test]
fn socket_options_reach_the_address_file_they_name() {
    let t = loaded();
    let control = control(&t);
    let address = t.open_address(any(0), 0).unwrap();
    let entity = *entities(&t, control).last().unwrap();
    assert_eq!(
        entity,
        (CO_TL_ENTITY, 0x1000),
        "wshtcpip's pick: the last TL entity"
    );
    let option = |kind, id, value: &[u8]| {
        as_unprivileged_user(|| {
            set(
                &t,
                control,
                object(CO_TL_ENTITY, entity.1, INFO_CLASS_PROTOCOL, kind, id),
                value,
            )
        })
    };
    // Any user may set options on a socket.
    assert_eq!(
        option(INFO_TYPE_CONNECTION, TCP_SOCKET_NODELAY, &[1]),
        NtStatus::SUCCESS
    );
    for id in [1u32, 2, 9, 11, 12] {
        assert_eq!(
            option(INFO_TYPE_ADDRESS_OBJECT, id, &64u32.to_le_bytes()),
            NtStatus::SUCCESS,
            "option {id}"
        );
    }
    assert_eq!(
        option(INFO_TYPE_ADDRESS_OBJECT, 1, &0u32.to_le_bytes()),
        NtStatus::INVALID_PARAMETER,
        "TTL 0"
    );
    assert_eq!(
        option(INFO_TYPE_ADDRESS_OBJECT, 1, &[]),
        NtStatus::INVALID_PARAMETER,
        "no value"
    );
    assert_eq!(
        option(INFO_TYPE_ADDRESS_OBJECT, 77, &1u32.to_le_bytes()),
        NtStatus::INVALID_DEVICE_REQUEST
    );
    // An entity that names no open address file succeeds without effect: wshtcpip sends
    // TCP_NODELAY for accepted sockets with an entity no bind gave them (contract §5.2), and a
    // failure would be setsockopt's WSAEINVAL.
    t.close(address);
    assert_eq!(
        option(INFO_TYPE_CONNECTION, TCP_SOCKET_NODELAY, &[1]),
        NtStatus::SUCCESS,
        "closed"
    );
    t.close(control);
    t.unload();
}

#[test]
fn control_channels_describe_the_transport_as_windows_does() {
    let t = loaded();
    for device in ["\\Device\\Tcp", "\\Device\\Udp", "\\Device\\RawIp"] {
        let control = t.kernel.create_file(device, None, 0).unwrap();
        let mut out = [0u8; 64];
        let result = t.request(
            control,
            TDI_QUERY_INFORMATION,
            tcpip::host::afd::wire::query_information(TDI_QUERY_PROVIDER_INFO),
            Some(&mut out),
        );
        assert_eq!(
            (result.status, result.information),
            (NtStatus::SUCCESS, 40),
            "{device}"
        );
        let (info, _) = TDI_PROVIDER_INFO::read_from_prefix(&out).unwrap();
        // Windows Server 2003's figures, as ReactOS's kmtest tcpip/tdi.c records them.
        assert_eq!(
            (
                info.Version,
                info.MaxSendSize,
                info.MaxDatagramSize,
                info.ServiceFlags
            ),
            (0x0100, u32::MAX, 65507, 0x007B_89AF),
            "{device}"
        );
        assert_eq!(
            (info.MinimumLookaheadData, info.MaximumLookaheadData),
            (1, 65535)
        );
        t.close(control);
    }
    let ip = t.kernel.create_file("\\Device\\Ip", None, 0).unwrap();
    let mut out = [0u8; 64];
    let result = t.request(
        ip,
        TDI_QUERY_INFORMATION,
        tcpip::host::afd::wire::query_information(TDI_QUERY_PROVIDER_INFO),
        Some(&mut out),
    );
    assert_eq!(
        result.status,
        NtStatus::NOT_IMPLEMENTED,
        "\\Device\\Ip has no transport"
    );
    // Statistics: the open connections and the segments, on a control channel of any device.
    let pair = connected_pair(&t, local(4400));
    let mut stats = [0u8; 200];
    let result = t.request(
        ip,
        TDI_QUERY_INFORMATION,
        tcpip::host::afd::wire::query_information(TDI_QUERY_PROVIDER_STATISTICS),
        Some(&mut stats),
    );
    assert_eq!(
        (result.status, result.information),
        (NtStatus::SUCCESS, 200)
    );
    let (stats, _) = TDI_PROVIDER_STATISTICS::read_from_prefix(&stats).unwrap();
    assert_eq!((stats.Version, stats.OpenConnections), (0x0100, 2));
    assert!(stats.PacketsSent >= 3 && stats.PacketsSent == stats.PacketsReceived);
    let mut short = [0u8; 199];
    let result = t.request(
        ip,
        TDI_QUERY_INFORMATION,
        tcpip::host::afd::wire::query_information(TDI_QUERY_PROVIDER_STATISTICS),
        Some(&mut short),
    );
    assert_eq!(result.status, NtStatus::BUFFER_TOO_SMALL);
    close_pair(&t, pair);
    t.close(ip);
    t.unload();
}

#[test]
fn ping_gets_its_echo_back_over_loopback_or_times_out() {
    use tcpip::nt::types::icmp::{ICMP_ECHO_REPLY, IP_REQ_TIMED_OUT};
    let t = loaded();
    let ip = t.kernel.create_file("\\Device\\Ip", None, 0).unwrap();
    for _ in 0..3 {
        let (status, len, out) = ping(&t, ip, Ipv4Addr::LOCALHOST, 4000);
        // Information: the reply and its data (not the room left after them).
        assert_eq!(
            (status, len),
            (NtStatus::SUCCESS, size_of::<ICMP_ECHO_REPLY>() + 32)
        );
        let (reply, _) = ICMP_ECHO_REPLY::read_from_prefix(&out).unwrap();
        assert_eq!(
            (reply.Address, reply.Status, reply.Reserved, reply.DataSize),
            ([127, 0, 0, 1], 0, 1, 32),
            "one reply from 127.0.0.1"
        );
        assert_eq!(reply.Options.Ttl, 64);
        // The data pointer is the caller's: where the echoed bytes are in its buffer.
        let offset = reply.Data - out.as_ptr() as usize;
        let echoed: Vec<u8> = (0..32u8).map(|i| b'a' + i % 23).collect();
        assert_eq!(out[offset..offset + 32], echoed[..]);
    }
    let icmp = query(&t, ip, provider(ER_ENTITY, 0, 1)).unwrap();
    let icmp = ICMPSNMPInfo::read_from_bytes(&icmp).unwrap();
    // Each echo crossed the loopback both ways: sent and received once each, as was the reply.
    assert_eq!(
        (
            icmp.icsi_outstats.icmps_echos,
            icmp.icsi_outstats.icmps_echoreps
        ),
        (3, 3)
    );
    assert_eq!(
        (
            icmp.icsi_instats.icmps_echos,
            icmp.icsi_instats.icmps_echoreps
        ),
        (3, 3)
    );
    // Nobody holds 127.0.0.2: no reply, and the request times out as Windows reports it.
    let (status, len, out) = ping(&t, ip, Ipv4Addr::new(127, 0, 0, 2), 300);
    assert_eq!(
        (status, len),
        (NtStatus::TIMEOUT, size_of::<ICMP_ECHO_REPLY>())
    );
    let (reply, _) = ICMP_ECHO_REPLY::read_from_prefix(&out).unwrap();
    assert_eq!((reply.Status, reply.Reserved), (IP_REQ_TIMED_OUT, 0));
    // (Unreachable destinations and malformed buffers: tests/icmp_echo.rs.)
    t.close(ip);
    t.unload();
}

#[test]
fn the_first_ping_after_a_long_idle_spell_gets_its_reply() {
    use tcpip::host::Clock;
    use tcpip::nt::types::icmp::ICMP_ECHO_REPLY;
    // Requests are applied with the time of the core's previous pass: after a minute with no
    // traffic, that time is a minute old and must not count against the ping's timeout.
    let t = Loaded::new(Clock::Virtual);
    let ip = t.kernel.create_file("\\Device\\Ip", None, 0).unwrap();
    t.kernel.advance(std::time::Duration::from_secs(60));
    let (status, _, out) = ping(&t, ip, Ipv4Addr::LOCALHOST, 1000);
    let (reply, _) = ICMP_ECHO_REPLY::read_from_prefix(&out).unwrap();
    assert_eq!(
        (status, reply.Status, reply.RoundTripTime),
        (NtStatus::SUCCESS, 0, 0)
    );
    t.close(ip);
    t.unload();
}
