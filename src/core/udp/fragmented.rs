//! UDP datagrams larger than their link's MTU allows, sent as IPv4 fragments
//! ([`crate::core::fragment::split`]) that the core writes itself: to the host itself straight
//! into the loopback device (reassembled on the way in), over Ethernet as frames to the next
//! hop's MAC address ([`crate::core::neighbors`]; an ARP request asks for it when it is not
//! known, and the datagram waits up to [`STUCK_LIMIT`], within [`LARGE_BYTES`] for all waiting
//! datagrams). The send completes with its length at once, as UDP's sends do; a datagram that
//! cannot leave is counted in `UdpStats::send_dropped`. Runs under the core lock at
//! DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use crate::core::ethernet::Port;
use crate::core::fragment;
use crate::core::neighbors;
use crate::core::state::{Completer, Core};
use crate::core::udp::{HEADERS, STUCK_LIMIT};
use crate::link::ethernet::EthernetDevice;
use crate::nt::NtStatus;
use crate::nt::irp::PendingIrp;
use crate::nt::pool;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use smoltcp::phy::{ChecksumCapabilities, Device, TxToken};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, HardwareAddress, IpAddress,
    IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

/// Bytes of large datagrams that may wait for their next hop's MAC address at once.
pub const LARGE_BYTES: usize = 256 * 1024;

/// How often a waiting datagram's next hop is looked up again, and an ARP request repeated.
const RETRY_INTERVAL: Duration = Duration::from_millis(10);
const ASK_INTERVAL: Duration = Duration::from_secs(1);

/// A large datagram waiting for its next hop's MAC address.
struct Waiting {
    packet: Vec<u8>,
    next_hop: Ipv4Addr,
    since: Instant,
    asked: Option<Instant>,
}

/// The large datagrams waiting to leave on the Ethernet link. Any IRQL ≤ DISPATCH_LEVEL, under
/// the core lock.
#[derive(Default)]
pub struct Large {
    waiting: VecDeque<Waiting>,
    bytes: usize,
    pub retry_at: Option<Instant>,
}

/// The TTL of the datagrams the host sends itself.
const TTL: u8 = 64;

impl Core {
    /// Sends `length` bytes of `irp`'s buffer from `local` (the address file's port, source
    /// `source`) to `remote` on the loopback as fragments, and completes the send with its
    /// length. A loopback without room for every fragment drops the datagram (counted in
    /// `UdpStats::send_dropped`; the send still completes, as UDP's sends do).
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn send_fragmented(
        &mut self,
        local: u16,
        source: Ipv4Addr,
        remote: SocketAddrV4,
        length: usize,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let packet = build(local, source, remote, length, &irp);
        let packet = match packet {
            Ok(packet) => packet,
            Err(status) => return c.done(irp, status, 0),
        };
        let mtu = self.device.mtu();
        let pieces = packet.len().div_ceil(mtu.saturating_sub(HEADERS).max(8));
        let room = self
            .device
            .frames()
            .saturating_sub(self.device.pending() + 1);
        let ident = self.fragments.next_ident();
        let now = self.now;
        let device = &mut self.device;
        let sent = room > pieces
            && fragment::split(&packet, mtu, ident, |len, write| {
                match device.transmit(now) {
                    Some(token) => {
                        token.consume(len, |buffer| write(buffer));
                        true
                    }
                    None => false,
                }
            })
            .inspect(|count| self.fragments.stats.fragments_out += *count as u64)
            .is_ok();
        if sent {
            self.fragments.stats.fragmented += 1;
            self.udp.stats.datagrams_out += 1;
        } else {
            self.udp.stats.send_dropped += 1;
        }
        c.done(irp, NtStatus::SUCCESS, length);
    }
}

