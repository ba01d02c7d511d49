//! The receive queue: frames indicated by the adapter, waiting for the core DPC.
//!
//! Every buffer is allocated by [`ReceiveQueue::new`] and then circulates between the free list,
//! the FIFO of indicated frames, and the device (which lends one to smoltcp at a time). Both
//! lists have room for every buffer from the start, so moving a buffer never allocates.

use super::{HEADER_LEN, MAX_MTU, MIN_MTU};
use crate::nt::NtStatus;
use crate::nt::pool::{try_vec, try_zeroed};
use crate::nt::sync::SpinLock;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Counters of a [`ReceiveQueue`] since it was created (wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Frames accepted by [`ReceiveQueue::indicate`].
    pub received: u64,
    /// Frames refused because every buffer held a frame the DPC had not taken yet.
    pub dropped_full: u64,
    /// Frames refused because they were shorter than an Ethernet header or longer than the MTU
    /// plus the header.
    pub dropped_size: u64,
}

impl ReceiveStats {
    /// All refused frames. Any IRQL.
    pub fn dropped(&self) -> u64 {
        self.dropped_full.wrapping_add(self.dropped_size)
    }
}

/// A frame buffer: `mtu + 14` bytes, of which the first `len` are the frame.
#[derive(Default)]
pub(super) struct Frame {
    buf: Vec<u8>,
    len: usize,
}

impl Frame {
    /// The frame. Any IRQL.
    pub(super) fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Lets `fill` write a frame of `len` bytes in; `false` if it does not fit or `fill`
    /// failed. Any IRQL.
    fn fill_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> bool) -> bool {
        let Some(area) = self.buf.get_mut(..len) else {
            return false;
        };
        if !fill(area) {
            return false;
        }
        self.len = len;
        true
    }

    /// The buffer's address, for the tests that check nothing was reallocated. Any IRQL.
    #[cfg(test)]
    pub(super) fn address(&self) -> usize {
        self.buf.as_ptr() as usize
    }
}

/// The lists under the queue's lock.
struct Ring {
    /// Free buffers; capacity `frames`.
    free: Vec<Frame>,
    /// Indicated frames, oldest first; capacity at least `frames`.
    queue: VecDeque<Frame>,
    stats: ReceiveStats,
}

impl Ring {
    /// Puts a buffer back on the free list, which always has room for it. Under the queue's
    /// lock (DISPATCH_LEVEL).
    fn recycle(&mut self, frame: Frame) {
        if self.free.len() < self.free.capacity() {
            self.free.push(frame);
        }
    }
}

/// Received frames between the adapter's receive indication and the core DPC. See the
/// module documentation of [`crate::link::ethernet`].
pub struct ReceiveQueue {
    mtu: usize,
    frames: usize,
    ring: SpinLock<Ring>,
}

