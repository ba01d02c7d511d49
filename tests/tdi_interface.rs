//! The configured local address (interface 1), set and removed the way iphlpapi's
//! AddIPAddress/DeleteIPAddress do it, and TCP over it.

mod tdi_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use tcpip::host::{Clock, Handle};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tdi_support::*;

const CONFIGURED: Ipv4Addr = Ipv4Addr::new(10, 11, 12, 1);

fn ip_set_data(interface: u32, ip: Ipv4Addr, mask: Ipv4Addr) -> Vec<u8> {
    [interface.to_le_bytes(), ip.octets(), mask.octets()].concat()
}

fn set_address(t: &Loaded, control: Handle, input: &[u8]) -> (NtStatus, usize) {
    let mut output = [0u8; 12];
    t.kernel
        .device_io_control(control, IOCTL_SET_IP_ADDRESS, input, &mut output)
}

fn configured(clock: Clock) -> (Loaded, Handle) {
    let t = Loaded::new(clock);
    let control = t
        .kernel
        .create_file("\\Device\\Tcp", None, 0)
        .expect("control");
    let input = ip_set_data(1, CONFIGURED, Ipv4Addr::new(255, 255, 255, 0));
    assert_eq!(
        set_address(&t, control, &input),
        (NtStatus::SUCCESS, 1),
        "index in Information"
    );
    (t, control)
}

#[test]
fn set_ip_address_validates_its_input() {
    let (t, control) = configured(Clock::Real);
    let mask = Ipv4Addr::new(255, 255, 255, 0);
    let cases = [
        (
            "same address again",
            ip_set_data(1, CONFIGURED, mask),
            NtStatus::DUPLICATE_OBJECTID,
        ),
        (
            "loopback interface",
            ip_set_data(0, Ipv4Addr::new(10, 0, 0, 1), mask),
            NtStatus::DEVICE_DOES_NOT_EXIST,
        ),
        (
            "no such interface",
            ip_set_data(7, Ipv4Addr::new(10, 0, 0, 1), mask),
            NtStatus::DEVICE_DOES_NOT_EXIST,
        ),
        (
            "mask with a hole",
            ip_set_data(1, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(255, 0, 255, 0)),
            NtStatus::INVALID_PARAMETER,
        ),
        (
            "loopback address",
            ip_set_data(1, Ipv4Addr::new(127, 0, 0, 9), mask),
            NtStatus::INVALID_PARAMETER,
        ),
        (
            "short input",
            vec![1, 0, 0, 0, 10, 0, 0, 1],
            NtStatus::INVALID_PARAMETER,
        ),
        // Found by the `control` fuzz target (fuzz/RESULTS.md): smoltcp panicked on it.
        (
            "multicast address",
            ip_set_data(1, Ipv4Addr::new(238, 242, 0, 0), mask),
            NtStatus::INVALID_PARAMETER,
        ),
        (
            "broadcast address",
            ip_set_data(1, Ipv4Addr::BROADCAST, mask),
            NtStatus::INVALID_PARAMETER,
        ),
    ];
    for (what, input, expected) in cases {
        assert_eq!(set_address(&t, control, &input).0, expected, "{what}");
    }
    t.close(control);
    t.unload();
}

#[test]
fn tcp_works_over_the_configured_address_and_stops_when_it_is_deleted() {
    let (t, control) = configured(Clock::Real);
    let pair = connected_pair(&t, SocketAddrV4::new(CONFIGURED, 7201));
    assert_eq!(
        t.query_address(pair.client).map(|a| *a.ip()),
        Ok(CONFIGURED),
        "source address on the way to a local address is that address"
    );
    assert_eq!(send(&t, pair.client, b"ping").status, NtStatus::SUCCESS);
    let (result, data) = receive(&t, pair.server, 16);
    assert_eq!(
        (result.status, data.as_slice()),
        (NtStatus::SUCCESS, &b"ping"[..])
    );
    for handle in [
        pair.client,
        pair.client_address,
        pair.server,
        pair.server_address,
    ] {
        t.close(handle);
    }
    let (status, _) = t.kernel.device_io_control(
        control,
        IOCTL_DELETE_IP_ADDRESS,
        &1u16.to_le_bytes(),
        &mut [],
    );
    assert_eq!(status, NtStatus::SUCCESS);
    assert_eq!(
        t.open_address(SocketAddrV4::new(CONFIGURED, 7202), 0),
        Err(NtStatus::INVALID_ADDRESS),
        "no longer local"
    );
    let (status, _) = t
        .kernel
        .device_io_control(control, IOCTL_DELETE_IP_ADDRESS, &[1], &mut []);
    assert_eq!(status, NtStatus::INVALID_PARAMETER, "a USHORT is needed");
    t.close(control);
    t.unload();
}

#[test]
fn a_silent_host_on_the_configured_subnet_times_the_connect_out() {
    let (t, control) = configured(Clock::Virtual);
    let address = t
        .open_address(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), 0)
        .expect("address");
    let connection = t.open_connection().expect("endpoint");
    assert_eq!(t.associate(connection, address), NtStatus::SUCCESS);
    let silent = SocketAddrV4::new(Ipv4Addr::new(10, 11, 12, 99), 80);
    let connecting = start_connect(&t, connection, silent);
    t.kernel.advance(Duration::from_secs(20));
    assert!(
        !connecting.is_complete(),
        "the default connect timeout is 21 s"
    );
    t.kernel.advance(Duration::from_secs(2));
    assert_eq!(connecting.wait().status, NtStatus::LOCAL_DISCONNECT);
    assert_eq!(
        t.query_address(connection).map(|a| *a.ip()),
        Ok(Ipv4Addr::UNSPECIFIED)
    );
    for handle in [connection, address, control] {
        t.close(handle);
    }
    t.unload();
}
