//! `IOCTL_ICMP_ECHO_REQUEST` in the core: the request sent, its reply or error matched on the
//! way in, its timeout. Everything runs under the core lock at DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use crate::core::counters::metered_links;
use crate::core::ethernet::Wire;
use crate::core::icmp::reply::{self, Reply};
use crate::core::icmp::wire::{self, Carrier, Message, Outgoing, Parsed, Quoted};
use crate::core::icmp::{Echo, Icmp};
use crate::core::oversize::Carried;
use crate::core::sender::Flushed;
use crate::core::sockets::Route;
use crate::core::state::{Completer, Core};
use crate::core::udp::Arrival;
use crate::core::udp::endpoint::Leg;
use crate::nt::NtStatus;
use crate::nt::irp::PendingIrp;
use crate::nt::pool;
use crate::nt::types::*;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::Icmpv4Message;

/// How often a packet waiting for an Ethernet neighbour is retried.
const RETRY_INTERVAL: Duration = Duration::from_millis(10);

/// An echo request as the dispatch routine decoded it, its data copied.
#[derive(Debug)]
pub struct EchoParams {
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub tos: u8,
    pub dont_fragment: bool,
    pub timeout_ms: u32,
    pub data: Vec<u8>,
}

impl Core {
    /// IOCTL_ICMP_ECHO_REQUEST: builds the echo request and queues it for the next egress (one
    /// past the link's MTU leaves as fragments, `core::oversize`), or completes at once with
    /// `IP_DEST_HOST_UNREACHABLE` when no link leads to the destination, `IP_PACKET_TOO_BIG`
    /// past the largest IPv4 packet or past the MTU with don't-fragment set (`ping -f`),
    /// `IP_NO_RESOURCES` when the fragments find no room.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn echo_request(
        &mut self,
        params: EchoParams,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let (leg, mtu) = match self.route_to(params.dst) {
            Route::Loopback => (Leg::Loopback, self.device.mtu()),
            Route::Ethernet(index) => (Leg::Ethernet(index), self.mtu_of(index).unwrap_or(0)),
        };
        let source = self.source_for(Ipv4Addr::UNSPECIFIED, params.dst);
        let size = wire::IPV4_HEADER + wire::ICMP_HEADER + params.data.len();
        let status = match source {
            _ if mtu == 0 => Err(IP_DEST_HOST_UNREACHABLE),
            Err(_) => Err(IP_DEST_NET_UNREACHABLE),
            Ok(_) if size > usize::from(u16::MAX) => Err(IP_PACKET_TOO_BIG),
            Ok(_) if params.dont_fragment && size > mtu => Err(IP_PACKET_TOO_BIG),
            Ok(source) => Ok(source),
        };
        let src = match status {
            Ok(src) => src,
            Err(status) => {
                self.icmp.stats.errors_out += 1;
                return answer(irp, params.dst, status, 0, c);
            }
        };
        let seq = self.icmp.next_seq;
        self.icmp.next_seq = seq.wrapping_add(1);
        let header = Outgoing {
            src,
            dst: params.dst,
            ttl: params.ttl,
            tos: params.tos,
            dont_fragment: params.dont_fragment,
        };
        let packet = wire::echo_request(header, self.icmp.ident, seq, &params.data);
        let queued = packet.and_then(|packet| {
            pool::try_reserve(&mut self.icmp.echoes, 1)?;
            Ok(packet)
        });
        let packet = match queued {
            Ok(packet) => packet,
            Err(status) => return c.done(irp, status, 0),
        };
        // smoltcp's raw socket re-emits the IPv4 header without the type of service: a request
        // with one leaves through the core's own sender too (as one fragment if it fits).
        let packet = if size > mtu.min(self.icmp.sender.largest()) || params.tos != 0 {
            let sent = match leg {
                Leg::Loopback => self.oversize_loopback(&packet),
                Leg::Ethernet(_) => self.oversize_ethernet(packet, params.dst, Carried::Icmp),
            };
            if !sent {
                self.icmp.stats.errors_out += 1;
                return answer(irp, params.dst, IP_NO_RESOURCES, 0, c);
            }
            self.icmp.stats.echo_requests_out += 1;
            self.icmp.stats.messages_out += 1;
            None
        } else {
            Some(packet)
        };
        let timeout = Duration::from_millis(u64::from(params.timeout_ms));
        self.icmp.echoes.push(Echo {
            irp,
            dst: params.dst,
            seq,
            packet,
            leg,
            sent: self.now,
            deadline: self.now + timeout,
        });
    }

    /// Completes the echo requests whose timeout has come: `STATUS_TIMEOUT`, one reply
    /// structure with `IP_REQ_TIMED_OUT` and no reply counted. DISPATCH_LEVEL, under the core
    /// lock.
    pub(in crate::core) fn icmp_expire(&mut self, c: &Completer<'_>) {
        let now = self.now;
        while let Some(index) = self.icmp.echoes.iter().position(|e| e.deadline <= now) {
            let echo = self.icmp.echoes.swap_remove(index);
            let mut irp = echo.irp;
            let timed_out = Reply {
                address: Ipv4Addr::UNSPECIFIED,
                status: IP_REQ_TIMED_OUT,
                round_trip_ms: 0,
                ttl: 0,
                tos: 0,
                flags: 0,
                data: &[],
                count: 0,
            };
            let information = reply::write(irp.irp_mut(), &timed_out);
            c.done(irp, NtStatus::TIMEOUT, information);
        }
    }

    /// Hands the queued echo requests to their links, one packet at a time. A request whose
    /// link cannot be reached completes with `IP_DEST_HOST_UNREACHABLE`; one whose packet
    /// waited too long for its link is left to its timeout. DISPATCH_LEVEL, under the core
    /// lock.
    pub(in crate::core) fn icmp_egress(
        &mut self,
        wires: &mut [Option<Wire<'_>>],
        c: &Completer<'_>,
    ) {
        let icmp = &mut self.icmp;
        icmp.retry_at = None;
        metered_links!(links = self, wires);
        loop {
            match icmp.sender.flush(&mut links) {
                Flushed::Free => {}
                Flushed::Dropped => icmp.stats.errors_out += 1,
                Flushed::Busy(leg) => {
                    if matches!(leg, Leg::Ethernet(_)) {
                        icmp.retry_at = Some(links.now + RETRY_INTERVAL);
                    }
                    return;
                }
            }
            let Some(index) = icmp.echoes.iter().position(|e| e.packet.is_some()) else {
                return;
            };
            let Some(echo) = icmp.echoes.get_mut(index) else {
                return;
            };
            let packet = echo.packet.take().unwrap_or_default();
            echo.sent = links.now;
            if icmp.sender.send(&packet, echo.leg, &mut links).is_ok() {
                icmp.stats.echo_requests_out += 1;
                icmp.stats.messages_out += 1;
                continue;
            }
            let echo = icmp.echoes.swap_remove(index);
            icmp.stats.errors_out += 1;
            answer(echo.irp, echo.dst, IP_DEST_HOST_UNREACHABLE, 0, c);
        }
    }
}

