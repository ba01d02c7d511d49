//! When each socket next needs smoltcp's attention, as a min-heap.
//!
//! smoltcp reports a socket's next deadline (retransmission, delayed ACK, keep-alive, TIME-WAIT,
//! the connect and SYN-RECEIVED timeouts) through `Interface::poll_at`; asking it for every
//! socket on every pass would cost the whole socket count per DPC. The core asks only for the
//! sockets a pass touched and files the answer here; the pass then takes exactly the sockets
//! whose deadline has come ([`TimerQueue::pop_due`]), and the DPC's KTIMER is armed at the
//! earliest deadline ([`TimerQueue::next`]).
//!
//! Entries are never removed in place: a socket's newer deadline is simply pushed, and the
//! caller recognises an entry as stale when it no longer matches the deadline it recorded for
//! that socket. Stale entries cost only a spurious pop. So that the heap never grows without
//! bound, the caller reserves room for two entries per socket ([`TimerQueue::reserve`]) and the
//! queue is rebuilt from the recorded deadlines whenever it fills up ([`TimerQueue::push`]
//! reports it).
#![forbid(unsafe_code)]

use crate::core::slab::Key;
use crate::nt::NtStatus;
use crate::nt::pool;
use alloc::collections::BinaryHeap;
use core::cmp::Reverse;
use smoltcp::time::Instant;

/// A deadline for one socket: (microseconds, socket key), earliest first.
type Entry = Reverse<(i64, Key)>;

/// The deadlines of the core's sockets. Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
#[derive(Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Entry>,
}

impl TimerQueue {
    /// Makes room for `entries` deadlines in all. Fails with `STATUS_INSUFFICIENT_RESOURCES`
    /// and changes nothing when the pool is exhausted.
    pub fn reserve(&mut self, entries: usize) -> Result<(), NtStatus> {
        let additional = entries.saturating_sub(self.heap.len());
        pool::note_call_site();
        self.heap
            .try_reserve(additional)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)
    }

    /// Files `at` for `key`. Returns `false`, filing nothing, when the reserved room is used
    /// up: the caller must [`rebuild`](Self::rebuild) the queue from its records.
    #[must_use]
    pub fn push(&mut self, key: Key, at: Instant) -> bool {
        if self.heap.len() == self.heap.capacity() {
            return false;
        }
        self.heap.push(Reverse((at.total_micros(), key)));
        true
    }

    /// Drops every entry, keeping the storage, before the caller re-files the live deadlines.
    pub fn clear(&mut self) {
        self.heap.clear();
    }

    /// Takes the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Key, Instant)> {
        let Reverse((at, _)) = *self.heap.peek()?;
        if at > now.total_micros() {
            return None;
        }
        let Reverse((at, key)) = self.heap.pop()?;
        Some((key, Instant::from_micros(at)))
    }

    /// The earliest deadline filed (possibly a stale one: then the pass it causes finds
    /// nothing due and the next deadline is armed).
    pub fn next(&self) -> Option<Instant> {
        self.heap
            .peek()
            .map(|Reverse((at, _))| Instant::from_micros(*at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u32) -> Key {
        Key {
            index,
            generation: 0,
        }
    }

    #[test]
    fn pops_due_entries_in_deadline_order_and_leaves_later_ones() {
        let mut timers = TimerQueue::default();
        timers.reserve(8).unwrap();
        assert!(timers.push(key(1), Instant::from_micros(30)));
        assert!(timers.push(key(2), Instant::from_micros(10)));
        assert!(timers.push(key(3), Instant::from_micros(50)));
        assert_eq!(timers.next(), Some(Instant::from_micros(10)));
        let now = Instant::from_micros(30);
        assert_eq!(
            timers.pop_due(now),
            Some((key(2), Instant::from_micros(10)))
        );
        assert_eq!(
            timers.pop_due(now),
            Some((key(1), Instant::from_micros(30)))
        );
        assert_eq!(timers.pop_due(now), None);
        assert_eq!(timers.next(), Some(Instant::from_micros(50)));
    }

    #[test]
    fn refuses_to_grow_past_its_reservation() {
        let mut timers = TimerQueue::default();
        timers.reserve(2).unwrap();
        let capacity = timers.heap.capacity();
        for index in 0..capacity {
            assert!(timers.push(key(index as u32), Instant::from_micros(1)));
        }
        assert!(!timers.push(key(99), Instant::from_micros(1)));
        assert_eq!(timers.heap.capacity(), capacity);
        timers.clear();
        assert!(timers.push(key(99), Instant::from_micros(1)));
    }
}
