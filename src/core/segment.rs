//! A look at a received TCP segment before smoltcp sees it.
//!
//! smoltcp demultiplexes an incoming segment by scanning its sockets in slot order and giving
//! it to the first one that accepts it, and a LISTEN socket accepts any bare SYN for its port.
//! So a *retransmitted* SYN for a connection that already has a socket (in SYN-RECEIVED or
//! later) can be taken by a freshly armed listener sitting at a lower slot, which then answers
//! the client's ACK with a RST and destroys the connection (`smoltcp-notes` §1.4). The core
//! prevents it by classifying every received frame first ([`classify`]): a connection request
//! ([`TcpSegment::is_connection_request`]) whose 4-tuple already has a socket, or that arrives
//! while the listener's backlog is full, is dropped there, and smoltcp never sees it (the
//! client retransmits, as it would after any loss).
//!
//! The link is `Medium::Ip`, so a frame is an IPv4 packet. Classification reads headers in
//! place, with smoltcp's checked wire accessors: every length field is validated before use,
//! and anything that is not a well-formed, unfragmented IPv4 packet carrying a complete TCP
//! header is `None` — the core then lets smoltcp decide what to do with it (smoltcp drops
//! malformed packets itself). Checksums are not verified: on the loopback they are neither
//! generated nor checked, and elsewhere smoltcp verifies them after this step; a frame the core
//! drops because of a corrupted header would have been dropped anyway.
//!
//! Fragments are `None` even when they are first fragments carrying the whole TCP header:
//! smoltcp is built without IPv4 reassembly, so it discards them as well.
#![forbid(unsafe_code)]

use ::core::net::SocketAddrV4;
use smoltcp::wire::{IpProtocol, Ipv4Packet, TcpPacket};

/// The addressing and control flags of a TCP segment, as read from a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpSegment {
    /// The sender's address and port.
    pub src: SocketAddrV4,
    /// The receiver's (our) address and port.
    pub dst: SocketAddrV4,
    pub syn: bool,
    pub ack: bool,
    pub rst: bool,
    pub fin: bool,
}

impl TcpSegment {
    /// A connection request, the segment a LISTEN socket takes: SYN without ACK or RST.
    /// Any IRQL.
    pub fn is_connection_request(&self) -> bool {
        self.syn && !self.ack && !self.rst
    }
}

