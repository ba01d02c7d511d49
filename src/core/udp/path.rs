//! UDP in the protocol pass: received datagrams to their address files (before smoltcp sees
//! them), and queued sends out through each endpoint's smoltcp socket.
#![forbid(unsafe_code)]

use crate::core::address::Address;
use crate::core::counters::metered_links;
use crate::core::ethernet::{MAX_INTERFACES, Wire};
use crate::core::slab::{Key, Slab};
use crate::core::state::events::offer_datagram;
use crate::core::state::{Completer, Core};
use crate::core::udp::endpoint::Pumped;
use crate::core::udp::wire::{self, Parsed};
use crate::core::udp::{BROADCAST_FANOUT, Udp};
use core::net::Ipv4Addr;
use smoltcp::time::{Duration, Instant};

/// The first retry of a datagram waiting for an Ethernet neighbour, and the longest interval
/// between retries. The neighbour's ARP reply runs a pass, which sends the datagram at once;
/// the retries only let smoltcp ask again (once a second) and the datagram give up after
/// [`STUCK_LIMIT`](crate::core::udp::STUCK_LIMIT). So they back off: each comes after a quarter
/// of the time waited so far, between these bounds (about thirty passes in all, not 300).
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_LONGEST: Duration = Duration::from_millis(250);

/// When a datagram waiting since `since` is next retried, at `now`. Any IRQL.
fn retry_at(since: Instant, now: Instant) -> Instant {
    now + ((now - since) / 4).clamp(RETRY_FIRST, RETRY_LONGEST)
}

/// A placeholder in the receivers array.
const NO_KEY: Key = Key {
    index: u32::MAX,
    generation: 0,
};

/// The link a packet arrived on, as the UDP layer needs it.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    /// Whether the link carries checksums to verify (the loopback does not).
    pub checksums: bool,
    /// Whether this is the loopback, where every 127.0.0.0/8 address is the host's.
    pub loopback: bool,
    /// The addresses (with their prefix) the link's packets are for: on an interface's link
    /// its own, on the loopback every interface's.
    pub addresses: [Option<(Ipv4Addr, u8)>; MAX_INTERFACES],
}

impl Arrival {
    /// Whether `ip` is one of this link's own addresses. DISPATCH_LEVEL, under the core lock.
    pub fn is_own(&self, ip: Ipv4Addr) -> bool {
        (self.loopback && ip.is_loopback())
            || self.addresses.iter().flatten().any(|&(own, _)| own == ip)
    }

    /// Whether `ip` is a broadcast on this link: the limited broadcast, or the directed
    /// broadcast of one of its subnets. DISPATCH_LEVEL, under the core lock.
    pub fn is_broadcast(&self, ip: Ipv4Addr) -> bool {
        ip.is_broadcast()
            || self
                .addresses
                .iter()
                .flatten()
                .any(|&own| wire::is_broadcast(ip, Some(own)))
    }
}

/// What became of a received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    /// Not UDP for this host: smoltcp's business.
    NotUdp,
    /// Delivered, queued, or dropped and counted: the frame is done with.
    Taken,
    /// A unicast datagram for a port nobody has bound, counted: smoltcp answers it with an
    /// ICMP port unreachable.
    NoPort,
}

/// Takes the UDP datagram in `packet` (an IPv4 packet that arrived as `arrival` says) to the
/// address files bound to its destination. Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
pub fn ingress(
    udp: &mut Udp,
    addresses: &mut Slab<Address>,
    packet: &[u8],
    arrival: &Arrival,
    c: &Completer<'_>,
) -> Ingress {
    let datagram = match wire::parse(packet, arrival.checksums) {
        Parsed::NotUdp => return Ingress::NotUdp,
        Parsed::BadChecksum => {
            udp.stats.checksum_errors += 1;
            return Ingress::Taken;
        }
        Parsed::Datagram(datagram) => datagram,
    };
    let ip = *datagram.dst.ip();
    let broadcast = arrival.is_broadcast(ip);
    if !broadcast && !arrival.is_own(ip) {
        return Ingress::NotUdp;
    }
    let mut receivers = [NO_KEY; BROADCAST_FANOUT];
    let count = udp.receivers(
        addresses,
        ip,
        datagram.dst.port(),
        broadcast,
        &mut receivers,
    );
    if count == 0 {
        udp.stats.no_port += 1;
        // RFC 1122 3.2.2: no ICMP error answers a broadcast.
        return if broadcast {
            Ingress::Taken
        } else {
            Ingress::NoPort
        };
    }
    for key in receivers.iter().take(count) {
        if let Some(endpoint) = addresses
            .get_mut(*key)
            .and_then(|address| address.datagram.as_deref_mut())
        {
            if !endpoint.has_receives()
                && let Some(raised) =
                    offer_datagram(c, key.index, datagram.src, datagram.payload, broadcast)
            {
                if raised {
                    udp.stats.datagrams_in += 1;
                } else {
                    udp.stats.queue_full += 1;
                }
                continue;
            }
            endpoint.deliver(
                datagram.src,
                datagram.payload,
                &udp.config,
                &mut udp.stats,
                c,
            );
        }
    }
    Ingress::Taken
}

impl Core {
    /// Moves every listed endpoint's queued sends out, within a budget per endpoint. Endpoints
    /// whose datagram waits for the loopback stay listed (the pass that drains the loopback
    /// retries them); those waiting for an Ethernet neighbour are retried when the first of
    /// them is due (see [`RETRY_FIRST`]). Returns whether sends that could go now remain (the
    /// budget ran out): the caller runs another pass.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn udp_egress(
        &mut self,
        wires: &mut [Option<Wire<'_>>],
        c: &Completer<'_>,
    ) -> bool {
        if !self.udp.has_sends() {
            self.udp.retry_at = None;
            return false;
        }
        let mut sending = core::mem::take(&mut self.udp.sending);
        metered_links!(links = self, wires);
        let mut retry: Option<Instant> = None;
        let mut more = false;
        let now = self.now;
        let addresses = &mut self.addresses;
        let stats = &mut self.udp.stats;
        sending.retain(|key| {
            let Some(endpoint) = addresses
                .get_mut(*key)
                .and_then(|address| address.datagram.as_deref_mut())
            else {
                return false;
            };
            match endpoint.pump(&mut links, stats, c) {
                Pumped::Done => false,
                Pumped::LoopbackFull => true,
                Pumped::Budget => {
                    more = true;
                    true
                }
                Pumped::EthernetBusy { since } => {
                    let at = retry_at(since, now);
                    retry = Some(retry.map_or(at, |earlier| earlier.min(at)));
                    true
                }
            }
        });
        self.udp.sending = sending;
        self.udp.retry_at = retry;
        more
    }

    /// When UDP next needs a pass: the retry of a datagram waiting for its neighbour.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn udp_poll_at(&self) -> Option<Instant> {
        match (self.udp.retry_at, self.oversize.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
