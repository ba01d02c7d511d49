//! The IP helper's queries (`IOCTL_TCP_QUERY_INFORMATION_EX` on a control channel, as iphlpapi
//! and tdilib send it): the entity list, the interface, address, TCP and UDP tables and the
//! statistics, checked against traffic the tests generate; short buffers, unknown ids.

mod ip_helper_support;
mod tdi_support;
mod udp_support;

use ip_helper_support::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use tcpip::host::as_unprivileged_user;
use tcpip::info::wire::*;
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tcpip::tdi::QueryInformationEx;
use tdi_support::*;
use zerocopy::FromBytes;

#[test]
fn entity_list_follows_the_configured_interface_and_address_files() {
    let t = loaded();
    let control = control(&t);
    assert_eq!(entities(&t, control).len(), 6, "loopback and the protocols");
    // Only an administrator may give interface 1 an address (or take it away).
    let mut input = 1u32.to_le_bytes().to_vec();
    input.extend_from_slice(&[10, 11, 12, 2, 255, 255, 255, 0]);
    let denied = as_unprivileged_user(|| {
        t.kernel
            .device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut [0; 12])
    });
    assert_eq!(denied, (NtStatus::ACCESS_DENIED, 0));
    assert_eq!(entities(&t, control).len(), 6, "nothing changed");
    configure(&t, control);
    let denied = as_unprivileged_user(|| {
        t.kernel
            .device_io_control(control, IOCTL_DELETE_IP_ADDRESS, &[1, 0], &mut [])
    });
    assert_eq!(denied, (NtStatus::ACCESS_DENIED, 0));
    let address = t.open_address(any(0), 0).unwrap();
    let list = entities(&t, control);
    // Interface 1 is an ARP interface: the protocol entities take its instance, so that
    // ReactOS's iphlpapi (which reads a TL table only where AT_ENTITY of the same instance is
    // AT_ARP) sees them; the address file's entity comes last, where wshtcpip looks.
    assert_eq!(
        list,
        [
            (IF_ENTITY, 0),
            (AT_ENTITY, 0),
            (CL_NL_ENTITY, 0),
            (IF_ENTITY, 1),
            (AT_ENTITY, 1),
            (CL_NL_ENTITY, 1),
            (ER_ENTITY, 1),
            (CO_TL_ENTITY, 1),
            (CL_TL_ENTITY, 1),
            (CO_TL_ENTITY, 0x1000),
        ]
    );
    let kind = |entity, instance| {
        let out = query(
            &t,
            control,
            object(
                entity,
                instance,
                INFO_CLASS_GENERIC,
                INFO_TYPE_PROVIDER,
                ENTITY_TYPE_ID,
            ),
        )
        .unwrap();
        u32::from_le_bytes(out.try_into().unwrap())
    };
    assert_eq!(kind(AT_ENTITY, 1), AT_ARP);
    assert_eq!(kind(CO_TL_ENTITY, 1), CO_TL_TCP);
    assert_eq!(kind(CO_TL_ENTITY, 0x1000), CO_TL_TCP);
    t.close(address);
    assert_eq!(
        entities(&t, control).len(),
        9,
        "the address file's entity is gone"
    );
    // Every IP entity lists every interface's address with its index (ReactOS's iphlpapi
    // reads the first IP entity's table for all interfaces).
    let addr = |instance| {
        rows::<IPAddrEntry>(&query(&t, control, provider(CL_NL_ENTITY, instance, 0x102)).unwrap())
            .iter()
            .map(|e| (e.iae_addr, e.iae_index, e.iae_mask))
            .collect::<Vec<_>>()
    };
    let all = [
        ([127, 0, 0, 1], 0, [255, 0, 0, 0]),
        ([10, 11, 12, 2], 1, [255, 255, 255, 0]),
    ];
    assert_eq!(addr(0), all);
    assert_eq!(addr(1), all);
    let ip =
        IPSNMPInfo::read_from_bytes(&query(&t, control, provider(CL_NL_ENTITY, 1, 1)).unwrap())
            .unwrap();
    assert_eq!(
        (ip.ipsi_numif, ip.ipsi_numaddr, ip.ipsi_numroutes),
        (2, 2, 1)
    );
    t.close(control);
    t.unload();
}