/// Completes `irp` with `STATUS_SUCCESS` and one reply of `status` from `address` (an ICMP
/// error, or the host's own verdict). IRQL ≤ DISPATCH_LEVEL, under the core lock.
fn answer(mut irp: PendingIrp, address: Ipv4Addr, status: u32, rtt: u32, c: &Completer<'_>) {
    let error = Reply {
        address,
        status,
        round_trip_ms: rtt,
        ttl: 0,
        tos: 0,
        flags: 0,
        data: &[],
        count: 1,
    };
    let information = reply::write(irp.irp_mut(), &error);
    c.done(irp, NtStatus::SUCCESS, information);
}

/// Looks at an ICMP message in `packet` (an IPv4 packet that arrived as `arrival` says) before
/// smoltcp does: counts it, and completes the echo request a reply or error is for. Returns
/// whether the packet was taken (smoltcp has nothing to do with echo replies and errors for
/// our own requests); echo requests go on to smoltcp, which answers them.
/// DISPATCH_LEVEL, under the core lock.
pub fn ingress(
    icmp: &mut Icmp,
    packet: &[u8],
    arrival: &Arrival,
    now: Instant,
    c: &Completer<'_>,
) -> bool {
    ingress_reporting(icmp, packet, arrival, now, c, &mut None)
}

