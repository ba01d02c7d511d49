//! Answers to `IOCTL_TCP_QUERY_INFORMATION_EX`: one object id in, the bytes to copy out.
//!
//! Errors follow the TDI convention: an entity that is not listed is `TDI_INVALID_PARAMETER`
//! (`STATUS_INVALID_PARAMETER`); a class, type or id a listed entity does not answer is
//! `TDI_INVALID_REQUEST` (`STATUS_INVALID_DEVICE_REQUEST`). The ids (`tcpioctl.h`):
//! `ENTITY_LIST_ID` 0 and `ENTITY_TYPE_ID` 1 in the generic class; in the protocol class with
//! the provider type, 1 is each entity's statistics (`IF_MIB_STATS_ID`, `IP_MIB_STATS_ID`,
//! `TCP_MIB_STAT_ID`, ...), 0x101 its table (ARP cache on AT, routes on IP, connections on TCP,
//! listeners on UDP), 0x102 the IP address table and 0x103 `IP_INTFC_INFO_ID`.
#![forbid(unsafe_code)]

use crate::core::counters::{IcmpDirection, LinkCounters};
use crate::info::entities::{self, Entity};
use crate::info::model::{Interface, LinkKind, RouteKind, Source};
use crate::info::wire::*;
use crate::nt::NtStatus;
use crate::nt::pool;
use crate::nt::process::ProcessOwner;
use crate::nt::types::*;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use zerocopy::IntoBytes;

/// `IF_MIB_STATS_ID`, `IP_MIB_STATS_ID`, `TCP_MIB_STAT_ID`, `UDP_MIB_STAT_ID`,
/// `ICMP_MIB_STATS_ID`: an entity's statistics.
pub const STATS_ID: u32 = 1;
/// `IP_MIB_ARPTABLE_ENTRY_ID` (also `IP_MIB_RTTABLE_ENTRY_ID`, `TCP_MIB_TABLE_ID`,
/// `UDP_MIB_TABLE_ID`): an entity's table.
pub const TABLE_ID: u32 = 0x101;
/// `IP_MIB_ADDRTABLE_ENTRY_ID`.
pub const ADDRESS_TABLE_ID: u32 = 0x102;
/// `IP_SPECIFIC_MODULE_ENTRY_ID`: on a transport entity, the owner-module rows (on the same
/// entity, `IP_MIB_ADDRTABLE_ENTRY_ID` is the owner-PID rows), as ReactOS's iphlpapi asks for
/// `GetExtendedTcpTable`/`GetExtendedUdpTable` (`netstat -a`, `-o`).
pub const OWNER_MODULE_ID: u32 = 0x110;
/// `IP_INTFC_INFO_ID`: the interface that holds the address in the request's context.
pub const INTERFACE_INFO_ID: u32 = 0x103;

/// The default TTL of the stack (smoltcp's).
const DEFAULT_TTL: u32 = 64;
/// The reassembly limit reported per address: no fragment reassembly, so one unfragmented
/// datagram.
const REASSEMBLY_SIZE: u32 = 65535;