/// Classifies a received IPv4 frame without copying it: `Some` for an unfragmented IPv4
/// packet carrying a TCP segment with a valid header length, `None` for anything else (other
/// protocols, other IP versions, fragments, truncated or inconsistent headers). Never panics,
/// whatever the bytes. Any IRQL.
pub fn classify(frame: &[u8]) -> Option<TcpSegment> {
    let ip = Ipv4Packet::new_checked(frame).ok()?;
    if ip.version() != 4
        || ip.more_frags()
        || ip.frag_offset() != 0
        || ip.next_header() != IpProtocol::Tcp
    {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some(TcpSegment {
        src: SocketAddrV4::new(ip.src_addr(), tcp.src_port()),
        dst: SocketAddrV4::new(ip.dst_addr(), tcp.dst_port()),
        syn: tcp.syn(),
        ack: tcp.ack(),
        rst: tcp.rst(),
        fin: tcp.fin(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::core::net::Ipv4Addr;
    use proptest::prelude::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpAddress, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber};

    const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 49152);
    const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 80);

    /// Emits `tcp` from `src` to `dst` the way smoltcp's interface does.
    fn emit(src: SocketAddrV4, dst: SocketAddrV4, tcp: &TcpRepr<'_>) -> Vec<u8> {
        let ip = Ipv4Repr {
            src_addr: *src.ip(),
            dst_addr: *dst.ip(),
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let caps = ChecksumCapabilities::default();
        let mut frame = vec![0; ip.buffer_len() + tcp.buffer_len()];
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut frame[..]), &caps);
        let (_, payload) = frame.split_at_mut(ip.buffer_len());
        tcp.emit(
            &mut TcpPacket::new_unchecked(payload),
            &IpAddress::Ipv4(*src.ip()),
            &IpAddress::Ipv4(*dst.ip()),
            &caps,
        );
        frame
    }

    fn repr(control: TcpControl, ack: Option<u32>, payload: &[u8]) -> TcpRepr<'_> {
        TcpRepr {
            src_port: 0,
            dst_port: 0,
            control,
            seq_number: TcpSeqNumber(1000),
            ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: 1024,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        }
    }

    fn segment(src: SocketAddrV4, dst: SocketAddrV4, control: TcpControl, ack: bool) -> Vec<u8> {
        let mut tcp = repr(control, ack.then_some(1), &[]);
        tcp.src_port = src.port();
        tcp.dst_port = dst.port();
        emit(src, dst, &tcp)
    }

    #[test]
    fn syn() {
        let frame = segment(CLIENT, SERVER, TcpControl::Syn, false);
        let seg = classify(&frame).unwrap();
        assert_eq!(
            seg,
            TcpSegment {
                src: CLIENT,
                dst: SERVER,
                syn: true,
                ack: false,
                rst: false,
                fin: false,
            }
        );
        assert!(seg.is_connection_request());
    }

    #[test]
    fn not_connection_requests() {
        for (control, ack) in [
            (TcpControl::Syn, true),
            (TcpControl::None, true),
            (TcpControl::Rst, false),
            (TcpControl::Fin, true),
            (TcpControl::Psh, true),
        ] {
            let seg = classify(&segment(SERVER, CLIENT, control, ack)).unwrap();
            assert!(!seg.is_connection_request(), "{control:?} ack={ack}");
            assert_eq!(seg.src, SERVER);
            assert_eq!(seg.dst, CLIENT);
        }
        let mut frame = segment(CLIENT, SERVER, TcpControl::Syn, false);
        frame[33] |= 0x04; // SYN+RST
        let seg = classify(&frame).unwrap();
        assert!(seg.syn && seg.rst && !seg.is_connection_request());
    }

    #[test]
    fn fragments_are_none() {
        let frame = segment(CLIENT, SERVER, TcpControl::Syn, false);
        let mut more = frame.clone();
        Ipv4Packet::new_unchecked(&mut more[..]).set_more_frags(true);
        assert_eq!(classify(&more), None);
        let mut later = frame.clone();
        Ipv4Packet::new_unchecked(&mut later[..]).set_frag_offset(8);
        assert_eq!(classify(&later), None);
        let mut dont = frame;
        Ipv4Packet::new_unchecked(&mut dont[..]).set_dont_frag(true);
        assert!(classify(&dont).is_some(), "DF alone is not a fragment");
    }

    #[test]
    fn other_protocols_and_versions_are_none() {
        let frame = segment(CLIENT, SERVER, TcpControl::Syn, false);
        let mut udp = frame.clone();
        Ipv4Packet::new_unchecked(&mut udp[..]).set_next_header(IpProtocol::Udp);
        assert_eq!(classify(&udp), None);
        let mut v6 = frame;
        v6[0] = 0x65;
        assert_eq!(classify(&v6), None);
    }

    #[test]
    fn malformed_is_none() {
        let frame = segment(CLIENT, SERVER, TcpControl::Syn, false);
        assert_eq!(classify(&[]), None);
        for len in 0..frame.len() {
            assert_eq!(classify(&frame[..len]), None, "truncated to {len}");
        }
        // IP total length shorter than its header, or longer than the frame.
        for total in [0u16, 19, 39, frame.len() as u16 + 1] {
            let mut bad = frame.clone();
            Ipv4Packet::new_unchecked(&mut bad[..]).set_total_len(total);
            assert_eq!(classify(&bad), None, "total length {total}");
        }
        // IHL below 5 words.
        let mut ihl = frame.clone();
        ihl[0] = 0x44;
        assert_eq!(classify(&ihl), None);
        // TCP data offset below 5 words or past the packet.
        for offset in [0x00u8, 0x40, 0x60] {
            let mut bad = frame.clone();
            bad[32] = offset;
            assert_eq!(classify(&bad), None, "data offset {offset:#x}");
        }
        // Trailing bytes after the IP packet (link padding) are ignored.
        let mut padded = frame.clone();
        padded.extend_from_slice(&[0xAA; 6]);
        assert_eq!(classify(&padded), classify(&frame));
    }

    fn control() -> impl Strategy<Value = TcpControl> {
        prop_oneof![
            Just(TcpControl::None),
            Just(TcpControl::Psh),
            Just(TcpControl::Syn),
            Just(TcpControl::Fin),
            Just(TcpControl::Rst),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = classify(&bytes);
        }

        #[test]
        fn mutated_segments_never_panic(
            control in control(),
            flips in proptest::collection::vec((0..60usize, any::<u8>()), 1..6),
            cut in 0..64usize,
        ) {
            let mut frame = segment(CLIENT, SERVER, control, true);
            for (at, byte) in flips {
                if let Some(b) = frame.get_mut(at) {
                    *b ^= byte;
                }
            }
            frame.truncate(frame.len().saturating_sub(cut % 8));
            let _ = classify(&frame);
        }

        #[test]
        fn smoltcp_emitted_segments_round_trip(
            src_ip in any::<[u8; 4]>(),
            dst_ip in any::<[u8; 4]>(),
            src_port in any::<u16>(),
            dst_port in any::<u16>(),
            control in control(),
            ack in proptest::option::of(any::<u32>()),
            mss in proptest::option::of(any::<u16>()),
            window_scale in proptest::option::of(0..15u8),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let src = SocketAddrV4::new(src_ip.into(), src_port);
            let dst = SocketAddrV4::new(dst_ip.into(), dst_port);
            let mut tcp = repr(control, ack, &payload);
            tcp.src_port = src_port;
            tcp.dst_port = dst_port;
            tcp.max_seg_size = mss;
            tcp.window_scale = window_scale;
            let frame = emit(src, dst, &tcp);
            let seg = classify(&frame).unwrap();
            prop_assert_eq!(seg, TcpSegment {
                src,
                dst,
                syn: control == TcpControl::Syn,
                ack: ack.is_some(),
                rst: control == TcpControl::Rst,
                fin: control == TcpControl::Fin,
            });
        }
    }
}
