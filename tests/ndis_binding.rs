//! The NDIS protocol under the host model's NDIS, verifier on: binding at registration and on
//! arrival, the IP configuration from the registry, both receive paths (packets, lookahead
//! with `NdisTransferData`, pended or not), pended sends, media disconnect, two adapters,
//! unbinding with traffic in flight, allocation failure at each step of binding, and a leak
//! check at every unload.

mod ndis_support;

use ndis_support::*;
use tcpip::host::{FaultInjection, Indication, MiniportOptions};
use tcpip::nt::NtStatus;
use tcpip::nt::types::{
    IOCTL_DELETE_IP_ADDRESS, IOCTL_SET_IP_ADDRESS, NDIS_PACKET_TYPE_BROADCAST,
    NDIS_PACKET_TYPE_DIRECTED, NDIS_PACKET_TYPE_MULTICAST, NDIS_STATUS_MEDIA_CONNECT,
    NDIS_STATUS_MEDIA_DISCONNECT,
};
use zerocopy::FromBytes;

/// Resolves the driver's MAC through ARP on adapter `n` (the peer's request must be answered).
fn resolve(kernel: &tcpip::host::Kernel, n: u8, wire: &Wire, ip: std::net::Ipv4Addr) -> [u8; 6] {
    assert!(kernel.ndis_indicate(&adapter_name(n), &arp_request(ip)));
    wire.wait_for(|f| arp_reply_for(f, ip))
        .expect("an ARP reply")
}

/// Pings the driver on adapter `n` with a payload of `len` bytes; the reply's payload.
fn ping(
    kernel: &tcpip::host::Kernel,
    n: u8,
    wire: &Wire,
    ident: u16,
    len: usize,
) -> Option<Vec<u8>> {
    ping_at(kernel, n, wire, DRIVER_IP, ident, len)
}

/// Pings the driver's address `target` on adapter `n`; the reply's payload.
fn ping_at(
    kernel: &tcpip::host::Kernel,
    n: u8,
    wire: &Wire,
    target: std::net::Ipv4Addr,
    ident: u16,
    len: usize,
) -> Option<Vec<u8>> {
    let payload: Vec<u8> = (0..len)
        .map(|i| (i * 7 + usize::from(ident)) as u8)
        .collect();
    let frame = echo_request(wire.mac_address(), target, ident, &payload);
    kernel.ndis_indicate(&adapter_name(n), &frame);
    let reply = wire.wait_for(|f| echo_reply(f, ident))?;
    assert_eq!(
        reply, payload,
        "the echo reply carries the request's payload"
    );
    Some(reply)
}

/// One `IOCTL_TCP_QUERY_INFORMATION_EX` of `entity` instance 1 for `id`, as iphlpapi sends it.
fn query_information(kernel: &tcpip::host::Kernel, entity: u32, id: u32) -> Vec<u8> {
    query_instance(kernel, entity, 1, id)
}

/// One `IOCTL_TCP_QUERY_INFORMATION_EX` of `entity` `instance` for `id`.
fn query_instance(kernel: &tcpip::host::Kernel, entity: u32, instance: u32, id: u32) -> Vec<u8> {
    use tcpip::nt::types::*;
    use tcpip::tdi::QueryInformationEx;
    let control = kernel.create_file("\\Device\\Tcp", None, 0).unwrap();
    let id = TDIObjectID {
        toi_entity: TDIEntityID {
            tei_entity: entity,
            tei_instance: instance,
        },
        toi_class: INFO_CLASS_PROTOCOL,
        toi_type: INFO_TYPE_PROVIDER,
        toi_id: id,
    };
    let mut input = vec![0; QueryInformationEx::LEN];
    QueryInformationEx {
        id,
        context: [0; 16],
    }
    .emit(&mut input)
    .unwrap();
    let mut out = vec![0u8; 256];
    let (status, len) =
        kernel.device_io_control(control, IOCTL_TCP_QUERY_INFORMATION_EX, &input, &mut out);
    assert_eq!(status, NtStatus::SUCCESS);
    assert_eq!(kernel.close(control), NtStatus::SUCCESS);
    out.truncate(len);
    out
}

