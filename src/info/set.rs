//! `IOCTL_TCP_SET_INFORMATION_EX` decoded: what a set request asks to change (contract §5.2).
//!
//! - On an IP entity, `IP_MIB_RTTABLE_ENTRY_ID` (0x101) with an `IPRouteEntry`: route add, or
//!   delete when `ire_type` is 2 (invalid), as iphlpapi's `CreateIpForwardEntry` and
//!   `DeleteIpForwardEntry` send it (to the N-th IP entity for interface index N).
//! - On an AT entity, `IP_MIB_ARPTABLE_ENTRY_ID` (0x101) with an `IPNetToMediaEntry`: an ARP
//!   entry (`SetIpNetEntry`, `arp -s`/`-d`).
//! - On a transport entity, the socket options wshtcpip's setsockopt sends:
//!   `INFO_TYPE_CONNECTION`/`TCP_SOCKET_NODELAY` and `INFO_TYPE_ADDRESS_OBJECT`/`AO_OPTION_*`,
//!   each value a `ULONG` (`TCP_NODELAY` may come as a single `BOOLEAN` byte).
//!
//! Route and ARP changes alter the configuration and need the caller's right to change it;
//! socket options do not (any user may set them on their own socket).
#![forbid(unsafe_code)]

use crate::info::model::Transport;
use crate::info::wire::{IPNetToMediaEntry, IPRouteEntry};
use crate::nt::NtStatus;
use crate::nt::types::*;
use core::net::Ipv4Addr;
use zerocopy::FromBytes;

/// `AO_OPTION_TTL`.
pub const AO_OPTION_TTL: u32 = 1;
/// `AO_OPTION_MCASTTTL`.
pub const AO_OPTION_MCASTTTL: u32 = 2;
/// `AO_OPTION_IP_DONTFRAGMENT`.
pub const AO_OPTION_IP_DONTFRAGMENT: u32 = 9;
/// `AO_OPTION_BROADCAST`.
pub const AO_OPTION_BROADCAST: u32 = 11;
/// `AO_OPTION_IP_HDRINCL`.
pub const AO_OPTION_IP_HDRINCL: u32 = 12;
/// `ire_type`/`inme_type` 2: the entry is invalid, i.e. delete it.
const TYPE_INVALID: u32 = 2;

/// A route change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteChange {
    /// The IP entity's instance (= interface index) the request was sent to.
    pub interface: u32,
    pub destination: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub metric: u32,
    pub delete: bool,
}

/// What to do with an ARP entry (`inme_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighborChange {
    /// 2 (invalid): delete it.
    Delete,
    /// 3: a learned entry, which expires.
    Dynamic([u8; 6]),
    /// 4: a static entry, which does not.
    Static([u8; 6]),
}

/// `inme_type` 3: dynamic.
const TYPE_DYNAMIC: u32 = 3;
/// `inme_type` 4: static.
const TYPE_STATIC: u32 = 4;

/// A socket option for an address file's sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketOption {
    NoDelay(bool),
    /// The unicast TTL (`IP_TTL`).
    Ttl(u8),
    /// Options with no effect here, accepted for a live socket: the multicast TTL (no
    /// multicast), don't-fragment (no fragmentation: every datagram leaves whole or not at
    /// all), header inclusion (raw IP only), broadcast (msafd enforces SO_BROADCAST itself).
    NoEffect,
}

/// What a set request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    Route(RouteChange),
    /// An ARP entry for the AT entity's interface.
    Neighbor {
        interface: u32,
        ip: Ipv4Addr,
        change: NeighborChange,
    },
    /// A socket option on the `transport` entity `instance`.
    Option {
        transport: Transport,
        instance: u32,
        option: SocketOption,
    },
}

impl Setting {
    /// Whether the setting changes the network configuration (and so needs the right to). Any IRQL.
    pub fn is_configuration(&self) -> bool {
        !matches!(self, Setting::Option { .. })
    }
}

/// The `ULONG` value of an option (a single byte is accepted for booleans). Any IRQL.
fn value(buffer: &[u8]) -> Result<u32, NtStatus> {
    match buffer {
        [byte] => Ok(u32::from(*byte)),
        [a, b, c, d, ..] => Ok(u32::from_le_bytes([*a, *b, *c, *d])),
        _ => Err(NtStatus::INVALID_PARAMETER),
    }
}