/// Answers `id`; `context` is the request's 16-byte context (`IP_INTFC_INFO_ID` reads the
/// address from its first four bytes). DISPATCH_LEVEL (under the core lock), allocates.
pub fn answer(
    source: &dyn Source,
    id: &TDIObjectID,
    context: &[u8; 16],
) -> Result<Vec<u8>, NtStatus> {
    let generic = id.toi_class == INFO_CLASS_GENERIC;
    if id.toi_entity.tei_entity == GENERIC_ENTITY {
        return match (generic, id.toi_type, id.toi_id) {
            (true, INFO_TYPE_PROVIDER, ENTITY_LIST_ID) => {
                let list = entities::list(source)?;
                bytes(list.as_bytes())
            }
            _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
        };
    }
    let entity = entities::resolve(source, id.toi_entity)?.ok_or(NtStatus::INVALID_PARAMETER)?;
    if generic && id.toi_id == ENTITY_TYPE_ID {
        return bytes(entities::entity_type(id.toi_entity.tei_entity, entity).as_bytes());
    }
    if id.toi_class != INFO_CLASS_PROTOCOL || id.toi_type != INFO_TYPE_PROVIDER {
        return Err(NtStatus::INVALID_DEVICE_REQUEST);
    }
    match (id.toi_entity.tei_entity, entity, id.toi_id) {
        (IF_ENTITY, Entity::Interface { index, .. }, STATS_ID) => if_entry(source, index),
        (AT_ENTITY, Entity::Interface { index, .. }, STATS_ID) => {
            let count = count_neighbors(source, index)?;
            let info = AddrXlatInfo {
                axi_count: count,
                axi_index: index,
            };
            bytes(info.as_bytes())
        }
        (AT_ENTITY, Entity::Interface { index, .. }, TABLE_ID) => arp_table(source, index),
        (CL_NL_ENTITY, Entity::Interface { index, .. }, STATS_ID) => ip_stats(source, index),
        (CL_NL_ENTITY, Entity::Interface { index, .. }, TABLE_ID) => route_table(source, index),
        (CL_NL_ENTITY, Entity::Interface { .. }, ADDRESS_TABLE_ID) => address_table(source),
        (CL_NL_ENTITY, Entity::Interface { .. }, INTERFACE_INFO_ID) => {
            let [a, b, c, d, ..] = *context;
            interface_info(source, Ipv4Addr::new(a, b, c, d))
        }
        (CO_TL_ENTITY, Entity::Protocol, STATS_ID) => tcp_stats(source),
        (CO_TL_ENTITY, Entity::Protocol, TABLE_ID) => tcp_table(source, Rows::Basic),
        (CO_TL_ENTITY, Entity::Protocol, ADDRESS_TABLE_ID) => tcp_table(source, Rows::OwnerPid),
        (CO_TL_ENTITY, Entity::Protocol, OWNER_MODULE_ID) => tcp_table(source, Rows::OwnerModule),
        (CL_TL_ENTITY, Entity::Protocol, STATS_ID) => udp_stats(source),
        (CL_TL_ENTITY, Entity::Protocol, TABLE_ID) => udp_table(source, Rows::Basic),
        (CL_TL_ENTITY, Entity::Protocol, ADDRESS_TABLE_ID) => udp_table(source, Rows::OwnerPid),
        (CL_TL_ENTITY, Entity::Protocol, OWNER_MODULE_ID) => udp_table(source, Rows::OwnerModule),
        (ER_ENTITY, Entity::Protocol, STATS_ID) => icmp_stats(source),
        _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
    }
}

/// A fresh answer holding `bytes`. IRQL ≤ DISPATCH_LEVEL.
fn bytes(bytes: &[u8]) -> Result<Vec<u8>, NtStatus> {
    let mut answer = pool::try_vec(bytes.len())?;
    answer.extend_from_slice(bytes);
    Ok(answer)
}

/// Appends `bytes` to `answer`, fallibly. IRQL ≤ DISPATCH_LEVEL.
fn append(answer: &mut Vec<u8>, bytes: &[u8]) -> Result<(), NtStatus> {
    pool::try_reserve(answer, bytes.len())?;
    answer.extend_from_slice(bytes);
    Ok(())
}

/// A MIB `Counter32`: the low 32 bits. Any IRQL.
fn c32(value: u64) -> u32 {
    value as u32
}

/// A count as a `ULONG`, saturating. Any IRQL.
fn count32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// The netmask of a prefix length, in network order. Any IRQL.
fn mask(prefix: u8) -> [u8; 4] {
    u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
        .to_be_bytes()
}

