//! The loopback link: a `smoltcp::phy::Device` whose every transmitted frame is received back,
//! in order, with no allocation after construction.
//!
//! # Frames
//!
//! The medium is `Medium::Ip`: a frame is an IPv4 packet, with no link header. All frame
//! buffers are allocated (fallibly) by [`Loopback::new`], each `mtu` bytes, and then circulate
//! between three places: the free pool, the receive queue (frames transmitted and not yet
//! received, in FIFO order), and the tokens smoltcp holds for the duration of one send or
//! receive. Nothing is allocated, copied or freed on the way: `transmit` lends a free buffer,
//! the transmit token moves it to the receive queue, and the receive token returns it to the
//! pool once smoltcp has consumed it. The receive queue's storage is preallocated for every
//! frame, so it never grows.
//!
//! # Exhaustion
//!
//! When no buffer is free, [`Device::transmit`](smoltcp::phy::Device::transmit) returns
//! `None`: smoltcp leaves the data in the socket's transmit buffer and tries again on a later
//! poll, after the queue has been received. No frame is lost.
//!
//! One buffer is kept in reserve for the reply smoltcp may emit *while* it processes a
//! received frame (an ACK, a RST): `receive` hands out a transmit token along with the receive
//! token, and that token cannot report exhaustion. Plain transmissions therefore stop when a
//! single buffer is left, so at most `frames − 1` frames wait in the queue, and a receive
//! always has its reply buffer. (The received frame's own buffer goes back to the pool when its
//! token is done, so a receive with a reply leaves the free count unchanged.)
//!
//! # MTU
//!
//! The MTU is the IP MTU (smoltcp's TCP MSS is MTU − 40). Keep it at or below a quarter of the
//! sockets' receive buffers: with an MSS close to the window, smoltcp's delayed ACK (10 ms)
//! stalls a bulk transfer to one window per tick (`smoltcp-notes` §4.5). [`DEFAULT_MTU`] is
//! 16 KiB for 64 KiB receive buffers. smoltcp never asks a transmit token for more than the
//! MTU (it drops larger IP packets, having no IPv4 fragmentation here); were it to, the frame
//! would be discarded (counted in [`LoopbackStats::dropped`]).
//!
//! # Checksums
//!
//! `ChecksumCapabilities::ignored()`: smoltcp neither computes nor verifies IPv4 and TCP
//! checksums on this link. A loopback frame never leaves memory, so it cannot be corrupted in
//! transit; computing a checksum over every byte only to verify it again would cost two passes
//! over the data per segment for nothing. (Frames from this link must therefore never be
//! forwarded to a real network as they are.)
//!
//! # The core's view of the queue
//!
//! [`Loopback::peek_front`] shows the next frame smoltcp would receive, and
//! [`Loopback::drop_front`] discards it: the core classifies frames before smoltcp sees them
//! (`core::segment`) and drops the ones smoltcp must not process.
#![forbid(unsafe_code)]

use crate::nt::NtStatus;
use crate::nt::pool::{try_vec, try_zeroed};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::IPV4_MIN_MTU;

/// The default MTU: a quarter of a 64 KiB receive buffer.
pub const DEFAULT_MTU: usize = 16384;
/// The largest MTU: an IPv4 packet's total length is 16 bits.
pub const MAX_MTU: usize = 65535;
/// The smallest MTU: every IPv4 host must accept 576-byte datagrams (RFC 791).
pub const MIN_MTU: usize = IPV4_MIN_MTU;
/// A default frame count: 16 frames of [`DEFAULT_MTU`] are 256 KiB of non-paged pool.
pub const DEFAULT_FRAMES: usize = 16;

/// Counters of a [`Loopback`] since it was created (wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopbackStats {
    /// Frames queued by transmit tokens.
    pub transmitted: u64,
    /// Frames handed to smoltcp by `receive`.
    pub received: u64,
    /// Frames discarded by [`Loopback::drop_front`].
    pub discarded: u64,
    /// Transmissions refused because no buffer was free.
    pub exhausted: u64,
    /// Frames lost to a request larger than the MTU (smoltcp never makes one) or to a full
    /// queue (impossible: the queue has room for every buffer).
    pub dropped: u64,
}

