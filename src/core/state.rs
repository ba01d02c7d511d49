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
use crate::core::ethernet::{Link, Port};
use crate::core::events::EventHub;
use crate::core::fragment::{FragmentConfig, FragmentStats, Fragments};
use crate::core::icmp::{Icmp, IcmpStats};
use crate::core::info::Answer;
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
use crate::link::ethernet::EthernetDevice;
use crate::link::loopback::Loopback;
use crate::nt::NtStatus;
use crate::nt::irp::{IrpId, PendingIrp};
use crate::nt::pool;
use crate::nt::process::ProcessOwner;
use crate::nt::sync::SpinLock;
use crate::nt::types::{TDI_CONNECTION_FILE, TDI_TRANSPORT_ADDRESS_FILE};
use crate::tdi::{Disconnect, QueryType, Timeout, TransportAddress};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::Cell;
use core::net::{Ipv4Addr, SocketAddrV4};
use smoltcp::iface::{Config, Interface};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint};

mod configure;
pub(in crate::core) mod events;
mod report;

/// The interface index of the configured address (loopback is 0).
pub const CONFIGURED_INTERFACE: u32 = 1;

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
    /// How long a TDI_CONNECT without its own timeout tries.
    pub connect_timeout: Duration,
    /// How long a half-open (SYN-RECEIVED) connection waits for the final ACK.
    pub syn_received_timeout: Duration,
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

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            rx_buffer: 64 * 1024,
            tx_buffer: 64 * 1024,
            buffer_pressure: 16 * 1024 * 1024,
            small_buffer: 8 * 1024,
            max_sockets: 64 * 1024,
            backlog: 1024,
            connect_timeout: Duration::from_secs(21),
            syn_received_timeout: Duration::from_secs(75),
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
    /// The interface on the bound Ethernet link, if one is bound.
    pub(super) ethernet: Option<Box<Port>>,
    /// The default gateway, on the Ethernet link.
    pub(super) gateway: Option<Ipv4Addr>,
    config: CoreConfig,
    pub(super) now: Instant,
    /// The driver's CSPRNG: ISN seeds and the ephemeral port start.
    random: Csprng,
    /// IP, TCP and ICMP counters (see [`counters`]).
    pub(super) counters: Cell<Counters>,
    /// The loopback link's counters.
    pub(super) loopback_link: Cell<LinkCounters>,
    /// Static routes added with `IOCTL_TCP_SET_INFORMATION_EX` (see [`crate::core::routes`]).
    routes: StaticRoutes,
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
            sockets: Sockets::new(config.max_sockets, random.next_u64()),
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
            ethernet: None,
            gateway: None,
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

    /// Gives the next initial sequence number a fresh CSPRNG seed. smoltcp draws ISNs from a
    /// PCG32 seeded once per `Interface` (`Config::random_seed`), whose outputs reveal its state;
    /// rebuilding the interface (it holds no connection state: addresses, the IP identification
    /// counter, no neighbors on this medium) before each active open and each accepted SYN makes
    /// every ISN come from a fresh ChaCha20 output, unpredictable to an observer of earlier
    /// connections. RFC 6528's per-4-tuple monotonic offset would need a change in smoltcp.
    pub(super) fn reseed(&mut self) {
        let mut addresses = [IpCidr::new(IpAddress::v4(0, 0, 0, 0), 0); MAX_ADDRESSES];
        let mut count = 0;
        for (slot, cidr) in addresses.iter_mut().zip(self.iface.ip_addrs()) {
            *slot = *cidr;
            count += 1;
        }
        let seed = self.random.next_u64();
        self.iface = new_interface(&mut self.device, seed, self.now, &addresses[..count]);
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
                let status = match self.connection_key(connection) {
                    Some(_) => NtStatus::SUCCESS,
                    None => NtStatus::INVALID_CONNECTION,
                };
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

    /// Gives interface 1 its address. Interface 0 is loopback (127.0.0.1/8, fixed); interface 1
    /// holds the one configured address. Its traffic to its own address loops back; the rest
    /// goes over the bound Ethernet link, or nowhere while none is bound.
    fn set_ip_address(&mut self, interface: u32, ip: Ipv4Addr, prefix: u8) -> Result<(), NtStatus> {
        if interface != CONFIGURED_INTERFACE {
            return Err(NtStatus::DEVICE_DOES_NOT_EXIST);
        }
        if ip.is_unspecified() || ip.is_loopback() || ip.is_broadcast() || prefix > 32 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if self.is_local(ip) {
            return Err(NtStatus::DUPLICATE_OBJECTID);
        }
        let cidr = IpCidr::new(IpAddress::Ipv4(ip), prefix);
        let mut result = Ok(());
        self.iface.update_ip_addrs(|addresses| {
            addresses.truncate(1);
            result = addresses
                .push(cidr)
                .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES);
        });
        if let Some(port) = self.ethernet.as_mut() {
            port.set_addresses(&[cidr]);
        }
        result
    }

    /// Gives interface 1 `address`, or removes its address (see
    /// [`Stack::configure_address`](crate::core::stack::Stack::configure_address)).
    pub fn configure_address(&mut self, address: Option<(Ipv4Addr, u8)>) -> Result<(), NtStatus> {
        match address {
            Some((ip, prefix)) => self.set_ip_address(CONFIGURED_INTERFACE, ip, prefix),
            None => self.delete_ip_address(CONFIGURED_INTERFACE).ok(),
        }
    }

    /// Removes interface 1's address.
    fn delete_ip_address(&mut self, interface: u32) -> NtStatus {
        if interface != CONFIGURED_INTERFACE {
            return NtStatus::DEVICE_DOES_NOT_EXIST;
        }
        self.iface
            .update_ip_addrs(|addresses| addresses.truncate(1));
        if let Some(port) = self.ethernet.as_mut() {
            port.set_addresses(&[]);
        }
        NtStatus::SUCCESS
    }

    /// One pass of the protocol over the sockets it concerns: those whose deadline has come
    /// and a budget of received frames from each link; then their transmissions (ACKs,
    /// timeouts) and the queued UDP sends, the follow-up of every socket with an event for its
    /// owner (connection, listener, orphan), and the transmissions that follow-up caused.
    /// `link` is the bound Ethernet link, if any. Returns whether work remains (frames waiting,
    /// events raised by the last transmissions, UDP sends past their budget): the caller runs
    /// another pass or re-queues its DPC.
    pub fn poll(&mut self, now: Instant, c: &Completer<'_>, link: Option<&Link>) -> bool {
        self.now = now;
        let mut port = self.ethernet.take();
        let mut device = match (link, port.as_mut()) {
            (Some(link), Some(port)) => link.device(core::mem::take(&mut port.tx)).ok(),
            _ => None,
        };
        self.sockets.expire(now);
        if let Some(port) = port.as_mut() {
            arp_entries::refresh(port, now);
        }
        self.icmp_expire(c);
        self.fragments.expire(now);
        for _ in 0..self.config.frame_budget {
            if !self.ingress_loopback(c) {
                break;
            }
        }
        if let (Some(port), Some(device)) = (port.as_mut(), device.as_mut()) {
            for _ in 0..self.config.frame_budget {
                if let Some(frame) = device.peek_front() {
                    let ours = port
                        .iface
                        .ip_addrs()
                        .first()
                        .map(|&IpCidr::Ipv4(cidr)| cidr);
                    port.neighbors.observe(frame, ours, self.now);
                    self.resolutions.observe(frame);
                }
                if !self.ingress_ethernet(&mut port.iface, device, &port.link, c) {
                    break;
                }
            }
        }
        self.egress(port.as_deref_mut(), device.as_mut());
        let udp_more = self.udp_egress(port.as_deref_mut(), device.as_mut(), c);
        self.oversize_egress(port.as_deref_mut(), device.as_mut());
        self.icmp_egress(port.as_deref_mut(), device.as_mut(), c);
        self.resolve_egress(port.as_deref_mut(), device.as_mut(), c);
        self.raw_egress(port.as_deref_mut(), device.as_mut(), c);
        while let Some((socket, owner)) = self.sockets.next_event() {
            match owner {
                Owner::Connection(key) => self.service(key, c),
                Owner::Listener(key) => self.maintain_listener(key, c),
                Owner::Orphan { port } => self.reap(socket, port),
            }
        }
        self.raise_retries(c);
        self.egress(port.as_deref_mut(), device.as_mut());
        let waiting = device.as_ref().map_or(0, EthernetDevice::pending);
        if let (Some(port), Some(device)) = (port.as_mut(), device) {
            port.tx = device.into_transmit_buffer();
        }
        self.ethernet = port;
        self.device.pending() > 0 || waiting > 0 || self.sockets.has_events() || udp_more
    }

    /// Lets the touched sockets transmit, each on its link.
    fn egress(&mut self, port: Option<&mut Port>, device: Option<&mut EthernetDevice<'_>>) {
        let mut ethernet = port.zip(device).map(|(port, device)| {
            let meter = Meter {
                layers: &self.counters,
                link: &port.link,
            };
            (&mut port.iface, Metered { device, meter })
        });
        let ethernet = ethernet
            .as_mut()
            .map(|(iface, device)| (&mut **iface, device));
        let meter = Meter {
            layers: &self.counters,
            link: &self.loopback_link,
        };
        let mut loopback = Metered {
            device: &mut self.device,
            meter,
        };
        self.sockets
            .egress((&mut self.iface, &mut loopback), ethernet, self.now);
    }

    /// Binds an Ethernet link under interface 1: a smoltcp interface on it with the
    /// configured address and the default gateway. PASSIVE_LEVEL (allocates).
    pub fn attach_link(&mut self, link: &Link) -> Result<(), NtStatus> {
        let seed = self.random.next_u64();
        let configured = self.configured();
        let mut port = pool::try_box(Port::new(
            link,
            seed,
            self.now,
            configured.as_slice(),
            self.gateway,
        )?)?;
        self.routes.apply(&mut port.iface, self.gateway);
        self.ethernet = Some(port);
        Ok(())
    }

    /// Unbinds the Ethernet link; its connections can no longer transmit.
    pub fn detach_link(&mut self) {
        self.ethernet = None;
    }

    /// Sets the default gateway (reached over the Ethernet link).
    pub fn set_gateway(&mut self, gateway: Option<Ipv4Addr>) {
        self.gateway = gateway;
        if let Some(port) = self.ethernet.as_mut() {
            self.routes.apply(&mut port.iface, gateway);
        }
    }

    /// Interface 1's address and prefix, if configured. Any IRQL ≤ DISPATCH_LEVEL.
    pub(super) fn configured_v4(&self) -> Option<(Ipv4Addr, u8)> {
        self.configured()
            .map(|IpCidr::Ipv4(cidr)| (cidr.address(), cidr.prefix_len()))
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

    /// Interface 1's address, if configured.
    fn configured(&self) -> Option<IpCidr> {
        self.iface
            .ip_addrs()
            .iter()
            .copied()
            .find(|cidr| !matches!(cidr, IpCidr::Ipv4(v4) if v4.address().is_loopback()))
    }

    /// When the core next needs a pass if nothing arrives: the earliest socket deadline, or
    /// UDP's retry of a datagram waiting for its neighbour.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let tcp = self.sockets.next_deadline(now);
        [
            self.udp_poll_at(),
            self.icmp.poll_at(),
            self.resolutions.poll_at(),
            self.ethernet
                .as_ref()
                .and_then(|port| port.static_refresh_at),
            self.raw.poll_at(),
            self.fragments.poll_at(),
        ]
        .into_iter()
        .fold(tcp, |earliest, next| match (earliest, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
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
                    let index = key.index;
                    if let Some(address) = connection.address {
                        self.with_listener(address, |listener| {
                            listener.waiting.retain(|waiting| *waiting != index)
                        });
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

    fn is_local(&self, ip: Ipv4Addr) -> bool {
        self.iface.has_ip_addr(IpAddress::Ipv4(ip))
    }

    fn open_address(
        &mut self,
        address: TransportAddress,
        shared: bool,
        protocol: Protocol,
        owner: ProcessOwner,
        mut irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let result = if address.ip.is_unspecified() || self.is_local(address.ip) {
            match protocol {
                Protocol::Tcp => self.bind_address(address, shared, owner),
                Protocol::Udp => self.bind_udp_address(address, shared, owner),
                Protocol::Raw(number) => self.bind_raw_address(address, number, owner),
            }
        } else {
            Err(NtStatus::INVALID_ADDRESS)
        };
        match result {
            Ok(index) => {
                if let Some(file) = irp.irp_mut().stack().file_object() {
                    file.set_context(index as usize + 1, TDI_TRANSPORT_ADDRESS_FILE as usize);
                }
                c.done(irp, NtStatus::SUCCESS, 0);
            }
            Err(status) => c.done(irp, status, 0),
        }
    }

    /// The serial number of the next address file, TCP or UDP. DISPATCH_LEVEL.
    pub(in crate::core) fn take_serial(&mut self) -> u64 {
        self.next_serial = self.next_serial.wrapping_add(1);
        self.next_serial
    }

    fn bind_address(
        &mut self,
        address: TransportAddress,
        shared: bool,
        owner: ProcessOwner,
    ) -> Result<u32, NtStatus> {
        let binding = self.ports.bind(address.ip, address.port, shared)?;
        let entry = Address {
            serial: self.take_serial(),
            owner,
            protocol: Protocol::Tcp,
            binding,
            refs: 1,
            file_open: true,
            listener: None,
            datagram: None,
            raw: None,
        };
        match self.addresses.try_insert(entry) {
            Ok(key) => Ok(key.index),
            Err(status) => {
                self.ports.unbind(binding);
                Err(status)
            }
        }
    }

    fn open_connection(&mut self, context: usize, mut irp: PendingIrp, c: &Completer<'_>) {
        match self.connections.try_insert(Connection::new(context)) {
            Ok(key) => {
                if let Some(file) = irp.irp_mut().stack().file_object() {
                    file.set_context(key.index as usize + 1, TDI_CONNECTION_FILE as usize);
                }
                c.done(irp, NtStatus::SUCCESS, 0);
            }
            Err(status) => c.done(irp, status, 0),
        }
    }

    /// IRP_MJ_CLOSE of an address or connection file.
    fn close(&mut self, object: Object, c: &Completer<'_>) {
        match object {
            Object::Address(index) => {
                let Some(key) = self.address_key(index) else {
                    return;
                };
                if let Some(address) = self.addresses.get_mut(key) {
                    address.file_open = false;
                }
                c.hub.clear_handlers(index);
                self.destroy_listener(key, c);
                self.close_datagram(key, c);
                self.close_raw(key, c);
                self.release_address(index);
            }
            Object::Connection(index) => {
                let Some(key) = self.connection_key(index) else {
                    return;
                };
                let port = self.connection_port(key);
                let Some(mut connection) = self.connections.remove(key) else {
                    return;
                };
                for irp in connection.drain_irps() {
                    c.done(irp, NtStatus::CANCELLED, 0);
                }
                if let Some(address) = connection.address {
                    self.with_listener(address, |listener| {
                        listener.waiting.retain(|waiting| *waiting != index)
                    });
                }
                if let Some(socket) = connection.socket.take() {
                    // Closing with unread data resets the connection, as Windows does.
                    let unread = self
                        .sockets
                        .get(socket)
                        .is_some_and(|socket| socket.recv_queue() > 0);
                    self.abandon(socket, port, unread);
                }
                if let Some(address) = connection.address {
                    self.release_address(address);
                }
            }
        }
    }

    /// The port a connection's socket holds: its address file's.
    fn connection_port(&self, key: Key) -> u16 {
        self.connections
            .get(key)
            .and_then(|connection| connection.address)
            .and_then(|address| self.address_key(address))
            .and_then(|key| self.addresses.get(key))
            .map_or(0, Address::port)
    }

    /// Drops one reference to an address; the last one frees it and its port.
    fn release_address(&mut self, index: u32) {
        let Some(key) = self.address_key(index) else {
            return;
        };
        let Some(address) = self.addresses.get_mut(key) else {
            return;
        };
        address.refs = address.refs.saturating_sub(1);
        if address.refs == 0 {
            self.destroy_listener_sockets(key);
            let Some(address) = self.addresses.remove(key) else {
                return;
            };
            match address.protocol {
                Protocol::Tcp => {
                    self.ports.unbind(address.binding);
                }
                Protocol::Udp => self.unbind_udp_address(key, &address),
                Protocol::Raw(_) => self.unbind_raw_address(key),
            }
        }
    }

    /// Gives a socket up: close it gracefully (FIN) or abort it (RST), and keep it as an orphan
    /// until smoltcp is done with it. The socket holds a reference on `port` until then.
    fn abandon(&mut self, socket: SocketKey, port: u16, abort: bool) {
        if let Some(tcp) = self.sockets.get(socket) {
            if abort {
                tcp.abort();
            } else {
                tcp.close();
            }
        }
        self.sockets.set_owner(socket, Owner::Orphan { port });
        self.reap(socket, port);
    }

    /// Removes an orphan once smoltcp has finished with it: closed, with its tuple forgotten
    /// (after TIME-WAIT, or once the RST of an abort has gone out), and releases its port.
    fn reap(&mut self, socket: SocketKey, port: u16) {
        let done = self
            .sockets
            .peek(socket)
            .is_some_and(|tcp| tcp.state() == State::Closed && tcp.local_endpoint().is_none());
        if done {
            self.sockets.remove(socket);
            self.ports.release(port);
        }
    }

    fn associate(&mut self, connection: u32, address: u32) -> NtStatus {
        let Some(address_key) = self.address_key(address) else {
            return NtStatus::INVALID_ADDRESS;
        };
        let Some((_, entry)) = self.connection_mut(connection) else {
            return NtStatus::INVALID_CONNECTION;
        };
        if entry.address.is_some() {
            return NtStatus::INVALID_PARAMETER;
        }
        entry.address = Some(address);
        match self.addresses.get_mut(address_key) {
            Some(target) if target.file_open && target.protocol == Protocol::Tcp => {
                target.refs += 1;
                NtStatus::SUCCESS
            }
            _ => {
                if let Some((_, entry)) = self.connection_mut(connection) {
                    entry.address = None;
                }
                NtStatus::INVALID_ADDRESS
            }
        }
    }

    /// A new TCP socket: full-sized buffers, or small ones once the sockets together hold
    /// [`CoreConfig::buffer_pressure`] bytes. DISPATCH_LEVEL, core lock held.
    fn new_socket(&self, no_delay: bool) -> Result<tcp::Socket<'static>, NtStatus> {
        let full = self.config.rx_buffer + self.config.tx_buffer;
        let pressed =
            self.sockets.buffer_bytes().saturating_add(full) > self.config.buffer_pressure;
        let (rx_size, tx_size) = if pressed {
            (self.config.small_buffer, self.config.small_buffer)
        } else {
            (self.config.rx_buffer, self.config.tx_buffer)
        };
        let rx = pool::try_zeroed(rx_size)?;
        let tx = pool::try_zeroed(tx_size)?;
        let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
        socket.set_nagle_enabled(!no_delay);
        if pressed {
            socket.set_ack_delay(None);
        }
        Ok(socket)
    }

    /// The local address a connection to `remote` leaves from: the address file's own, or for
    /// a wildcard address file the local address on the way to `remote`.
    pub(super) fn source_for(
        &self,
        bound: Ipv4Addr,
        remote: Ipv4Addr,
    ) -> Result<Ipv4Addr, NtStatus> {
        if !bound.is_unspecified() {
            return Ok(bound);
        }
        if self.is_local(remote) {
            return Ok(remote);
        }
        if remote.is_loopback() {
            return Ok(Ipv4Addr::LOCALHOST);
        }
        // On-link for the configured interface, or through its gateway: leave from its
        // address.
        match self.configured() {
            Some(IpCidr::Ipv4(cidr))
                if cidr.contains_addr(&remote)
                    || (self.gateway.is_some() && self.ethernet.is_some()) =>
            {
                Ok(cidr.address())
            }
            _ => Err(NtStatus::NETWORK_UNREACHABLE),
        }
    }

    fn connect(
        &mut self,
        connection: u32,
        remote: SocketAddrV4,
        timeout: Timeout,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        match self.start_connect(connection, remote, timeout) {
            Ok(key) => {
                if let Some(entry) = self.connections.get_mut(key) {
                    entry.connect = Some(irp);
                }
            }
            Err(status) => c.done(irp, status, 0),
        }
    }

    fn start_connect(
        &mut self,
        connection: u32,
        remote: SocketAddrV4,
        timeout: Timeout,
    ) -> Result<Key, NtStatus> {
        let (key, entry) = self
            .connection_mut(connection)
            .ok_or(NtStatus::INVALID_CONNECTION)?;
        if entry.phase != Phase::Idle || entry.socket.is_some() {
            return Err(NtStatus::INVALID_CONNECTION);
        }
        let no_delay = entry.no_delay;
        let address = entry.address.ok_or(NtStatus::INVALID_CONNECTION)?;
        let (bound, port, process) = self
            .address_key(address)
            .and_then(|key| self.addresses.get(key))
            .map(|a| (a.ip(), a.port(), a.owner))
            .ok_or(NtStatus::INVALID_CONNECTION)?;
        if remote.port() == 0 || remote.ip().is_unspecified() || remote.ip().is_broadcast() {
            return Err(NtStatus::INVALID_ADDRESS);
        }
        let local = SocketAddrV4::new(self.source_for(bound, *remote.ip())?, port);
        if self.has_socket_for(local, remote) {
            // The 4-tuple is still in use (e.g. in TIME-WAIT after an explicit rebind).
            return Err(NtStatus::ADDRESS_ALREADY_EXISTS);
        }
        // AFD passes no timeout; a relative one (100 ns units) shortens the attempt.
        let wait = match timeout {
            Timeout::Relative(units) if units > 0 => Duration::from_micros(units / 10),
            _ => self.config.connect_timeout,
        };
        let mut socket = self.new_socket(no_delay)?;
        socket.set_timeout(Some(wait));
        self.reseed();
        socket
            .connect(
                self.iface.context(),
                IpEndpoint::new(IpAddress::Ipv4(*remote.ip()), remote.port()),
                IpListenEndpoint {
                    addr: Some(IpAddress::Ipv4(*local.ip())),
                    port,
                },
            )
            .map_err(|_| NtStatus::INVALID_ADDRESS)?;
        self.ports.acquire(port)?;
        let socket = match self.sockets.add(socket, Owner::Connection(key), process) {
            Ok(socket) => socket,
            Err(status) => {
                self.ports.release(port);
                return Err(status);
            }
        };
        let route = self.route_to(*remote.ip());
        if let Err(status) = self.sockets.set_tuple(socket, (local, remote), route) {
            self.sockets.remove(socket);
            self.ports.release(port);
            return Err(status);
        }
        let deadline = (self.now + wait).total_micros();
        if let Some(entry) = self.connections.get_mut(key) {
            entry.socket = Some(socket);
            entry.phase = Phase::Connecting { deadline };
        }
        self.count(|c| c.tcp.active_opens = c.tcp.active_opens.wrapping_add(1));
        Ok(key)
    }

    fn listen(&mut self, connection: u32, irp: PendingIrp, c: &Completer<'_>) {
        let Some((key, entry)) = self.connection_mut(connection) else {
            return c.done(irp, NtStatus::INVALID_CONNECTION, 0);
        };
        let (Some(address), Phase::Idle, None) = (entry.address, entry.phase, entry.socket) else {
            return c.done(irp, NtStatus::INVALID_CONNECTION, 0);
        };
        let Some(address_key) = self.address_key(address) else {
            return c.done(irp, NtStatus::INVALID_CONNECTION, 0);
        };
        if let Err(status) = self.ensure_listener(address_key) {
            return c.done(irp, status, 0);
        }
        let queued = self.with_listener(address, |listener| {
            pool::try_reserve_deque(&mut listener.waiting, 1)
                .map(|()| listener.waiting.push_back(connection))
        });
        match queued {
            Some(Ok(())) => {
                if let Some(entry) = self.connections.get_mut(key) {
                    entry.phase = Phase::Listening;
                    entry.listen = Some(irp);
                }
                self.maintain_listener(address_key, c);
            }
            Some(Err(status)) => c.done(irp, status, 0),
            None => c.done(irp, NtStatus::INVALID_CONNECTION, 0),
        }
    }

    fn with_listener<R>(&mut self, address: u32, f: impl FnOnce(&mut Listener) -> R) -> Option<R> {
        let key = self.address_key(address)?;
        self.addresses.get_mut(key)?.listener.as_mut().map(f)
    }

    /// Keeps one socket in LISTEN, moves sockets that left LISTEN to the half-open list,
    /// promotes established ones to the accept queue, and hands queued connections to waiting
    /// TDI_LISTENs.
    pub(super) fn maintain_listener(&mut self, address_key: Key, c: &Completer<'_>) {
        let Some(address) = self.addresses.get_mut(address_key) else {
            return;
        };
        let (ip, port) = (address.ip(), address.port());
        let Some(mut listener) = address.listener.take() else {
            return;
        };
        self.refresh_listen_socket(&mut listener, address_key, ip, port);
        self.promote_half_open(&mut listener, port);
        while !listener.ready.is_empty() {
            let Some(waiting) = listener.waiting.pop_front() else {
                break;
            };
            let Some((socket, peer)) = listener.ready.pop_front() else {
                break;
            };
            self.accept_onto(waiting, socket, peer, port, c);
        }
        self.offer_connections(&mut listener, address_key, port, c);
        if let Some(address) = self.addresses.get_mut(address_key) {
            address.listener = Some(listener);
        }
    }

    /// If the LISTEN socket took a SYN, files its 4-tuple, moves it to the half-open list and
    /// opens a new one.
    fn refresh_listen_socket(
        &mut self,
        listener: &mut Listener,
        address_key: Key,
        ip: Ipv4Addr,
        port: u16,
    ) {
        if let Some(key) = listener.socket {
            match self.sockets.peek(key).map(|socket| socket.state()) {
                Some(State::Listen) => {}
                Some(State::Closed) | None => {
                    self.sockets.remove(key);
                    listener.socket = None;
                }
                Some(_) => {
                    listener.socket = None;
                    let tuple = self.sockets.get(key).and_then(|socket| {
                        socket.set_timeout(Some(self.config.syn_received_timeout));
                        Some((
                            endpoint_v4(socket.local_endpoint()?),
                            endpoint_v4(socket.remote_endpoint()?),
                        ))
                    });
                    let filed = tuple.is_some_and(|tuple| {
                        let route = self.route_to(*tuple.1.ip());
                        self.sockets.set_tuple(key, tuple, route).is_ok()
                    });
                    let held = filed && self.ports.acquire(port).is_ok();
                    self.count(|c| c.tcp.passive_opens = c.tcp.passive_opens.wrapping_add(1));
                    if !held || pool::try_push(&mut listener.half_open, key).is_err() {
                        // No memory for the bookkeeping: refuse this connection attempt.
                        if let Some(socket) = self.sockets.get(key) {
                            socket.abort();
                        }
                        self.sockets.remove(key);
                        if held {
                            self.ports.release(port);
                        }
                    }
                }
            }
        }
        if listener.socket.is_none() {
            listener.socket = self.new_listen_socket(address_key, ip, port).ok();
        }
    }

    /// Moves established half-open connections to the accept queue and drops dead ones.
    fn promote_half_open(&mut self, listener: &mut Listener, port: u16) {
        let mut index = 0;
        while let Some(&key) = listener.half_open.get(index) {
            let (state, remote) = match self.sockets.peek(key) {
                Some(socket) => (socket.state(), socket.remote_endpoint()),
                None => (State::Closed, None),
            };
            match (state, remote) {
                (State::SynReceived, _) => index += 1,
                (State::Closed, _) | (_, None) => {
                    self.count(|c| c.tcp.attempt_fails = c.tcp.attempt_fails.wrapping_add(1));
                    listener.half_open.swap_remove(index);
                    self.sockets.remove(key);
                    self.ports.release(port);
                }
                (_, Some(remote)) => {
                    if pool::try_reserve_deque(&mut listener.ready, 1).is_err() {
                        break;
                    }
                    listener.half_open.swap_remove(index);
                    if let Some(socket) = self.sockets.get(key) {
                        socket.set_timeout(None);
                    }
                    listener.ready.push_back((key, endpoint_v4(remote)));
                }
            }
        }
    }

    /// Binds an accepted socket to the connection whose TDI_LISTEN waited for it and completes
    /// that listen with the peer's address.
    fn accept_onto(
        &mut self,
        connection: u32,
        socket: SocketKey,
        peer: SocketAddrV4,
        port: u16,
        c: &Completer<'_>,
    ) {
        let Some((_, entry)) = self.connection_mut(connection) else {
            self.abandon(socket, port, true);
            return;
        };
        let no_delay = entry.no_delay;
        entry.socket = Some(socket);
        entry.phase = Phase::Connected;
        let listen = entry.listen.take();
        if let Some(key) = self.connection_key(connection) {
            self.sockets.set_owner(socket, Owner::Connection(key));
        }
        if let Some(tcp) = self.sockets.get(socket) {
            tcp.set_nagle_enabled(!no_delay);
        }
        if let Some(irp) = listen {
            c.finish(irp, NtStatus::SUCCESS, 0, Finish::ReturnPeer(peer));
        }
    }

    fn new_listen_socket(
        &mut self,
        address_key: Key,
        ip: Ipv4Addr,
        port: u16,
    ) -> Result<SocketKey, NtStatus> {
        let mut socket = self.new_socket(false)?;
        let addr = (!ip.is_unspecified()).then_some(IpAddress::Ipv4(ip));
        socket
            .listen(IpListenEndpoint { addr, port })
            .map_err(|_| NtStatus::INVALID_ADDRESS)?;
        let process = self
            .addresses
            .get(address_key)
            .map(|address| address.owner)
            .unwrap_or_default();
        self.sockets
            .add(socket, Owner::Listener(address_key), process)
    }

    /// Ends an address's listener: waiting TDI_LISTENs complete with `STATUS_CANCELLED`,
    /// connections not yet accepted are reset.
    fn destroy_listener(&mut self, address_key: Key, c: &Completer<'_>) {
        let Some(listener) = self
            .addresses
            .get_mut(address_key)
            .and_then(|address| address.listener.as_mut())
        else {
            return;
        };
        let waiting = core::mem::take(&mut listener.waiting);
        for connection in waiting {
            let Some((_, entry)) = self.connection_mut(connection) else {
                continue;
            };
            entry.phase = Phase::Idle;
            if let Some(irp) = entry.listen.take() {
                c.done(irp, NtStatus::CANCELLED, 0);
            }
        }
        self.destroy_listener_sockets(address_key);
    }

    fn destroy_listener_sockets(&mut self, address_key: Key) {
        let Some(address) = self.addresses.get_mut(address_key) else {
            return;
        };
        let port = address.port();
        let Some(listener) = address.listener.take() else {
            return;
        };
        self.listeners.retain(|key| *key != address_key);
        if let Some(socket) = listener.socket {
            self.sockets.remove(socket);
        }
        for socket in listener.half_open {
            self.abandon(socket, port, true);
        }
        for (socket, _) in listener.ready {
            self.abandon(socket, port, true);
        }
    }

    fn send(&mut self, connection: u32, length: u32, irp: PendingIrp, c: &Completer<'_>) {
        let Some((key, entry)) = self.connection_mut(connection) else {
            return c.done(irp, NtStatus::INVALID_CONNECTION, 0);
        };
        if let Some(reason) = entry.closed {
            return c.done(irp, reason.error_status(), 0);
        }
        if entry.phase != Phase::Connected || entry.send_shutdown {
            return c.done(irp, NtStatus::INVALID_CONNECTION, 0);
        }
        if let Err((irp, status)) = entry.queue_send(irp, length) {
            return c.done(irp, status, 0);
        }
        self.service(key, c);
    }

    fn receive(
        &mut self,
        connection: u32,
        length: u32,
        peek: bool,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let Some((key, entry)) = self.connection_mut(connection) else {
            return c.done(irp, NtStatus::INVALID_CONNECTION, 0);
        };
        if entry.phase != Phase::Connected {
            return c.done(irp, NtStatus::INVALID_CONNECTION, 0);
        }
        let receive = Receive { irp, length, peek };
        if let Err((irp, status)) = entry.queue_receive(receive) {
            return c.done(irp, status, 0);
        }
        self.service(key, c);
    }

    fn disconnect(
        &mut self,
        connection: u32,
        kind: Disconnect,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let Some((key, entry)) = self.connection_mut(connection) else {
            return c.done(irp, NtStatus::INVALID_CONNECTION, 0);
        };
        let Some(socket) = entry.socket else {
            // Nothing left to disconnect.
            return c.done(irp, NtStatus::SUCCESS, 0);
        };
        match kind {
            Disconnect::Release => {
                // The FIN follows the data already queued: `service` closes the socket once the
                // pending sends have been copied.
                entry.send_shutdown = true;
                c.done(irp, NtStatus::SUCCESS, 0);
                self.service(key, c);
            }
            Disconnect::Wait => c.done(irp, NtStatus::SUCCESS, 0),
            Disconnect::Abort => {
                entry.closed = Some(CloseReason::Aborted);
                for pending in entry.drain_data_irps() {
                    c.done(pending, NtStatus::FILE_CLOSED, 0);
                }
                if let Some(tcp) = self.sockets.get(socket) {
                    tcp.abort();
                }
                c.done(irp, NtStatus::SUCCESS, 0);
            }
        }
    }

    fn query(&mut self, object: Object, kind: QueryType, irp: PendingIrp, c: &Completer<'_>) {
        let answer = match kind {
            QueryType::AddressInfo => self.local_address(object).map(Answer::address),
            QueryType::ConnectionInfo => Ok(Answer::connection(
                self.config.tx_buffer,
                self.config.rx_buffer,
            )),
            QueryType::ProviderInfo => Ok(Answer::provider()),
            QueryType::MaxDatagramInfo => Ok(Answer::max_datagram()),
            // Answered in dispatch, from the information model.
            QueryType::ProviderStatistics => Err(NtStatus::INVALID_DEVICE_REQUEST),
        };
        let result = answer.and_then(|answer| {
            let mdl = irp.irp().mdl().ok_or(NtStatus::BUFFER_TOO_SMALL)?;
            if mdl.len() < answer.bytes().len() {
                return Err(NtStatus::BUFFER_TOO_SMALL);
            }
            mdl.write(answer.bytes())
        });
        match result {
            Ok(written) => c.done(irp, NtStatus::SUCCESS, written),
            Err(status) => c.done(irp, status, 0),
        }
    }

    /// The true local address of an object: a connection's socket endpoint once it has one
    /// (also for accepted connections), else its address file's.
    fn local_address(&mut self, object: Object) -> Result<TransportAddress, NtStatus> {
        let address = match object {
            Object::Address(index) => index,
            Object::Connection(index) => {
                let (_, entry) = self
                    .connection_mut(index)
                    .ok_or(NtStatus::INVALID_CONNECTION)?;
                let (socket, address) = (entry.socket, entry.address);
                if let Some(endpoint) = socket
                    .and_then(|socket| self.sockets.get(socket))
                    .and_then(|socket| socket.local_endpoint())
                {
                    let endpoint = endpoint_v4(endpoint);
                    return Ok(TransportAddress {
                        ip: *endpoint.ip(),
                        port: endpoint.port(),
                    });
                }
                address.ok_or(NtStatus::INVALID_CONNECTION)?
            }
        };
        let key = self.address_key(address).ok_or(NtStatus::INVALID_ADDRESS)?;
        let entry = self.addresses.get(key).ok_or(NtStatus::INVALID_ADDRESS)?;
        Ok(TransportAddress {
            ip: entry.ip(),
            port: entry.port(),
        })
    }

    fn set_no_delay(&mut self, connection: u32, enabled: bool) -> NtStatus {
        let Some((_, entry)) = self.connection_mut(connection) else {
            return NtStatus::INVALID_CONNECTION;
        };
        entry.no_delay = enabled;
        if let Some(socket) = entry.socket.and_then(|socket| self.sockets.get(socket)) {
            socket.set_nagle_enabled(!enabled);
        }
        NtStatus::SUCCESS
    }

    /// The link to `remote`: the loopback for the host's own addresses.
    pub(super) fn route_to(&self, remote: Ipv4Addr) -> Route {
        if remote.is_loopback() || self.is_local(remote) {
            Route::Loopback
        } else {
            Route::Ethernet
        }
    }

    /// Whether a socket already owns the connection `local` ↔ `remote`.
    fn has_socket_for(&self, local: SocketAddrV4, remote: SocketAddrV4) -> bool {
        self.sockets.find(local, remote).is_some()
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

    /// Moves one connection forward: the outcome of a connect, data for pending receives,
    /// room for pending sends, the FIN after a release, and how the connection ended.
    fn service(&mut self, key: Key, c: &Completer<'_>) {
        let now = self.now.total_micros();
        let Some(entry) = self.connections.get_mut(key) else {
            return;
        };
        let Some(socket_key) = entry.socket else {
            return;
        };
        let Some(socket) = self.sockets.get(socket_key) else {
            return;
        };
        let state = socket.state();
        if let Phase::Connecting { deadline } = entry.phase {
            match state {
                State::SynSent | State::SynReceived => return,
                State::Closed => {
                    // smoltcp does not say why: a RST before the deadline is a refusal, no
                    // answer until the deadline a timeout. STATUS_TIMEOUT is a success code
                    // that AFD would take for a connection, hence LOCAL_DISCONNECT.
                    let status = if now >= deadline {
                        NtStatus::LOCAL_DISCONNECT
                    } else {
                        NtStatus::REMOTE_NOT_LISTENING
                    };
                    entry.phase = Phase::Idle;
                    entry.socket = None;
                    if let Some(irp) = entry.connect.take() {
                        c.done(irp, status, 0);
                    }
                    self.count(|c| c.tcp.attempt_fails = c.tcp.attempt_fails.wrapping_add(1));
                    let port = self.connection_port(key);
                    self.abandon(socket_key, port, false);
                    return;
                }
                _ => {
                    socket.set_timeout(None);
                    entry.phase = Phase::Connected;
                    if let Some(irp) = entry.connect.take() {
                        c.done(irp, NtStatus::SUCCESS, 0);
                    }
                }
            }
        }
        if entry.phase != Phase::Connected {
            return;
        }
        if matches!(
            state,
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait
        ) {
            entry.fin_received = true;
        }
        if state == State::Closed && entry.closed.is_none() {
            let reason = if entry.fin_received {
                CloseReason::Fin
            } else {
                CloseReason::Reset
            };
            entry.closed = Some(reason);
            if reason == CloseReason::Reset {
                let counters = &self.counters;
                let mut all = counters.get();
                all.tcp.established_resets = all.tcp.established_resets.wrapping_add(1);
                counters.set(all);
            }
        }
        // Once `closed` is set, these complete whatever still waits with its final status.
        // While an event of the connection is delivered, its receives wait for the outcome.
        if !entry.events.in_flight {
            transfer::receive(entry, socket, c);
        }
        transfer::send(entry, socket, c);
        if entry.send_shutdown && entry.sends.is_empty() {
            socket.close();
        }
        if events::raise(key, entry, socket, c).is_err() {
            c.retry(socket_key);
        }
    }
}

/// The largest packet of an Ethernet link (its usual MTU).
const ETHERNET_MTU: usize = 1500;

/// Addresses the interface holds: loopback and the configured one.
const MAX_ADDRESSES: usize = 2;

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