impl Core {
    /// Queues a UDP datagram larger than the Ethernet MTU for [`Core::large_egress`], which
    /// sends it as fragments, and completes the send with its length.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn send_large_ethernet(
        &mut self,
        local: u16,
        source: Ipv4Addr,
        remote: SocketAddrV4,
        length: usize,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let packet = match build(local, source, remote, length, &irp) {
            Ok(packet) => packet,
            Err(status) => return c.done(irp, status, 0),
        };
        let next_hop = self.next_hop(*remote.ip());
        let large = &mut self.udp.large;
        let queued = match next_hop {
            Some(next_hop)
                if large.bytes + packet.len() <= LARGE_BYTES
                    && pool::try_reserve_deque(&mut large.waiting, 1).is_ok() =>
            {
                large.bytes += packet.len();
                large.waiting.push_back(Waiting {
                    packet,
                    next_hop,
                    since: self.now,
                    asked: None,
                });
                large.retry_at = Some(self.now);
                true
            }
            _ => false,
        };
        if !queued {
            self.udp.stats.send_dropped += 1;
        }
        c.done(irp, NtStatus::SUCCESS, length);
    }

    /// The on-link address a datagram to `dst` goes to: `dst` itself on the configured
    /// subnet or as a broadcast, else the default gateway. DISPATCH_LEVEL, under the core lock.
    fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let (own, prefix) = self.configured_v4()?;
        let mask = u32::MAX
            .checked_shl(32u32.saturating_sub(u32::from(prefix)))
            .unwrap_or(0);
        let on_link = u32::from(dst) & mask == u32::from(own) & mask;
        if on_link || dst.is_broadcast() {
            Some(dst)
        } else {
            self.gateway
        }
    }

    /// Sends the waiting large datagrams whose next hop's MAC address is known, as fragments;
    /// asks for the others with an ARP request; drops those that waited past [`STUCK_LIMIT`]
    /// (or all, with no link bound). DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn large_egress(
        &mut self,
        port: Option<&mut Port>,
        device: Option<&mut EthernetDevice<'_>>,
    ) {
        let now = self.now;
        let configured = self.configured_v4();
        let large = &mut self.udp.large;
        large.retry_at = None;
        if large.waiting.is_empty() {
            return;
        }
        let link = match (port, device, configured) {
            (Some(port), Some(device), Some((ip, _))) => match device.hardware_address() {
                HardwareAddress::Ethernet(mac) => {
                    Some((port.mtu, &port.neighbors, device, mac.0, ip))
                }
                _ => None,
            },
            _ => None,
        };
        let Some((mtu, neighbors, device, mac, ip)) = link else {
            self.udp.stats.send_dropped += large.waiting.len() as u64;
            large.waiting.clear();
            large.bytes = 0;
            return;
        };
        let (fragments, stats) = (&mut self.fragments, &mut self.udp.stats);
        let mut retry = false;
        large.waiting.retain_mut(|waiting| {
            let known = if waiting.next_hop.is_broadcast() {
                Some([0xff; 6])
            } else {
                neighbors.lookup(waiting.next_hop, now)
            };
            if let Some(peer) = known {
                let ident = fragments.next_ident();
                let sent = fragment::split(&waiting.packet, mtu, ident, |len, write| {
                    let token = device.transmit(now);
                    token.is_some_and(|token| {
                        token.consume(ETHERNET_HEADER + len, |frame| {
                            write_frame(frame, mac, peer, write)
                        })
                    })
                });
                match sent {
                    Ok(count) => {
                        fragments.stats.fragmented += 1;
                        fragments.stats.fragments_out += count as u64;
                        stats.datagrams_out += 1;
                    }
                    Err(_) => stats.send_dropped += 1,
                }
                return false;
            }
            if now - waiting.since > STUCK_LIMIT {
                stats.send_dropped += 1;
                return false;
            }
            if waiting.asked.is_none_or(|at| now - at >= ASK_INTERVAL) {
                waiting.asked = Some(now);
                if let Some(token) = device.transmit(now) {
                    token.consume(ARP_FRAME, |frame| {
                        neighbors::arp_request(frame, mac, ip, waiting.next_hop)
                    });
                }
            }
            retry = true;
            true
        });
        large.bytes = large.waiting.iter().map(|w| w.packet.len()).sum();
        large.retry_at = retry.then(|| now + RETRY_INTERVAL);
    }
}

/// Bytes of an Ethernet header.
const ETHERNET_HEADER: usize = 14;

/// Bytes of an ARP request frame.
const ARP_FRAME: usize = 42;

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

/// The whole IPv4 packet of a UDP datagram of `length` bytes from `irp`'s buffer, checksum
/// included. IRQL ≤ DISPATCH_LEVEL.
fn build(
    local: u16,
    source: Ipv4Addr,
    remote: SocketAddrV4,
    length: usize,
    irp: &PendingIrp,
) -> Result<alloc::vec::Vec<u8>, NtStatus> {
    let udp = UdpRepr {
        src_port: local,
        dst_port: remote.port(),
    };
    let ip = Ipv4Repr {
        src_addr: source,
        dst_addr: *remote.ip(),
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + length,
        hop_limit: TTL,
    };
    let mut packet = pool::try_zeroed(ip.buffer_len() + ip.payload_len)?;
    let caps = ChecksumCapabilities::default();
    let mut view = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.emit(&mut view, &caps);
    let mut copied = Ok(0);
    udp.emit(
        &mut UdpPacket::new_unchecked(view.payload_mut()),
        &IpAddress::Ipv4(source),
        &IpAddress::Ipv4(*remote.ip()),
        length,
        |buffer| {
            copied = match irp.irp().mdl() {
                Some(mdl) => mdl.read(0, buffer),
                None => Ok(0),
            }
        },
        &caps,
    );
    copied?;
    Ok(packet)
}
