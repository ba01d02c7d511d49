//! The IP helper's view (`IOCTL_TCP_QUERY_INFORMATION_EX`/`SET_INFORMATION_EX` on a control
//! channel, as iphlpapi and wshtcpip send them), checked against traffic the tests generate.

mod tdi_support;
mod udp_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use tcpip::host::{Handle, as_unprivileged_user};
use tcpip::info::wire::*;
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tcpip::tdi::{QueryInformationEx, SetInformationEx};
use tdi_support::*;
use zerocopy::{FromBytes, IntoBytes};

fn object(entity: u32, instance: u32, class: u32, kind: u32, id: u32) -> TDIObjectID {
    TDIObjectID {
        toi_entity: TDIEntityID {
            tei_entity: entity,
            tei_instance: instance,
        },
        toi_class: class,
        toi_type: kind,
        toi_id: id,
    }
}

/// A provider-type protocol query, the form of every statistics and table query.
fn provider(entity: u32, instance: u32, id: u32) -> TDIObjectID {
    object(
        entity,
        instance,
        INFO_CLASS_PROTOCOL,
        INFO_TYPE_PROVIDER,
        id,
    )
}

/// Queries like tdilib: a zero-length probe for the size, then the fetch, which must agree.
fn query_with_context(
    t: &Loaded,
    control: Handle,
    id: TDIObjectID,
    context: [u8; 16],
) -> Result<Vec<u8>, NtStatus> {
    let mut input = vec![0; QueryInformationEx::LEN];
    QueryInformationEx { id, context }.emit(&mut input).unwrap();
    let (status, needed) =
        t.kernel
            .device_io_control(control, IOCTL_TCP_QUERY_INFORMATION_EX, &input, &mut []);
    if status != NtStatus::SUCCESS {
        return Err(status);
    }
    let mut out = vec![0u8; needed];
    let (status, written) =
        t.kernel
            .device_io_control(control, IOCTL_TCP_QUERY_INFORMATION_EX, &input, &mut out);
    assert_eq!(
        (status, written),
        (NtStatus::SUCCESS, needed),
        "probe and fetch agree"
    );
    Ok(out)
}

fn query(t: &Loaded, control: Handle, id: TDIObjectID) -> Result<Vec<u8>, NtStatus> {
    query_with_context(t, control, id, [0; 16])
}

fn rows<T: FromBytes + zerocopy::Immutable + zerocopy::KnownLayout + Copy>(bytes: &[u8]) -> Vec<T> {
    <[T]>::ref_from_bytes(bytes).expect("whole rows").to_vec()
}

fn set(t: &Loaded, control: Handle, id: TDIObjectID, value: &[u8]) -> NtStatus {
    let request = SetInformationEx { id, buffer: value };
    let mut input = vec![0; request.buffer_len()];
    request.emit(&mut input).unwrap();
    t.kernel
        .device_io_control(control, IOCTL_TCP_SET_INFORMATION_EX, &input, &mut [])
        .0
}

fn control(t: &Loaded) -> Handle {
    t.kernel
        .create_file("\\Device\\Tcp", None, 0)
        .expect("control channel")
}

/// Gives interface 1 10.11.12.2/24.
fn configure(t: &Loaded, control: Handle) {
    let mut input = 1u32.to_le_bytes().to_vec();
    input.extend_from_slice(&[10, 11, 12, 2, 255, 255, 255, 0]);
    let mut output = [0u8; 12];
    let (status, _) =
        t.kernel
            .device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut output);
    assert_eq!(status, NtStatus::SUCCESS);
}

fn entities(t: &Loaded, control: Handle) -> Vec<(u32, u32)> {
    let list = query(
        t,
        control,
        object(
            GENERIC_ENTITY,
            0,
            INFO_CLASS_GENERIC,
            INFO_TYPE_PROVIDER,
            ENTITY_LIST_ID,
        ),
    )
    .unwrap();
    rows::<TDIEntityID>(&list)
        .iter()
        .map(|e| (e.tei_entity, e.tei_instance))
        .collect()
}