#[test]
fn tcp_table_and_statistics_follow_the_connections_and_their_segments() {
    let t = loaded();
    let control = control(&t);
    let before = tcp_stats(&t, control);
    assert_eq!(
        (
            before.ts_activeopens,
            before.ts_passiveopens,
            before.ts_currestab
        ),
        (0, 0, 0)
    );
    let pair = connected_pair(&t, local(4321));
    let data = vec![7u8; 3000];
    assert_eq!(send(&t, pair.client, &data).status, NtStatus::SUCCESS);
    let mut got = 0;
    while got < data.len() {
        let (status, bytes) = receive(&t, pair.server, 4096);
        assert_eq!(status.status, NtStatus::SUCCESS);
        got += bytes.len();
    }
    let table = tcp_table(&t, control);
    let client_port = t.query_address(pair.client_address).unwrap().port();
    let client = SocketAddrV4::new(Ipv4Addr::LOCALHOST, client_port);
    let nowhere = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    let mut expected = vec![
        (2, local(4321), nowhere),
        (5, client, local(4321)),
        (5, local(4321), client),
    ];
    expected.sort();
    assert_eq!(table, expected, "the listener and both ends, established");
    let stats = tcp_stats(&t, control);
    assert_eq!((stats.ts_activeopens, stats.ts_passiveopens), (1, 1));
    assert_eq!((stats.ts_currestab, stats.ts_numconns), (2, 3));
    // Over loopback every segment sent is received: at least SYN, SYN-ACK, ACK and the data.
    assert_eq!(stats.ts_insegs, stats.ts_outsegs);
    assert!(stats.ts_outsegs >= 4, "{stats:?}");
    // The IP layer and the loopback interface counted the same packets.
    let ip =
        IPSNMPInfo::read_from_bytes(&query(&t, control, provider(CL_NL_ENTITY, 0, 1)).unwrap())
            .unwrap();
    assert_eq!(ip.ipsi_inreceives, ip.ipsi_outrequests);
    assert!(ip.ipsi_outrequests >= stats.ts_outsegs);
    assert_eq!(
        (ip.ipsi_numif, ip.ipsi_numaddr, ip.ipsi_numroutes),
        (1, 1, 1)
    );
    let entry = query(&t, control, provider(IF_ENTITY, 0, 1)).unwrap();
    let (header, name) = IFEntry::read_from_prefix(&entry).unwrap();
    assert_eq!(name, b"Loopback");
    assert_eq!((header.if_type, header.if_descrlen), (24, 8));
    assert_eq!(header.if_inoctets, header.if_outoctets);
    assert!(
        header.if_outoctets as usize >= data.len() + 40 * 4,
        "{header:?}"
    );
    assert_eq!(header.if_outucastpkts, ip.ipsi_outrequests);
    // An abortive close: the peer sees the RST, a reset of an established connection.
    assert_eq!(
        disconnect(&t, pair.client, TDI_DISCONNECT_ABORT).status,
        NtStatus::SUCCESS
    );
    let (status, _) = receive(&t, pair.server, 16);
    assert_ne!(status.status, NtStatus::PENDING);
    let after = tcp_stats(&t, control);
    assert_eq!(after.ts_outrsts, stats.ts_outrsts + 1);
    assert_eq!(after.ts_estabresets, 1);
    close_pair(&t, pair);
    t.close(control);
    t.unload();
}

#[test]
fn refused_connect_is_an_attempt_failure() {
    let t = loaded();
    let control = control(&t);
    let address = t.open_address(any(0), 0).unwrap();
    let connection = t.open_connection().unwrap();
    assert_eq!(t.associate(connection, address), NtStatus::SUCCESS);
    let result = start_connect(&t, connection, local(9)).wait();
    assert_eq!(result.status, NtStatus::REMOTE_NOT_LISTENING);
    let stats = tcp_stats(&t, control);
    assert_eq!((stats.ts_activeopens, stats.ts_attemptfails), (1, 1));
    assert_eq!(stats.ts_outrsts, 1, "the RST that refused the SYN");
    t.close(address);
    t.close(connection);
    t.close(control);
    t.unload();
}

