//! A received UDP datagram, read in place from the IPv4 packet that carries it.
//!
//! The core takes UDP off a link itself, before smoltcp: it needs to know, for every datagram,
//! whether it reached a socket, sat in a queue, or was dropped (and why), and smoltcp's own
//! UDP receive path keeps none of that. Parsing uses smoltcp's checked wire accessors, so
//! every length field is validated before it is used, and nothing here can panic whatever the
//! bytes are.
//!
//! What [`parse`] accepts: an IPv4 packet (version 4, a valid header length, a total length
//! within the frame), not a fragment (smoltcp is built without reassembly, so fragments are
//! left to it and it drops them), protocol 17, and a UDP header whose length field fits the
//! packet. The checksums are verified only where the link computes them: on the loopback
//! neither side does (see `link::loopback`). A UDP checksum of zero means "none" (RFC 768).
#![forbid(unsafe_code)]

use core::net::{Ipv4Addr, SocketAddrV4};
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, UdpPacket};

/// A UDP datagram in a received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The sender's address and port.
    pub src: SocketAddrV4,
    /// The destination address (ours, or a broadcast address) and port.
    pub dst: SocketAddrV4,
    pub payload: &'a [u8],
}

/// What a received packet is, to the UDP layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a complete, unfragmented IPv4 UDP datagram: smoltcp's business.
    NotUdp,
    /// A UDP datagram whose IPv4 header or UDP checksum is wrong.
    BadChecksum,
    Datagram(Datagram<'a>),
}

/// Reads the UDP datagram in `packet` (an IPv4 packet), verifying checksums if `checksums`.
/// Any IRQL.
pub fn parse(packet: &[u8], checksums: bool) -> Parsed<'_> {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return Parsed::NotUdp;
    };
    if ip.version() != 4
        || ip.more_frags()
        || ip.frag_offset() != 0
        || ip.next_header() != IpProtocol::Udp
    {
        return Parsed::NotUdp;
    }
    if checksums && !ip.verify_checksum() {
        return Parsed::BadChecksum;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
        return Parsed::NotUdp;
    };
    if checksums && !udp.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst)) {
        return Parsed::BadChecksum;
    }
    Parsed::Datagram(Datagram {
        src: SocketAddrV4::new(src, udp.src_port()),
        dst: SocketAddrV4::new(dst, udp.dst_port()),
        payload: udp.payload(),
    })
}

/// Whether `ip` is a broadcast address for a link holding `configured` (address and prefix):
/// the limited broadcast 255.255.255.255, or the configured subnet's directed broadcast.
/// Any IRQL.
pub fn is_broadcast(ip: Ipv4Addr, configured: Option<(Ipv4Addr, u8)>) -> bool {
    if ip.is_broadcast() {
        return true;
    }
    let Some((address, prefix)) = configured else {
        return false;
    };
    if prefix >= 31 {
        return false;
    }
    let host_bits = u32::MAX >> prefix;
    u32::from(ip) == (u32::from(address) | host_bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{Ipv4Repr, UdpRepr};

    const SRC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5353);
    const DST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 53);

    fn emit(payload: &[u8]) -> Vec<u8> {
        let udp = UdpRepr {
            src_port: SRC.port(),
            dst_port: DST.port(),
        };
        let ip = Ipv4Repr {
            src_addr: *SRC.ip(),
            dst_addr: *DST.ip(),
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let caps = ChecksumCapabilities::default();
        let mut packet = vec![0; ip.buffer_len() + ip.payload_len];
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut packet[..]), &caps);
        let (_, rest) = packet.split_at_mut(ip.buffer_len());
        udp.emit(
            &mut UdpPacket::new_unchecked(rest),
            &IpAddress::Ipv4(*SRC.ip()),
            &IpAddress::Ipv4(*DST.ip()),
            payload.len(),
            |buf| buf.copy_from_slice(payload),
            &caps,
        );
        packet
    }

    #[test]
    fn reads_addresses_and_payload() {
        let packet = emit(b"query");
        let Parsed::Datagram(datagram) = parse(&packet, true) else {
            panic!("not parsed");
        };
        assert_eq!((datagram.src, datagram.dst), (SRC, DST));
        assert_eq!(datagram.payload, b"query");
    }

    #[test]
    fn a_corrupted_payload_fails_the_checksum_only_where_checked() {
        let mut packet = emit(b"query");
        let last = packet.len() - 1;
        packet[last] ^= 0x40;
        assert_eq!(parse(&packet, true), Parsed::BadChecksum);
        assert!(matches!(parse(&packet, false), Parsed::Datagram(_)));
    }

    #[test]
    fn fragments_and_truncations_are_not_datagrams() {
        let packet = emit(b"query");
        let mut fragment = packet.clone();
        fragment[6] |= 0x20; // more fragments
        assert_eq!(parse(&fragment, false), Parsed::NotUdp);
        for len in 0..packet.len() {
            assert_eq!(parse(&packet[..len], false), Parsed::NotUdp, "{len} bytes");
        }
    }

    #[test]
    fn broadcast_addresses() {
        let configured = Some((Ipv4Addr::new(10, 0, 0, 2), 24));
        assert!(is_broadcast(Ipv4Addr::BROADCAST, None));
        assert!(is_broadcast(Ipv4Addr::new(10, 0, 0, 255), configured));
        assert!(!is_broadcast(Ipv4Addr::new(10, 0, 0, 255), None));
        assert!(!is_broadcast(Ipv4Addr::new(10, 0, 0, 2), configured));
        assert!(!is_broadcast(
            Ipv4Addr::new(10, 0, 0, 3),
            Some((Ipv4Addr::new(10, 0, 0, 2), 31))
        ));
    }
}
