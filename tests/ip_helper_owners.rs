//! The owner tables of the IP helper: `GetExtendedTcpTable`/`GetExtendedUdpTable` with the
//! owner-PID and owner-module classes, which ReactOS's `netstat -a`/`-o` use. iphlpapi asks each
//! transport entity for `IP_MIB_ADDRTABLE_ENTRY_ID` (0x102, `MIB_*ROW_OWNER_PID`) and
//! `IP_SPECIFIC_MODULE_ENTRY_ID` (0x110, `MIB_*ROW_OWNER_MODULE`) after sizing its buffer from
//! the basic table (0x101): the three must list the same sockets in the same order, each with
//! the process that opened its address file.

mod ip_helper_support;
mod tdi_support;
mod udp_support;

use ip_helper_support::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use tcpip::host::in_process;
use tcpip::info::wire::*;
use tcpip::nt::types::*;
use tdi_support::*;

/// A `MIB_TCPROW` as (state, local, remote). Any IRQL.
fn tcp_row(row: &TCPConnTableEntry) -> (u32, SocketAddrV4, SocketAddrV4) {
    let port = |p: [u8; 4]| u16::from_be_bytes([p[0], p[1]]);
    (
        row.tct_state,
        SocketAddrV4::new(row.tct_localaddr.into(), port(row.tct_localport)),
        SocketAddrV4::new(row.tct_remoteaddr.into(), port(row.tct_remoteport)),
    )
}

#[test]
fn tcp_owner_rows_name_the_process_of_each_socket() {
    let t = loaded();
    let control = control(&t);
    // The listener's process accepts; its connection belongs to it, the client's to the other.
    let server_address = in_process(1200, || t.open_address(local(4400), 0).unwrap());
    let server = t.open_connection().unwrap();
    assert_eq!(
        t.associate(server, server_address),
        tcpip::nt::NtStatus::SUCCESS
    );
    let listening = start_listen(&t, server);
    let client_address = in_process(3400, || t.open_address(any(0), 0).unwrap());
    let client = t.open_connection().unwrap();
    assert_eq!(
        t.associate(client, client_address),
        tcpip::nt::NtStatus::SUCCESS
    );
    assert_eq!(
        start_connect(&t, client, local(4400)).wait().status,
        tcpip::nt::NtStatus::SUCCESS
    );
    assert_eq!(listening.wait().status, tcpip::nt::NtStatus::SUCCESS);

    let basic =
        rows::<TCPConnTableEntry>(&query(&t, control, provider(CO_TL_ENTITY, 0, 0x101)).unwrap());
    let pid =
        rows::<TcpRowOwnerPid>(&query(&t, control, provider(CO_TL_ENTITY, 0, 0x102)).unwrap());
    let module =
        rows::<TcpRowOwnerModule>(&query(&t, control, provider(CO_TL_ENTITY, 0, 0x110)).unwrap());
    assert_eq!(basic.len(), 3, "the listener and both ends");
    assert_eq!(pid.len(), basic.len());
    assert_eq!(module.len(), basic.len());
    let client_port = t.query_address(client_address).unwrap().port();
    let client_end = SocketAddrV4::new(Ipv4Addr::LOCALHOST, client_port);
    for ((basic, pid), module) in basic.iter().zip(&pid).zip(&module) {
        let row = tcp_row(basic);
        assert_eq!(tcp_row(&pid.row), row, "same sockets, same order");
        assert_eq!(tcp_row(&module.row.row), row);
        let expected = if row.1 == client_end { 3400 } else { 1200 };
        assert_eq!(pid.owning_pid, expected, "{row:?}");
        assert_eq!(module.row.owning_pid, expected);
        // Opened after the model's boot, at a system time (100 ns units since 1601).
        let created = u64::from_le_bytes(module.create_timestamp);
        assert!(created >= tcpip::host::BOOT_SYSTEM_TIME, "{created}");
        assert_eq!(module.owning_module_info, [[0; 8]; OWNING_MODULE_SIZE]);
    }
    for handle in [client, server, client_address, server_address, control] {
        t.close(handle);
    }
    t.unload();
}

#[test]
fn udp_owner_rows_name_the_process_of_each_address_file() {
    let t = loaded();
    let control = control(&t);
    let a = in_process(808, || udp_support::open_udp(&t, local(5320), 0).unwrap());
    let b = in_process(909, || udp_support::open_udp(&t, any(5321), 0).unwrap());
    let basic = rows::<UDPEntry>(&query(&t, control, provider(CL_TL_ENTITY, 0, 0x101)).unwrap());
    let pid =
        rows::<UdpRowOwnerPid>(&query(&t, control, provider(CL_TL_ENTITY, 0, 0x102)).unwrap());
    let module =
        rows::<UdpRowOwnerModule>(&query(&t, control, provider(CL_TL_ENTITY, 0, 0x110)).unwrap());
    let owners: Vec<(Ipv4Addr, u16, u32)> = pid
        .iter()
        .map(|r| {
            let port = u16::from_be_bytes([r.row.ue_localport[0], r.row.ue_localport[1]]);
            (r.row.ue_localaddr.into(), port, r.owning_pid)
        })
        .collect();
    assert_eq!(
        owners,
        [
            (Ipv4Addr::LOCALHOST, 5320, 808),
            (Ipv4Addr::UNSPECIFIED, 5321, 909)
        ]
    );
    assert_eq!(basic.len(), 2);
    for ((basic, pid), module) in basic.iter().zip(&pid).zip(&module) {
        assert_eq!(
            (basic.ue_localaddr, basic.ue_localport),
            (pid.row.ue_localaddr, pid.row.ue_localport)
        );
        assert_eq!(module.row.owning_pid, pid.owning_pid);
        assert!(u64::from_le_bytes(module.create_timestamp) >= tcpip::host::BOOT_SYSTEM_TIME);
    }
    // A file opened outside any test process is the System process's.
    let c = udp_support::open_udp(&t, any(5322), 0).unwrap();
    let pid =
        rows::<UdpRowOwnerPid>(&query(&t, control, provider(CL_TL_ENTITY, 0, 0x102)).unwrap());
    assert_eq!(
        pid.last().map(|r| r.owning_pid),
        Some(tcpip::host::SYSTEM_PROCESS_ID as u32)
    );
    // The per-address-file entities do not answer the owner tables: iphlpapi reads them only
    // from the protocol-wide entity, and would count their rows twice.
    assert_eq!(
        query(&t, control, provider(CL_TL_ENTITY, 0x1000, 0x102)),
        Err(tcpip::nt::NtStatus::INVALID_DEVICE_REQUEST)
    );
    for handle in [a, b, c, control] {
        t.close(handle);
    }
    t.unload();
}
