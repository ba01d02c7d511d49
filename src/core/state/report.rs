//! The core as the information model's [`Source`]: its interfaces, routes, sockets, address
//! files and counters, read under the core lock and handed over as values.
#![forbid(unsafe_code)]

use super::Core;
use crate::core::address::{Address, Protocol};
use crate::core::counters::{Counters, LinkCounters};
use crate::info::model::{
    Each, EachInterface, Interface, LinkKind, NeighborRow, RouteKind, RouteRow, Source, TcpRow,
    TcpState, Transport, UdpCounters, UdpRow,
};
use crate::nt::NtStatus;
use crate::nt::pool;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use smoltcp::socket::tcp::State;
use smoltcp::wire::{HardwareAddress, IpAddress};

/// The loopback's speed as Windows reports it: 10 Mbit/s.
const LOOPBACK_SPEED: u32 = 10_000_000;

/// Room for an interface name: a `{GUID}` is 38 characters.
const NAME_LEN: usize = 64;

/// `wide` (an adapter's UTF-16 `{GUID}`) as ASCII in `buffer`, cut to its length; other
/// characters become `?`. Any IRQL.
fn ascii<'b>(wide: &[u16], buffer: &'b mut [u8; NAME_LEN]) -> &'b [u8] {
    let mut len = 0;
    for (slot, unit) in buffer.iter_mut().zip(wide) {
        *slot = u8::try_from(*unit)
            .ok()
            .filter(u8::is_ascii)
            .unwrap_or(b'?');
        len += 1;
    }
    buffer.get(..len).unwrap_or_default()
}

/// The network of `ip`/`prefix`. Any IRQL.
fn network(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(ip) & mask)
}

/// Any IRQL.
fn tcp_state(state: State) -> TcpState {
    match state {
        State::Closed => TcpState::Closed,
        State::Listen => TcpState::Listen,
        State::SynSent => TcpState::SynSent,
        State::SynReceived => TcpState::SynReceived,
        State::Established => TcpState::Established,
        State::FinWait1 => TcpState::FinWait1,
        State::FinWait2 => TcpState::FinWait2,
        State::CloseWait => TcpState::CloseWait,
        State::Closing => TcpState::Closing,
        State::LastAck => TcpState::LastAck,
        State::TimeWait => TcpState::TimeWait,
    }
}

/// Any IRQL.
fn endpoint(addr: Option<IpAddress>, port: u16) -> SocketAddrV4 {
    let ip = match addr {
        Some(IpAddress::Ipv4(ip)) => ip,
        None => Ipv4Addr::UNSPECIFIED,
    };
    SocketAddrV4::new(ip, port)
}

impl Core {
    /// Calls `each` with every open address file and its number, in slot order.
    /// DISPATCH_LEVEL, under the core lock.
    fn each_open_address(
        &self,
        mut each: impl FnMut(&Address, u32) -> Result<(), NtStatus>,
    ) -> Result<(), NtStatus> {
        for index in 0..self.addresses.slot_count() {
            let address = self
                .addresses
                .key_at(index)
                .and_then(|key| self.addresses.get(key));
            if let Some(address) = address.filter(|address| address.file_open) {
                each(address, index)?;
            }
        }
        Ok(())
    }
}

impl Source for Core {
    /// DISPATCH_LEVEL, under the core lock.
    fn interfaces(&self, each: EachInterface<'_>) -> Result<(), NtStatus> {
        each(&Interface {
            index: 0,
            kind: LinkKind::Loopback,
            name: b"Loopback",
            mtu: u32::try_from(self.config.loopback_mtu).unwrap_or(u32::MAX),
            speed: LOOPBACK_SPEED,
            physical: &[],
            admin_up: true,
            oper_up: true,
            counters: self.loopback_link.get(),
            address: Some((Ipv4Addr::LOCALHOST, 8)),
        })?;
        // Interface 1 is listed once it has an address or an adapter, the others while
        // their adapter is bound.
        for (index, slot) in self.interfaces() {
            let configured = slot.address.map(|cidr| (cidr.address(), cidr.prefix_len()));
            if configured.is_none() && !slot.bound {
                continue;
            }
            let port = slot.port.as_deref();
            let mac = match port.map(|port| port.iface.hardware_addr()) {
                Some(HardwareAddress::Ethernet(mac)) => mac.0,
                _ => [0; 6],
            };
            let mut name = [0u8; NAME_LEN];
            let name = match port.map(|port| port.adapter.interface_name()) {
                Some(wide) if !wide.is_empty() => ascii(wide, &mut name),
                _ => b"Ethernet".as_slice(),
            };
            each(&Interface {
                index,
                kind: LinkKind::Ethernet,
                name,
                mtu: port.map_or(1500, |port| u32::try_from(port.mtu).unwrap_or(u32::MAX)),
                speed: port.map_or(0, |port| port.adapter.link_speed()),
                physical: if port.is_some() { &mac } else { &[] },
                admin_up: true,
                oper_up: port.is_some_and(|port| port.adapter.media_connected()),
                counters: port.map_or(LinkCounters::default(), |port| port.link.get()),
                address: configured,
            })?;
        }
        Ok(())
    }