/// Interface 1's `IFEntry` as GetIfEntry reads it: its name (`if_descr`) and `if_operstatus`.
fn interface_entry(kernel: &tcpip::host::Kernel) -> (String, u32) {
    use tcpip::info::wire::IFEntry;
    use zerocopy::FromBytes;
    let out = query_information(kernel, tcpip::nt::types::IF_ENTITY, 1);
    let (entry, name) = IFEntry::read_from_prefix(&out).unwrap();
    (
        String::from_utf8_lossy(name).into_owned(),
        entry.if_operstatus,
    )
}

/// The address table (`IPAddrEntry`: address, interface index) as GetIpAddrTable reads it.
fn address_table(kernel: &tcpip::host::Kernel) -> Vec<([u8; 4], u32)> {
    use tcpip::info::wire::IPAddrEntry;
    use zerocopy::FromBytes;
    // The loopback's IP entity (instance 0) is always there; each IP entity answers the
    // whole table.
    let out = query_instance(kernel, tcpip::nt::types::CL_NL_ENTITY, 0, 0x102);
    <[IPAddrEntry]>::ref_from_bytes(&out)
        .unwrap()
        .iter()
        .map(|e| (e.iae_addr, e.iae_index))
        .collect()
}

#[test]
fn an_adapter_present_at_registration_is_bound_with_its_static_configuration() {
    let kernel = kernel();
    let wire = Wire::new(1);
    configure_static(&kernel, 1, DRIVER_IP);
    // A 100 Mbit/s card (`OID_GEN_LINK_SPEED` counts 100 bit/s units).
    let options = MiniportOptions {
        link_speed: Some(1_000_000),
        ..MiniportOptions::default()
    };
    assert_eq!(
        kernel.ndis_add_miniport(&adapter_name(1), wire.clone(), options),
        NtStatus::SUCCESS,
        "no protocol yet: nothing to bind"
    );
    let driver = load(&kernel);
    assert!(
        kernel.ndis_is_bound(&adapter_name(1)),
        "bound inside NdisRegisterProtocol"
    );
    assert_eq!(
        kernel.ndis_packet_filter(&adapter_name(1)),
        Some(NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_BROADCAST | NDIS_PACKET_TYPE_MULTICAST)
    );
    assert_eq!(resolve(&kernel, 1, &wire, DRIVER_IP), wire.mac_address());
    assert!(ping(&kernel, 1, &wire, 1, 64).is_some());
    let log = kernel.debug_output().join("\n");
    assert!(log.contains("bound \\Device\\{00000000-0000-0000-0000-000000000001}: MAC 02:54:43:50:00:01, MTU 1500, media connected"), "{log}");
    assert!(log.contains("static 10.0.0.2/24 via 10.0.0.1"), "{log}");
    let (header, _) = tcpip::info::wire::IFEntry::read_from_prefix(&query_information(
        &kernel,
        tcpip::nt::types::IF_ENTITY,
        1,
    ))
    .unwrap();
    assert_eq!(header.if_speed, 100_000_000, "if_speed in bit/s");
    let report = driver.unload();
    assert!(report.is_clean(), "{report}");
    assert!(!kernel.ndis_is_bound(&adapter_name(1)), "unbound at unload");
}