#[test]
fn short_buffers_unknown_ids_and_entities() {
    let t = loaded();
    let control = control(&t);
    let mut input = vec![0; QueryInformationEx::LEN];
    QueryInformationEx {
        id: provider(CO_TL_ENTITY, 0, 1),
        context: [0; 16],
    }
    .emit(&mut input)
    .unwrap();
    // A short buffer: success, nothing copied, the size needed (ReactOS's tdilib relies on it
    // and repeats probe and fetch until they agree; Windows would say BUFFER_OVERFLOW).
    let mut out = [0xAAu8; 59];
    let (status, needed) =
        t.kernel
            .device_io_control(control, IOCTL_TCP_QUERY_INFORMATION_EX, &input, &mut out);
    assert_eq!((status, needed), (NtStatus::SUCCESS, 60));
    assert!(out.iter().all(|&b| b == 0xAA));
    // An oversized buffer gets the answer at its start and Information = its size.
    let mut out = [0xAAu8; 200];
    let (status, written) =
        t.kernel
            .device_io_control(control, IOCTL_TCP_QUERY_INFORMATION_EX, &input, &mut out);
    assert_eq!((status, written), (NtStatus::SUCCESS, 60));
    assert!(out[60..].iter().all(|&b| b == 0xAA));
    for (what, id, expected) in [
        (
            "unknown id",
            provider(CO_TL_ENTITY, 0, 0x77),
            NtStatus::INVALID_DEVICE_REQUEST,
        ),
        (
            "unknown interface",
            provider(IF_ENTITY, 5, 1),
            NtStatus::INVALID_PARAMETER,
        ),
        (
            "address entity not open",
            provider(CO_TL_ENTITY, 0x1003, 1),
            NtStatus::INVALID_PARAMETER,
        ),
        (
            "wrong class",
            object(IF_ENTITY, 0, 0x300, INFO_TYPE_PROVIDER, 1),
            NtStatus::INVALID_DEVICE_REQUEST,
        ),
        (
            "unknown entity kind",
            provider(0x999, 0, 1),
            NtStatus::INVALID_PARAMETER,
        ),
    ] {
        assert_eq!(query(&t, control, id), Err(expected), "{what}");
    }
    // UDP and ICMP answer with their sizes; no UDP yet, no ICMP traffic.
    assert_eq!(
        query(&t, control, provider(CL_TL_ENTITY, 0, 1))
            .unwrap()
            .len(),
        20
    );
    assert_eq!(
        query(&t, control, provider(CL_TL_ENTITY, 0, 0x101)).unwrap(),
        []
    );
    assert_eq!(
        query(&t, control, provider(ER_ENTITY, 0, 1)).unwrap(),
        [0; 104]
    );
    t.close(control);
    t.unload();
}

#[test]
fn interface_info_lists_the_adapters_without_loopback() {
    use tcpip::info::adapters::{ENTRY_LEN, IOCTL_IP_INTERFACE_INFO};
    let t = loaded();
    let ip = t.kernel.create_file("\\Device\\Ip", None, 0).unwrap();
    let mut out = vec![0u8; 4 + ENTRY_LEN];
    let (status, len) = t
        .kernel
        .device_io_control(ip, IOCTL_IP_INTERFACE_INFO, &[], &mut out);
    assert_eq!(
        (status, len, &out[..4]),
        (NtStatus::SUCCESS, 4, &[0u8; 4][..]),
        "loopback only"
    );
    configure(&t, ip);
    let (status, len) = t
        .kernel
        .device_io_control(ip, IOCTL_IP_INTERFACE_INFO, &[], &mut out);
    assert_eq!((status, len), (NtStatus::SUCCESS, 4 + ENTRY_LEN));
    assert_eq!(out[..8], [1, 0, 0, 0, 1, 0, 0, 0], "one adapter, index 1");
    let name: Vec<u16> = out[8..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&c| c != 0)
        .collect();
    assert_eq!(
        String::from_utf16(&name).unwrap(),
        "\\DEVICE\\TCPIP_Ethernet"
    );
    let mut short = vec![0u8; 4 + ENTRY_LEN - 1];
    let (status, len) = t
        .kernel
        .device_io_control(ip, IOCTL_IP_INTERFACE_INFO, &[], &mut short);
    assert_eq!((status, len), (NtStatus::BUFFER_TOO_SMALL, 0));
    t.close(ip);
    t.unload();
}

