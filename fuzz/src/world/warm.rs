//! The setup's warm-up. The driver's tables and queues grow on first use and never shrink: an
//! input that used one more than the setup did would leave the pool above the setup's
//! baseline, and its world could not be put back (`reset`). So before it makes its
//! connections, the setup uses what the target's inputs use ([`Warm`]) as they do, a little
//! more: connections from the peer to the listener, one of them accepted, all reset;
//! datagrams queued on the UDP and raw address files, one of them reassembled from
//! fragments; datagrams sent, waiting for a neighbour together and leaving in fragments;
//! requests outstanding together; an echo request and an address resolution waiting for
//! their answer. An input that uses them beyond that still grows them.

use super::{LISTEN_PORT, LISTENER_ISN, UDP_PORT, World, file};
use crate::frames::{self, ACK, OURS, PEER, SYN};
use std::net::{Ipv4Addr, SocketAddrV4};
use tcpip::nt::NtStatus;
use tcpip::nt::types::{IOCTL_ICMP_ECHO_REQUEST, IOCTL_QUERY_IP_HW_ADDRESS};

/// What the setup warms up: what the target's inputs use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warm {
    /// Frames, TDI requests and device I/O control requests (`ingress`).
    All,
    /// Device I/O control requests only (`control`): the echo request and the resolution.
    Ioctls,
}

/// Connections the peer opens to the listener at once (from the ports the `ingress` target's
/// segments to the listener come from).
const CONNECTIONS: u16 = 4;
/// Datagrams queued on the UDP address file at once, and sent by it.
const DATAGRAMS: usize = 4;
/// Datagrams to a neighbour that never answers, waiting for it together.
const WAITING: usize = 8;
/// Echo requests queued on the raw address file at once.
const ECHOES: usize = 2;
/// Requests outstanding at once.
const REQUESTS: usize = 16;
/// The room of the warm-up's receives (its datagrams are smaller).
const ROOM: usize = 256;

impl World {
    /// Runs the warm-up on the setup's files, before any request is pending on them, and lets
    /// the clock run until no timer is set. Leaves no request pending. The frames go in
    /// batches, the requests without waiting between them where they can: what is warmed up
    /// is how much the tables hold at once, not how many passes filled them.
    pub(super) fn warm_up(&mut self, warm: Warm) {
        let silent = SocketAddrV4::new(Ipv4Addr::new(10, 13, 0, 77), 9);
        if warm == Warm::All {
            self.warm_connections();
            self.warm_datagrams(silent);
        }
        // An echo request to the peer (which does not answer it: 100 ms) and the resolution
        // of the silent neighbour's address, as the IOCTL steps send them: one at a time.
        let mut echo = vec![0u8; 20];
        echo[..4].copy_from_slice(&PEER.octets());
        echo[4..8].copy_from_slice(&100u32.to_le_bytes());
        echo[8..10].copy_from_slice(&20u16.to_le_bytes());
        echo[10..12].copy_from_slice(&4u16.to_le_bytes());
        echo.extend_from_slice(b"ping");
        self.ioctl(None, IOCTL_ICMP_ECHO_REQUEST, &echo, 256);
        self.ioctl(None, IOCTL_QUERY_IP_HW_ADDRESS, &silent.ip().octets(), 8);
        if let Some(control) = self.control.take() {
            assert_eq!(self.kernel.close(control), NtStatus::SUCCESS);
            self.settle();
        }
        // The reset connections' deadlines pass, the waiting datagrams leave.
        assert!(self.drain(), "the warm-up's timers ended");
        for request in self.pending.drain(..) {
            assert!(
                request.event.is_signaled(),
                "the warm-up's {} never completed",
                request.what
            );
        }
    }

    /// Connections from the peer to the listener: half-open, one accepted by a TDI_LISTEN of
    /// the waiting endpoint, all reset (the endpoint aborts its own).
    fn warm_connections(&mut self) {
        let waiting = self.handle(file::WAITING).expect("the waiting endpoint");
        let listener = SocketAddrV4::new(OURS, LISTEN_PORT);
        // The listen makes the listener.
        self.listen(waiting);
        let syns = (1024..1024 + CONNECTIONS).map(|port| {
            frames::Segment {
                src: SocketAddrV4::new(PEER, port),
                dst: listener,
                seq: LISTENER_ISN,
                ack: 0,
                flags: SYN,
                window: 8192,
                options: &[2, 4, 0x05, 0xb4],
                payload: &[],
            }
            .packet()
        });
        self.indicate_packets(syns);
        if let Some(&(port, next)) = self.half_open.first() {
            self.indicate_packet(
                &frames::Segment {
                    src: SocketAddrV4::new(PEER, port),
                    dst: listener,
                    seq: LISTENER_ISN.wrapping_add(1),
                    ack: next,
                    flags: ACK,
                    window: 8192,
                    options: &[],
                    payload: &[],
                }
                .packet(),
            );
        }
        let resets = self.half_open_resets();
        self.indicate_packets(resets);
        self.abort(file::WAITING);
    }

    /// Datagrams sent (to the peer, and past the link's MTU to `silent`, which never answers:
    /// they wait for its address together until the drain answers, then leave in fragments),
    /// queued on the UDP and raw address files before any receive is pending, and received
    /// by receives outstanding together.
    fn warm_datagrams(&mut self, silent: SocketAddrV4) {
        let udp = self.handle(file::UDP).expect("the UDP address file");
        let raw = self.handle(file::RAW).expect("the raw address file");
        let peer = SocketAddrV4::new(PEER, 5353);
        let ours = SocketAddrV4::new(OURS, UDP_PORT);
        for _ in 0..DATAGRAMS {
            self.post_send_datagram(peer, 64);
        }
        for _ in 0..WAITING {
            self.post_send_datagram(silent, 3000);
        }
        self.settle();
        // One comes in two fragments.
        let whole = frames::udp(peer, ours, &[0xa5; 64]);
        let body = &whole[20..];
        let fragments = [(0, &body[..40], true), (40, &body[40..], false)]
            .map(|(offset, piece, more)| frames::ipv4(PEER, OURS, 17, piece, (7, offset, more)));
        let datagrams = (0..DATAGRAMS).map(|_| frames::udp(peer, ours, &[0x5a; 64]));
        let echoes = (0..ECHOES).map(|_| frames::icmp(PEER, OURS, 8, 0, &[0; 12]));
        self.indicate_packets(datagrams.chain(fragments).chain(echoes));
        // The queued datagrams complete the first receives; the others wait together until
        // the peer's datagrams complete them.
        for _ in 0..DATAGRAMS + 1 + REQUESTS {
            self.post_datagram_receive(udp, ROOM);
        }
        for _ in 0..ECHOES {
            self.post_datagram_receive(raw, ROOM);
        }
        self.settle();
        self.indicate_packets((0..REQUESTS).map(|_| frames::udp(peer, ours, &[0x5a; 64])));
    }
}
