//! IPv4 packets larger than their link's MTU, sent as fragments ([`crate::core::fragment::split`])
//! that the core writes itself: UDP and raw IP datagrams past the MTU, ICMP echo requests past it
//! (`IcmpSendEcho` with more data than a frame holds), and the echo replies to reassembled echo
//! requests. smoltcp is built without its own fragmentation (its fixed buffers would sit in every
//! interface) and its raw socket cannot carry fragments.
//!
//! To the host itself the fragments go straight into the loopback device (reassembled on the way
//! in). Over Ethernet they go as frames to the next hop's MAC address
//! ([`crate::core::neighbors`]; an ARP request asks for it when it is not known): the packet
//! waits up to [`STUCK_LIMIT`], within [`WAITING_BYTES`] for all waiting packets, and is
//! dropped and counted by its layer after that (UDP's `send_dropped`, ICMP's `errors_out`).
//! Runs under the core lock at DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use crate::core::ethernet::{self, Wire};
use crate::core::fragment;
use crate::core::neighbors;
use crate::core::state::Core;
use crate::core::udp::STUCK_LIMIT;
use crate::nt::pool;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use smoltcp::phy::{Device, TxToken};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, HardwareAddress, IpCidr,
    Ipv4Cidr,
};

/// Bytes of packets that may wait for their next hop's MAC address at once.
pub const WAITING_BYTES: usize = 256 * 1024;
/// How often a waiting packet's next hop is looked up again.
const RETRY_INTERVAL: Duration = Duration::from_millis(10);
/// How often the ARP request for a waiting packet's next hop is repeated.
const ASK_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes of an Ethernet header.
const ETHERNET_HEADER: usize = 14;
/// Bytes of an ARP request frame.
const ARP_FRAME: usize = 42;

/// The layer whose packet it is, which counts its fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carried {
    /// A UDP datagram: `datagrams_out` once sent, `send_dropped` if it cannot be.
    Udp,
    /// An ICMP message (counted as sent when it was queued): `errors_out` if it cannot be.
    Icmp,
    /// A raw IP datagram: `datagrams_out` once sent, `send_dropped` if it cannot be.
    Raw,
}

/// The fates of the packets one pass settled, counted into their layers afterwards.
#[derive(Default)]
struct Fates {
    udp_sent: u64,
    udp_dropped: u64,
    icmp_dropped: u64,
    raw_sent: u64,
    raw_dropped: u64,
}

impl Fates {
    /// Any IRQL.
    fn add(&mut self, carried: Carried, sent: bool) {
        match (carried, sent) {
            (Carried::Udp, true) => self.udp_sent += 1,
            (Carried::Udp, false) => self.udp_dropped += 1,
            (Carried::Icmp, true) => {}
            (Carried::Icmp, false) => self.icmp_dropped += 1,
            (Carried::Raw, true) => self.raw_sent += 1,
            (Carried::Raw, false) => self.raw_dropped += 1,
        }
    }

    /// DISPATCH_LEVEL, under the core lock.
    fn count(self, core: &mut Core) {
        core.udp.stats.datagrams_out += self.udp_sent;
        core.udp.stats.send_dropped += self.udp_dropped;
        core.icmp.stats.errors_out += self.icmp_dropped;
        core.raw.stats.datagrams_out += self.raw_sent;
        core.raw.stats.send_dropped += self.raw_dropped;
    }
}

/// A packet waiting for its next hop's MAC address.
struct Waiting {
    packet: Vec<u8>,
    /// The interface it leaves by.
    interface: u32,
    next_hop: Ipv4Addr,
    carried: Carried,
    since: Instant,
    asked: Option<Instant>,
}

/// The packets waiting to leave on the Ethernet link as fragments. Any IRQL ≤ DISPATCH_LEVEL,
/// under the core lock.
#[derive(Default)]
pub struct Oversize {
    waiting: VecDeque<Waiting>,
    bytes: usize,
    /// When the waiting packets are looked at again.
    pub retry_at: Option<Instant>,
}

impl Core {
    /// Writes `packet` into the loopback device as fragments of the loopback's MTU. `false`
    /// (nothing written) if the loopback has no room for all of them. DISPATCH_LEVEL, under
    /// the core lock.
    pub(in crate::core) fn oversize_loopback(&mut self, packet: &[u8]) -> bool {
        let mtu = self.device.mtu();
        let pieces = packet.len().div_ceil(mtu.saturating_sub(20).max(8));
        let room = self
            .device
            .frames()
            .saturating_sub(self.device.pending() + 1);
        if room <= pieces {
            return false;
        }
        let ident = self.fragments.next_ident();
        let now = self.now;
        let device = &mut self.device;
        let sent = fragment::split(packet, mtu, ident, |len, write| {
            match device.transmit(now) {
                Some(token) => {
                    token.consume(len, |buffer| write(buffer));
                    true
                }
                None => false,
            }
        });
        match sent {
            Ok(count) => {
                self.fragments.stats.fragmented += 1;
                self.fragments.stats.fragments_out += count as u64;
                true
            }
            Err(_) => false,
        }
    }

