//! Received ICMP messages, read in place from the IPv4 packet that carries them, and the echo
//! requests the core sends.
//!
//! [`parse`] takes an unfragmented IPv4 packet of protocol 1 and reads what the ICMP layer
//! needs: an echo reply's identifier, sequence number and data; or, for a destination
//! unreachable, time exceeded, parameter problem or source quench, the `IP_*` status it means
//! and what the packet it quotes was (an echo request of ours, or a UDP datagram). Every field
//! is read through smoltcp's checked accessors or after an explicit length check, so nothing
//! here can panic whatever the bytes are.
#![forbid(unsafe_code)]

use crate::nt::NtStatus;
use crate::nt::pool;
use crate::nt::types::*;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4Message, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket,
};

/// Bytes of an ICMP header (type, code, checksum, and the 4 bytes after them).
pub const ICMP_HEADER: usize = 8;

/// Bytes of the IPv4 header the core sends (no options).
pub const IPV4_HEADER: usize = 20;

/// The IPv4 header fields of a received ICMP message that an echo reply reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Carrier {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub tos: u8,
    /// The three IP flag bits (reserved, don't fragment, more fragments).
    pub flags: u8,
}

/// What an ICMP error quotes of the packet that caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quoted {
    /// An echo request (identifier, sequence number) to `dst`.
    Echo {
        ident: u16,
        seq: u16,
        dst: Ipv4Addr,
    },
    /// A UDP datagram from local port `src_port` to `dst`:`dst_port`.
    Udp {
        src_port: u16,
        dst: Ipv4Addr,
        dst_port: u16,
    },
    Other,
}

/// A received ICMP message, as the ICMP layer sorts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    EchoRequest,
    EchoReply {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    /// An error about a packet this host sent: its `IP_*` status, the ICMP type, and what it
    /// quotes.
    Error {
        status: u32,
        kind: Icmpv4Message,
        quoted: Quoted,
    },
    /// Any other type (timestamps, router advertisements...).
    Other,
}

/// What a received packet is, to the ICMP layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a complete, unfragmented IPv4 ICMP message.
    NotIcmp,
    /// An ICMP message whose IPv4 header or ICMP checksum is wrong, or which is too short.
    Malformed,
    Icmp(Carrier, Message<'a>),
}

/// Reads the ICMP message in `packet` (an IPv4 packet), verifying checksums if `checksums`.
/// Any IRQL.
pub fn parse(packet: &[u8], checksums: bool) -> Parsed<'_> {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return Parsed::NotIcmp;
    };
    if ip.version() != 4
        || ip.more_frags()
        || ip.frag_offset() != 0
        || ip.next_header() != IpProtocol::Icmp
    {
        return Parsed::NotIcmp;
    }
    if checksums && !ip.verify_checksum() {
        return Parsed::Malformed;
    }
    let flags = (u8::from(ip.dont_frag()) << 1) | u8::from(ip.more_frags());
    let carrier = Carrier {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        ttl: ip.hop_limit(),
        tos: (ip.dscp() << 2) | ip.ecn(),
        flags,
    };
    let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
        return Parsed::Malformed;
    };
    if checksums && !icmp.verify_checksum() {
        return Parsed::Malformed;
    }
    let message = match icmp.msg_type() {
        Icmpv4Message::EchoRequest => Message::EchoRequest,
        Icmpv4Message::EchoReply => Message::EchoReply {
            ident: icmp.echo_ident(),
            seq: icmp.echo_seq_no(),
            data: icmp.data(),
        },
        kind @ (Icmpv4Message::DstUnreachable
        | Icmpv4Message::TimeExceeded
        | Icmpv4Message::ParamProblem
        | Icmpv4Message::Redirect) => Message::Error {
            status: status_of(kind, icmp.msg_code()),
            kind,
            quoted: quoted(icmp.data()),
        },
        _ => Message::Other,
    };
    Parsed::Icmp(carrier, message)
}

