//! `IOCTL_TCP_QUERY_INFORMATION_EX` on a control channel, as wshtcpip's bind notification and
//! iphlpapi send it: ReactOS's length-probe semantics, stable sizes, and clear statuses for bad
//! requests.

use tcpip::host::{Config, Handle, Kernel};
use tcpip::nt::NtStatus;
use tcpip::nt::entry::driver_entry;
use tcpip::nt::types::*;
use tcpip::tdi::QueryInformationEx;
use zerocopy::FromBytes;

fn request(entity: u32, instance: u32, class: u32, kind: u32, id: u32) -> Vec<u8> {
    let query = QueryInformationEx {
        id: TDIObjectID {
            toi_entity: TDIEntityID {
                tei_entity: entity,
                tei_instance: instance,
            },
            toi_class: class,
            toi_type: kind,
            toi_id: id,
        },
        context: [0; 16],
    };
    let mut bytes = vec![0; QueryInformationEx::LEN];
    query.emit(&mut bytes).expect("request fits");
    bytes
}

fn entity_list_request() -> Vec<u8> {
    request(
        GENERIC_ENTITY,
        0,
        INFO_CLASS_GENERIC,
        INFO_TYPE_PROVIDER,
        ENTITY_LIST_ID,
    )
}

fn with_control_channel(test: impl FnOnce(&Kernel, Handle)) {
    let kernel = Kernel::new(Config::default());
    let driver = kernel.load_driver(driver_entry).expect("DriverEntry");
    let handle = kernel
        .create_file("\\Device\\Tcp", None, 0)
        .expect("control channel");
    test(&kernel, handle);
    assert_eq!(kernel.close(handle), NtStatus::SUCCESS);
    let report = driver.unload();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn zero_length_probe_succeeds_with_the_needed_size_and_the_fetch_returns_loopback_entities() {
    with_control_channel(|kernel, handle| {
        let input = entity_list_request();
        let (status, needed) =
            kernel.device_io_control(handle, IOCTL_TCP_QUERY_INFORMATION_EX, &input, &mut []);
        assert_eq!(status, NtStatus::SUCCESS);
        assert_eq!(needed, 6 * size_of::<TDIEntityID>());

        let mut out = vec![0u8; needed];
        let (status, written) =
            kernel.device_io_control(handle, IOCTL_TCP_QUERY_INFORMATION_EX, &input, &mut out);
        assert_eq!(
            (status, written),
            (NtStatus::SUCCESS, needed),
            "size is stable"
        );
        let entities = <[TDIEntityID]>::ref_from_bytes(&out).expect("entity array");
        // Loopback's IF, AT, NL, then the protocol entities (ICMP, TCP, UDP): with no ARP
        // interface their instance is 0.
        let expected = [
            (IF_ENTITY, 0),
            (AT_ENTITY, 0),
            (CL_NL_ENTITY, 0),
            (ER_ENTITY, 0),
            (CO_TL_ENTITY, 0),
            (CL_TL_ENTITY, 0),
        ];
        let got: Vec<_> = entities
            .iter()
            .map(|e| (e.tei_entity, e.tei_instance))
            .collect();
        assert_eq!(got, expected, "IF, AT, NL of loopback, then the protocols");
    });
}

#[test]
fn short_buffer_succeeds_with_the_needed_size_and_copies_nothing() {
    with_control_channel(|kernel, handle| {
        let mut out = [0xAAu8; 8];
        let (status, needed) = kernel.device_io_control(
            handle,
            IOCTL_TCP_QUERY_INFORMATION_EX,
            &entity_list_request(),
            &mut out,
        );
        assert_eq!(status, NtStatus::SUCCESS);
        assert_eq!(needed, 48);
        assert_eq!(out, [0xAA; 8], "nothing copied into a short buffer");
    });
}

#[test]
fn entity_type_of_loopback_entities() {
    with_control_channel(|kernel, handle| {
        for (entity, kind) in [
            (IF_ENTITY, IF_MIB),
            (AT_ENTITY, AT_NULL),
            (CL_NL_ENTITY, CL_NL_IP),
        ] {
            let input = request(
                entity,
                0,
                INFO_CLASS_GENERIC,
                INFO_TYPE_PROVIDER,
                ENTITY_TYPE_ID,
            );
            let mut out = [0u8; 4];
            let (status, len) =
                kernel.device_io_control(handle, IOCTL_TCP_QUERY_INFORMATION_EX, &input, &mut out);
            assert_eq!((status, len), (NtStatus::SUCCESS, 4));
            assert_eq!(u32::from_le_bytes(out), kind, "entity {entity:#x}");
        }
    });
}

#[test]
fn bad_requests_get_clear_statuses() {
    with_control_channel(|kernel, handle| {
        let mut out = [0u8; 64];
        let good = entity_list_request();
        let cases: [(&str, Vec<u8>, NtStatus); 5] = [
            (
                "input one byte short",
                good[..good.len() - 1].to_vec(),
                NtStatus::INVALID_PARAMETER,
            ),
            (
                "input one byte long",
                [good.clone(), vec![0]].concat(),
                NtStatus::INVALID_PARAMETER,
            ),
            ("no input", Vec::new(), NtStatus::INVALID_PARAMETER),
            (
                "unknown entity",
                request(
                    CO_TL_ENTITY,
                    7,
                    INFO_CLASS_GENERIC,
                    INFO_TYPE_PROVIDER,
                    ENTITY_TYPE_ID,
                ),
                NtStatus::INVALID_PARAMETER,
            ),
            (
                "unknown id on the generic entity",
                request(
                    GENERIC_ENTITY,
                    0,
                    INFO_CLASS_GENERIC,
                    INFO_TYPE_PROVIDER,
                    0x77,
                ),
                NtStatus::INVALID_DEVICE_REQUEST,
            ),
        ];
        for (what, input, expected) in cases {
            let (status, information) =
                kernel.device_io_control(handle, IOCTL_TCP_QUERY_INFORMATION_EX, &input, &mut out);
            assert_eq!(status, expected, "{what}");
            assert_eq!(information, 0, "{what}");
        }
    });
}

#[test]
fn user_mode_opens_the_control_channel_as_dot_tcp_while_the_driver_is_loaded() {
    let kernel = Kernel::new(Config::default());
    assert_eq!(
        kernel.create_file("\\??\\Tcp", None, 0).err(),
        Some(NtStatus::OBJECT_NAME_NOT_FOUND),
        "no link before the driver"
    );
    let driver = kernel.load_driver(driver_entry).expect("DriverEntry");
    // `\\.\Tcp` in Win32 is `\??\Tcp` (`\DosDevices\Tcp`) in the object namespace.
    let handle = kernel
        .create_file("\\??\\Tcp", None, 0)
        .expect("\\\\.\\Tcp opens the control channel");
    let (status, needed) = kernel.device_io_control(
        handle,
        IOCTL_TCP_QUERY_INFORMATION_EX,
        &entity_list_request(),
        &mut [],
    );
    assert_eq!(
        (status, needed),
        (NtStatus::SUCCESS, 6 * size_of::<TDIEntityID>())
    );
    assert_eq!(kernel.close(handle), NtStatus::SUCCESS);
    // Only `Tcp`, as on Windows.
    for other in ["\\??\\Udp", "\\??\\Ip", "\\??\\RawIp"] {
        assert!(kernel.create_file(other, None, 0).is_err(), "{other}");
    }
    let report = driver.unload();
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        kernel.create_file("\\DosDevices\\Tcp", None, 0).err(),
        Some(NtStatus::OBJECT_NAME_NOT_FOUND),
        "the link goes with the driver"
    );
}