fn tcp_table(t: &Loaded, control: Handle) -> Vec<(u32, SocketAddrV4, SocketAddrV4)> {
    let table = query(t, control, provider(CO_TL_ENTITY, 0, 0x101)).unwrap();
    let port = |p: [u8; 4]| u16::from_be_bytes([p[0], p[1]]);
    let mut rows: Vec<_> = rows::<TCPConnTableEntry>(&table)
        .iter()
        .map(|r| {
            (
                r.tct_state,
                SocketAddrV4::new(Ipv4Addr::from(r.tct_localaddr), port(r.tct_localport)),
                SocketAddrV4::new(Ipv4Addr::from(r.tct_remoteaddr), port(r.tct_remoteport)),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn tcp_stats(t: &Loaded, control: Handle) -> TCPStats {
    TCPStats::read_from_bytes(&query(t, control, provider(CO_TL_ENTITY, 0, 1)).unwrap()).unwrap()
}

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
    // ARP entries cannot be set into smoltcp's cache, but only after the rights check.
    let arp = IPNetToMediaEntry {
        inme_index: 1,
        inme_physaddrlen: 6,
        inme_addr: [10, 11, 12, 1],
        inme_type: 4,
        ..IPNetToMediaEntry::default()
    };
    let arp_id = provider(AT_ENTITY, 1, 0x101);
    assert_eq!(
        as_unprivileged_user(|| set(&t, control, arp_id, arp.as_bytes())),
        NtStatus::ACCESS_DENIED
    );
    assert_eq!(
        set(&t, control, arp_id, arp.as_bytes()),
        NtStatus::NOT_SUPPORTED
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
    t.close(address);
    assert_eq!(
        option(INFO_TYPE_CONNECTION, TCP_SOCKET_NODELAY, &[1]),
        NtStatus::INVALID_PARAMETER,
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

/// One `IcmpSendEcho` as ReactOS's iphlpapi sends it: an `ICMP_ECHO_REQUEST` with 32 bytes of
/// data to `to`, and room for one reply and its data. Returns the status and the reply bytes.
fn ping(t: &Loaded, ip: Handle, to: Ipv4Addr, timeout_ms: u32) -> (NtStatus, usize, Vec<u8>) {
    use tcpip::tdi::echo::{ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST};
    let data: Vec<u8> = (0..32u8).map(|i| b'a' + i % 23).collect();
    let request = ICMP_ECHO_REQUEST {
        Address: to.octets(),
        Timeout: timeout_ms,
        DataOffset: 20,
        DataSize: 32,
        OptionsOffset: 20,
        ..ICMP_ECHO_REQUEST::default()
    };
    let mut input = request.as_bytes().to_vec();
    input.extend_from_slice(&data);
    let mut out = vec![0u8; size_of::<ICMP_ECHO_REPLY>() + 32 + 8];
    let (status, len) = t
        .kernel
        .device_io_control(ip, IOCTL_ICMP_ECHO_REQUEST, &input, &mut out);
    (status, len, out)
}

#[test]
fn ping_gets_its_echo_back_over_loopback_or_times_out() {
    use tcpip::tdi::echo::{ICMP_ECHO_REPLY, IP_REQ_TIMED_OUT};
    let t = loaded();
    let ip = t.kernel.create_file("\\Device\\Ip", None, 0).unwrap();
    for _ in 0..3 {
        let (status, len, out) = ping(&t, ip, Ipv4Addr::LOCALHOST, 4000);
        assert_eq!((status, len), (NtStatus::SUCCESS, out.len()));
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
    // Off-link with no link bound: no route.
    configure(&t, ip);
    let (status, _, _) = ping(&t, ip, Ipv4Addr::new(10, 11, 12, 1), 300);
    assert_eq!(status, NtStatus::NETWORK_UNREACHABLE);
    // A reply buffer too small for one reply is refused.
    let mut small = [0u8; 8];
    let (status, _) = t
        .kernel
        .device_io_control(ip, IOCTL_ICMP_ECHO_REQUEST, &[0; 20], &mut small);
    assert_eq!(status, NtStatus::INVALID_PARAMETER);
    t.close(ip);
    t.unload();
}

#[test]
fn the_first_ping_after_a_long_idle_spell_gets_its_reply() {
    use tcpip::host::Clock;
    use tcpip::tdi::echo::ICMP_ECHO_REPLY;
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
