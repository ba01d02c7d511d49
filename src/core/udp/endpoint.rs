//! One UDP address file: its pending receives, the datagrams waiting for a receive, its sends,
//! and the smoltcp UDP socket its datagrams leave through.
#![forbid(unsafe_code)]

use crate::core::counters::{Counters, Meter, Metered};
use crate::core::ethernet::{self, MAX_INTERFACES, Wire};
use crate::core::inbox::{Bounds, Delivered, Inbox};
use crate::core::state::Completer;
use crate::core::udp::{STUCK_LIMIT, UdpConfig, UdpStats};
use crate::nt::NtStatus;
use crate::nt::irp::{IrpId, PendingIrp};
use crate::nt::pool;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::cell::Cell;
use core::net::{Ipv4Addr, SocketAddrV4};
use smoltcp::iface::{Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::Device;
use smoltcp::socket::udp::{self, PacketBuffer, PacketMetadata, UdpMetadata};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint};

/// The link a datagram leaves by: the loopback, or an interface's Ethernet link (by index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leg {
    Loopback,
    Ethernet(u32),
}

/// Where a send goes: one link, or for a broadcast one interface's link (`Some`) or every
/// interface's link (`None`: a limited broadcast from a wildcard address file, each copy from
/// its interface's address) and then the loopback (the host's own sockets see its broadcasts
/// too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendRoute {
    Loopback,
    Ethernet(u32),
    Broadcast(Option<u32>),
}

impl SendRoute {
    /// Leg `n` of this route, in order; `None` past the last. IRQL ≤ DISPATCH_LEVEL, under the
    /// core lock.
    fn leg(self, n: usize) -> Option<Leg> {
        match (self, n) {
            (SendRoute::Loopback, 0) => Some(Leg::Loopback),
            (SendRoute::Ethernet(index), 0) | (SendRoute::Broadcast(Some(index)), 0) => {
                Some(Leg::Ethernet(index))
            }
            (SendRoute::Broadcast(Some(_)), 1) => Some(Leg::Loopback),
            (SendRoute::Broadcast(None), n) if n < MAX_INTERFACES => {
                Some(Leg::Ethernet(u32::try_from(n).ok()? + 1))
            }
            (SendRoute::Broadcast(None), MAX_INTERFACES) => Some(Leg::Loopback),
            _ => None,
        }
    }
}

/// A TDI_SEND_DATAGRAM waiting for its turn.
pub struct PendingSend {
    pub irp: PendingIrp,
    pub remote: SocketAddrV4,
    /// The source address, chosen when the send was queued.
    pub source: Ipv4Addr,
    pub route: SendRoute,
    pub length: usize,
    /// Legs already handed to smoltcp.
    legs_done: usize,
}

impl PendingSend {
    pub fn new(
        irp: PendingIrp,
        remote: SocketAddrV4,
        source: Ipv4Addr,
        route: SendRoute,
        length: usize,
    ) -> Self {
        Self {
            irp,
            remote,
            source,
            route,
            length,
            legs_done: 0,
        }
    }
}

/// A datagram in the smoltcp socket that its link has not taken yet.
#[derive(Clone, Copy)]
struct Waiting {
    leg: Leg,
    since: Instant,
}

/// What [`Endpoint::pump`] left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pumped {
    /// Every queued send is out.
    Done,
    /// A datagram waits for the loopback to drain (the same DPC drains it).
    LoopbackFull,
    /// A datagram has waited `since` then for the Ethernet link (an address being resolved).
    EthernetBusy { since: Instant },
    /// The pass's budget of datagrams for one endpoint is spent; more sends wait.
    Budget,
}

/// Datagrams one endpoint hands to smoltcp per pass, so that one busy sender cannot hold the
/// DPC.
const PUMP_BUDGET: usize = 16;

/// The links [`Endpoint::pump`] (and the core's sender) may transmit on: the loopback and the
/// wires of the pass, whose frames are counted in `layers` and their port's link counters.
pub struct Links<'a, 'w, L: Device> {
    pub loopback: (&'a mut Interface, &'a mut L),
    pub wires: &'a mut [Option<Wire<'w>>],
    pub layers: &'a Cell<Counters>,
    pub now: Instant,
}

impl<L: Device> Links<'_, '_, L> {
    /// Whether `leg`'s link is there (the loopback always is). IRQL ≤ DISPATCH_LEVEL.
    pub fn has(&mut self, leg: Leg) -> bool {
        match leg {
            Leg::Loopback => true,
            Leg::Ethernet(index) => ethernet::wire(self.wires, index).is_some(),
        }
    }

    /// The address of interface `index`'s port, if it is bound and has one.
    /// IRQL ≤ DISPATCH_LEVEL.
    pub fn address(&mut self, index: u32) -> Option<Ipv4Addr> {
        let wire = ethernet::wire(self.wires, index)?;
        wire.port
            .iface
            .ip_addrs()
            .first()
            .map(|&IpCidr::Ipv4(cidr)| cidr.address())
    }

