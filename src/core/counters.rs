//! The core's counters, per layer, as netstack3 keeps them: every packet that crosses a link
//! is counted where it crosses, by the [`Metered`] device wrapper the core puts around each
//! link's smoltcp device, and protocol events (opens, failures, resets) where the core sees
//! them. The IP helper's tables (`IFEntry`, `IPSNMPInfo`, `TCPStats`, ICMP statistics) read
//! them; nothing else does.
//!
//! Counters are `u64` and wrap; the MIB's `ULONG`s take their low 32 bits, as a 32-bit
//! `Counter32` does.
#![forbid(unsafe_code)]

use core::cell::Cell;
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, TcpPacket,
};

/// Binds `$links` to a [`Links`](crate::core::udp::endpoint::Links) over the core's loopback
/// (behind a [`Metered`] device) and the pass's `$wires` (metered as each is used), so that the
/// link, IP and ICMP counters see every frame the core's own senders (UDP, ICMP echo, raw IP)
/// put on a link. A macro because the metered loopback device is a local of the caller that the
/// links borrow. DISPATCH_LEVEL, under the core lock.
macro_rules! metered_links {
    ($links:ident = $core:ident, $wires:expr) => {
        let mut loopback = $crate::core::counters::Metered {
            device: &mut $core.device,
            meter: $crate::core::counters::Meter {
                layers: &$core.counters,
                link: &$core.loopback_link,
            },
        };
        let mut $links = $crate::core::udp::endpoint::Links {
            loopback: (&mut $core.iface, &mut loopback),
            wires: $wires,
            layers: &$core.counters,
            now: $core.now,
        };
    };
}
pub(crate) use metered_links;

/// One direction of a link (RFC 1213 `ifTable` counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkDirection {
    pub octets: u64,
    pub unicast: u64,
    pub non_unicast: u64,
}

/// A link's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub received: LinkDirection,
    pub sent: LinkDirection,
}

/// IP counters (RFC 1213 `ip` group, the ones this stack can observe).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpCounters {
    /// IPv4 packets received on any link, well-formed or not (`ipInReceives`).
    pub in_receives: u64,
    /// Received packets with a bad IPv4 header (`ipInHdrErrors`).
    pub in_header_errors: u64,
    /// Received packets for a protocol the stack does not serve (`ipInUnknownProtos`).
    pub in_unknown_protocols: u64,
    /// Received packets handed to TCP or ICMP (`ipInDelivers`).
    pub in_delivers: u64,
    /// IPv4 packets sent (`ipOutRequests`).
    pub out_requests: u64,
}

/// TCP counters (RFC 1213 `tcp` group).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// Connections that went SYN-SENT from CLOSED (`tcpActiveOpens`).
    pub active_opens: u64,
    /// Connections that went SYN-RECEIVED from LISTEN (`tcpPassiveOpens`).
    pub passive_opens: u64,
    /// Attempts that failed: refused or timed out connects (`tcpAttemptFails`).
    pub attempt_fails: u64,
    /// Established connections reset by the peer (`tcpEstabResets`).
    pub established_resets: u64,
    /// Segments received (`tcpInSegs`).
    pub in_segments: u64,
    /// Segments sent (`tcpOutSegs`, retransmissions included as RFC 1213 leaves open).
    pub out_segments: u64,
    /// Segments sent again (`tcpRetransSegs`), counted by the socket table.
    pub retransmitted: u64,
    /// Received segments too short for a TCP header (`tcpInErrs`).
    pub in_errors: u64,
    /// Segments sent with RST (`tcpOutRsts`).
    pub out_resets: u64,
}

/// ICMP counters of one direction (RFC 1213 `icmp` group).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpDirection {
    pub messages: u64,
    pub errors: u64,
    pub destination_unreachables: u64,
    pub time_exceeded: u64,
    pub parameter_problems: u64,
    pub redirects: u64,
    pub echo_requests: u64,
    pub echo_replies: u64,
}

/// ICMP counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpCounters {
    pub received: IcmpDirection,
    pub sent: IcmpDirection,
}

/// Every counter of the network and transport layers the core keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub ip: IpCounters,
    pub tcp: TcpCounters,
    pub icmp: IcmpCounters,
}

/// Which way a packet went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    In,
    Out,
}

impl Counters {
    /// Counts one IPv4 packet going `way`. Never panics, whatever the bytes. Any IRQL.
    fn ip_packet(&mut self, way: Way, packet: &[u8]) {
        let ip = match Ipv4Packet::new_checked(packet) {
            Ok(ip) if ip.version() == 4 => ip,
            _ => {
                if way == Way::In {
                    self.ip.in_receives = self.ip.in_receives.wrapping_add(1);
                    self.ip.in_header_errors = self.ip.in_header_errors.wrapping_add(1);
                }
                return;
            }
        };
        match way {
            Way::In => self.ip.in_receives = self.ip.in_receives.wrapping_add(1),
            Way::Out => self.ip.out_requests = self.ip.out_requests.wrapping_add(1),
        }
        let first_fragment = ip.frag_offset() == 0;
        match ip.next_header() {
            IpProtocol::Tcp => {
                self.delivered(way);
                if first_fragment {
                    self.tcp_segment(way, ip.payload());
                }
            }
            IpProtocol::Icmp => {
                self.delivered(way);
                if first_fragment {
                    self.icmp_message(way, ip.payload());
                }
            }
            // UDP keeps its own counters (`core::udp`).
            IpProtocol::Udp => self.delivered(way),
            _ if way == Way::In => {
                self.ip.in_unknown_protocols = self.ip.in_unknown_protocols.wrapping_add(1);
            }
            _ => {}
        }
    }