/// An ICMP error about a UDP datagram the host sent: for the address file's
/// `ClientEventErrorEx`.
#[derive(Clone, Copy, Debug)]
pub struct UdpError {
    /// The `IP_*` status the error means.
    pub status: u32,
    /// The local address and port the datagram left from.
    pub local: SocketAddrV4,
    /// Its destination.
    pub remote: SocketAddrV4,
}

/// As [`ingress`], and reports an error quoting a UDP datagram in `udp_error`.
/// DISPATCH_LEVEL, under the core lock.
pub fn ingress_reporting(
    icmp: &mut Icmp,
    packet: &[u8],
    arrival: &Arrival,
    now: Instant,
    c: &Completer<'_>,
    udp_error: &mut Option<UdpError>,
) -> bool {
    let (carrier, message) = match wire::parse(packet, arrival.checksums) {
        Parsed::NotIcmp => return false,
        Parsed::Malformed => {
            icmp.stats.errors_in += 1;
            return false;
        }
        Parsed::Icmp(carrier, message) => (carrier, message),
    };
    if !arrival.is_own(carrier.dst) {
        return false;
    }
    icmp.stats.messages_in += 1;
    let (seq, status, data) = match message {
        Message::EchoRequest => {
            icmp.stats.echo_requests_in += 1;
            icmp.stats.echo_replies_out += 1;
            icmp.stats.messages_out += 1;
            return false;
        }
        Message::EchoReply { ident, seq, data } => {
            icmp.stats.echo_replies_in += 1;
            if ident != icmp.ident {
                return false;
            }
            (seq, IP_SUCCESS, data)
        }
        Message::Error {
            status,
            kind,
            quoted,
        } => {
            match kind {
                Icmpv4Message::DstUnreachable => icmp.stats.unreachables_in += 1,
                Icmpv4Message::TimeExceeded => icmp.stats.time_exceeded_in += 1,
                _ => {}
            }
            match quoted {
                Quoted::Echo { ident, seq, .. } if ident == icmp.ident => (seq, status, &[][..]),
                Quoted::Udp {
                    src_port,
                    dst,
                    dst_port,
                } => {
                    *udp_error = Some(UdpError {
                        status,
                        local: SocketAddrV4::new(carrier.dst, src_port),
                        remote: SocketAddrV4::new(dst, dst_port),
                    });
                    return false;
                }
                _ => return false,
            }
        }
        Message::Other => return false,
    };
    let Some(index) = icmp
        .echoes
        .iter()
        .position(|e| e.seq == seq && e.packet.is_none())
    else {
        return true;
    };
    let echo = icmp.echoes.swap_remove(index);
    complete(echo, &carrier, status, data, now, c);
    true
}

/// Completes `echo` with the reply or error that `carrier` brought: `STATUS_SUCCESS`, one
/// reply counted. DISPATCH_LEVEL, under the core lock.
fn complete(
    echo: Echo,
    carrier: &Carrier,
    status: u32,
    data: &[u8],
    now: Instant,
    c: &Completer<'_>,
) {
    let rtt = u32::try_from((now - echo.sent).total_millis()).unwrap_or(u32::MAX);
    let mut irp = echo.irp;
    let answer = Reply {
        address: carrier.src,
        status,
        round_trip_ms: rtt,
        ttl: carrier.ttl,
        tos: carrier.tos,
        flags: carrier.flags,
        data,
        count: 1,
    };
    let information = reply::write(irp.irp_mut(), &answer);
    c.done(irp, NtStatus::SUCCESS, information);
}