#[test]
fn pended_opens_requests_and_sends_complete_through_the_handlers() {
    let kernel = kernel();
    let driver = load(&kernel);
    configure_static(&kernel, 2, DRIVER_IP);
    let wire = Wire::new(2);
    let options = MiniportOptions {
        pend_sends: true,
        pend_requests: true,
        ..MiniportOptions::default()
    };
    assert_eq!(
        kernel.ndis_add_miniport(&adapter_name(2), wire.clone(), options),
        NtStatus::SUCCESS
    );
    assert!(kernel.ndis_is_bound(&adapter_name(2)));
    resolve(&kernel, 2, &wire, DRIVER_IP);
    for ident in 0..200 {
        assert!(
            ping(&kernel, 2, &wire, ident, 200).is_some(),
            "ping {ident}"
        );
    }
    kernel.ndis_remove_miniport(&adapter_name(2));
    assert!(!kernel.ndis_is_bound(&adapter_name(2)));
    let report = driver.unload();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn unbinding_with_sends_in_flight_waits_for_their_completion() {
    let kernel = kernel();
    let driver = load(&kernel);
    configure_static(&kernel, 3, DRIVER_IP);
    let wire = Wire::new(3);
    let options = MiniportOptions {
        pend_sends: true,
        ..MiniportOptions::default()
    };
    kernel.ndis_add_miniport(&adapter_name(3), wire.clone(), options);
    resolve(&kernel, 3, &wire, DRIVER_IP);
    let flood = {
        let kernel = kernel.handle();
        let mac = wire.mac_address();
        std::thread::spawn(move || {
            let _entered = kernel.enter();
            // Until the protocol is unbound: then the indications reach nobody.
            (0..u16::MAX).all(|ident| {
                let frame = echo_request(mac, DRIVER_IP, ident, &[0x55; 512]);
                kernel.ndis_indicate(&adapter_name(3), &frame)
            })
        })
    };
    wire.wait_for(|f| echo_reply(f, 0).map(|_| ()))
        .expect("replies while flooding");
    kernel.ndis_remove_miniport(&adapter_name(3));
    assert!(!flood.join().unwrap(), "the flood ran until the unbind");
    assert!(
        kernel.take_violations().is_empty(),
        "no send outstanding at close"
    );
    let report = driver.unload();
    assert!(report.is_clean(), "{report}");
}

fn lookahead_only(pend_transfers: bool) {
    let kernel = kernel();
    let driver = load(&kernel);
    configure_static(&kernel, 4, DRIVER_IP);
    let wire = Wire::new(4);
    let options = MiniportOptions {
        indication: Indication::Lookahead(32),
        pend_transfers,
        ..MiniportOptions::default()
    };
    kernel.ndis_add_miniport(&adapter_name(4), wire.clone(), options);
    // The ARP request (28 bytes of data) fits the lookahead; the pings need NdisTransferData.
    resolve(&kernel, 4, &wire, DRIVER_IP);
    for (ident, len) in [(1, 0), (2, 100), (3, 1000), (4, 1472)] {
        assert!(
            ping(&kernel, 4, &wire, ident, len).is_some(),
            "{len}-byte ping"
        );
    }
    kernel.ndis_remove_miniport(&adapter_name(4));
    let report = driver.unload();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_lookahead_only_miniport_has_the_rest_transferred() {
    lookahead_only(false);
}

#[test]
fn a_lookahead_only_miniport_with_pended_transfers() {
    lookahead_only(true);
}

#[test]
fn media_disconnect_stops_the_link_until_reconnect() {
    let kernel = kernel();
    let driver = load(&kernel);
    configure_static(&kernel, 5, DRIVER_IP);
    let wire = Wire::new(5);
    kernel.ndis_add_miniport(&adapter_name(5), wire.clone(), MiniportOptions::default());
    resolve(&kernel, 5, &wire, DRIVER_IP);
    let guid = "{00000000-0000-0000-0000-000000000005}";
    assert_eq!(
        interface_entry(&kernel),
        (guid.to_owned(), 5),
        "named by its GUID, up"
    );
    kernel.ndis_indicate_status(&adapter_name(5), NDIS_STATUS_MEDIA_DISCONNECT);
    assert_eq!(
        interface_entry(&kernel),
        (guid.to_owned(), 2),
        "down while disconnected"
    );
    wire.take();
    let frame = echo_request(wire.mac_address(), DRIVER_IP, 9, b"while down");
    kernel.ndis_indicate(&adapter_name(5), &frame);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        wire.take().is_empty(),
        "nothing is sent while the media is disconnected"
    );
    kernel.ndis_indicate_status(&adapter_name(5), NDIS_STATUS_MEDIA_CONNECT);
    assert!(
        ping(&kernel, 5, &wire, 10, 32).is_some(),
        "answers again once reconnected"
    );
    let log = kernel.debug_output().join("\n");
    assert!(
        log.contains("media disconnected") && log.contains("media connected"),
        "{log}"
    );
    kernel.ndis_remove_miniport(&adapter_name(5));
    let report = driver.unload();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn two_adapters_are_two_interfaces_and_an_unbind_removes_only_its_own() {
    let kernel = kernel();
    let driver = load(&kernel);
    let other_ip = std::net::Ipv4Addr::new(10, 0, 0, 3);
    configure_static(&kernel, 6, DRIVER_IP);
    configure_static(&kernel, 7, other_ip);
    let (first, second) = (Wire::new(6), Wire::new(7));
    kernel.ndis_add_miniport(&adapter_name(6), first.clone(), MiniportOptions::default());
    kernel.ndis_add_miniport(&adapter_name(7), second.clone(), MiniportOptions::default());
    assert!(kernel.ndis_is_bound(&adapter_name(6)) && kernel.ndis_is_bound(&adapter_name(7)));
    // Each adapter answers for its own address only, with its own MAC.
    assert_eq!(resolve(&kernel, 6, &first, DRIVER_IP), first.mac_address());
    assert_eq!(resolve(&kernel, 7, &second, other_ip), second.mac_address());
    kernel.ndis_indicate(&adapter_name(7), &arp_request(DRIVER_IP));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        second
            .take()
            .iter()
            .all(|f| arp_reply_for(f, DRIVER_IP).is_none()),
        "the second adapter does not answer for the first one's address"
    );
    assert_eq!(
        address_table(&kernel),
        [
            ([127, 0, 0, 1], 0),
            (DRIVER_IP.octets(), 1),
            (other_ip.octets(), 2)
        ]
    );
    assert!(ping_at(&kernel, 7, &second, other_ip, 7, 64).is_some());
    // Each interface has its own IFEntry, with its own MAC.
    for (instance, wire) in [(1, &first), (2, &second)] {
        let out = query_instance(&kernel, tcpip::nt::types::IF_ENTITY, instance, 1);
        let (entry, _) = tcpip::info::wire::IFEntry::read_from_prefix(&out).unwrap();
        assert_eq!(entry.if_index, instance);
        assert_eq!(entry.if_physaddr[..6], wire.mac_address());
    }
    // IOCTL_SET/DELETE_IP_ADDRESS act on the interface they name (the context dhcpcsvc
    // passes is the index); an interface that does not exist is
    // STATUS_DEVICE_DOES_NOT_EXIST.
    let moved = std::net::Ipv4Addr::new(10, 0, 0, 4);
    let set = |context: u32, ip: std::net::Ipv4Addr| {
        let control = kernel.create_file("\\Device\\Tcp", None, 0).unwrap();
        let input = [context.to_le_bytes(), ip.octets(), [255, 255, 255, 0]].concat();
        let (status, _) =
            kernel.device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut [0u8; 12]);
        assert_eq!(kernel.close(control), NtStatus::SUCCESS);
        status
    };
    let delete = |context: u16| {
        let control = kernel.create_file("\\Device\\Tcp", None, 0).unwrap();
        let (status, _) = kernel.device_io_control(
            control,
            IOCTL_DELETE_IP_ADDRESS,
            &context.to_le_bytes(),
            &mut [],
        );
        assert_eq!(kernel.close(control), NtStatus::SUCCESS);
        status
    };
    assert_eq!(set(2, moved), NtStatus::SUCCESS);
    assert_eq!(set(5, moved), NtStatus::DEVICE_DOES_NOT_EXIST);
    assert_eq!(delete(5), NtStatus::DEVICE_DOES_NOT_EXIST);
    assert_eq!(
        address_table(&kernel),
        [
            ([127, 0, 0, 1], 0),
            (DRIVER_IP.octets(), 1),
            (moved.octets(), 2)
        ]
    );
    assert_eq!(resolve(&kernel, 7, &second, moved), second.mac_address());
    assert_eq!(delete(2), NtStatus::SUCCESS);
    assert_eq!(
        address_table(&kernel),
        [
            ([127, 0, 0, 1], 0),
            (DRIVER_IP.octets(), 1),
            ([0, 0, 0, 0], 2)
        ]
    );
    assert!(
        ping(&kernel, 6, &first, 9, 64).is_some(),
        "interface 1 is untouched"
    );
    assert_eq!(set(2, other_ip), NtStatus::SUCCESS);
    // (smoltcp forgets its neighbours when the address changes: the peer's ARP request
    // teaches it again.)
    assert_eq!(resolve(&kernel, 7, &second, other_ip), second.mac_address());
    kernel.ndis_remove_miniport(&adapter_name(6));
    assert_eq!(
        address_table(&kernel),
        [([127, 0, 0, 1], 0), (other_ip.octets(), 2)],
        "the second interface keeps its index and address"
    );
    assert!(ping_at(&kernel, 7, &second, other_ip, 8, 64).is_some());
    // A new adapter takes the free index 1.
    configure_static(&kernel, 8, DRIVER_IP);
    let third = Wire::new(8);
    kernel.ndis_add_miniport(&adapter_name(8), third.clone(), MiniportOptions::default());
    assert_eq!(resolve(&kernel, 8, &third, DRIVER_IP), third.mac_address());
    assert_eq!(
        address_table(&kernel),
        [
            ([127, 0, 0, 1], 0),
            (DRIVER_IP.octets(), 1),
            (other_ip.octets(), 2)
        ]
    );
    let report = driver.unload();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn with_dhcp_the_interface_is_up_without_an_address_until_one_is_set() {
    let kernel = kernel();
    let driver = load(&kernel);
    configure_dhcp(&kernel, 8);
    let wire = Wire::new(8);
    kernel.ndis_add_miniport(&adapter_name(8), wire.clone(), MiniportOptions::default());
    assert!(kernel.ndis_is_bound(&adapter_name(8)));
    kernel.ndis_indicate(&adapter_name(8), &arp_request(DRIVER_IP));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(wire.take().is_empty(), "no address: no ARP reply");
    // The IP helper lists the adapter at 0.0.0.0 meanwhile: GetAdaptersInfo (and so dhcpcsvc
    // and ipconfig) counts an interface only when the address table has its index.
    assert_eq!(
        address_table(&kernel),
        [([127, 0, 0, 1], 0), ([0, 0, 0, 0], 1)]
    );
    // This miniport does not answer OID_GEN_LINK_SPEED: the speed is unknown, 0.
    let (header, _) = tcpip::info::wire::IFEntry::read_from_prefix(&query_information(
        &kernel,
        tcpip::nt::types::IF_ENTITY,
        1,
    ))
    .unwrap();
    assert_eq!(header.if_speed, 0);
    let control = kernel
        .create_file("\\Device\\Tcp", None, 0)
        .expect("control channel");
    let input = [1u32.to_le_bytes(), DRIVER_IP.octets(), [255, 255, 255, 0]].concat();
    let (status, _) =
        kernel.device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut [0u8; 12]);
    assert_eq!(status, NtStatus::SUCCESS);
    assert_eq!(kernel.close(control), NtStatus::SUCCESS);
    assert_eq!(
        address_table(&kernel),
        [([127, 0, 0, 1], 0), (DRIVER_IP.octets(), 1)]
    );
    assert_eq!(resolve(&kernel, 8, &wire, DRIVER_IP), wire.mac_address());
    kernel.ndis_remove_miniport(&adapter_name(8));
    let report = driver.unload();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn allocation_failure_at_each_step_of_binding_fails_cleanly() {
    let mut failed_binds = 0;
    for n in 1.. {
        let kernel = kernel();
        let driver = load(&kernel);
        configure_static(&kernel, 9, DRIVER_IP);
        let wire = Wire::new(9);
        kernel.set_fault_injection(FaultInjection::FailNth(n));
        let status =
            kernel.ndis_add_miniport(&adapter_name(9), wire.clone(), MiniportOptions::default());
        let injected = kernel.pool_stats().injected_failures;
        kernel.set_fault_injection(FaultInjection::None);
        assert_eq!(
            status.is_success(),
            kernel.ndis_is_bound(&adapter_name(9)),
            "step {n}: {status}"
        );
        if injected == 0 {
            assert!(
                status.is_success(),
                "step {n}: no failure injected, yet {status}"
            );
            resolve(&kernel, 9, &wire, DRIVER_IP);
            kernel.ndis_remove_miniport(&adapter_name(9));
            let report = driver.unload();
            assert!(report.is_clean(), "{report}");
            break;
        }
        if !status.is_success() {
            failed_binds += 1;
        }
        kernel.ndis_remove_miniport(&adapter_name(9));
        let report = driver.unload();
        assert!(report.is_clean(), "step {n}: {report}");
    }
    assert!(
        failed_binds >= 5,
        "the bind allocates pools, slots and the binding: {failed_binds}"
    );
}