/// The `IP_*` status an ICMP error means (the mapping of `IcmpSendEcho`'s documentation).
/// Any IRQL.
fn status_of(kind: Icmpv4Message, code: u8) -> u32 {
    match (kind, code) {
        (Icmpv4Message::DstUnreachable, 1) => IP_DEST_HOST_UNREACHABLE,
        (Icmpv4Message::DstUnreachable, 2) => IP_DEST_PROT_UNREACHABLE,
        (Icmpv4Message::DstUnreachable, 3) => IP_DEST_PORT_UNREACHABLE,
        (Icmpv4Message::DstUnreachable, 4) => IP_PACKET_TOO_BIG,
        (Icmpv4Message::DstUnreachable, 5) => IP_BAD_ROUTE,
        (Icmpv4Message::DstUnreachable, _) => IP_DEST_NET_UNREACHABLE,
        (Icmpv4Message::TimeExceeded, 1) => IP_TTL_EXPIRED_REASSEM,
        (Icmpv4Message::TimeExceeded, _) => IP_TTL_EXPIRED_TRANSIT,
        (Icmpv4Message::ParamProblem, _) => IP_PARAM_PROBLEM,
        _ => IP_SOURCE_QUENCH,
    }
}

/// What the quoted packet of an ICMP error was: its IPv4 header and at least the first 8
/// bytes of its payload (RFC 792). Any IRQL.
fn quoted(data: &[u8]) -> Quoted {
    let header_len = data.first().map_or(0, |byte| usize::from(byte & 0x0f) * 4);
    let Some(inner) = data.get(header_len..) else {
        return Quoted::Other;
    };
    if header_len < IPV4_HEADER || inner.len() < ICMP_HEADER {
        return Quoted::Other;
    }
    // The header is at least 20 bytes long, so the fixed fields' accessors stay in bounds.
    let ip = Ipv4Packet::new_unchecked(data);
    let dst = ip.dst_addr();
    match ip.next_header() {
        IpProtocol::Icmp => {
            // `inner` holds at least the 8 bytes the echo accessors read.
            let icmp = Icmpv4Packet::new_unchecked(inner);
            if icmp.msg_type() == Icmpv4Message::EchoRequest {
                Quoted::Echo {
                    ident: icmp.echo_ident(),
                    seq: icmp.echo_seq_no(),
                    dst,
                }
            } else {
                Quoted::Other
            }
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_unchecked(inner);
            Quoted::Udp {
                src_port: udp.src_port(),
                dst,
                dst_port: udp.dst_port(),
            }
        }
        _ => Quoted::Other,
    }
}

/// The IPv4 header fields of an outgoing packet.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    /// The type of service byte (DSCP and ECN).
    pub tos: u8,
    pub dont_fragment: bool,
}

/// An IPv4 packet carrying an ICMP echo request with `data`, ready for the link.
/// `STATUS_INSUFFICIENT_RESOURCES` if the pool is exhausted. IRQL ≤ DISPATCH_LEVEL.
pub fn echo_request(
    header: Outgoing,
    ident: u16,
    seq: u16,
    data: &[u8],
) -> Result<Vec<u8>, NtStatus> {
    let icmp = Icmpv4Repr::EchoRequest {
        ident,
        seq_no: seq,
        data,
    };
    let ip = Ipv4Repr {
        src_addr: header.src,
        dst_addr: header.dst,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: header.ttl,
    };
    let mut packet = pool::try_zeroed(ip.buffer_len() + ip.payload_len)?;
    let caps = ChecksumCapabilities::default();
    let mut view = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.emit(&mut view, &caps);
    view.set_dscp(header.tos >> 2);
    view.set_ecn(header.tos & 0b11);
    view.set_dont_frag(header.dont_fragment);
    view.fill_checksum();
    icmp.emit(&mut Icmpv4Packet::new_unchecked(view.payload_mut()), &caps);
    Ok(packet)
}