#[test]
fn udp_listeners_and_counters_follow_the_datagrams() {
    use udp_support::{open_udp, receive, send_to, udp_stats};
    let t = loaded();
    let control = control(&t);
    let a = open_udp(&t, local(5300), 0).unwrap();
    let b = open_udp(&t, any(5301), 0).unwrap();
    // Both UDP address files are listed, as CL_TL entities, after the protocol entities.
    let list = entities(&t, control);
    assert_eq!(
        list[list.len() - 2..],
        [(CL_TL_ENTITY, 0x1000), (CL_TL_ENTITY, 0x1001)]
    );
    let kind = query(
        &t,
        control,
        object(
            CL_TL_ENTITY,
            0x1001,
            INFO_CLASS_GENERIC,
            INFO_TYPE_PROVIDER,
            ENTITY_TYPE_ID,
        ),
    )
    .unwrap();
    assert_eq!(kind, CL_TL_UDP.to_le_bytes());
    for i in 0..3u8 {
        assert_eq!(
            send_to(&t.kernel, a, local(5301), &[i; 10]).status,
            NtStatus::SUCCESS
        );
        let (status, data, _) = receive(&t.kernel, b, 64);
        assert_eq!((status.status, data.len()), (NtStatus::SUCCESS, 10));
    }
    // One to a port nobody has bound.
    assert_eq!(
        send_to(&t.kernel, a, local(5399), b"nobody").status,
        NtStatus::SUCCESS
    );
    let table = rows::<UDPEntry>(&query(&t, control, provider(CL_TL_ENTITY, 0, 0x101)).unwrap());
    let mut listeners: Vec<_> = table
        .iter()
        .map(|r| {
            (
                Ipv4Addr::from(r.ue_localaddr),
                u16::from_be_bytes([r.ue_localport[0], r.ue_localport[1]]),
            )
        })
        .collect();
    listeners.sort();
    assert_eq!(
        listeners,
        [(Ipv4Addr::UNSPECIFIED, 5301), (Ipv4Addr::LOCALHOST, 5300)]
    );
    let stats =
        UDPStats::read_from_bytes(&query(&t, control, provider(CL_TL_ENTITY, 0, 1)).unwrap())
            .unwrap();
    let core = udp_stats(&t);
    assert_eq!(
        (
            stats.us_indatagrams,
            stats.us_outdatagrams,
            stats.us_noports,
            stats.us_numaddrs
        ),
        (3, 4, 1, 2),
        "{core:?}"
    );
    // The datagram to nobody came back as an ICMP port unreachable, over loopback.
    let icmp =
        ICMPSNMPInfo::read_from_bytes(&query(&t, control, provider(ER_ENTITY, 0, 1)).unwrap())
            .unwrap();
    assert_eq!(
        (
            icmp.icsi_outstats.icmps_destunreachs,
            icmp.icsi_instats.icmps_destunreachs
        ),
        (1, 1)
    );
    // setsockopt(IP_TTL) on a UDP socket names its CL_TL entity; the TCP entity of the same
    // number is not that socket.
    let ttl = |entity| {
        let id = object(
            entity,
            0x1001,
            INFO_CLASS_PROTOCOL,
            INFO_TYPE_ADDRESS_OBJECT,
            1,
        );
        as_unprivileged_user(|| set(&t, control, id, &9u32.to_le_bytes()))
    };
    assert_eq!(ttl(CL_TL_ENTITY), NtStatus::SUCCESS);
    assert_eq!(ttl(CO_TL_ENTITY), NtStatus::INVALID_PARAMETER);
    t.close(a);
    t.close(b);
    t.close(control);
    t.unload();
}