impl ReceiveQueue {
    /// A queue of `frames` buffers for frames of up to `mtu` + 14 bytes, all allocated now.
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` if `mtu` is outside
    /// [`MIN_MTU`](super::MIN_MTU)..=[`MAX_MTU`](super::MAX_MTU) or `frames` is 0;
    /// `STATUS_INSUFFICIENT_RESOURCES` if the buffers cannot be allocated (nothing stays
    /// allocated then). IRQL ≤ DISPATCH_LEVEL (PASSIVE_LEVEL at bind time).
    pub fn new(mtu: usize, frames: usize) -> Result<ReceiveQueue, NtStatus> {
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) || frames == 0 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let mut ring = Ring {
            free: try_vec(frames)?,
            queue: VecDeque::from(try_vec(frames)?),
            stats: ReceiveStats::default(),
        };
        for _ in 0..frames {
            ring.recycle(Frame {
                buf: try_zeroed(mtu + HEADER_LEN)?,
                len: 0,
            });
        }
        Ok(ReceiveQueue {
            mtu,
            frames,
            ring: SpinLock::new(ring),
        })
    }

    /// The IP MTU given to [`ReceiveQueue::new`]. Any IRQL.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// The largest frame accepted: the MTU plus the Ethernet header. Any IRQL.
    pub fn frame_capacity(&self) -> usize {
        self.mtu + HEADER_LEN
    }

    /// The number of buffers given to [`ReceiveQueue::new`]. Any IRQL.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The receive indication: copies `frame` (an Ethernet frame without FCS) into a free
    /// buffer at the tail of the queue and returns `true`; the caller then queues the core
    /// DPC. Returns `false`, and counts the drop, if no buffer is free or the frame's size is
    /// outside 14..=[`frame_capacity`](Self::frame_capacity). Never allocates; the copy is
    /// made under the queue's spin lock. IRQL ≤ DISPATCH_LEVEL.
    pub fn indicate(&self, frame: &[u8]) -> bool {
        self.indicate_with(frame.len(), |buffer| {
            buffer.copy_from_slice(frame);
            true
        })
    }

    /// The receive indication for a frame of `len` bytes that is not contiguous (an NDIS
    /// packet's buffer chain, a header and a lookahead): `fill` writes the frame into the
    /// `len`-byte buffer given to it, and returns `false` if it could not (the buffer goes
    /// back to the free list and the frame counts as dropped for its size). Otherwise as
    /// [`ReceiveQueue::indicate`]. `fill` runs under the queue's spin lock. IRQL ≤
    /// DISPATCH_LEVEL.
    pub fn indicate_with(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> bool) -> bool {
        let fits = (HEADER_LEN..=self.frame_capacity()).contains(&len);
        let mut ring = self.ring.lock();
        if !fits {
            ring.stats.dropped_size = ring.stats.dropped_size.wrapping_add(1);
            return false;
        }
        let Some(mut buffer) = ring.free.pop() else {
            ring.stats.dropped_full = ring.stats.dropped_full.wrapping_add(1);
            return false;
        };
        if !buffer.fill_with(len, fill) {
            ring.recycle(buffer);
            ring.stats.dropped_size = ring.stats.dropped_size.wrapping_add(1);
            return false;
        }
        if ring.queue.len() < ring.queue.capacity() {
            ring.queue.push_back(buffer);
            ring.stats.received = ring.stats.received.wrapping_add(1);
            true
        } else {
            // Unreachable: the queue has room for every buffer. Never grow it.
            ring.recycle(buffer);
            ring.stats.dropped_full = ring.stats.dropped_full.wrapping_add(1);
            false
        }
    }

    /// The number of frames waiting for the DPC (not counting one the device has staged).
    /// IRQL ≤ DISPATCH_LEVEL.
    pub fn pending(&self) -> usize {
        self.ring.lock().queue.len()
    }

    /// The counters. IRQL ≤ DISPATCH_LEVEL.
    pub fn stats(&self) -> ReceiveStats {
        self.ring.lock().stats
    }

    /// Takes the oldest frame; its buffer must come back through [`ReceiveQueue::recycle`] or
    /// [`ReceiveQueue::unpop`]. IRQL ≤ DISPATCH_LEVEL.
    pub(super) fn pop(&self) -> Option<Frame> {
        self.ring.lock().queue.pop_front()
    }

    /// Returns a popped frame's buffer to the free list. IRQL ≤ DISPATCH_LEVEL.
    pub(super) fn recycle(&self, frame: Frame) {
        self.ring.lock().recycle(frame);
    }

    /// Puts a popped frame back at the head of the queue, where it came from. IRQL
    /// ≤ DISPATCH_LEVEL.
    pub(super) fn unpop(&self, frame: Frame) {
        let mut ring = self.ring.lock();
        if ring.queue.len() < ring.queue.capacity() {
            ring.queue.push_front(frame);
        } else {
            // Unreachable: the queue has room for every buffer.
            ring.recycle(frame);
        }
    }

    /// The addresses of the buffers on the free list and in the queue, sorted, and the lists'
    /// storage: what a reallocation after construction would change.
    #[cfg(test)]
    pub(super) fn buffers(&self) -> (Vec<usize>, usize, usize, usize) {
        let ring = self.ring.lock();
        let mut addresses: Vec<usize> = ring
            .free
            .iter()
            .chain(ring.queue.iter())
            .map(Frame::address)
            .collect();
        addresses.sort_unstable();
        (
            addresses,
            ring.free.as_ptr() as usize,
            ring.free.capacity(),
            ring.queue.capacity(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, len: usize) -> Vec<u8> {
        let mut frame = vec![tag; len];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame
    }

    fn pop(queue: &ReceiveQueue) -> Option<Vec<u8>> {
        let frame = queue.pop()?;
        let bytes = frame.bytes().to_vec();
        queue.recycle(frame);
        Some(bytes)
    }

    #[test]
    fn parameters_are_checked() {
        assert!(matches!(
            ReceiveQueue::new(MIN_MTU - 1, 4),
            Err(NtStatus::INVALID_PARAMETER)
        ));
        assert!(matches!(
            ReceiveQueue::new(MAX_MTU + 1, 4),
            Err(NtStatus::INVALID_PARAMETER)
        ));
        assert!(matches!(
            ReceiveQueue::new(1500, 0),
            Err(NtStatus::INVALID_PARAMETER)
        ));
        let queue = ReceiveQueue::new(1500, 3).unwrap();
        assert_eq!(queue.mtu(), 1500);
        assert_eq!(queue.frames(), 3);
        assert_eq!(queue.frame_capacity(), 1514);
        assert_eq!(queue.buffers().0.len(), 3);
    }

    #[test]
    fn empty_queue_pops_nothing() {
        let queue = ReceiveQueue::new(MIN_MTU, 2).unwrap();
        assert_eq!(queue.pending(), 0);
        assert!(queue.pop().is_none());
        assert_eq!(queue.stats(), ReceiveStats::default());
    }

    #[test]
    fn frames_leave_in_arrival_order() {
        let queue = ReceiveQueue::new(MIN_MTU, 4).unwrap();
        for tag in 1..=3 {
            assert!(queue.indicate(&frame(tag, 60 + usize::from(tag))));
        }
        assert_eq!(queue.pending(), 3);
        for tag in 1..=3 {
            assert_eq!(pop(&queue).unwrap(), frame(tag, 60 + usize::from(tag)));
        }
        assert!(pop(&queue).is_none());
        // The buffers were recycled: the ring takes as many frames again.
        for tag in 4..=7 {
            assert!(queue.indicate(&frame(tag, 64)));
        }
        assert_eq!(pop(&queue).unwrap(), frame(4, 64));
        assert_eq!(queue.stats().received, 7);
    }

    #[test]
    fn full_ring_drops_and_counts() {
        let queue = ReceiveQueue::new(MIN_MTU, 2).unwrap();
        assert!(queue.indicate(&frame(1, 60)));
        assert!(queue.indicate(&frame(2, 60)));
        assert!(!queue.indicate(&frame(3, 60)));
        assert!(!queue.indicate(&frame(4, 60)));
        assert_eq!(
            queue.stats(),
            ReceiveStats {
                received: 2,
                dropped_full: 2,
                dropped_size: 0,
            }
        );
        // The frames already queued are intact, and a freed buffer takes the next frame.
        assert_eq!(pop(&queue).unwrap(), frame(1, 60));
        assert!(queue.indicate(&frame(5, 60)));
        assert_eq!(pop(&queue).unwrap(), frame(2, 60));
        assert_eq!(pop(&queue).unwrap(), frame(5, 60));
    }

    #[test]
    fn sizes_outside_the_ethernet_bounds_are_dropped() {
        let queue = ReceiveQueue::new(MIN_MTU, 2).unwrap();
        assert!(!queue.indicate(&[]));
        assert!(!queue.indicate(&[0; HEADER_LEN - 1]));
        assert!(!queue.indicate(&vec![0; MIN_MTU + HEADER_LEN + 1]));
        assert_eq!(queue.stats().dropped_size, 3);
        assert_eq!(queue.stats().dropped(), 3);
        assert_eq!(queue.pending(), 0);
        assert!(queue.indicate(&[0; HEADER_LEN]), "a bare header fits");
        assert!(
            queue.indicate(&frame(9, MIN_MTU + HEADER_LEN)),
            "a full-MTU frame fits"
        );
        assert_eq!(pop(&queue).unwrap().len(), HEADER_LEN);
        assert_eq!(pop(&queue).unwrap(), frame(9, MIN_MTU + HEADER_LEN));
    }

    #[test]
    fn nothing_is_allocated_after_construction() {
        let queue = ReceiveQueue::new(MIN_MTU, 3).unwrap();
        let before = queue.buffers();
        for round in 0..100u8 {
            while queue.indicate(&frame(round, 100)) {}
            let staged = queue.pop().unwrap();
            queue.unpop(staged);
            while let Some(frame) = queue.pop() {
                queue.recycle(frame);
            }
        }
        assert_eq!(queue.buffers(), before);
        let stats = queue.stats();
        assert_eq!((stats.received, stats.dropped_full), (300, 100));
    }
}
