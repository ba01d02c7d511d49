//! The core: smoltcp's interface and sockets plus everything smoltcp leaves to its user — the
//! address and connection tables, ports, listeners with their accept queues, the requests
//! waiting on each connection, close reasons and orphaned sockets.
//!
//! Everything here runs with the core spin lock held, at DISPATCH_LEVEL: it never waits,
//! never allocates infallibly, and never completes an IRP. Finished requests go to the
//! outbound queue through a [`Completer`].
#![forbid(unsafe_code)]

use crate::core::address::{Address, Listener, Protocol};
use crate::core::arp_entries;
use crate::core::connection::{CloseReason, Connection, Phase, Receive};
use crate::core::counters::{Counters, LinkCounters, Meter, Metered};
use crate::core::endpoint::{self, Verb};
use crate::core::ethernet::{Link, MAX_INTERFACES, Port, Slot, Wire};
use crate::core::events::EventHub;
use crate::core::fragment::{FragmentConfig, FragmentStats, Fragments};
use crate::core::icmp::{Icmp, IcmpStats};
use crate::core::info::Answer;
use crate::core::isn::{self, IsnKey};
use crate::core::lookaside::{Lookaside, LookasideStats};
use crate::core::oversize::Oversize;
use crate::core::ports::PortTable;
use crate::core::random::Csprng;
use crate::core::raw::{Raw, RawConfig, RawStats};
use crate::core::resolve::Resolutions;
use crate::core::routes::StaticRoutes;
use crate::core::slab::{Key, Slab};
use crate::core::sockets::{Owner, Route, SocketKey, Sockets};
use crate::core::transfer;
use crate::core::udp::{Udp, UdpConfig, UdpStats};
use crate::core::work::{Completion, Finish, Object, Outbound, Request, Work};
use crate::link::loopback::Loopback;
use crate::nt::NtStatus;
use crate::nt::irp::{IrpId, PendingIrp};
use crate::nt::lend::Lent;
use crate::nt::pool;
use crate::nt::process::ProcessOwner;
use crate::nt::sync::SpinLock;
use crate::nt::types::{TDI_CONNECTION_FILE, TDI_TRANSPORT_ADDRESS_FILE};
use crate::tdi::{Disconnect, QueryType, Timeout, TransportAddress};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::Cell;
use core::net::{Ipv4Addr, SocketAddrV4};
use smoltcp::iface::{Config, Interface};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint};

mod configure;
mod connections;
pub(in crate::core) mod events;
mod files;
mod interfaces;
mod listeners;
mod pass;
mod report;

