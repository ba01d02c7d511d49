//! Complete IPv4 packets built by the core (ICMP echo requests, raw IP datagrams) out on a link, through a smoltcp
//! raw socket: smoltcp routes them, resolves the neighbour (ARP on Ethernet) and emits the IPv4
//! header again from the packet's source, destination, protocol and TTL (its type of service,
//! identification and flags are smoltcp's own). One packet at a time is in the socket; one
//! that its link cannot take yet (an address being resolved) waits there and is retried, and
//! is dropped after [`STUCK_LIMIT`].
#![forbid(unsafe_code)]

use crate::core::udp::STUCK_LIMIT;
use crate::core::udp::endpoint::{Leg, Links};
use crate::nt::NtStatus;
use crate::nt::pool;
use alloc::vec::Vec;
use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::Device;
use smoltcp::socket::raw::{self, PacketBuffer, PacketMetadata};
use smoltcp::time::Instant;
use smoltcp::wire::IpVersion;

/// What became of the packet in the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flushed {
    /// The socket is free: its packet left (or there was none).
    Free,
    /// The packet waits for its link: the Ethernet link resolving its neighbour, or the
    /// loopback full.
    Busy(Leg),
    /// The packet waited longer than [`STUCK_LIMIT`] and was dropped; the socket is free.
    Dropped,
}

/// A packet in the socket that its link has not taken yet.
#[derive(Clone, Copy)]
struct Waiting {
    leg: Leg,
    since: Instant,
}

/// The raw socket packets leave through. Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
pub struct Sender {
    /// The smoltcp raw socket, alone in its set; never removed, so `get_mut` cannot panic.
    set: SocketSet<'static>,
    handle: SocketHandle,
    largest: usize,
    waiting: Option<Waiting>,
}

impl Sender {
    /// A sender for packets of up to `largest` bytes (allocated from the pool: fails with
    /// `STATUS_INSUFFICIENT_RESOURCES`). IRQL ≤ DISPATCH_LEVEL.
    pub fn new(largest: usize) -> Result<Self, NtStatus> {
        let mut metadata = pool::try_vec(1)?;
        metadata.push(PacketMetadata::EMPTY);
        let tx = PacketBuffer::new(metadata, pool::try_zeroed(largest)?);
        let rx = PacketBuffer::new(Vec::new(), Vec::new());
        let socket = raw::Socket::new(Some(IpVersion::Ipv4), None, rx, tx);
        let mut storage: Vec<SocketStorage<'static>> = pool::try_vec(1)?;
        storage.push(SocketStorage::EMPTY);
        let mut set = SocketSet::new(storage);
        let handle = set.add(socket);
        Ok(Self {
            set,
            handle,
            largest,
            waiting: None,
        })
    }

    /// The largest packet the socket holds. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn largest(&self) -> usize {
        self.largest
    }

    /// Retries the packet waiting in the socket, if any. IRQL ≤ DISPATCH_LEVEL, under the
    /// core lock.
    pub fn flush<L: Device>(&mut self, links: &mut Links<'_, '_, L>) -> Flushed {
        let Some(waiting) = self.waiting else {
            return Flushed::Free;
        };
        if self.transmit(waiting.leg, links) {
            self.waiting = None;
            return Flushed::Free;
        }
        if links.now - waiting.since <= STUCK_LIMIT {
            return Flushed::Busy(waiting.leg);
        }
        if !self.discard() {
            return Flushed::Busy(waiting.leg);
        }
        Flushed::Dropped
    }

    /// Puts `packet` (a complete IPv4 packet) into the free socket and transmits it on `leg`'s
    /// link. `Ok(true)` if it left at once, `Ok(false)` if it waits for the link (see
    /// [`Sender::flush`]). Errors: `STATUS_INVALID_BUFFER_SIZE` past [`Sender::largest`],
    /// `STATUS_HOST_UNREACHABLE` on the Ethernet leg with no link bound, `STATUS_INVALID_DEVICE_STATE`
    /// if a packet still waits. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn send<L: Device>(
        &mut self,
        packet: &[u8],
        leg: Leg,
        links: &mut Links<'_, '_, L>,
    ) -> Result<bool, NtStatus> {
        if self.waiting.is_some() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        if !links.has(leg) {
            return Err(NtStatus::HOST_UNREACHABLE);
        }
        let socket = self.set.get_mut::<raw::Socket<'static>>(self.handle);
        socket
            .send_slice(packet)
            .map_err(|_| NtStatus::INVALID_BUFFER_SIZE)?;
        if self.transmit(leg, links) {
            return Ok(true);
        }
        self.waiting = Some(Waiting {
            leg,
            since: links.now,
        });
        Ok(false)
    }

    /// Lets the socket transmit on `leg`'s link. Returns whether its packet left.
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn transmit<L: Device>(&mut self, leg: Leg, links: &mut Links<'_, '_, L>) -> bool {
        if !links.poll_egress(leg, &mut self.set) {
            return self.discard();
        }
        self.set
            .get_mut::<raw::Socket<'static>>(self.handle)
            .send_queue()
            == 0
    }

    /// Drops the packet in the socket: a smoltcp raw socket cannot take back a queued
    /// packet, so the socket is replaced by a fresh one. Returns whether it was (not if the
    /// pool is exhausted: the packet then stays, and a later flush tries again).
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn discard(&mut self) -> bool {
        match Self::new(self.largest) {
            Ok(fresh) => {
                *self = fresh;
                true
            }
            Err(_) => false,
        }
    }
}
