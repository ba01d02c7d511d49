//! Counting TCP retransmissions on the wire: smoltcp keeps no counter, so the host side of a link
//! reads them off the frames that pass.
//!
//! A [`RetransmissionCounter`] watches the frames one sender puts on the wire (one direction of
//! a link) and remembers, for each TCP flow, the highest sequence number sent so far. A segment
//! that occupies sequence space (payload, SYN or FIN) and starts below that mark was sent
//! before, in whole or in part: a retransmission. A SYN that repeats the flow's initial
//! sequence number is one too; any other SYN starts the flow afresh (a new connection on the
//! same 4-tuple), and a RST forgets it.
//!
//! Frames that are not IPv4/TCP, or are too short to parse, are ignored. At most
//! [`MAX_FLOWS`] flows are remembered; when a new one would exceed that, the table is cleared,
//! so a retransmission right after that may go uncounted (never the other way round).

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Address, Ipv4Packet, TcpPacket, TcpSeqNumber,
};
use std::collections::HashMap;

/// The most flows remembered at once.
pub const MAX_FLOWS: usize = 16 * 1024;

/// One direction of a TCP connection: source and destination address and port.
type Flow = (Ipv4Address, u16, Ipv4Address, u16);

#[derive(Clone, Copy)]
struct Sent {
    /// The sequence number of the flow's SYN, if it was seen.
    initial: Option<TcpSeqNumber>,
    /// One past the highest sequence number sent.
    high: TcpSeqNumber,
}

/// Counts the retransmissions in one direction of a link. See the module documentation.
#[derive(Default)]
pub struct RetransmissionCounter {
    flows: HashMap<Flow, Sent>,
    count: u64,
}

impl RetransmissionCounter {
    /// Looks at one Ethernet frame; returns whether it carries a retransmitted TCP segment.
    pub fn observe(&mut self, frame: &[u8]) -> bool {
        let Some((flow, seq, len, syn, rst)) = tcp_segment(frame) else {
            return false;
        };
        if rst {
            self.flows.remove(&flow);
            return false;
        }
        let end = seq + len;
        let retransmitted = match (self.flows.get_mut(&flow), syn) {
            (Some(sent), true) if sent.initial == Some(seq) => {
                sent.high = sent.high.max(end);
                true
            }
            (Some(sent), false) if len > 0 => {
                let again = seq < sent.high;
                sent.high = sent.high.max(end);
                again
            }
            (Some(_), false) => false,
            (_, syn) => {
                if !self.flows.contains_key(&flow) && self.flows.len() >= MAX_FLOWS {
                    self.flows.clear();
                }
                let initial = syn.then_some(seq);
                self.flows.insert(flow, Sent { initial, high: end });
                false
            }
        };
        if retransmitted {
            self.count += 1;
        }
        retransmitted
    }

    /// The retransmissions counted so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// The flow, sequence number, sequence length, SYN and RST of the TCP segment in `frame`.
fn tcp_segment(frame: &[u8]) -> Option<(Flow, TcpSeqNumber, usize, bool, bool)> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let flow = (ip.src_addr(), tcp.src_port(), ip.dst_addr(), tcp.dst_port());
    Some((
        flow,
        tcp.seq_number(),
        tcp.segment_len(),
        tcp.syn(),
        tcp.rst(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetRepr, IpAddress, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber,
    };

    const A: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const B: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

    fn frame(seq: i32, control: TcpControl, payload: &[u8]) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: 1000,
            dst_port: 7,
            control,
            seq_number: TcpSeqNumber(seq),
            ack_number: None,
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let ip = Ipv4Repr {
            src_addr: A,
            dst_addr: B,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let ethernet = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let caps = ChecksumCapabilities::default();
        let mut buffer = vec![0u8; 14 + ip.buffer_len() + tcp.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut buffer[..]);
        ethernet.emit(&mut eth);
        let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
        ip.emit(&mut packet, &caps);
        let mut segment = TcpPacket::new_unchecked(packet.payload_mut());
        tcp.emit(
            &mut segment,
            &IpAddress::Ipv4(A),
            &IpAddress::Ipv4(B),
            &caps,
        );
        buffer
    }

    #[test]
    fn counts_segments_that_start_below_the_highest_sent() {
        let mut counter = RetransmissionCounter::default();
        assert!(!counter.observe(&frame(100, TcpControl::Syn, b"")));
        assert!(
            counter.observe(&frame(100, TcpControl::Syn, b"")),
            "SYN again"
        );
        assert!(!counter.observe(&frame(101, TcpControl::None, b"abcd")));
        assert!(!counter.observe(&frame(105, TcpControl::None, b"efgh")));
        assert!(
            !counter.observe(&frame(109, TcpControl::None, b"")),
            "pure ACK"
        );
        assert!(counter.observe(&frame(101, TcpControl::None, b"abcd")));
        assert!(
            counter.observe(&frame(103, TcpControl::None, b"cdefghij")),
            "overlap"
        );
        assert!(!counter.observe(&frame(111, TcpControl::Fin, b"")));
        assert!(
            counter.observe(&frame(111, TcpControl::Fin, b"")),
            "FIN again"
        );
        assert_eq!(counter.count(), 4);
    }

    #[test]
    fn a_new_syn_or_a_reset_starts_over() {
        let mut counter = RetransmissionCounter::default();
        counter.observe(&frame(100, TcpControl::Syn, b""));
        counter.observe(&frame(101, TcpControl::None, b"abcd"));
        assert!(
            !counter.observe(&frame(50, TcpControl::Syn, b"")),
            "new ISN"
        );
        assert!(!counter.observe(&frame(51, TcpControl::None, b"ab")));
        assert!(!counter.observe(&frame(53, TcpControl::Rst, b"")));
        assert!(
            !counter.observe(&frame(10, TcpControl::None, b"ab")),
            "forgotten"
        );
        assert_eq!(counter.count(), 0);
    }

    #[test]
    fn ignores_what_is_not_tcp() {
        let mut counter = RetransmissionCounter::default();
        let mut arp = frame(1, TcpControl::None, b"x");
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!counter.observe(&arp));
        assert!(!counter.observe(&arp));
        assert!(!counter.observe(&[0u8; 10]));
        assert_eq!(counter.count(), 0);
    }
}
