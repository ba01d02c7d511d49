//! Retransmitted TCP segments, counted at egress (`tcpRetransSegs`), since smoltcp keeps no
//! such counter: each socket remembers the highest sequence number it has sent (SYN and FIN
//! count as one), and a segment that carries sequence space starting below it is a
//! retransmission. The socket table wraps each socket's device in a [`Watch`] while that
//! socket transmits.
#![forbid(unsafe_code)]

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ETHERNET_HEADER_LEN, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket,
};

/// What one socket's sent segments tell: the end of the sequence space sent so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SentHigh(Option<u32>);

/// Looks at one frame the socket sent; returns whether it was a retransmission. Never
/// panics, whatever the bytes. Any IRQL.
pub fn observe(high: &mut SentHigh, medium: Medium, frame: &[u8]) -> bool {
    let packet = match medium {
        Medium::Ethernet => match EthernetFrame::new_checked(frame) {
            Ok(ethernet) if ethernet.ethertype() == EthernetProtocol::Ipv4 => {
                frame.get(ETHERNET_HEADER_LEN..)
            }
            _ => None,
        },
        _ => Some(frame),
    };
    let Some(ip) = packet.and_then(|p| Ipv4Packet::new_checked(p).ok()) else {
        return false;
    };
    if ip.next_header() != IpProtocol::Tcp {
        return false;
    }
    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
        return false;
    };
    let payload = u32::try_from(tcp.payload().len()).unwrap_or(u32::MAX);
    let length = payload
        .wrapping_add(u32::from(tcp.syn()))
        .wrapping_add(u32::from(tcp.fin()));
    if length == 0 || tcp.rst() {
        return false;
    }
    let start = tcp.seq_number().0 as u32;
    let end = start.wrapping_add(length);
    let retransmitted = high
        .0
        .is_some_and(|high| (high.wrapping_sub(start) as i32) > 0);
    if high
        .0
        .is_none_or(|high| (end.wrapping_sub(high) as i32) > 0)
    {
        high.0 = Some(end);
    }
    retransmitted
}

/// A device that counts the retransmissions of the one socket sending through it.
pub struct Watch<'a, D: Device> {
    pub device: &'a mut D,
    pub high: &'a mut SentHigh,
    pub retransmitted: &'a mut u64,
}

impl<D: Device> Device for Watch<'_, D> {
    type RxToken<'b>
        = D::RxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = Token<'b, D::TxToken<'b>>
    where
        Self: 'b;

    /// The wrapped device's frame and a watched reply token. IRQL ≤ DISPATCH_LEVEL.
    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let medium = self.device.capabilities().medium;
        let (rx, tx) = self.device.receive(timestamp)?;
        let token = Token {
            inner: tx,
            medium,
            high: &mut *self.high,
            retransmitted: &mut *self.retransmitted,
        };
        Some((rx, token))
    }

    /// A watched token for one frame. IRQL ≤ DISPATCH_LEVEL.
    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let medium = self.device.capabilities().medium;
        let inner = self.device.transmit(timestamp)?;
        Some(Token {
            inner,
            medium,
            high: &mut *self.high,
            retransmitted: &mut *self.retransmitted,
        })
    }

    /// The wrapped device's. Any IRQL.
    fn capabilities(&self) -> DeviceCapabilities {
        self.device.capabilities()
    }
}

/// A frame to send, looked at once written.
pub struct Token<'b, T> {
    inner: T,
    medium: Medium,
    high: &'b mut SentHigh,
    retransmitted: &'b mut u64,
}

impl<T: phy::TxToken> phy::TxToken for Token<'_, T> {
    /// Lets `f` write the frame through the wrapped token, then looks at it. Any IRQL.
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let Self {
            inner,
            medium,
            high,
            retransmitted,
        } = self;
        inner.consume(len, |bytes| {
            let result = f(bytes);
            if observe(high, medium, bytes) {
                *retransmitted = retransmitted.wrapping_add(1);
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber};

    fn segment(seq: i32, syn: bool, payload: &[u8]) -> Vec<u8> {
        let (src, dst) = (
            Ipv4Address::new(127, 0, 0, 1),
            Ipv4Address::new(127, 0, 0, 1),
        );
        let tcp = TcpRepr {
            src_port: 1,
            dst_port: 2,
            control: if syn {
                TcpControl::Syn
            } else {
                TcpControl::None
            },
            seq_number: TcpSeqNumber(seq),
            ack_number: None,
            window_len: 100,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut frame = vec![0; ip.buffer_len() + tcp.buffer_len()];
        let mut packet = Ipv4Packet::new_unchecked(&mut frame);
        ip.emit(&mut packet, &Default::default());
        tcp.emit(
            &mut TcpPacket::new_unchecked(packet.payload_mut()),
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            &Default::default(),
        );
        frame
    }

    #[test]
    fn a_segment_below_the_highest_sent_is_a_retransmission() {
        let mut high = SentHigh::default();
        let sent = [
            (segment(-2, true, b""), false), // SYN at the top of the sequence space
            (segment(-2, true, b""), true),  // its retransmission
            (segment(-1, false, b"abcd"), false), // data after the wrap
            (segment(3, false, b""), false), // a pure ACK carries no sequence space
            (segment(-1, false, b"ab"), true), // part of the data again
            (segment(3, false, b"ef"), false),
        ];
        for (i, (frame, expected)) in sent.iter().enumerate() {
            assert_eq!(
                observe(&mut high, Medium::Ip, frame),
                *expected,
                "segment {i}"
            );
        }
        assert!(!observe(&mut high, Medium::Ip, &[0x45; 30]), "garbage");
    }
}