    /// Counts a received packet handed to a transport. Any IRQL.
    fn delivered(&mut self, way: Way) {
        if way == Way::In {
            self.ip.in_delivers = self.ip.in_delivers.wrapping_add(1);
        }
    }

    /// Counts one TCP segment going `way`. Any IRQL.
    fn tcp_segment(&mut self, way: Way, segment: &[u8]) {
        let tcp = &mut self.tcp;
        let Ok(packet) = TcpPacket::new_checked(segment) else {
            if way == Way::In {
                tcp.in_errors = tcp.in_errors.wrapping_add(1);
            }
            return;
        };
        match way {
            Way::In => tcp.in_segments = tcp.in_segments.wrapping_add(1),
            Way::Out => {
                tcp.out_segments = tcp.out_segments.wrapping_add(1);
                if packet.rst() {
                    tcp.out_resets = tcp.out_resets.wrapping_add(1);
                }
            }
        }
    }

    /// Counts one ICMP message going `way`, by type. Any IRQL.
    fn icmp_message(&mut self, way: Way, message: &[u8]) {
        let direction = match way {
            Way::In => &mut self.icmp.received,
            Way::Out => &mut self.icmp.sent,
        };
        direction.messages = direction.messages.wrapping_add(1);
        let Ok(packet) = Icmpv4Packet::new_checked(message) else {
            direction.errors = direction.errors.wrapping_add(1);
            return;
        };
        let counter = match packet.msg_type() {
            Icmpv4Message::EchoRequest => &mut direction.echo_requests,
            Icmpv4Message::EchoReply => &mut direction.echo_replies,
            Icmpv4Message::DstUnreachable => &mut direction.destination_unreachables,
            Icmpv4Message::TimeExceeded => &mut direction.time_exceeded,
            Icmpv4Message::ParamProblem => &mut direction.parameter_problems,
            Icmpv4Message::Redirect => &mut direction.redirects,
            _ => return,
        };
        *counter = counter.wrapping_add(1);
    }
}

/// Counts one frame of `medium` the core took from a link, whoever it goes to (UDP, a TCP
/// socket, smoltcp, or nobody: a duplicate SYN the core drops still arrived). Any IRQL.
pub fn received(meter: Meter<'_>, medium: Medium, bytes: &[u8]) {
    frame(&meter, medium, Way::In, bytes);
}

/// Counts one frame of `medium` going `way` in `meter`. Any IRQL.
fn frame(meter: &Meter<'_>, medium: Medium, way: Way, bytes: &[u8]) {
    let mut link = meter.link.get();
    let direction = match way {
        Way::In => &mut link.received,
        Way::Out => &mut link.sent,
    };
    direction.octets = direction
        .octets
        .wrapping_add(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
    let (unicast, packet) = match medium {
        Medium::Ethernet => match EthernetFrame::new_checked(bytes) {
            Ok(ethernet) => {
                let unicast = ethernet.dst_addr().is_unicast();
                let ipv4 = ethernet.ethertype() == EthernetProtocol::Ipv4;
                let header = smoltcp::wire::ETHERNET_HEADER_LEN;
                (unicast, bytes.get(header..).filter(|_| ipv4))
            }
            Err(_) => (true, None),
        },
        _ => (true, Some(bytes)),
    };
    let counter = if unicast {
        &mut direction.unicast
    } else {
        &mut direction.non_unicast
    };
    *counter = counter.wrapping_add(1);
    meter.link.set(link);
    if let Some(packet) = packet {
        let mut layers = meter.layers.get();
        layers.ip_packet(way, packet);
        meter.layers.set(layers);
    }
}

/// Where a [`Metered`] device counts: the core's layer counters and the link's own. Cells,
/// shared by the tokens smoltcp holds at once (a reply token beside a received frame).
#[derive(Clone, Copy)]
pub struct Meter<'a> {
    pub layers: &'a Cell<Counters>,
    pub link: &'a Cell<LinkCounters>,
}

/// A link's smoltcp device with every frame smoltcp sends on it counted once written (received
/// frames are counted by the core when it takes them from the link, [`received`]). The wrapper
/// changes nothing else.
pub struct Metered<'a, D: Device> {
    pub device: &'a mut D,
    pub meter: Meter<'a>,
}

impl<D: Device> Device for Metered<'_, D> {
    type RxToken<'b>
        = D::RxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = Token<'b, D::TxToken<'b>>
    where
        Self: 'b;

    /// The wrapped device's next frame and its reply token. IRQL ≤ DISPATCH_LEVEL.
    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let medium = self.device.capabilities().medium;
        let meter = self.meter;
        let (rx, tx) = self.device.receive(timestamp)?;
        let reply = Token {
            inner: tx,
            medium,
            meter,
        };
        Some((rx, reply))
    }

    /// A token for one frame. IRQL ≤ DISPATCH_LEVEL.
    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let medium = self.device.capabilities().medium;
        let meter = self.meter;
        let inner = self.device.transmit(timestamp)?;
        Some(Token {
            inner,
            medium,
            meter,
        })
    }

    /// The wrapped device's. Any IRQL.
    fn capabilities(&self) -> DeviceCapabilities {
        self.device.capabilities()
    }
}

/// A frame to send, counted once written.
pub struct Token<'b, T> {
    inner: T,
    medium: Medium,
    meter: Meter<'b>,
}

impl<T: phy::TxToken> phy::TxToken for Token<'_, T> {
    /// Lets `f` write the frame through the wrapped token, then counts it. Any IRQL.
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let Self {
            inner,
            medium,
            meter,
        } = self;
        inner.consume(len, |bytes| {
            let result = f(bytes);
            frame(&meter, medium, Way::Out, bytes);
            result
        })
    }
}