/// Tunables of the core.
#[derive(Clone, Copy, Debug)]
pub struct CoreConfig {
    /// Receive buffer per connection: the largest window advertised.
    pub rx_buffer: usize,
    /// Send buffer per connection.
    pub tx_buffer: usize,
    /// Socket buffer bytes (all sockets together) above which a new socket gets
    /// [`small_buffer`](Self::small_buffer)-sized buffers instead of `rx_buffer`/`tx_buffer`.
    /// smoltcp cannot resize a socket's buffers later, and they are non-paged pool: a ReactOS
    /// machine with 1 GiB has about 160 MiB of it, so a thousand loopback connections (two
    /// sockets each) at 128 KiB a socket do not fit, and connects fail with WSAENOBUFS. Past
    /// this mark connections still open, with a smaller window.
    pub buffer_pressure: usize,
    /// Receive and send buffer each of a socket made under buffer pressure. Such a socket
    /// acknowledges at once (no delayed ACK), since its window is about one loopback segment
    /// and a delayed ACK would stall it for a tick per segment (`smoltcp-notes` §4.5).
    pub small_buffer: usize,
    /// Socket buffer bytes (all TCP sockets together) the core holds at most: a socket that
    /// would take more is refused with `STATUS_INSUFFICIENT_RESOURCES` (a connect fails with
    /// WSAENOBUFS; a listener drops the SYN, which the client retries). With
    /// `buffer_pressure` this bounds what connections, idle or not, can take of the
    /// non-paged pool: a machine's worth of them cannot starve the rest of the kernel.
    pub socket_memory_limit: usize,
    /// Ring blocks the core keeps for reuse per size class (`rx_buffer`, `tx_buffer`,
    /// `small_buffer`; a TCP socket takes two) when sockets close, beyond which they go back to
    /// the pool: a new socket then takes its rings from there instead of allocating and
    /// zeroing them (see [`crate::core::lookaside`]). At most this many blocks of each size
    /// are held with no socket using them.
    pub lookaside_depth: usize,
    /// How long a size class of the lookaside may go unused before its blocks go back to the
    /// pool (so an idle driver holds none).
    pub lookaside_idle: Duration,
    /// The most TCP sockets at once (listening, half-open, connected, closing). A limit, not a
    /// reservation: each socket's memory (mostly `rx_buffer + tx_buffer`) is taken from the
    /// pool when it is created.
    pub max_sockets: usize,
    /// Connections (half-open plus established, not yet accepted) a listener holds before it
    /// drops new SYNs; dropped SYNs are retried by the client, never reset. AFD does not pass
    /// listen()'s backlog down, so this is the transport's policy: above Windows' SOMAXCONN
    /// figure of 200, so that a burst of a thousand connects against a slow acceptor is held
    /// rather than left to the clients' SYN retries. Each held connection owns its socket
    /// buffers (`rx_buffer + tx_buffer`), which bounds the memory a burst can take.
    pub backlog: usize,
    /// Half-open (SYN-RECEIVED) connections a listener holds at once. A connection request
    /// that finds the listener full takes the place of its oldest half-open connection, which
    /// is dropped without a word (no RST: under a SYN flood its peer is likely spoofed). So a
    /// flood of spoofed SYNs holds at most this many sockets per listener, and a real client
    /// still gets in if it completes its handshake before this many later SYNs arrive (a
    /// quarter of a second at 1,000 SYNs per second).
    pub half_open_limit: usize,
    /// How long a TDI_CONNECT without its own timeout tries.
    pub connect_timeout: Duration,
    /// How long a half-open (SYN-RECEIVED) connection waits for the final ACK.
    pub syn_received_timeout: Duration,
    /// How long a connection with data waiting to be acknowledged waits for any segment from
    /// its peer before it gives up (about what Windows' five data retransmissions take). Its
    /// requests then fail with `STATUS_LOCAL_DISCONNECT` (WSAECONNABORTED) and a disconnect
    /// handler sees an abort. An idle connection never times out.
    pub data_timeout: Duration,
    /// Loopback MTU: at most a quarter of `rx_buffer`, so that a full-sized segment never waits
    /// for the delayed ACK of the previous one.
    pub loopback_mtu: usize,
    /// Frames the loopback link can hold in flight.
    pub loopback_frames: usize,
    /// Frames processed per pass before the core looks at its queues again.
    pub frame_budget: usize,
    /// The UDP layer's queue bounds.
    pub udp: UdpConfig,
    /// The raw IP layer's queue bounds.
    pub raw: RawConfig,
    /// The reassembly bounds.
    pub fragments: FragmentConfig,
}

impl CoreConfig {
    /// The defaults, with [`socket_memory_limit`](Self::socket_memory_limit) a sixteenth of
    /// the machine's `physical_memory` (64 MiB on a 1 GiB machine, whose non-paged pool is
    /// about 160 MiB), at least 16 MiB; the default's 64 MiB when the size is unknown.
    /// Any IRQL.
    pub fn for_machine(physical_memory: Option<u64>) -> Self {
        let default = Self::default();
        let socket_memory_limit = physical_memory.map_or(default.socket_memory_limit, |bytes| {
            usize::try_from(bytes / 16)
                .unwrap_or(usize::MAX)
                .max(16 * 1024 * 1024)
        });
        Self {
            socket_memory_limit,
            ..default
        }
    }
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            rx_buffer: 64 * 1024,
            tx_buffer: 64 * 1024,
            buffer_pressure: 16 * 1024 * 1024,
            small_buffer: 8 * 1024,
            socket_memory_limit: 64 * 1024 * 1024,
            lookaside_depth: 32,
            lookaside_idle: Duration::from_secs(5),
            max_sockets: 64 * 1024,
            backlog: 1024,
            half_open_limit: 256,
            connect_timeout: Duration::from_secs(21),
            syn_received_timeout: Duration::from_secs(75),
            data_timeout: Duration::from_secs(120),
            loopback_mtu: 16 * 1024,
            loopback_frames: 64,
            frame_budget: 16,
            udp: UdpConfig::default(),
            raw: RawConfig::default(),
            fragments: FragmentConfig::default(),
        }
    }
}

/// Hands finished requests to the outbound queue (every IRP in the core reserved its slot when
/// it was submitted, so this never fails) and due events to the [`EventHub`], and remembers
/// the sockets whose event could not be raised for lack of memory, to retry them.
pub struct Completer<'a> {
    outbound: &'a SpinLock<Outbound>,
    pub(super) hub: &'a EventHub,
    retries: Cell<[Option<SocketKey>; RETRIES]>,
}

/// Sockets a pass remembers for a retry of their events (`state/events.rs`); beyond that,
/// their next socket event retries them.
const RETRIES: usize = 8;

