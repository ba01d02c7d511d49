//! Ethernet frames from the peer to the driver, built with smoltcp's wire types (valid
//! headers and checksums unless the caller breaks them afterwards), and a look at the frames
//! the driver sends.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, UdpPacket,
};
use std::net::{Ipv4Addr, SocketAddrV4};

/// The driver's MAC address (the recording adapter's).
pub const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// The peer's MAC address.
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The driver's address on the link (interface 1, /24).
pub const OURS: Ipv4Addr = Ipv4Addr::new(10, 13, 0, 2);
/// The peer's address.
pub const PEER: Ipv4Addr = Ipv4Addr::new(10, 13, 0, 1);

/// TCP header flags.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// An Ethernet frame from the peer carrying `packet` (an IPv4 packet).
pub fn ethernet_ipv4(packet: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + packet.len());
    frame.extend_from_slice(&OUR_MAC);
    frame.extend_from_slice(&PEER_MAC);
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    frame.extend_from_slice(packet);
    frame
}

/// An IPv4 packet from `src` to `dst` with `protocol` and `payload`, checksum filled; the
/// fragment fields (`ident`, byte `offset`, more fragments) as given.
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload: &[u8],
    fragment: (u16, usize, bool),
) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::from(protocol),
        payload_len: payload.len(),
        hop_limit: 64,
    };
    let mut packet = vec![0u8; repr.buffer_len() + payload.len()];
    let mut view = Ipv4Packet::new_unchecked(&mut packet[..]);
    repr.emit(&mut view, &ChecksumCapabilities::default());
    let (ident, offset, more) = fragment;
    view.set_ident(ident);
    view.set_frag_offset((offset & 0xfff8) as u16);
    view.set_more_frags(more);
    view.payload_mut().copy_from_slice(payload);
    view.fill_checksum();
    packet
}

/// A TCP segment inside an IPv4 packet, checksums filled.
pub struct Segment<'a> {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// TCP options (padded to 4 bytes, at most 40).
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

impl Segment<'_> {
    /// The IPv4 packet.
    pub fn packet(&self) -> Vec<u8> {
        let options = &self.options[..self.options.len().min(40)];
        let header = 20 + options.len().div_ceil(4) * 4;
        let mut tcp = vec![0u8; header + self.payload.len()];
        tcp[0..2].copy_from_slice(&self.src.port().to_be_bytes());
        tcp[2..4].copy_from_slice(&self.dst.port().to_be_bytes());
        tcp[4..8].copy_from_slice(&self.seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&self.ack.to_be_bytes());
        tcp[12] = ((header / 4) as u8) << 4;
        tcp[13] = self.flags;
        tcp[14..16].copy_from_slice(&self.window.to_be_bytes());
        tcp[20..20 + options.len()].copy_from_slice(options);
        tcp[header..].copy_from_slice(self.payload);
        let (src, dst) = (*self.src.ip(), *self.dst.ip());
        TcpPacket::new_unchecked(&mut tcp[..])
            .fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
        ipv4(src, dst, 6, &tcp, (0, 0, false))
    }
}

/// A UDP datagram inside an IPv4 packet, checksums filled.
pub fn udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut datagram = vec![0u8; 8 + payload.len()];
    datagram[0..2].copy_from_slice(&src.port().to_be_bytes());
    datagram[2..4].copy_from_slice(&dst.port().to_be_bytes());
    datagram[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    datagram[8..].copy_from_slice(payload);
    let (s, d) = (*src.ip(), *dst.ip());
    UdpPacket::new_unchecked(&mut datagram[..])
        .fill_checksum(&IpAddress::Ipv4(s), &IpAddress::Ipv4(d));
    ipv4(s, d, 17, &datagram, (0, 0, false))
}

/// An ICMP message (`kind`, `code`, then `body` after the 4-byte header) inside an IPv4
/// packet, checksums filled.
pub fn icmp(src: Ipv4Addr, dst: Ipv4Addr, kind: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![0u8; 4 + body.len()];
    message[0] = kind;
    message[1] = code;
    message[4..].copy_from_slice(body);
    let checksum = internet_checksum(&message);
    message[2..4].copy_from_slice(&checksum.to_be_bytes());
    ipv4(src, dst, 1, &message, (0, 0, false))
}

/// The one's complement checksum of RFC 1071.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ARP packet in an Ethernet frame from `mac` (broadcast for a request).
pub fn arp(reply: bool, mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: if reply {
            ArpOperation::Reply
        } else {
            ArpOperation::Request
        },
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: sender,
        target_hardware_addr: EthernetAddress(if reply { OUR_MAC } else { [0; 6] }),
        target_protocol_addr: target,
    };
    let ethernet = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: if reply {
            EthernetAddress(OUR_MAC)
        } else {
            EthernetAddress::BROADCAST
        },
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = vec![0u8; ethernet.buffer_len() + arp.buffer_len()];
    let mut view = EthernetFrame::new_unchecked(&mut frame[..]);
    ethernet.emit(&mut view);
    arp.emit(&mut ArpPacket::new_unchecked(view.payload_mut()));
    frame
}

/// Whether an Ethernet frame carries ARP.
pub fn is_arp(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x08, 0x06])
}

/// The address an ARP request the driver sent asks for; `None` for any other frame.
pub fn arp_request_for(frame: &[u8]) -> Option<Ipv4Addr> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    let packet = ArpPacket::new_checked(ethernet.payload()).ok()?;
    match ArpRepr::parse(&packet).ok()? {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            target_protocol_addr,
            ..
        } => Some(target_protocol_addr),
        _ => None,
    }
}

/// A TCP segment the driver sent: its ports, sequence and acknowledgment numbers, flags and
/// payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub len: usize,
}

/// Reads a TCP segment out of a frame the driver sent; `None` for anything else.
pub fn sent_segment(frame: &[u8]) -> Option<Sent> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let flags = u8::from(tcp.fin())
        | u8::from(tcp.syn()) << 1
        | u8::from(tcp.rst()) << 2
        | u8::from(tcp.psh()) << 3
        | u8::from(tcp.ack()) << 4;
    Some(Sent {
        src: SocketAddrV4::new(ip.src_addr(), tcp.src_port()),
        dst: SocketAddrV4::new(ip.dst_addr(), tcp.dst_port()),
        seq: tcp.seq_number().0 as u32,
        ack: tcp.ack_number().0 as u32,
        flags,
        len: tcp.payload().len(),
    })
}
