//! What the information model reads: plain values handed over by a [`Source`], never pointers
//! into the core. The core implements `Source` (`core::report`); the NDIS binding adds its
//! adapters through [`Interface`] rows and UDP its listeners and counters through
//! [`UdpRow`]/[`UdpCounters`], so neither needs to know the wire formats.
#![forbid(unsafe_code)]

use crate::core::counters::{Counters, LinkCounters};
use crate::nt::NtStatus;
use crate::nt::process::ProcessOwner;
use core::net::{Ipv4Addr, SocketAddrV4};

/// What kind of link an interface is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// The software loopback (`IF_TYPE_SOFTWARE_LOOPBACK`, no ARP).
    Loopback,
    /// An Ethernet adapter (`IF_TYPE_ETHERNET_CSMACD`, ARP).
    Ethernet,
}

/// One interface, as `IFEntry`, `IPAddrEntry` and `IPInterfaceInfo` describe it.
#[derive(Clone, Copy, Debug)]
pub struct Interface<'a> {
    /// The interface index (loopback 0, then the adapters).
    pub index: u32,
    pub kind: LinkKind,
    /// The interface name (`if_descr`): `"Loopback"` or, for an adapter, its `{GUID}`.
    pub name: &'a [u8],
    /// The IP MTU in bytes.
    pub mtu: u32,
    /// Bits per second.
    pub speed: u32,
    /// The MAC address (empty for loopback).
    pub physical: &'a [u8],
    /// Administratively enabled.
    pub admin_up: bool,
    /// The link is up (media connected).
    pub oper_up: bool,
    pub counters: LinkCounters,
    /// The interface's IPv4 address and prefix, if it has one.
    pub address: Option<(Ipv4Addr, u8)>,
}

/// How a route reaches its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    /// On the link itself (`ire_type` 3).
    Direct,
    /// Through a gateway (`ire_type` 4).
    Indirect,
}

/// One route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteRow {
    pub destination: Ipv4Addr,
    pub prefix: u8,
    /// The gateway, or the interface's own address for a direct route.
    pub next_hop: Ipv4Addr,
    pub interface: u32,
    pub kind: RouteKind,
    /// Installed by `route add` (network management) rather than by the stack itself.
    pub is_static: bool,
    pub metric: u32,
}

/// One neighbour (ARP cache) entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborRow {
    pub interface: u32,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// Set through the IP helper (`arp -s`) rather than learned.
    pub is_static: bool,
}

/// A TCP connection's state as `MIB_TCP_STATE` numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum TcpState {
    Closed = 1,
    Listen = 2,
    SynSent = 3,
    SynReceived = 4,
    Established = 5,
    FinWait1 = 6,
    FinWait2 = 7,
    CloseWait = 8,
    Closing = 9,
    LastAck = 10,
    TimeWait = 11,
}

/// One row of the TCP connection table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRow {
    pub state: TcpState,
    pub local: SocketAddrV4,
    /// 0.0.0.0:0 for a listener.
    pub remote: SocketAddrV4,
    /// The process of the socket's address file.
    pub owner: ProcessOwner,
}

/// One row of the UDP listener table: a bound UDP address file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRow {
    pub local: SocketAddrV4,
    /// The process that opened the address file.
    pub owner: ProcessOwner,
}

/// UDP counters (RFC 1213 `udp` group).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpCounters {
    pub in_datagrams: u64,
    /// Datagrams for a port nobody listens on (`udpNoPorts`).
    pub no_ports: u64,
    /// Datagrams that arrived for a listener but could not be delivered (`udpInErrors`).
    pub in_errors: u64,
    pub out_datagrams: u64,
}

/// The transport protocol of an address file's entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// A row callback: returning an error stops the walk and becomes the query's status.
pub type Each<'f, T> = &'f mut dyn FnMut(&T) -> Result<(), NtStatus>;

/// The callback of [`Source::interfaces`]: the rows borrow the source's names for one call.
pub type EachInterface<'f> = &'f mut dyn for<'i> FnMut(&Interface<'i>) -> Result<(), NtStatus>;

/// Everything the information model reads. Implementations hold their own lock for the walk
/// (the core's is held by the caller) and call `each` once per row, in a stable order: an
/// answer must not change size between tdilib's probe and fetch without a reason.
/// Every method runs at DISPATCH_LEVEL under the core lock: no waiting, fallible allocation.
pub trait Source {
    /// The interfaces, loopback first, by index. DISPATCH_LEVEL, under the core lock.
    fn interfaces(&self, each: EachInterface<'_>) -> Result<(), NtStatus>;
    /// Every route, each interface's routes together. DISPATCH_LEVEL, under the core lock.
    fn routes(&self, each: Each<'_, RouteRow>) -> Result<(), NtStatus>;
    /// The ARP cache of every interface. DISPATCH_LEVEL, under the core lock.
    fn neighbors(&self, each: Each<'_, NeighborRow>) -> Result<(), NtStatus>;
    /// Every TCP socket: listeners, connections, and closing ones the stack still keeps.
    /// DISPATCH_LEVEL, under the core lock.
    fn tcp_connections(&self, each: Each<'_, TcpRow>) -> Result<(), NtStatus>;
    /// Every bound UDP address file. DISPATCH_LEVEL, under the core lock.
    fn udp_listeners(&self, each: Each<'_, UdpRow>) -> Result<(), NtStatus>;
    /// The address files, as (transport, instance), oldest first (wshtcpip takes the last
    /// one listed after a bind as its socket's entity). DISPATCH_LEVEL, under the core lock.
    fn address_files(&self, each: Each<'_, (Transport, u32)>) -> Result<(), NtStatus>;
    /// IP, TCP and ICMP counters. DISPATCH_LEVEL, under the core lock.
    fn counters(&self) -> Counters;
    /// UDP counters. DISPATCH_LEVEL, under the core lock.
    fn udp_counters(&self) -> UdpCounters;
}