impl<'a> Completer<'a> {
    pub fn new(outbound: &'a SpinLock<Outbound>, hub: &'a EventHub) -> Self {
        Self {
            outbound,
            hub,
            retries: Cell::new([None; RETRIES]),
        }
    }

    /// Queues `irp` for completion with `status` and `information`, then `finish`.
    pub fn finish(&self, irp: PendingIrp, status: NtStatus, information: usize, finish: Finish) {
        self.outbound.lock().push(Completion {
            irp,
            status,
            information,
            finish,
        });
    }

    /// Queues `irp` for completion with `status` and `information`.
    pub fn done(&self, irp: PendingIrp, status: NtStatus, information: usize) {
        self.finish(irp, status, information, Finish::Plain);
    }
}

/// The core state. The fields the other modules of `core` share (`ingress`, `udp`) are
/// visible in `core`.
pub struct Core {
    pub(super) iface: Interface,
    pub(super) device: Loopback,
    pub(super) sockets: Sockets,
    /// TCP's port table (UDP has its own, in `udp`).
    ports: PortTable,
    /// The address files of every protocol.
    pub(super) addresses: Slab<Address>,
    connections: Slab<Connection>,
    /// The addresses that have a listener.
    listeners: Vec<Key>,
    /// The UDP layer.
    pub(super) udp: Udp,
    /// The ICMP layer.
    pub(super) icmp: Icmp,
    /// The waiting `IOCTL_QUERY_IP_HW_ADDRESS` requests.
    pub(super) resolutions: Resolutions,
    /// Packets past their link's MTU waiting to leave as fragments.
    pub(super) oversize: Oversize,
    /// The raw IP layer.
    pub(super) raw: Raw,
    /// IPv4 reassembly, and the identification of the datagrams the host fragments.
    pub(super) fragments: Fragments,
    /// The interfaces besides the loopback: interface `n` in slot `n - 1`
    /// (see [`crate::core::ethernet`]).
    pub(super) slots: [Slot; MAX_INTERFACES],
    config: CoreConfig,
    pub(super) now: Instant,
    /// The driver's CSPRNG: the ISN key, interface seeds and the ephemeral port start.
    random: Csprng,
    /// The secret of the ISNs' keyed function.
    isn_key: IsnKey,
    /// IP, TCP and ICMP counters (see [`counters`]).
    pub(super) counters: Cell<Counters>,
    /// The loopback link's counters.
    pub(super) loopback_link: Cell<LinkCounters>,
    /// Static routes added with `IOCTL_TCP_SET_INFORMATION_EX` (see [`crate::core::routes`]).
    pub(super) routes: StaticRoutes,
    /// The serial number of the last address file opened.
    next_serial: u64,
}