/// The interface with `index`, copied out of the walk with its name and MAC.
/// DISPATCH_LEVEL, under the core lock.
fn find_interface<T>(
    source: &dyn Source,
    index: u32,
    with: impl FnOnce(&Interface<'_>) -> Result<T, NtStatus>,
) -> Result<T, NtStatus> {
    let mut with = Some(with);
    let mut result = Err(NtStatus::INVALID_PARAMETER);
    source.interfaces(&mut |interface| {
        if interface.index == index
            && let Some(with) = with.take()
        {
            result = with(interface);
        }
        Ok(())
    })?;
    result
}

/// `IFEntry` plus the name: `FIELD_OFFSET(IFEntry, if_descr) + if_descrlen` bytes.
/// DISPATCH_LEVEL, under the core lock.
fn if_entry(source: &dyn Source, index: u32) -> Result<Vec<u8>, NtStatus> {
    find_interface(source, index, |interface| {
        let LinkCounters { received, sent } = interface.counters;
        let mut physaddr = [0u8; 8];
        let physical = interface.physical.get(..8).unwrap_or(interface.physical);
        if let Some(dest) = physaddr.get_mut(..physical.len()) {
            dest.copy_from_slice(physical);
        }
        let entry = IFEntry {
            if_index: interface.index,
            if_type: match interface.kind {
                LinkKind::Loopback => 24,
                LinkKind::Ethernet => 6,
            },
            if_mtu: interface.mtu,
            if_speed: interface.speed,
            if_physaddrlen: count32(physical.len()),
            if_physaddr: physaddr,
            if_adminstatus: if interface.admin_up { 1 } else { 2 },
            if_operstatus: if interface.oper_up { 5 } else { 2 },
            if_inoctets: c32(received.octets),
            if_inucastpkts: c32(received.unicast),
            if_innucastpkts: c32(received.non_unicast),
            if_outoctets: c32(sent.octets),
            if_outucastpkts: c32(sent.unicast),
            if_outnucastpkts: c32(sent.non_unicast),
            if_descrlen: count32(interface.name.len()),
            ..IFEntry::default()
        };
        let mut answer = bytes(entry.as_bytes())?;
        append(&mut answer, interface.name)?;
        Ok(answer)
    })
}

/// DISPATCH_LEVEL, under the core lock.
fn count_neighbors(source: &dyn Source, index: u32) -> Result<u32, NtStatus> {
    let mut count = 0u32;
    source.neighbors(&mut |row| {
        if row.interface == index {
            count = count.saturating_add(1);
        }
        Ok(())
    })?;
    Ok(count)
}

/// `IPNetToMediaEntry[]` of one interface; entries are dynamic (smoltcp's cache expires them).
/// DISPATCH_LEVEL, under the core lock.
fn arp_table(source: &dyn Source, index: u32) -> Result<Vec<u8>, NtStatus> {
    let mut answer = Vec::new();
    source.neighbors(&mut |row| {
        if row.interface != index {
            return Ok(());
        }
        let mut physaddr = [0u8; 8];
        if let Some(dest) = physaddr.get_mut(..6) {
            dest.copy_from_slice(&row.mac);
        }
        let entry = IPNetToMediaEntry {
            inme_index: row.interface,
            inme_physaddrlen: 6,
            inme_physaddr: physaddr,
            inme_addr: row.ip.octets(),
            inme_type: if row.is_static { 4 } else { 3 },
        };
        append(&mut answer, entry.as_bytes())
    })?;
    Ok(answer)
}

/// `IPSNMPInfo` for the IP entity of interface `index`: the counters are the stack's, the
/// interface and address counts the whole stack's (the address table lists every interface),
/// the route count this entity's (iphlpapi adds the route counts up over the IP entities and
/// then reads each entity's route table, which must hold exactly that many rows).
/// DISPATCH_LEVEL, under the core lock.
fn ip_stats(source: &dyn Source, index: u32) -> Result<Vec<u8>, NtStatus> {
    let ip = source.counters().ip;
    let mut interfaces = 0usize;
    source.interfaces(&mut |_| {
        interfaces = interfaces.saturating_add(1);
        Ok(())
    })?;
    let mut routes = 0usize;
    source.routes(&mut |route| {
        if route.interface == index {
            routes = routes.saturating_add(1);
        }
        Ok(())
    })?;
    let info = IPSNMPInfo {
        ipsi_forwarding: 2,
        ipsi_defaultttl: DEFAULT_TTL,
        ipsi_inreceives: c32(ip.in_receives),
        ipsi_inhdrerrors: c32(ip.in_header_errors),
        ipsi_inunknownprotos: c32(ip.in_unknown_protocols),
        ipsi_indelivers: c32(ip.in_delivers),
        ipsi_outrequests: c32(ip.out_requests),
        ipsi_numif: count32(interfaces),
        ipsi_numaddr: count32(interfaces),
        ipsi_numroutes: count32(routes),
        ..IPSNMPInfo::default()
    };
    bytes(info.as_bytes())
}

/// `IPRouteEntry[]`: the routes through interface `index`. DISPATCH_LEVEL, under the core lock.
fn route_table(source: &dyn Source, index: u32) -> Result<Vec<u8>, NtStatus> {
    let mut answer = Vec::new();
    source.routes(&mut |route| {
        if route.interface != index {
            return Ok(());
        }
        let entry = IPRouteEntry {
            ire_dest: route.destination.octets(),
            ire_index: route.interface,
            ire_metric1: route.metric,
            ire_metric2: u32::MAX,
            ire_metric3: u32::MAX,
            ire_metric4: u32::MAX,
            ire_nexthop: route.next_hop.octets(),
            ire_type: match route.kind {
                RouteKind::Direct => 3,
                RouteKind::Indirect => 4,
            },
            ire_proto: if route.is_static { 3 } else { 2 },
            ire_age: 0,
            ire_mask: mask(route.prefix),
            ire_metric5: u32::MAX,
            ire_context: 0,
        };
        append(&mut answer, entry.as_bytes())
    })?;
    Ok(answer)
}

/// `IPAddrEntry[]`: one entry per interface, in interface order, whichever IP entity is asked
/// (Windows has one IP entity, which answers for all). ReactOS's iphlpapi reads the table of
/// its *first* IP entity and counts an interface only if that table has an entry with its
/// index, so every interface is listed, `0.0.0.0` while it has no address (DHCP pending):
/// an interface missing from it makes `GetAdaptersInfo` disagree with the interface count, and
/// `ipconfig` read garbage. DISPATCH_LEVEL, under the core lock.
fn address_table(source: &dyn Source) -> Result<Vec<u8>, NtStatus> {
    let mut answer = Vec::new();
    source.interfaces(&mut |interface| {
        let (ip, prefix) = interface.address.unwrap_or((Ipv4Addr::UNSPECIFIED, 0));
        let entry = IPAddrEntry {
            iae_addr: ip.octets(),
            iae_index: interface.index,
            iae_mask: mask(prefix),
            iae_bcastaddr: 1,
            iae_reasmsize: REASSEMBLY_SIZE,
            iae_context: u16::try_from(interface.index).unwrap_or(u16::MAX),
            iae_pad: 0,
        };
        append(&mut answer, entry.as_bytes())
    })?;
    Ok(answer)
}

/// `IPInterfaceInfo` of the interface holding `address`, plus its physical address.
/// DISPATCH_LEVEL, under the core lock.
fn interface_info(source: &dyn Source, address: Ipv4Addr) -> Result<Vec<u8>, NtStatus> {
    let mut answer = None;
    source.interfaces(&mut |interface| {
        if answer.is_none() && interface.address.is_some_and(|(ip, _)| ip == address) {
            let info = IPInterfaceInfo {
                iii_flags: 0,
                iii_mtu: interface.mtu,
                iii_speed: interface.speed,
                iii_addrlength: count32(interface.physical.len()),
            };
            let mut out = bytes(info.as_bytes())?;
            append(&mut out, interface.physical)?;
            answer = Some(out);
        }
        Ok(())
    })?;
    answer.ok_or(NtStatus::INVALID_PARAMETER)
}

/// `TCPStats`: the core's TCP counters and the connections it holds now.
/// DISPATCH_LEVEL, under the core lock.
fn tcp_stats(source: &dyn Source) -> Result<Vec<u8>, NtStatus> {
    let tcp = source.counters().tcp;
    let (mut established, mut connections) = (0usize, 0usize);
    source.tcp_connections(&mut |row| {
        use crate::info::model::TcpState;
        connections = connections.saturating_add(1);
        if matches!(row.state, TcpState::Established | TcpState::CloseWait) {
            established = established.saturating_add(1);
        }
        Ok(())
    })?;
    let stats = TCPStats {
        ts_rtoalgorithm: 4,
        ts_rtomin: 1000,
        ts_rtomax: 60_000,
        ts_maxconn: u32::MAX,
        ts_activeopens: c32(tcp.active_opens),
        ts_passiveopens: c32(tcp.passive_opens),
        ts_attemptfails: c32(tcp.attempt_fails),
        ts_estabresets: c32(tcp.established_resets),
        ts_currestab: count32(established),
        ts_insegs: c32(tcp.in_segments),
        ts_outsegs: c32(tcp.out_segments),
        ts_retranssegs: c32(tcp.retransmitted),
        ts_inerrs: c32(tcp.in_errors),
        ts_outrsts: c32(tcp.out_resets),
        ts_numconns: count32(connections),
    };
    bytes(stats.as_bytes())
}

/// A port as a row's `ULONG`: the network-order 16 bits in the low two bytes. Any IRQL.
fn port_field(port: u16) -> [u8; 4] {
    let [high, low] = port.to_be_bytes();
    [high, low, 0, 0]
}

/// The row format of a transport table: the same rows in the same order, with or without
/// their owner (iphlpapi sizes the owner tables from the basic table's row count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rows {
    /// `MIB_TCPROW` / `MIB_UDPROW`.
    Basic,
    /// `MIB_*ROW_OWNER_PID`.
    OwnerPid,
    /// `MIB_*ROW_OWNER_MODULE`.
    OwnerModule,
}