/// A prefix length from a netmask in network order; `None` if the mask has holes. Any IRQL.
fn prefix(mask: [u8; 4]) -> Option<u8> {
    let mask = u32::from_be_bytes(mask);
    let ones = mask.leading_ones();
    (mask.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// Decodes a set request. `STATUS_INVALID_PARAMETER` for a short or malformed value,
/// `STATUS_INVALID_DEVICE_REQUEST` for an object that cannot be set. Any IRQL.
pub fn decode(id: &TDIObjectID, buffer: &[u8]) -> Result<Setting, NtStatus> {
    if id.toi_class != INFO_CLASS_PROTOCOL {
        return Err(NtStatus::INVALID_DEVICE_REQUEST);
    }
    let instance = id.toi_entity.tei_instance;
    match (id.toi_entity.tei_entity, id.toi_type, id.toi_id) {
        (CL_NL_ENTITY, INFO_TYPE_PROVIDER, 0x101) => {
            let (route, _) =
                IPRouteEntry::read_from_prefix(buffer).map_err(|_| NtStatus::INVALID_PARAMETER)?;
            let prefix = prefix(route.ire_mask).ok_or(NtStatus::INVALID_PARAMETER)?;
            Ok(Setting::Route(RouteChange {
                interface: instance,
                destination: Ipv4Addr::from(route.ire_dest),
                prefix,
                gateway: Ipv4Addr::from(route.ire_nexthop),
                metric: route.ire_metric1,
                delete: route.ire_type == TYPE_INVALID,
            }))
        }
        (AT_ENTITY, INFO_TYPE_PROVIDER, 0x101) => {
            let (entry, _) = IPNetToMediaEntry::read_from_prefix(buffer)
                .map_err(|_| NtStatus::INVALID_PARAMETER)?;
            let ip = Ipv4Addr::from(entry.inme_addr);
            if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            let mac = match (entry.inme_physaddrlen, entry.inme_physaddr) {
                (6, [a, b, c, d, e, f, ..]) => [a, b, c, d, e, f],
                _ => [0; 6],
            };
            let unicast = entry.inme_physaddrlen == 6 && mac[0] & 1 == 0 && mac != [0; 6];
            let change = match entry.inme_type {
                TYPE_INVALID => NeighborChange::Delete,
                TYPE_DYNAMIC if unicast => NeighborChange::Dynamic(mac),
                TYPE_STATIC if unicast => NeighborChange::Static(mac),
                _ => return Err(NtStatus::INVALID_PARAMETER),
            };
            Ok(Setting::Neighbor {
                interface: instance,
                ip,
                change,
            })
        }
        // Any entity: wshtcpip sends it for an accepted socket with the entity of a context
        // no bind filled in; naming no address file, it succeeds without effect.
        (_, INFO_TYPE_CONNECTION, TCP_SOCKET_NODELAY) => Ok(Setting::Option {
            transport: Transport::Tcp,
            instance,
            option: SocketOption::NoDelay(value(buffer)? != 0),
        }),
        (entity @ (CO_TL_ENTITY | CL_TL_ENTITY), INFO_TYPE_ADDRESS_OBJECT, option) => {
            let transport = if entity == CO_TL_ENTITY {
                Transport::Tcp
            } else {
                Transport::Udp
            };
            let value = value(buffer)?;
            let option = match option {
                AO_OPTION_TTL => {
                    let ttl = u8::try_from(value).map_err(|_| NtStatus::INVALID_PARAMETER)?;
                    if ttl == 0 {
                        return Err(NtStatus::INVALID_PARAMETER);
                    }
                    SocketOption::Ttl(ttl)
                }
                AO_OPTION_MCASTTTL
                | AO_OPTION_IP_DONTFRAGMENT
                | AO_OPTION_BROADCAST
                | AO_OPTION_IP_HDRINCL => SocketOption::NoEffect,
                _ => return Err(NtStatus::INVALID_DEVICE_REQUEST),
            };
            Ok(Setting::Option {
                transport,
                instance,
                option,
            })
        }
        _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
    }
}