    /// Lets the sockets of `set` transmit on `leg`'s link. `false` if the link is not there.
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn poll_egress(&mut self, leg: Leg, set: &mut SocketSet<'_>) -> bool {
        let now = self.now;
        match leg {
            Leg::Loopback => {
                let (iface, device) = &mut self.loopback;
                iface.poll_egress(now, &mut **device, set);
                true
            }
            Leg::Ethernet(index) => {
                let Some(wire) = ethernet::wire(self.wires, index) else {
                    return false;
                };
                let meter = Meter {
                    layers: self.layers,
                    link: &wire.port.link,
                };
                let mut device = Metered {
                    device: &mut wire.device,
                    meter,
                };
                wire.port.iface.poll_egress(now, &mut device, set);
                true
            }
        }
    }
}

/// One UDP address file's datagram state. Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
pub struct Endpoint {
    inbox: Inbox,
    sends: VecDeque<PendingSend>,
    /// The smoltcp UDP socket, alone in its set. It is never removed, so `get_mut` on its
    /// handle cannot panic.
    set: SocketSet<'static>,
    handle: SocketHandle,
    port: u16,
    waiting: Option<Waiting>,
}

impl Endpoint {
    /// An endpoint on `port` whose datagrams may be up to `largest` bytes: its smoltcp socket
    /// holds one outgoing datagram. `STATUS_INSUFFICIENT_RESOURCES` if the pool is exhausted.
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn new(port: u16, largest: usize) -> Result<Self, NtStatus> {
        let mut metadata = pool::try_vec(1)?;
        metadata.push(PacketMetadata::EMPTY);
        let tx = PacketBuffer::new(metadata, pool::try_zeroed(largest)?);
        let rx = PacketBuffer::new(Vec::new(), Vec::new());
        let mut socket = udp::Socket::new(rx, tx);
        socket.bind(port).map_err(|_| NtStatus::INVALID_ADDRESS)?;
        let mut storage: Vec<SocketStorage<'static>> = pool::try_vec(1)?;
        storage.push(SocketStorage::EMPTY);
        let mut set = SocketSet::new(storage);
        let handle = set.add(socket);
        Ok(Self {
            inbox: Inbox::default(),
            sends: VecDeque::new(),
            set,
            handle,
            port,
            waiting: None,
        })
    }