/// A creation time as a `LARGE_INTEGER`'s bytes. Any IRQL.
fn timestamp(owner: ProcessOwner) -> [u8; 8] {
    owner.created.to_le_bytes()
}

/// Every TCP socket, as `rows`. DISPATCH_LEVEL, under the core lock.
fn tcp_table(source: &dyn Source, rows: Rows) -> Result<Vec<u8>, NtStatus> {
    let mut answer = Vec::new();
    source.tcp_connections(&mut |row| {
        let entry = TCPConnTableEntry {
            tct_state: row.state as u32,
            tct_localaddr: row.local.ip().octets(),
            tct_localport: port_field(row.local.port()),
            tct_remoteaddr: row.remote.ip().octets(),
            tct_remoteport: port_field(row.remote.port()),
        };
        let owned = TcpRowOwnerPid {
            row: entry,
            owning_pid: row.owner.pid,
        };
        match rows {
            Rows::Basic => append(&mut answer, entry.as_bytes()),
            Rows::OwnerPid => append(&mut answer, owned.as_bytes()),
            Rows::OwnerModule => {
                let module = TcpRowOwnerModule {
                    row: owned,
                    create_timestamp: timestamp(row.owner),
                    owning_module_info: [[0; 8]; OWNING_MODULE_SIZE],
                };
                append(&mut answer, module.as_bytes())
            }
        }
    })?;
    Ok(answer)
}

