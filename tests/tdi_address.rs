//! Address files, connection endpoints and TDI_ASSOCIATE_ADDRESS, with the bad inputs AFD or a
//! broken client could send: each gets a clear status and leaves nothing allocated.

mod tdi_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use tcpip::host::afd::wire;
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tdi_support::{any, loaded, local, start_connect};

#[test]
fn address_file_reports_its_true_address() {
    let t = loaded();
    let address = t.open_address(local(7001), 0).expect("open");
    assert_eq!(t.query_address(address), Ok(local(7001)));
    t.close(address);
    t.unload();
}

#[test]
fn port_zero_gets_distinct_ephemeral_ports() {
    let t = loaded();
    let a = t.open_address(any(0), 0).expect("first");
    let b = t.open_address(any(0), 0).expect("second");
    let (pa, pb) = (
        t.query_address(a).expect("a").port(),
        t.query_address(b).expect("b").port(),
    );
    assert!((49152..=65535).contains(&pa), "{pa}");
    assert!((49152..=65535).contains(&pb), "{pb}");
    assert_ne!(pa, pb);
    t.close(a);
    t.close(b);
    t.unload();
}

#[test]
fn explicit_port_in_use_is_address_already_exists_unless_shared() {
    let t = loaded();
    let first = t.open_address(any(7002), 0).expect("first");
    assert_eq!(
        t.open_address(local(7002), 0),
        Err(NtStatus::ADDRESS_ALREADY_EXISTS),
        "0.0.0.0 covers 127.0.0.1"
    );
    assert_eq!(
        t.open_address(any(7002), 0),
        Err(NtStatus::ADDRESS_ALREADY_EXISTS)
    );
    t.close(first);
    let shared = t.open_address(any(7003), 3).expect("shared");
    let again = t.open_address(any(7003), 3).expect("SO_REUSEADDR shares");
    t.close(shared);
    t.close(again);
    t.unload();
}

#[test]
fn non_local_address_is_invalid_address() {
    let t = loaded();
    let remote = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 80);
    assert_eq!(t.open_address(remote, 0), Err(NtStatus::INVALID_ADDRESS));
    t.unload();
}

#[test]
fn malformed_eas_fail_with_invalid_parameter_and_allocate_nothing() {
    let t = loaded();
    let good = wire::address_file_ea(local(7004));
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    cases.push(("truncated header", good[..6].to_vec()));
    cases.push(("value cut short", good[..good.len() - 1].to_vec()));
    let mut count = good.clone();
    count[25] = 2;
    cases.push(("TAAddressCount 2", count));
    let mut length = good.clone();
    length[29] = 13;
    cases.push(("AddressLength 13", length));
    let mut kind = good.clone();
    kind[31] = 23;
    cases.push(("AddressType 23", kind));
    let mut name_length = good.clone();
    name_length[5] = 200;
    cases.push(("EaNameLength past the buffer", name_length));
    let mut next = good.clone();
    next[0] = 3;
    cases.push(("NextEntryOffset not aligned", next));
    let context = wire::ea_entry(TDI_CONNECTION_CONTEXT_EA, &[0; 2]);
    cases.push(("ConnectionContext shorter than a pointer", context));
    for (what, ea) in cases {
        let before = t.kernel.pool_stats().allocations;
        let result = t.kernel.create_file("\\Device\\Tcp", Some(&ea), 0);
        assert_eq!(result.err(), Some(NtStatus::INVALID_PARAMETER), "{what}");
        assert_eq!(
            t.kernel.pool_stats().allocations,
            before,
            "{what} allocated"
        );
    }
    t.unload();
}

#[test]
fn address_outlives_its_file_while_a_connection_holds_it() {
    let t = loaded();
    let address = t.open_address(local(7005), 0).expect("address");
    let connection = t.open_connection().expect("connection");
    assert_eq!(t.associate(connection, address), NtStatus::SUCCESS);
    // AFD closes the address before the connection.
    t.close(address);
    assert_eq!(
        t.open_address(local(7005), 0),
        Err(NtStatus::ADDRESS_ALREADY_EXISTS),
        "the connection still holds the port"
    );
    t.close(connection);
    let again = t
        .open_address(local(7005), 0)
        .expect("port released with the last reference");
    t.close(again);
    t.unload();
}

#[test]
fn associate_accepts_only_this_drivers_address_files() {
    let t = loaded();
    let connection = t.open_connection().expect("connection");
    let event = t.kernel.create_event_handle();
    assert_eq!(
        t.associate(connection, event),
        NtStatus::OBJECT_TYPE_MISMATCH
    );
    t.kernel
        .create_foreign_device("\\Device\\Other")
        .expect("foreign device");
    let foreign = t
        .kernel
        .create_file("\\Device\\Other", None, 0)
        .expect("foreign file");
    assert_eq!(t.associate(connection, foreign), NtStatus::INVALID_HANDLE);
    let control = t
        .kernel
        .create_file("\\Device\\Tcp", None, 0)
        .expect("control");
    assert_eq!(t.associate(connection, control), NtStatus::INVALID_HANDLE);
    let other = t.open_connection().expect("second connection");
    assert_eq!(t.associate(connection, other), NtStatus::INVALID_HANDLE);
    assert_eq!(
        t.associate(connection, tcpip::host::Handle::invalid()),
        NtStatus::INVALID_HANDLE
    );
    let address = t.open_address(local(7006), 0).expect("address");
    assert_eq!(t.associate(connection, address), NtStatus::SUCCESS);
    assert_eq!(
        t.associate(connection, address),
        NtStatus::INVALID_PARAMETER,
        "already associated"
    );
    for handle in [event, foreign, control, other, address, connection] {
        t.close(handle);
    }
    t.unload();
}

#[test]
fn connection_requests_on_other_file_kinds_are_invalid_connection() {
    let t = loaded();
    let address = t.open_address(local(7007), 0).expect("address");
    let connecting = start_connect(&t, address, local(7008));
    assert_eq!(connecting.wait().status, NtStatus::INVALID_CONNECTION);
    let unassociated = t.open_connection().expect("connection");
    let connecting = start_connect(&t, unassociated, local(7008));
    assert_eq!(
        connecting.wait().status,
        NtStatus::INVALID_CONNECTION,
        "connect before associate"
    );
    t.close(address);
    t.close(unassociated);
    t.unload();
}