    /// A datagram from `from` arrived: it completes the oldest pending receive, or waits in
    /// the queue if the queue's bounds allow, or is dropped and counted. Returns whether it
    /// was taken. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn deliver(
        &mut self,
        from: SocketAddrV4,
        payload: &[u8],
        config: &UdpConfig,
        stats: &mut UdpStats,
        c: &Completer<'_>,
    ) -> bool {
        let bounds = Bounds {
            datagrams: config.queue_datagrams,
            bytes: config.queue_bytes,
        };
        match self.inbox.deliver(from, payload, bounds, c) {
            Delivered::Received { truncated } => {
                stats.truncated += u64::from(truncated);
                stats.datagrams_in += 1;
                true
            }
            Delivered::Queued => {
                stats.datagrams_in += 1;
                true
            }
            Delivered::Dropped => {
                stats.queue_full += 1;
                false
            }
        }
    }

    /// Whether a TDI_RECEIVE_DATAGRAM waits for a datagram. IRQL ≤ DISPATCH_LEVEL, under the
    /// core lock.
    pub fn has_receives(&self) -> bool {
        self.inbox.has_receives()
    }

    /// TDI_RECEIVE_DATAGRAM: takes the oldest queued datagram, or waits for one.
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn receive(
        &mut self,
        irp: PendingIrp,
        length: usize,
        stats: &mut UdpStats,
        c: &Completer<'_>,
    ) {
        stats.truncated += u64::from(self.inbox.receive(irp, length, c));
    }

    /// Queues a send for the next egress. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn queue_send(&mut self, send: PendingSend) -> Result<(), (PendingIrp, NtStatus)> {
        if let Err(status) = pool::try_reserve_deque(&mut self.sends, 1) {
            return Err((send.irp, status));
        }
        self.sends.push_back(send);
        Ok(())
    }

    /// Sets the TTL of the datagrams this endpoint sends (setsockopt `IP_TTL`). IRQL
    /// ≤ DISPATCH_LEVEL, under the core lock.
    pub fn set_hop_limit(&mut self, ttl: u8) {
        self.set
            .get_mut::<udp::Socket<'static>>(self.handle)
            .set_hop_limit(Some(ttl));
    }

    /// Whether sends or a datagram wait to leave. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn has_sends(&self) -> bool {
        !self.sends.is_empty() || self.waiting.is_some()
    }

    /// Unlinks the pending IRP `id` (for its cancel routine).
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn take_irp(&mut self, id: IrpId) -> Option<PendingIrp> {
        if let Some(irp) = self.inbox.take_irp(id) {
            return Some(irp);
        }
        // Every pending IRP must be found here, or it could never complete. A send whose
        // datagram is already in smoltcp leaves it there: it still goes out (a broadcast's
        // remaining leg does not).
        let index = self.sends.iter().position(|s| s.irp.id() == id)?;
        self.sends.remove(index).map(|s| s.irp)
    }

    /// Every pending IRP, for the file's close (they complete with `STATUS_CANCELLED`).
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn drain_irps(&mut self) -> impl Iterator<Item = PendingIrp> + '_ {
        self.inbox
            .drain()
            .chain(self.sends.drain(..).map(|s| s.irp))
    }

    /// Hands queued sends to smoltcp one datagram at a time, each transmitted on its legs'
    /// links before the next is copied, and completes each send once all its legs are out.
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn pump<L: Device>(
        &mut self,
        links: &mut Links<'_, '_, L>,
        stats: &mut UdpStats,
        c: &Completer<'_>,
    ) -> Pumped {
        let mut budget = PUMP_BUDGET;
        loop {
            if let Some(waiting) = self.waiting {
                if !self.transmit(waiting.leg, links) {
                    if links.now - waiting.since <= STUCK_LIMIT {
                        return match waiting.leg {
                            Leg::Loopback => Pumped::LoopbackFull,
                            Leg::Ethernet(_) => Pumped::EthernetBusy {
                                since: waiting.since,
                            },
                        };
                    }
                    self.discard();
                    stats.send_dropped += 1;
                }
                self.waiting = None;
            }
            let Some(send) = self.sends.front_mut() else {
                return Pumped::Done;
            };
            let Some(leg) = send.route.leg(send.legs_done) else {
                if let Some(send) = self.sends.pop_front() {
                    stats.datagrams_out += 1;
                    c.done(send.irp, NtStatus::SUCCESS, send.length);
                }
                continue;
            };
            if !links.has(leg) {
                // No link bound (any more): a broadcast only reaches the host itself and the
                // interfaces that are there; a unicast datagram is lost, as on a link that is
                // down. A leg with no link takes nothing from the budget.
                send.legs_done += 1;
                if !matches!(send.route, SendRoute::Broadcast(_)) {
                    stats.send_dropped += 1;
                }
                continue;
            }
            if budget == 0 {
                return Pumped::Budget;
            }
            budget -= 1;
            send.legs_done += 1;
            // A broadcast to every interface leaves each from that interface's address (from
            // 0.0.0.0 while it has none: DHCP).
            let source = match (send.route, leg) {
                (SendRoute::Broadcast(None), Leg::Ethernet(index)) => {
                    links.address(index).unwrap_or(Ipv4Addr::UNSPECIFIED)
                }
                _ => send.source,
            };
            let meta = UdpMetadata {
                endpoint: IpEndpoint::new(IpAddress::Ipv4(*send.remote.ip()), send.remote.port()),
                local_address: Some(IpAddress::Ipv4(source)),
                meta: Default::default(),
            };
            let copied = {
                let socket = self.set.get_mut::<udp::Socket<'static>>(self.handle);
                match (socket.send(send.length, meta), send.irp.irp().mdl()) {
                    (Ok(buffer), Some(mdl)) => mdl.read(0, buffer).map(|_| ()),
                    (Ok([]), None) => Ok(()),
                    (Ok(_), None) => Err(NtStatus::INVALID_PARAMETER),
                    (Err(udp::SendError::Unaddressable), _) => Err(NtStatus::INVALID_ADDRESS),
                    (Err(udp::SendError::BufferFull), _) => Err(NtStatus::INVALID_BUFFER_SIZE),
                }
            };
            if let Err(status) = copied {
                self.discard();
                if let Some(send) = self.sends.pop_front() {
                    c.done(send.irp, status, 0);
                }
                continue;
            }
            self.waiting = Some(Waiting {
                leg,
                since: links.now,
            });
        }
    }

    /// Lets the socket transmit its datagram on `leg`'s link (drops it if that link went).
    /// Returns whether it left. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn transmit<L: Device>(&mut self, leg: Leg, links: &mut Links<'_, '_, L>) -> bool {
        if !links.poll_egress(leg, &mut self.set) {
            self.discard();
        }
        self.set
            .get_mut::<udp::Socket<'static>>(self.handle)
            .can_send()
    }

    /// Drops the datagram in the socket (closing and binding it again empties its buffers).
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn discard(&mut self) {
        let socket = self.set.get_mut::<udp::Socket<'static>>(self.handle);
        socket.close();
        // Binding a closed socket to the port it had cannot fail.
        let _ = socket.bind(self.port);
    }
}