    /// Queues `packet` for `dst` on the Ethernet link, for [`Core::oversize_egress`]. `false`
    /// (nothing queued) with no next hop, or past [`WAITING_BYTES`], or without pool.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn oversize_ethernet(
        &mut self,
        packet: Vec<u8>,
        dst: Ipv4Addr,
        carried: Carried,
    ) -> bool {
        let Some((interface, next_hop)) = self.next_hop(dst) else {
            return false;
        };
        let queue = &mut self.oversize;
        if queue.bytes + packet.len() > WAITING_BYTES
            || pool::try_reserve_deque(&mut queue.waiting, 1).is_err()
        {
            return false;
        }
        queue.bytes += packet.len();
        queue.waiting.push_back(Waiting {
            packet,
            interface,
            next_hop,
            carried,
            since: self.now,
            asked: None,
        });
        queue.retry_at = Some(self.now);
        true
    }

    /// The interface and on-link address a packet to `dst` goes to: `dst` itself on an
    /// interface's subnet (a limited broadcast: on the lowest bound interface), else the
    /// gateway of the route to it. DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn next_hop(&self, dst: Ipv4Addr) -> Option<(u32, Ipv4Addr)> {
        if let Some((index, _)) = self.on_link(dst) {
            return Some((index, dst));
        }
        if dst.is_broadcast() {
            let (index, _) = self.interfaces().find(|(_, slot)| slot.bound)?;
            return Some((index, dst));
        }
        let (index, _) = self.interface_to(dst)?;
        let routed = self
            .routes
            .iter()
            .filter(|route| {
                route.interface == index
                    && Ipv4Cidr::new(route.destination, route.prefix).contains_addr(&dst)
            })
            .max_by_key(|route| route.prefix)
            .map(|route| route.gateway);
        Some((index, routed.or(self.slot(index)?.gateway)?))
    }

    /// Sends the waiting packets whose next hop's MAC address is known, as fragments; asks for
    /// the others with an ARP request; drops those that waited past [`STUCK_LIMIT`] (or all,
    /// with no link bound). DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn oversize_egress(&mut self, wires: &mut [Option<Wire<'_>>]) {
        let now = self.now;
        self.oversize.retry_at = None;
        if self.oversize.waiting.is_empty() {
            return;
        }
        let mut fates = Fates::default();
        let mut retry = false;
        let fragments = &mut self.fragments;
        let mut index = 0;
        while let Some(waiting) = self.oversize.waiting.get_mut(index) {
            // The wire of its interface, with its MAC address and IP address; without them
            // (the adapter went, the address was removed) the packet is dropped.
            let link = ethernet::wire(wires, waiting.interface).and_then(|wire| {
                let ip = wire
                    .port
                    .iface
                    .ip_addrs()
                    .first()
                    .map(|&IpCidr::Ipv4(cidr)| cidr.address())?;
                match wire.device.hardware_address() {
                    HardwareAddress::Ethernet(mac) => Some((
                        wire.port.mtu,
                        &wire.port.neighbors,
                        &mut wire.device,
                        mac.0,
                        ip,
                    )),
                    _ => None,
                }
            });
            let Some((mtu, neighbors, device, mac, ip)) = link else {
                if let Some(done) = self.oversize.waiting.remove(index) {
                    fates.add(done.carried, false);
                    self.oversize.bytes = self.oversize.bytes.saturating_sub(done.packet.len());
                }
                continue;
            };
            let known = if waiting.next_hop.is_broadcast() {
                Some([0xff; 6])
            } else {
                neighbors.lookup(waiting.next_hop, now)
            };
            let outcome = if let Some(peer) = known {
                let ident = fragments.next_ident();
                let sent = fragment::split(&waiting.packet, mtu, ident, |len, write| {
                    let token = device.transmit(now);
                    token.is_some_and(|token| {
                        token.consume(ETHERNET_HEADER + len, |frame| {
                            write_frame(frame, mac, peer, write)
                        })
                    })
                });
                if let Ok(count) = sent {
                    fragments.stats.fragmented += 1;
                    fragments.stats.fragments_out += count as u64;
                }
                Some(sent.is_ok())
            } else if now - waiting.since > STUCK_LIMIT {
                Some(false)
            } else {
                if waiting.asked.is_none_or(|at| now - at >= ASK_INTERVAL) {
                    waiting.asked = Some(now);
                    if let Some(token) = device.transmit(now) {
                        token.consume(ARP_FRAME, |frame| {
                            neighbors::arp_request(frame, mac, ip, waiting.next_hop)
                        });
                    }
                }
                None
            };
            match outcome {
                Some(sent) => {
                    if let Some(done) = self.oversize.waiting.remove(index) {
                        fates.add(done.carried, sent);
                        self.oversize.bytes = self.oversize.bytes.saturating_sub(done.packet.len());
                    }
                }
                None => {
                    retry = true;
                    index += 1;
                }
            }
        }
        fates.count(self);
        self.oversize.retry_at = retry.then(|| now + RETRY_INTERVAL);
    }
}

/// Writes an Ethernet header from `mac` to `peer` into `frame`, then the IPv4 fragment through
/// `write`. Returns whether the frame had room. IRQL ≤ DISPATCH_LEVEL.
fn write_frame(
    frame: &mut [u8],
    mac: [u8; 6],
    peer: [u8; 6],
    write: &mut dyn FnMut(&mut [u8]),
) -> bool {
    if frame.len() <= ETHERNET_HEADER {
        return false;
    }
    let ethernet = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress(peer),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut view = EthernetFrame::new_unchecked(frame);
    ethernet.emit(&mut view);
    write(view.payload_mut());
    true
}