/// `UDPStats`. DISPATCH_LEVEL, under the core lock.
fn udp_stats(source: &dyn Source) -> Result<Vec<u8>, NtStatus> {
    let udp = source.udp_counters();
    let mut listeners = 0usize;
    source.udp_listeners(&mut |_| {
        listeners = listeners.saturating_add(1);
        Ok(())
    })?;
    let stats = UDPStats {
        us_indatagrams: c32(udp.in_datagrams),
        us_noports: c32(udp.no_ports),
        us_inerrors: c32(udp.in_errors),
        us_outdatagrams: c32(udp.out_datagrams),
        us_numaddrs: count32(listeners),
    };
    bytes(stats.as_bytes())
}

/// Every bound UDP address file, as `rows`. DISPATCH_LEVEL, under the core lock.
fn udp_table(source: &dyn Source, rows: Rows) -> Result<Vec<u8>, NtStatus> {
    let mut answer = Vec::new();
    source.udp_listeners(&mut |row| {
        let entry = UDPEntry {
            ue_localaddr: row.local.ip().octets(),
            ue_localport: port_field(row.local.port()),
        };
        let owned = UdpRowOwnerPid {
            row: entry,
            owning_pid: row.owner.pid,
        };
        match rows {
            Rows::Basic => append(&mut answer, entry.as_bytes()),
            Rows::OwnerPid => append(&mut answer, owned.as_bytes()),
            Rows::OwnerModule => {
                let module = UdpRowOwnerModule {
                    row: owned,
                    pad0: 0,
                    create_timestamp: timestamp(row.owner),
                    // `SpecificPortBind` is not kept.
                    flags: 0,
                    pad1: 0,
                    owning_module_info: [[0; 8]; OWNING_MODULE_SIZE],
                };
                append(&mut answer, module.as_bytes())
            }
        }
    })?;
    Ok(answer)
}

/// Any IRQL.
fn icmp_direction(direction: IcmpDirection) -> ICMPStats {
    ICMPStats {
        icmps_msgs: c32(direction.messages),
        icmps_errors: c32(direction.errors),
        icmps_destunreachs: c32(direction.destination_unreachables),
        icmps_timeexcds: c32(direction.time_exceeded),
        icmps_parmprobs: c32(direction.parameter_problems),
        icmps_redirects: c32(direction.redirects),
        icmps_echos: c32(direction.echo_requests),
        icmps_echoreps: c32(direction.echo_replies),
        ..ICMPStats::default()
    }
}

/// `ICMPSNMPInfo`: received, then sent. DISPATCH_LEVEL, under the core lock.
fn icmp_stats(source: &dyn Source) -> Result<Vec<u8>, NtStatus> {
    let icmp = source.counters().icmp;
    let info = ICMPSNMPInfo {
        icsi_instats: icmp_direction(icmp.received),
        icsi_outstats: icmp_direction(icmp.sent),
    };
    bytes(info.as_bytes())
}