impl Core {
    /// A core with the loopback interface (127.0.0.1/8). PASSIVE_LEVEL (allocates).
    pub fn new(config: CoreConfig, seed: [u64; 4], now: Instant) -> Result<Self, NtStatus> {
        let mut random = Csprng::from_seed(seed);
        let mut device = Loopback::new(config.loopback_mtu, config.loopback_frames)?;
        let loopback = IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8);
        let iface = new_interface(&mut device, random.next_u64(), now, &[loopback]);
        Ok(Self {
            iface,
            device,
            sockets: Sockets::new(
                config.max_sockets,
                random.next_u64(),
                config.data_timeout,
                Lookaside::new(
                    [config.rx_buffer, config.tx_buffer, config.small_buffer],
                    config.lookaside_depth,
                    config.lookaside_idle,
                ),
            ),
            ports: PortTable::new(random.next_u64()),
            addresses: Slab::default(),
            connections: Slab::default(),
            listeners: Vec::new(),
            udp: Udp::new(config.udp, random.next_u64()),
            icmp: Icmp::new(random.next_u64(), config.loopback_mtu.max(ETHERNET_MTU))?,
            resolutions: Resolutions::default(),
            oversize: Oversize::default(),
            raw: Raw::new(config.raw, config.loopback_mtu.max(ETHERNET_MTU))?,
            fragments: Fragments::new(config.fragments, random.next_u64() as u16),
            isn_key: IsnKey::new(&mut random),
            slots: Default::default(),
            config,
            now,
            random,
            counters: Cell::default(),
            loopback_link: Cell::default(),
            routes: StaticRoutes::default(),
            next_serial: 0,
        })
    }

    /// Moves the core's clock to `now` before requests are applied. Any IRQL (the core lock
    /// is held).
    pub fn set_now(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// Updates the counters. Any IRQL (the core lock is held).
    fn count(&self, update: impl FnOnce(&mut Counters)) {
        let mut counters = self.counters.get();
        update(&mut counters);
        self.counters.set(counters);
    }

    /// The interface seed that makes the next ISN the RFC 6528 one of `local` → `remote` now
    /// (see [`crate::core::isn`]). DISPATCH_LEVEL, under the core lock.
    pub(super) fn seed_for(&mut self, local: SocketAddrV4, remote: SocketAddrV4) -> u64 {
        let isn = self.isn_key.isn(local, remote, self.now);
        isn::seed_for(isn, self.random.next_u64())
    }

    /// Rebuilds the loopback interface so that its next ISN is `local` → `remote`'s (it holds
    /// no connection state: its addresses, and the IP identification counter, which restarts
    /// at a random value). Done before each active open and each SYN a listener takes.
    /// DISPATCH_LEVEL, under the core lock.
    pub(super) fn reseed(&mut self, local: SocketAddrV4, remote: SocketAddrV4) {
        let mut addresses = [IpCidr::new(IpAddress::v4(0, 0, 0, 0), 0); MAX_ADDRESSES];
        let mut count = 0;
        for (slot, cidr) in addresses.iter_mut().zip(self.iface.ip_addrs()) {
            *slot = *cidr;
            count += 1;
        }
        let seed = self.seed_for(local, remote);
        self.iface = new_interface(
            &mut self.device,
            seed,
            self.now,
            addresses.get(..count).unwrap_or(&[]),
        );
    }

    /// Applies one request from the inbound queue.
    pub fn apply(&mut self, work: Work, c: &Completer<'_>) {
        let Work { request, irp } = work;
        match request {
            Request::OpenAddress {
                address,
                shared,
                protocol,
                owner,
            } => self.open_address(address, shared, protocol, owner, irp, c),
            Request::OpenConnection { context } => self.open_connection(context, irp, c),
            Request::Close(object) => {
                self.close(object, c);
                let finish = match object {
                    Object::Address(index) => Finish::AfterHandlers(index),
                    Object::Connection(_) => Finish::Plain,
                };
                c.finish(irp, NtStatus::SUCCESS, 0, finish);
            }
            Request::Associate {
                connection,
                address,
            } => {
                let status = self.associate(connection, address);
                c.done(irp, status, 0);
            }
            Request::Disassociate { connection } => {
                let status = self.disassociate(connection, c);
                c.done(irp, status, 0);
            }
            Request::Connect {
                connection,
                remote,
                timeout,
            } => self.connect(connection, remote, timeout, irp, c),
            Request::Listen { connection } => self.listen(connection, irp, c),
            Request::Send { connection, length } => self.send(connection, length, irp, c),
            Request::Receive {
                connection,
                length,
                peek,
            } => self.receive(connection, length, peek, irp, c),
            Request::Disconnect { connection, kind } => self.disconnect(connection, kind, irp, c),
            Request::SendDatagram {
                address,
                remote,
                length,
            } if self.is_raw(address) => self.send_raw(address, remote, length, irp, c),
            Request::SendDatagram {
                address,
                remote,
                length,
            } => self.send_datagram(address, remote, length, irp, c),
            Request::ReceiveDatagram { address, length } if self.is_raw(address) => {
                self.receive_raw(address, length, irp, c)
            }
            Request::ReceiveDatagram { address, length } => {
                self.receive_datagram(address, length, irp, c)
            }
            Request::SetHeaderInclude { address, enabled } => {
                let status = self.set_header_include(address, enabled);
                c.done(irp, status, 0);
            }
            Request::Query { object, kind } => self.query(object, kind, irp, c),
            Request::SetNoDelay {
                connection,
                enabled,
            } => {
                let status = self.set_no_delay(connection, enabled);
                c.done(irp, status, 0);
            }
            Request::SetEventHandler {
                address,
                event,
                set,
            } => {
                let status = self.handler_set(address, event, set, c);
                c.done(irp, status, 0);
            }
            Request::SetIpAddress {
                interface,
                ip,
                prefix,
            } => match self.set_ip_address(interface, ip, prefix) {
                Ok(()) => c.done(irp, NtStatus::SUCCESS, interface as usize),
                Err(status) => c.done(irp, status, 0),
            },
            Request::DeleteIpAddress { interface } => {
                let status = self.delete_ip_address(interface);
                c.done(irp, status, 0);
            }
            Request::EchoRequest(params) => self.echo_request(params, irp, c),
            Request::ResolveNeighbor { target, room } => {
                self.resolve_neighbor(target, room, irp, c)
            }
        }
    }

    /// The UDP layer's counters. Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn udp_stats(&self) -> UdpStats {
        self.udp.stats()
    }

    /// The fragmentation counters and the bytes reassembly holds now. Any IRQL
    /// ≤ DISPATCH_LEVEL, under the core lock.
    pub fn fragment_stats(&self) -> (FragmentStats, usize) {
        (self.fragments.stats, self.fragments.held_bytes())
    }

    /// The raw IP layer's counters. Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn raw_stats(&self) -> RawStats {
        self.raw.stats()
    }

    /// The ICMP layer's counters. Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn icmp_stats(&self) -> IcmpStats {
        self.icmp.stats()
    }

    /// The socket ring lookaside's counters and what it holds. Any IRQL ≤ DISPATCH_LEVEL,
    /// under the core lock.
    pub fn lookaside_stats(&self) -> LookasideStats {
        self.sockets.lookaside_stats()
    }

    /// Gives every ring block the lookaside holds back to the pool. Any IRQL
    /// ≤ DISPATCH_LEVEL, under the core lock.
    pub fn flush_lookaside(&mut self) {
        self.sockets.lookaside_mut().flush();
    }

    /// Unlinks the pending IRP `id` for its cancel routine. Protocol side effects of the
    /// cancellation happen here (a cancelled connect abandons its attempt); nothing is freed.
    pub fn cancel(&mut self, id: IrpId) -> Option<PendingIrp> {
        if let Some(irp) = self.cancel_datagram(id) {
            return Some(irp);
        }
        if let Some(irp) = self.icmp.take(id) {
            return Some(irp);
        }
        if let Some(irp) = self.resolutions.take(id) {
            return Some(irp);
        }
        if let Some(irp) = self.cancel_raw(id) {
            return Some(irp);
        }
        for index in 0..self.connections.slot_count() {
            let Some(key) = self.connections.key_at(index) else {
                continue;
            };
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            let Some(irp) = connection.take_irp(id) else {
                continue;
            };
            match connection.phase {
                Phase::Connecting { .. } if connection.connect.is_none() => {
                    connection.phase = Phase::Idle;
                    if let Some(socket) = connection.socket.take() {
                        let port = self.connection_port(key);
                        self.abandon(socket, port, true);
                    }
                }
                Phase::Listening if connection.listen.is_none() => {
                    connection.phase = Phase::Idle;
                    if let Some(address) = connection.address {
                        self.stop_waiting(address, key.index);
                    }
                }
                _ => {}
            }
            return Some(irp);
        }
        None
    }

    fn connection_key(&self, index: u32) -> Option<Key> {
        self.connections.key_at(index)
    }

    fn address_key(&self, index: u32) -> Option<Key> {
        self.addresses.key_at(index)
    }

    fn connection_mut(&mut self, index: u32) -> Option<(Key, &mut Connection)> {
        let key = self.connection_key(index)?;
        self.connections.get_mut(key).map(|entry| (key, entry))
    }

    /// The address with a listener for `local`, with its LISTEN socket if the backlog has
    /// room for another connection.
    pub(super) fn listener_for(&self, local: SocketAddrV4) -> Option<(Key, Option<SocketKey>)> {
        self.listeners.iter().find_map(|&key| {
            let address = self.addresses.get(key)?;
            let listener = address.listener.as_ref()?;
            let matches = address.port() == local.port()
                && (address.ip().is_unspecified() || address.ip() == *local.ip());
            matches.then(|| (key, listener.socket.filter(|_| listener.has_room())))
        })
    }
}

/// The largest packet of an Ethernet link (its usual MTU).
const ETHERNET_MTU: usize = 1500;

/// Addresses the loopback interface holds: 127.0.0.1 and each interface's (smoltcp's
/// `iface-max-addr-count-8`: the address of an eighth adapter does not fit, and is refused).
const MAX_ADDRESSES: usize = 8;

/// A smoltcp interface on `device` with the given ISN seed and addresses.
fn new_interface(
    device: &mut Loopback,
    seed: u64,
    now: Instant,
    addresses: &[IpCidr],
) -> Interface {
    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = seed;
    let mut iface = Interface::new(config, device, now);
    iface.update_ip_addrs(|list| {
        for cidr in addresses {
            // The list has room for MAX_ADDRESSES, which `addresses` never exceeds.
            let _ = list.push(*cidr);
        }
    });
    iface
}

/// An IPv4 smoltcp endpoint as a `SocketAddrV4` (the core only creates IPv4 sockets).
fn endpoint_v4(endpoint: IpEndpoint) -> SocketAddrV4 {
    let IpAddress::Ipv4(ip) = endpoint.addr;
    SocketAddrV4::new(ip, endpoint.port)
}