/// A frame buffer: `mtu` bytes, of which the first `len` are the frame.
#[derive(Default)]
struct Frame {
    buf: Vec<u8>,
    len: usize,
}

impl Frame {
    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// Puts `frame` back into `pool` without growing it (the pool's capacity counts every frame,
/// so there is always room).
fn recycle(pool: &mut Vec<Frame>, frame: Frame) {
    if pool.len() < pool.capacity() {
        pool.push(frame);
    }
}

/// The loopback device. See the module documentation.
pub struct Loopback {
    mtu: usize,
    frames: usize,
    /// Free buffers; capacity `frames`.
    free: Vec<Frame>,
    /// Transmitted frames waiting to be received; capacity at least `frames`.
    queue: VecDeque<Frame>,
    /// The buffer of the last received frame, back from its token; moved to `free` by the next
    /// operation (the receive token cannot reach `free`: the reply token holds it).
    returned: Option<Frame>,
    stats: LoopbackStats,
}

impl Loopback {
    /// A loopback link with `frames` buffers of `mtu` bytes, all allocated now.
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` if `mtu` is outside [`MIN_MTU`]..=[`MAX_MTU`] or
    /// `frames` < 2 (one buffer is reserved for replies); `STATUS_INSUFFICIENT_RESOURCES` if the
    /// buffers cannot be allocated (nothing stays allocated then). Any IRQL ≤ DISPATCH_LEVEL.
    pub fn new(mtu: usize, frames: usize) -> Result<Loopback, NtStatus> {
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) || frames < 2 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let mut free = try_vec(frames)?;
        for _ in 0..frames {
            recycle(
                &mut free,
                Frame {
                    buf: try_zeroed(mtu)?,
                    len: 0,
                },
            );
        }
        Ok(Loopback {
            mtu,
            frames,
            free,
            queue: VecDeque::from(try_vec(frames)?),
            returned: None,
            stats: LoopbackStats::default(),
        })
    }

    /// The MTU given to [`Loopback::new`]. Any IRQL.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// The number of frame buffers given to [`Loopback::new`]. Any IRQL.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The number of frames waiting to be received. Any IRQL.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// The next frame smoltcp would receive, if any. Any IRQL.
    pub fn peek_front(&self) -> Option<&[u8]> {
        self.queue.front().map(Frame::bytes)
    }

    /// Discards the next frame, returning its buffer to the pool. Returns `false` if the queue
    /// is empty. Any IRQL.
    pub fn drop_front(&mut self) -> bool {
        self.reclaim();
        let Some(frame) = self.queue.pop_front() else {
            return false;
        };
        recycle(&mut self.free, frame);
        self.stats.discarded = self.stats.discarded.wrapping_add(1);
        true
    }

    /// The counters. Any IRQL.
    pub fn stats(&self) -> LoopbackStats {
        self.stats
    }

    /// Moves the last received frame's buffer back to the pool.
    fn reclaim(&mut self) {
        if let Some(frame) = self.returned.take() {
            recycle(&mut self.free, frame);
        }
    }
}

impl phy::Device for Loopback {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    /// The next queued frame and a token for a reply. `None` if the queue is empty. Any IRQL
    /// ≤ DISPATCH_LEVEL.
    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        self.reclaim();
        if self.queue.is_empty() {
            return None;
        }
        let reply = self.free.pop()?;
        let Some(frame) = self.queue.pop_front() else {
            recycle(&mut self.free, reply);
            return None;
        };
        self.stats.received = self.stats.received.wrapping_add(1);
        Some((
            RxToken {
                frame,
                home: &mut self.returned,
            },
            TxToken {
                frame: reply,
                sent: false,
                queue: &mut self.queue,
                free: &mut self.free,
                stats: &mut self.stats,
            },
        ))
    }

    /// A token for one frame, or `None` if only the reply reserve is left. Any IRQL
    /// ≤ DISPATCH_LEVEL.
    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        self.reclaim();
        let frame = if self.free.len() >= 2 {
            self.free.pop()
        } else {
            None
        };
        let Some(frame) = frame else {
            self.stats.exhausted = self.stats.exhausted.wrapping_add(1);
            return None;
        };
        Some(TxToken {
            frame,
            sent: false,
            queue: &mut self.queue,
            free: &mut self.free,
            stats: &mut self.stats,
        })
    }

    /// `Medium::Ip`, the configured MTU, no burst limit, checksums ignored. Any IRQL.
    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps.max_burst_size = None;
        caps.checksum = ChecksumCapabilities::ignored();
        caps
    }
}

/// A received frame lent to smoltcp; its buffer goes back to the pool when the token is
/// consumed or dropped.
pub struct RxToken<'a> {
    frame: Frame,
    home: &'a mut Option<Frame>,
}

impl phy::RxToken for RxToken<'_> {
    /// Calls `f` with the frame. Any IRQL ≤ DISPATCH_LEVEL.
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame.bytes())
    }
}

impl Drop for RxToken<'_> {
    fn drop(&mut self) {
        *self.home = Some(::core::mem::take(&mut self.frame));
    }
}

/// A free buffer lent to smoltcp for one frame: queued for reception once written, back to
/// the pool if the token is dropped unused.
pub struct TxToken<'a> {
    frame: Frame,
    sent: bool,
    queue: &'a mut VecDeque<Frame>,
    free: &'a mut Vec<Frame>,
    stats: &'a mut LoopbackStats,
}

impl phy::TxToken for TxToken<'_> {
    /// Lets `f` write a `len`-byte frame, then queues it. Any IRQL ≤ DISPATCH_LEVEL.
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, len: usize, f: F) -> R {
        let capacity = self.frame.buf.len();
        let fits = len <= capacity;
        let area = self.frame.buf.get_mut(..len.min(capacity));
        let result = f(area.unwrap_or_default());
        if fits {
            self.frame.len = len;
            self.sent = true;
        } else {
            self.stats.dropped = self.stats.dropped.wrapping_add(1);
        }
        result
    }
}

impl Drop for TxToken<'_> {
    fn drop(&mut self) {
        let frame = ::core::mem::take(&mut self.frame);
        if !self.sent {
            recycle(self.free, frame);
        } else if self.queue.len() < self.queue.capacity() {
            self.queue.push_back(frame);
            self.stats.transmitted = self.stats.transmitted.wrapping_add(1);
        } else {
            // Unreachable: the queue has room for every buffer. Never grow it.
            self.stats.dropped = self.stats.dropped.wrapping_add(1);
            recycle(self.free, frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::segment::classify;
    use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
    use smoltcp::phy::{Device, RxToken as _, TxToken as _};
    use smoltcp::socket::tcp;
    use smoltcp::time::Duration;
    use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};

    const LOCALHOST: Ipv4Address = Ipv4Address::new(127, 0, 0, 1);

    /// Every buffer's address and the storage addresses: a buffer allocated or reallocated
    /// after construction would show up here.
    fn buffers(dev: &Loopback) -> (Vec<usize>, usize, usize, usize) {
        let mut addrs: Vec<usize> = dev
            .free
            .iter()
            .chain(dev.queue.iter())
            .chain(dev.returned.iter())
            .map(|f| f.buf.as_ptr() as usize)
            .collect();
        addrs.sort_unstable();
        (
            addrs,
            dev.free.as_ptr() as usize,
            dev.free.capacity(),
            dev.queue.capacity(),
        )
    }

    fn accounted(dev: &Loopback) -> usize {
        dev.free.len() + dev.queue.len() + usize::from(dev.returned.is_some())
    }

    fn send(dev: &mut Loopback, bytes: &[u8]) -> bool {
        match dev.transmit(Instant::ZERO) {
            Some(token) => {
                token.consume(bytes.len(), |buf| buf.copy_from_slice(bytes));
                true
            }
            None => false,
        }
    }

    fn recv(dev: &mut Loopback) -> Option<Vec<u8>> {
        let (rx, _tx) = dev.receive(Instant::ZERO)?;
        Some(rx.consume(|frame| frame.to_vec()))
    }

    #[test]
    fn parameters_are_checked() {
        assert!(matches!(
            Loopback::new(MIN_MTU - 1, 4),
            Err(NtStatus::INVALID_PARAMETER)
        ));
        assert!(matches!(
            Loopback::new(MAX_MTU + 1, 4),
            Err(NtStatus::INVALID_PARAMETER)
        ));
        assert!(matches!(
            Loopback::new(DEFAULT_MTU, 1),
            Err(NtStatus::INVALID_PARAMETER)
        ));
        let dev = Loopback::new(MIN_MTU, 2).unwrap();
        assert_eq!(dev.mtu(), MIN_MTU);
        assert_eq!(dev.frames(), 2);
        let caps = dev.capabilities();
        assert_eq!(caps.medium, Medium::Ip);
        assert_eq!(caps.max_transmission_unit, MIN_MTU);
        assert_eq!(caps.max_burst_size, None);
        assert!(!caps.checksum.ipv4.tx() && !caps.checksum.ipv4.rx());
        assert!(!caps.checksum.tcp.tx() && !caps.checksum.tcp.rx());
    }

    #[test]
    fn frames_come_back_in_order() {
        let mut dev = Loopback::new(MIN_MTU, 4).unwrap();
        assert_eq!(dev.peek_front(), None);
        assert!(recv(&mut dev).is_none());
        assert!(send(&mut dev, b"one"));
        assert!(send(&mut dev, b"two"));
        assert_eq!(dev.pending(), 2);
        assert_eq!(dev.peek_front(), Some(&b"one"[..]));
        assert_eq!(recv(&mut dev).unwrap(), b"one");
        assert_eq!(recv(&mut dev).unwrap(), b"two");
        assert_eq!(dev.pending(), 0);
        assert_eq!(
            dev.stats(),
            LoopbackStats {
                transmitted: 2,
                received: 2,
                ..Default::default()
            }
        );
    }

    #[test]
    fn exhaustion_keeps_the_reply_reserve_and_loses_nothing() {
        let frames = 4;
        let mut dev = Loopback::new(MIN_MTU, frames).unwrap();
        let before = buffers(&dev);
        for i in 0..frames - 1 {
            assert!(send(&mut dev, &[i as u8; 40]));
        }
        assert!(
            !send(&mut dev, b"refused"),
            "the last buffer is the reserve"
        );
        assert_eq!(dev.stats().exhausted, 1);
        assert_eq!(dev.pending(), frames - 1);
        // A receive still gets a reply token, and the reply is queued behind the others.
        let (rx, tx) = dev.receive(Instant::ZERO).unwrap();
        let first = rx.consume(|frame| {
            tx.consume(5, |buf| buf.copy_from_slice(b"reply"));
            frame.to_vec()
        });
        assert_eq!(first, [0; 40]);
        assert_eq!(dev.pending(), frames - 1);
        let mut order = Vec::new();
        while let Some(frame) = recv(&mut dev) {
            order.push(frame);
        }
        assert_eq!(order, [vec![1; 40], vec![2; 40], b"reply".to_vec()]);
        assert_eq!(accounted(&dev), frames);
        assert_eq!(buffers(&dev), before, "no buffer was allocated or moved");
        let stats = dev.stats();
        assert_eq!(stats.transmitted, 4);
        assert_eq!(stats.received, 4);
        assert_eq!(stats.dropped, 0);
    }

    #[test]
    fn unused_tokens_return_their_buffers() {
        let mut dev = Loopback::new(MIN_MTU, 3).unwrap();
        let before = buffers(&dev);
        drop(dev.transmit(Instant::ZERO).unwrap());
        assert!(send(&mut dev, b"x"));
        let (rx, tx) = dev.receive(Instant::ZERO).unwrap();
        drop(tx);
        drop(rx);
        assert_eq!(dev.pending(), 0);
        assert_eq!(accounted(&dev), 3);
        assert_eq!(buffers(&dev), before);
        assert_eq!(dev.stats().transmitted, 1);
        assert_eq!(dev.stats().received, 1);
    }

    #[test]
    fn drop_front_discards() {
        let mut dev = Loopback::new(MIN_MTU, 3).unwrap();
        assert!(!dev.drop_front());
        assert!(send(&mut dev, b"a"));
        assert!(send(&mut dev, b"b"));
        assert!(!send(&mut dev, b"c"));
        assert!(dev.drop_front());
        assert_eq!(dev.peek_front(), Some(&b"b"[..]));
        assert!(
            send(&mut dev, b"c"),
            "the discarded frame's buffer is free again"
        );
        assert_eq!(recv(&mut dev).unwrap(), b"b");
        assert_eq!(recv(&mut dev).unwrap(), b"c");
        assert_eq!(dev.stats().discarded, 1);
        assert_eq!(accounted(&dev), 3);
    }

    #[test]
    fn oversized_requests_are_dropped_not_grown() {
        let mut dev = Loopback::new(MIN_MTU, 2).unwrap();
        let before = buffers(&dev);
        let token = dev.transmit(Instant::ZERO).unwrap();
        let seen = token.consume(MIN_MTU + 1, |buf| buf.len());
        assert_eq!(seen, MIN_MTU);
        assert_eq!(dev.pending(), 0);
        assert_eq!(dev.stats().dropped, 1);
        assert_eq!(buffers(&dev), before);
        assert!(send(&mut dev, &[7; MIN_MTU]), "a full-MTU frame fits");
        assert_eq!(dev.peek_front().map(<[u8]>::len), Some(MIN_MTU));
    }

    /// A server and a client socket on one interface over the loopback, driven by a manual
    /// clock.
    struct Pair {
        dev: Loopback,
        iface: Interface,
        sockets: SocketSet<'static>,
        server: SocketHandle,
        client: SocketHandle,
        now: Instant,
    }

    impl Pair {
        fn new(mtu: usize, frames: usize, buffer: usize) -> Pair {
            let mut dev = Loopback::new(mtu, frames).unwrap();
            let mut config = Config::new(HardwareAddress::Ip);
            config.random_seed = 0x5eed;
            let now = Instant::from_micros(1_000_000);
            let mut iface = Interface::new(config, &mut dev, now);
            iface.update_ip_addrs(|addrs| {
                addrs
                    .push(IpCidr::new(IpAddress::Ipv4(LOCALHOST), 8))
                    .unwrap();
            });
            let socket = || {
                tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; buffer]),
                    tcp::SocketBuffer::new(vec![0; buffer]),
                )
            };
            let mut sockets = SocketSet::new(Vec::new());
            let server = sockets.add(socket());
            let client = sockets.add(socket());
            sockets.get_mut::<tcp::Socket>(server).listen(5000).unwrap();
            sockets
                .get_mut::<tcp::Socket>(client)
                .connect(iface.context(), (LOCALHOST, 5000), 49152)
                .unwrap();
            Pair {
                dev,
                iface,
                sockets,
                server,
                client,
                now,
            }
        }

        /// One pass the way the core drives smoltcp: each queued frame is shown to
        /// `each_frame` before smoltcp receives it, then egress until the sockets have nothing
        /// more to send (or the device is exhausted); the clock moves 10 µs.
        fn step(&mut self, mut each_frame: impl FnMut(&[u8])) {
            while let Some(frame) = self.dev.peek_front() {
                assert!(frame.len() <= self.dev.mtu(), "frame of {}", frame.len());
                each_frame(frame);
                self.iface
                    .poll_ingress_single(self.now, &mut self.dev, &mut self.sockets);
            }
            while self
                .iface
                .poll_egress(self.now, &mut self.dev, &mut self.sockets)
                == PollResult::SocketStateChanged
            {}
            self.now += Duration::from_micros(10);
        }

        fn established(&mut self) -> bool {
            let (client, server) = (self.client, self.server);
            self.socket(client).state() == tcp::State::Established
                && self.socket(server).state() == tcp::State::Established
        }

        fn socket(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
            self.sockets.get_mut(handle)
        }

        /// Moves `data` from the client to the server; returns what the server read.
        fn transfer(&mut self, data: &[u8]) -> Vec<u8> {
            let mut sent = 0;
            let mut received = Vec::with_capacity(data.len());
            let mut steps = 0;
            while received.len() < data.len() {
                let client = self.client;
                let server = self.server;
                let socket = self.socket(client);
                if socket.can_send() && sent < data.len() {
                    sent += socket.send_slice(&data[sent..]).unwrap();
                }
                let socket = self.socket(server);
                if socket.can_recv() {
                    let mut chunk = [0; 8192];
                    let n = socket.recv_slice(&mut chunk).unwrap();
                    received.extend_from_slice(&chunk[..n]);
                }
                self.step(|_| {});
                steps += 1;
                assert!(steps < 1_000_000, "transfer stalled at {}", received.len());
            }
            received
        }

        fn conserved(&self) {
            assert_eq!(accounted(&self.dev), self.dev.frames());
            let stats = self.dev.stats();
            assert_eq!(
                stats.transmitted,
                stats.received + stats.discarded + self.dev.pending() as u64
            );
            assert_eq!(stats.dropped, 0);
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491u32;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect()
    }

    #[test]
    fn tcp_handshake_and_one_mebibyte() {
        let mut pair = Pair::new(DEFAULT_MTU, DEFAULT_FRAMES, 64 * 1024);
        let before = buffers(&pair.dev);
        let mut segments = Vec::new();
        for _ in 0..10 {
            if pair.established() {
                break;
            }
            pair.step(|frame| segments.push(classify(frame).unwrap()));
        }
        assert!(pair.established(), "no handshake: {segments:?}");
        let client = core::net::SocketAddrV4::new(LOCALHOST, 49152);
        let server = core::net::SocketAddrV4::new(LOCALHOST, 5000);
        assert_eq!(segments.len(), 3, "{segments:?}");
        assert!(segments[0].is_connection_request());
        assert_eq!((segments[0].src, segments[0].dst), (client, server));
        assert!(segments[1].syn && segments[1].ack);
        assert_eq!((segments[1].src, segments[1].dst), (server, client));
        assert!(!segments[2].syn && segments[2].ack);

        let data = pattern(1 << 20);
        let start = pair.now;
        let received = pair.transfer(&data);
        assert!(received == data, "the bytes arrive intact and in order");
        // 10 µs per pass: a delayed-ACK stall (10 ms per window) would take far longer.
        let elapsed = pair.now - start;
        assert!(elapsed < Duration::from_millis(50), "took {elapsed}");
        assert_eq!(
            buffers(&pair.dev),
            before,
            "nothing allocated after construction"
        );
        pair.conserved();
        assert_eq!(pair.dev.stats().exhausted, 0, "16 frames are plenty here");
    }

    #[test]
    fn tiny_pool_exhausts_without_loss() {
        let mut pair = Pair::new(1500, 3, 8 * 1024);
        let before = buffers(&pair.dev);
        let data = pattern(256 * 1024);
        let received = pair.transfer(&data);
        assert!(received == data);
        let stats = pair.dev.stats();
        assert!(stats.exhausted > 0, "the pool ran dry: {stats:?}");
        assert_eq!(buffers(&pair.dev), before);
        pair.conserved();
    }

    #[test]
    fn core_may_drop_frames_before_smoltcp() {
        let mut pair = Pair::new(DEFAULT_MTU, 4, 16 * 1024);
        // Let the client's SYN out, then discard it as the core would.
        pair.step(|_| {});
        let syn = classify(pair.dev.peek_front().unwrap()).unwrap();
        assert!(syn.is_connection_request());
        assert!(pair.dev.drop_front());
        pair.step(|_| {});
        assert_eq!(pair.dev.pending(), 0, "no retransmission before the RTO");
        assert_eq!(pair.socket(pair.server).state(), tcp::State::Listen);
        assert_eq!(pair.socket(pair.client).state(), tcp::State::SynSent);
        // The client retransmits after its RTO (1 s) and the handshake completes.
        pair.now += Duration::from_secs(1);
        for _ in 0..10 {
            if pair.established() {
                break;
            }
            pair.step(|_| {});
        }
        assert!(pair.established());
        pair.conserved();
        assert_eq!(pair.dev.stats().discarded, 1);
    }
}