    /// DISPATCH_LEVEL, under the core lock.
    fn routes(&self, each: Each<'_, RouteRow>) -> Result<(), NtStatus> {
        each(&RouteRow {
            destination: Ipv4Addr::new(127, 0, 0, 0),
            prefix: 8,
            next_hop: Ipv4Addr::LOCALHOST,
            interface: 0,
            kind: RouteKind::Direct,
            is_static: false,
            metric: 1,
        })?;
        for (index, slot) in self.interfaces() {
            let Some(cidr) = slot.address else {
                continue;
            };
            let (ip, prefix) = (cidr.address(), cidr.prefix_len());
            each(&RouteRow {
                destination: network(ip, prefix),
                prefix,
                next_hop: ip,
                interface: index,
                kind: RouteKind::Direct,
                is_static: false,
                metric: 1,
            })?;
        }
        for (index, slot) in self.interfaces() {
            if let (Some(gateway), Some(_)) = (slot.gateway, slot.address) {
                each(&RouteRow {
                    destination: Ipv4Addr::UNSPECIFIED,
                    prefix: 0,
                    next_hop: gateway,
                    interface: index,
                    kind: RouteKind::Indirect,
                    is_static: true,
                    metric: index,
                })?;
            }
        }
        for route in self.routes.iter() {
            each(&RouteRow {
                destination: route.destination,
                prefix: route.prefix,
                next_hop: route.gateway,
                interface: route.interface,
                kind: RouteKind::Indirect,
                is_static: true,
                metric: route.metric,
            })?;
        }
        Ok(())
    }

    /// The mirror of smoltcp's ARP cache (`core::neighbors`). DISPATCH_LEVEL, under the core lock.
    fn neighbors(&self, each: Each<'_, NeighborRow>) -> Result<(), NtStatus> {
        for (index, slot) in self.interfaces() {
            let Some(port) = slot.port.as_deref() else {
                continue;
            };
            for (ip, mac, is_static) in port.neighbors.rows(self.now) {
                each(&NeighborRow {
                    interface: index,
                    ip,
                    mac,
                    is_static,
                })?;
            }
        }
        Ok(())
    }

    /// DISPATCH_LEVEL, under the core lock.
    fn tcp_connections(&self, each: Each<'_, TcpRow>) -> Result<(), NtStatus> {
        self.sockets.try_for_each(|socket, owner| {
            let state = socket.state();
            if state == State::Closed {
                return Ok(());
            }
            let (local, remote) = match (socket.local_endpoint(), socket.remote_endpoint()) {
                (Some(local), Some(remote)) => (
                    endpoint(Some(local.addr), local.port),
                    endpoint(Some(remote.addr), remote.port),
                ),
                _ => {
                    let listen = socket.listen_endpoint();
                    (
                        endpoint(listen.addr, listen.port),
                        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                    )
                }
            };
            each(&TcpRow {
                state: tcp_state(state),
                local,
                remote,
                owner,
            })
        })
    }

    /// DISPATCH_LEVEL, under the core lock.
    fn udp_listeners(&self, each: Each<'_, UdpRow>) -> Result<(), NtStatus> {
        self.each_open_address(|address, _| match address.protocol {
            Protocol::Udp => each(&UdpRow {
                local: SocketAddrV4::new(address.ip(), address.port()),
                owner: address.owner,
            }),
            Protocol::Tcp | Protocol::Raw(_) => Ok(()),
        })
    }

    /// DISPATCH_LEVEL, under the core lock.
    fn address_files(&self, each: Each<'_, (Transport, u32)>) -> Result<(), NtStatus> {
        let mut open: Vec<(u64, u32, Transport)> = Vec::new();
        self.each_open_address(|address, index| {
            // Raw IP address files have no transport entity of their own.
            let transport = match address.protocol {
                Protocol::Tcp => Transport::Tcp,
                Protocol::Udp => Transport::Udp,
                Protocol::Raw(_) => return Ok(()),
            };
            pool::try_push(&mut open, (address.serial, index, transport))
        })?;
        open.sort_unstable_by_key(|&(serial, ..)| serial);
        for (_, index, transport) in open {
            each(&(transport, index))?;
        }
        Ok(())
    }

    /// DISPATCH_LEVEL, under the core lock.
    fn udp_counters(&self) -> UdpCounters {
        let stats = self.udp_stats();
        UdpCounters {
            in_datagrams: stats.datagrams_in,
            no_ports: stats.no_port,
            in_errors: stats.checksum_errors.wrapping_add(stats.queue_full),
            out_datagrams: stats.datagrams_out,
        }
    }

    /// DISPATCH_LEVEL, under the core lock.
    fn counters(&self) -> Counters {
        let mut counters = self.counters.get();
        counters.tcp.retransmitted = self.sockets.retransmitted();
        counters
    }
}
