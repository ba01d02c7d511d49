//! Received frames to their protocol: a frame from a link is first copied to the raw IP
//! address files of its protocol ([`crate::core::raw::ingress`]), then goes to the ICMP layer (which
//! takes the replies and errors for the host's echo requests, [`crate::core::icmp::ingress`]),
//! then to the UDP layer (which
//! takes the datagrams for the host's address files, [`crate::core::udp::ingress`]), then, for
//! TCP, to the one socket it is for ([`crate::core::demux`]), or to smoltcp with no socket
//! (ICMP and ARP are smoltcp's; it answers anything unmatched with a RST or an ICMP port
//! unreachable). Runs under the core lock at DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use crate::core::counters::{self, Meter, Metered};
use crate::core::ethernet::{MAX_INTERFACES, Port};
use crate::core::fragment;
use crate::core::icmp;
use crate::core::oversize::Carried;
use crate::core::raw;
use crate::core::segment::{self, TcpSegment};
use crate::core::slab::Key;
use crate::core::sockets::SocketKey;
use crate::core::state::{Completer, Core};
use crate::core::udp;
use crate::link::ethernet::{self, EthernetDevice};
use smoltcp::phy::Medium;
use smoltcp::wire::{IpCidr, Ipv4Packet};

impl Core {
    /// Takes one frame from the loopback. Returns whether a frame was taken.
    /// DISPATCH_LEVEL, under the core lock.
    pub(super) fn ingress_loopback(&mut self, c: &Completer<'_>) -> bool {
        let mut addresses = [None; MAX_INTERFACES];
        for (entry, slot) in addresses.iter_mut().zip(&self.slots) {
            *entry = slot.address.map(|cidr| (cidr.address(), cidr.prefix_len()));
        }
        let arrival = udp::Arrival {
            checksums: false,
            loopback: true,
            addresses,
        };
        let Some(frame) = self.device.peek_front() else {
            return false;
        };
        let meter = Meter {
            layers: &self.counters,
            link: &self.loopback_link,
        };
        counters::received(meter, Medium::Ip, frame);
        if fragment::is_fragment(frame) {
            let whole = self.fragments.reassemble(frame, self.now);
            self.device.drop_front();
            if let Some(whole) = whole {
                self.ingress_whole(&whole, &arrival, c);
            }
            return true;
        }
        let mut udp_error = None;
        let taken = raw::ingress(&mut self.raw, &mut self.addresses, frame, &arrival, c)
            || icmp::ingress_reporting(
                &mut self.icmp,
                frame,
                &arrival,
                self.now,
                c,
                &mut udp_error,
            );
        if let Some(error) = udp_error {
            self.udp_error_event(error, c);
        }
        if taken {
            self.device.drop_front();
            return true;
        }
        match udp::ingress(&mut self.udp, &mut self.addresses, frame, &arrival, c) {
            udp::Ingress::Taken => {
                self.device.drop_front();
                return true;
            }
            udp::Ingress::NoPort => self.icmp.count_port_unreachable(),
            udp::Ingress::NotUdp => {}
        }
        let segment = segment::classify(frame);
        match self.demux(segment) {
            Demux::Drop => {
                self.device.drop_front();
            }
            Demux::Deliver { target, listener } => {
                if let (Some(_), Some(segment)) = (listener, segment) {
                    // The LISTEN socket draws this connection's ISN from the interface.
                    self.reseed(segment.dst, segment.src);
                }
                let meter = Meter {
                    layers: &self.counters,
                    link: &self.loopback_link,
                };
                let mut loopback = Metered {
                    device: &mut self.device,
                    meter,
                };
                self.sockets
                    .ingress(target, &mut self.iface, &mut loopback, self.now);
                self.after_ingress(listener, c);
            }
        }
        true
    }