/// The echo reply to `packet` if it is a well-formed, whole ICMP echo request: addresses
/// swapped, TTL 64, the identifier, sequence number and data echoed. `None` for anything else;
/// `STATUS_INSUFFICIENT_RESOURCES` if the pool is exhausted. IRQL ≤ DISPATCH_LEVEL.
pub fn echo_reply_to(packet: &[u8]) -> Option<Result<Vec<u8>, NtStatus>> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.more_frags() || ip.frag_offset() != 0 || ip.next_header() != IpProtocol::Icmp {
        return None;
    }
    let request = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    if request.msg_type() != Icmpv4Message::EchoRequest || !request.verify_checksum() {
        return None;
    }
    let icmp = Icmpv4Repr::EchoReply {
        ident: request.echo_ident(),
        seq_no: request.echo_seq_no(),
        data: request.data(),
    };
    let reply = Ipv4Repr {
        src_addr: ip.dst_addr(),
        dst_addr: ip.src_addr(),
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let mut out = match pool::try_zeroed(reply.buffer_len() + reply.payload_len) {
        Ok(out) => out,
        Err(status) => return Some(Err(status)),
    };
    let caps = ChecksumCapabilities::default();
    let mut view = Ipv4Packet::new_unchecked(&mut out[..]);
    reply.emit(&mut view, &caps);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(view.payload_mut()), &caps);
    Some(Ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const THEM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn header(src: Ipv4Addr, dst: Ipv4Addr) -> Outgoing {
        Outgoing {
            src,
            dst,
            ttl: 64,
            tos: 0,
            dont_fragment: false,
        }
    }

    /// An ICMP error of `kind`/`code` from THEM quoting `original`.
    fn error(kind: Icmpv4Message, code: u8, original: &[u8]) -> Vec<u8> {
        let mut icmp = vec![0u8; 8 + original.len().min(28)];
        icmp[0] = kind.into();
        icmp[1] = code;
        icmp[8..].copy_from_slice(&original[..original.len().min(28)]);
        let mut view = Icmpv4Packet::new_unchecked(&mut icmp[..]);
        view.fill_checksum();
        let ip = Ipv4Repr {
            src_addr: THEM,
            dst_addr: US,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.len(),
            hop_limit: 61,
        };
        let mut packet = vec![0u8; 20 + icmp.len()];
        ip.emit(
            &mut Ipv4Packet::new_unchecked(&mut packet[..]),
            &ChecksumCapabilities::default(),
        );
        packet[20..].copy_from_slice(&icmp);
        packet
    }

    #[test]
    fn an_echo_request_parses_as_one() {
        let packet = echo_request(header(US, THEM), 7, 9, b"abc").unwrap();
        let Parsed::Icmp(carrier, message) = parse(&packet, true) else {
            panic!("not parsed");
        };
        assert_eq!((carrier.src, carrier.dst, carrier.ttl), (US, THEM, 64));
        assert_eq!(message, Message::EchoRequest);
    }

    #[test]
    fn errors_name_the_echo_or_datagram_they_quote() {
        let request = echo_request(header(US, THEM), 7, 9, b"abcdefgh").unwrap();
        let packet = error(Icmpv4Message::TimeExceeded, 0, &request);
        let Parsed::Icmp(carrier, message) = parse(&packet, true) else {
            panic!("not parsed");
        };
        assert_eq!(carrier.ttl, 61);
        assert_eq!(
            message,
            Message::Error {
                status: IP_TTL_EXPIRED_TRANSIT,
                kind: Icmpv4Message::TimeExceeded,
                quoted: Quoted::Echo {
                    ident: 7,
                    seq: 9,
                    dst: THEM
                },
            }
        );
        let mut udp = request.clone();
        udp[9] = 17;
        udp[20..24].copy_from_slice(&[0x30, 0x39, 0x00, 0x35]);
        let packet = error(Icmpv4Message::DstUnreachable, 3, &udp);
        let Parsed::Icmp(_, Message::Error { status, quoted, .. }) = parse(&packet, true) else {
            panic!("not parsed");
        };
        assert_eq!(status, IP_DEST_PORT_UNREACHABLE);
        assert_eq!(
            quoted,
            Quoted::Udp {
                src_port: 12345,
                dst: THEM,
                dst_port: 53
            }
        );
    }

    #[test]
    fn truncations_and_corruption_never_panic() {
        let request = echo_request(header(US, THEM), 7, 9, b"abcdefgh").unwrap();
        let packet = error(Icmpv4Message::DstUnreachable, 1, &request);
        for len in 0..packet.len() {
            let _ = parse(&packet[..len], true);
            let _ = parse(&packet[..len], false);
        }
        let mut corrupt = packet.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert_eq!(parse(&corrupt, true), Parsed::Malformed);
        let mut short_quote = packet.clone();
        short_quote[28] = 0x4f; // a quoted header length past the quote
        assert!(matches!(
            parse(&short_quote, false),
            Parsed::Icmp(
                _,
                Message::Error {
                    quoted: Quoted::Other,
                    ..
                }
            )
        ));
    }
}