    /// Takes one frame from the Ethernet link (ARP and ICMP are smoltcp's). Returns whether a
    /// frame was taken. DISPATCH_LEVEL, under the core lock.
    pub(super) fn ingress_ethernet(
        &mut self,
        port: &mut Port,
        device: &mut EthernetDevice<'_>,
        c: &Completer<'_>,
    ) -> bool {
        let own = port
            .iface
            .ip_addrs()
            .first()
            .map(|&IpCidr::Ipv4(cidr)| (cidr.address(), cidr.prefix_len()));
        let mut addresses = [None; MAX_INTERFACES];
        if let Some(first) = addresses.first_mut() {
            *first = own;
        }
        let arrival = udp::Arrival {
            checksums: true,
            loopback: false,
            addresses,
        };
        let Some(frame) = device.peek_front() else {
            return false;
        };
        let meter = Meter {
            layers: &self.counters,
            link: &port.link,
        };
        counters::received(meter, Medium::Ethernet, frame);
        let packet = ethernet::ipv4_packet(frame);
        if let Some(packet) = packet
            && fragment::is_fragment(packet)
        {
            let whole = for_host(packet, &arrival)
                .then(|| self.fragments.reassemble(packet, self.now))
                .flatten();
            device.drop_front();
            if let Some(whole) = whole {
                self.ingress_whole(&whole, &arrival, c);
            }
            return true;
        }
        let mut udp_error = None;
        if let Some(packet) = packet
            && (raw::ingress(&mut self.raw, &mut self.addresses, packet, &arrival, c)
                || icmp::ingress_reporting(
                    &mut self.icmp,
                    packet,
                    &arrival,
                    self.now,
                    c,
                    &mut udp_error,
                ))
        {
            device.drop_front();
            if let Some(error) = udp_error {
                self.udp_error_event(error, c);
            }
            return true;
        }
        if let Some(error) = udp_error {
            self.udp_error_event(error, c);
        }
        if let Some(packet) = packet {
            match udp::ingress(&mut self.udp, &mut self.addresses, packet, &arrival, c) {
                udp::Ingress::Taken => {
                    device.drop_front();
                    return true;
                }
                udp::Ingress::NoPort => self.icmp.count_port_unreachable(),
                udp::Ingress::NotUdp => {}
            }
        }
        let segment = packet.and_then(segment::classify);
        match self.demux(segment) {
            Demux::Drop => {
                device.drop_front();
            }
            Demux::Deliver { target, listener } => {
                if let (Some(_), Some(segment)) = (listener, segment) {
                    // The LISTEN socket draws this connection's ISN from the interface.
                    let seed = self.seed_for(segment.dst, segment.src);
                    port.reseed(device, seed, self.now);
                }
                let meter = Meter {
                    layers: &self.counters,
                    link: &port.link,
                };
                let mut device = Metered { device, meter };
                self.sockets
                    .ingress(target, &mut port.iface, &mut device, self.now);
                self.after_ingress(listener, c);
            }
        }
        true
    }

    /// A reassembled datagram to the raw, ICMP and UDP layers. An echo request for the host
    /// is answered here (its reply, as large, leaves as fragments: `core::oversize`); smoltcp
    /// cannot be handed a packet that is no frame of a link, so a reassembled TCP segment is
    /// dropped and a datagram for a closed UDP port gets no port unreachable.
    /// DISPATCH_LEVEL, under the core lock.
    fn ingress_whole(&mut self, packet: &[u8], arrival: &udp::Arrival, c: &Completer<'_>) {
        if raw::ingress(&mut self.raw, &mut self.addresses, packet, arrival, c)
            || icmp::ingress(&mut self.icmp, packet, arrival, self.now, c)
        {
            return;
        }
        if let Some(reply) = icmp::wire::echo_reply_to(packet)
            && arrival.is_own(Ipv4Packet::new_unchecked(packet).dst_addr())
        {
            let sent = reply.is_ok_and(|reply| {
                let to = Ipv4Packet::new_unchecked(&reply[..]).dst_addr();
                if arrival.loopback {
                    self.oversize_loopback(&reply)
                } else {
                    self.oversize_ethernet(reply, to, Carried::Icmp)
                }
            });
            if !sent {
                self.icmp.stats.errors_out += 1;
            }
            return;
        }
        udp::ingress(&mut self.udp, &mut self.addresses, packet, arrival, c);
    }

    /// Picks the one socket a received segment is for: the socket filed for its 4-tuple, or
    /// for a connection request the listener's LISTEN socket (whose backlog must have room,
    /// made by dropping its oldest half-open connection if half-open ones fill it: a SYN that
    /// still finds no room is dropped, and the client's retransmission retries), or no socket
    /// (smoltcp answers with a RST). A retransmitted SYN for a connection that exists is
    /// dropped: that socket retransmits its own SYN-ACK. DISPATCH_LEVEL, under the core lock.
    fn demux(&mut self, segment: Option<TcpSegment>) -> Demux {
        let nobody = Demux::Deliver {
            target: None,
            listener: None,
        };
        let Some(segment) = segment else {
            return nobody;
        };
        let target = self.sockets.find(segment.dst, segment.src);
        if !segment.is_connection_request() {
            return Demux::Deliver {
                target,
                listener: None,
            };
        }
        if target.is_some() {
            return Demux::Drop;
        }
        let listener = match self.listener_for(segment.dst) {
            Some((key, None)) => self.make_room(key).map(|socket| (key, socket)),
            Some((key, Some(socket))) => Some((key, socket)),
            None => return nobody,
        };
        match listener {
            None => Demux::Drop,
            Some((key, socket)) => Demux::Deliver {
                target: Some(socket),
                listener: Some(key),
            },
        }
    }

    /// Replaces a listener's LISTEN socket at once after it took a SYN: the next SYN may be in
    /// the same batch. DISPATCH_LEVEL, under the core lock.
    fn after_ingress(&mut self, listener: Option<Key>, c: &Completer<'_>) {
        if let Some(key) = listener {
            self.maintain_listener(key, c);
        }
    }
}

/// Where a received frame goes.
enum Demux {
    Drop,
    Deliver {
        target: Option<SocketKey>,
        listener: Option<Key>,
    },
}

/// Whether `packet` (an IPv4 packet from the Ethernet link) is for this host: one of its
/// addresses, or a broadcast. DISPATCH_LEVEL.
fn for_host(packet: &[u8], arrival: &udp::Arrival) -> bool {
    smoltcp::wire::Ipv4Packet::new_checked(packet)
        .is_ok_and(|ip| arrival.is_own(ip.dst_addr()) || arrival.is_broadcast(ip.dst_addr()))
}
