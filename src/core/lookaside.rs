//! The lookaside of socket ring blocks: a free list per size class, so that a socket's
//! receive and send rings come from the blocks closed sockets left rather than from a fresh
//! zeroed pool allocation each time.
//!
//! A TCP socket takes two blocks (`CoreConfig::rx_buffer` and `tx_buffer`, 64 KiB each by
//! default, or `small_buffer` each under buffer pressure) and smoltcp cannot give them back
//! itself: they are lent to it ([`crate::nt::lend`]) and come back here when the core drops
//! the socket ([`crate::core::sockets`]). Before, every connection allocated and zeroed
//! 128 KiB, about an eighth of the connection-rate workload's instructions.
//!
//! - **Owned by the core**, under its lock, so a plain `Vec` per class and no atomics: NT's
//!   own lookaside lists (`ExInitializeNPagedLookasideList` & co.) are inline functions over
//!   interlocked SLISTs in the DDK headers, built for callers without a common lock, which the
//!   core does not need.
//! - **Bounded**: a class keeps at most `depth` blocks (`CoreConfig::lookaside_depth`); a
//!   block beyond that goes back to the pool at once.
//! - **Trimmed**: a class that served no socket and took no block back for a whole
//!   `idle` interval (`CoreConfig::lookaside_idle`) is freed ([`Lookaside::trim`], run by every
//!   pass; [`Lookaside::trim_at`] keeps the core's timer armed while anything is cached), so
//!   an idle driver holds nothing here; so is everything when the last socket goes
//!   (`Sockets::remove`), when a fresh allocation fails (pool pressure: the cache goes back to
//!   the pool and the allocation is tried once more), and the full-sized classes once buffer
//!   pressure makes new sockets small. Unload frees what is left (the core is dropped).
//! - **Not zeroed on reuse.** A fresh block is zeroed once, when it is allocated
//!   (`pool::try_zeroed_block`: Rust never sees uninitialised bytes); a recycled one is lent as
//!   its last socket left it. smoltcp never reads a ring byte it has not written, so a new
//!   connection never sees an old one's data. In smoltcp 0.14.0: its `RingBuffer`
//!   (`src/storage/ring_buffer.rs`) reads only the *allocated* part, `read_at..read_at+length`
//!   (`dequeue_many_with`, l. 239; `get_allocated`, l. 352; `read_allocated`, l. 376), and a
//!   TCP socket (`src/socket/tcp.rs`) makes bytes allocated only once written: received
//!   payload, clamped by the acceptability test to the window it advertised (l. 1706–1784,
//!   never more than the ring's free room), is written with `write_unallocated` (l. 2232) and
//!   only the contiguous prefix the assembler holds is `enqueue_unallocated` (l. 2242); `send`
//!   enqueues the count its closure reports (`send_impl`, l. 1238), and the core's
//!   `transfer::send` reports only the bytes it copied in from the request's MDL. Segments
//!   (`get_allocated`, l. 2637 and 2709), `recv` and `peek` (l. 1370) read through the same
//!   two functions.
//!
//! Cached blocks are pool the driver holds without a socket: they are outside
//! `CoreConfig::socket_memory_limit` (which counts the sockets' buffers) and bounded by the
//! depth, `depth × (rx_buffer + small_buffer)` with the defaults' equal receive and send sizes
//! (2.25 MiB). The counters ([`LookasideStats`]: hits, misses, failed allocations, blocks
//! freed, what is cached now) are read through `Stack::lookaside_stats`
//! (`host::stats::lookaside_stats` in the host model).
#![forbid(unsafe_code)]

use crate::nt::NtStatus;
use crate::nt::pool;
use alloc::boxed::Box;
use alloc::vec::Vec;
use smoltcp::time::{Duration, Instant};

/// Size classes: the configuration's receive, send and small buffer sizes (fewer when some
/// are equal).
pub const CLASSES: usize = 3;

/// The lookaside's counters and contents. Any IRQL (a copy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookasideStats {
    /// Blocks served from a free list.
    pub hits: u64,
    /// Blocks allocated (and zeroed) because their class had none.
    pub misses: u64,
    /// Fresh allocations that failed (the pool was exhausted).
    pub failures: u64,
    /// Blocks given back to the pool: beyond the depth, trimmed, or flushed.
    pub freed: u64,
    /// Blocks cached now.
    pub cached_blocks: usize,
    /// Bytes of those blocks.
    pub cached_bytes: usize,
}

/// One size class's free list.
#[derive(Default)]
struct Class {
    /// The blocks' size (0: no class).
    size: usize,
    /// Cached blocks; its capacity, `depth`, is reserved when the first block is cached and
    /// released when the class is flushed, so caching never allocates past that.
    free: Vec<Box<[u8]>>,
    /// A block was taken or given back since the last trim tick.
    used: bool,
}

impl Class {
    /// Frees every cached block and the list's own storage; returns how many blocks.
    fn flush(&mut self) -> usize {
        let count = self.free.len();
        self.free = Vec::new();
        count
    }
}

/// Free lists of ring blocks per size class. Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
pub struct Lookaside {
    classes: [Class; CLASSES],
    /// Blocks a class keeps at most.
    depth: usize,
    /// Length of a trim interval.
    idle: Duration,
    /// When the current trim interval ends: a class not used in it is freed then. `None`
    /// while nothing is cached (the next trim with something cached starts an interval).
    tick: Option<Instant>,
    stats: LookasideStats,
}

impl Lookaside {
    /// Free lists for blocks of `sizes` (duplicates share a list; 0 is no class), each keeping
    /// at most `depth` blocks, a list unused for an `idle` interval freed. Allocates nothing.
    /// Any IRQL.
    pub fn new(sizes: [usize; CLASSES], depth: usize, idle: Duration) -> Self {
        let mut classes: [Class; CLASSES] = Default::default();
        let mut count = 0;
        for size in sizes {
            if size == 0 || classes.iter().any(|class| class.size == size) {
                continue;
            }
            if let Some(class) = classes.get_mut(count) {
                class.size = size;
                count += 1;
            }
        }
        Self {
            classes,
            depth,
            idle,
            tick: None,
            stats: LookasideStats::default(),
        }
    }

    fn class_mut(&mut self, size: usize) -> Option<&mut Class> {
        self.classes
            .iter_mut()
            .find(|class| class.size == size && size != 0)
    }

    /// A block of `size` bytes: a cached one as it was left (a hit), else a fresh zeroed one
    /// (a miss). If the pool cannot give one, everything cached goes back to it and the
    /// allocation is tried once more; then `STATUS_INSUFFICIENT_RESOURCES`, nothing changed
    /// but the flush. Any IRQL ≤ DISPATCH_LEVEL.
    #[track_caller]
    pub fn take(&mut self, size: usize) -> Result<Box<[u8]>, NtStatus> {
        if let Some(class) = self.class_mut(size) {
            class.used = true;
            if let Some(block) = class.free.pop() {
                self.stats.hits = self.stats.hits.wrapping_add(1);
                return Ok(block);
            }
        }
        let block = match pool::try_zeroed_block(size) {
            Ok(block) => Ok(block),
            Err(status) => {
                self.stats.failures = self.stats.failures.wrapping_add(1);
                if self.cached_blocks() == 0 {
                    return Err(status);
                }
                self.flush();
                pool::try_zeroed_block(size).inspect_err(|_| {
                    self.stats.failures = self.stats.failures.wrapping_add(1);
                })
            }
        }?;
        self.stats.misses = self.stats.misses.wrapping_add(1);
        Ok(block)
    }

    /// Takes `block` back: onto its class's list if the list has room, else (or if its size
    /// is no class's, or the list's storage cannot be had) back to the pool.
    /// Any IRQL ≤ DISPATCH_LEVEL.
    pub fn give(&mut self, block: Box<[u8]>) {
        let depth = self.depth;
        let size = block.len();
        let kept = match self.class_mut(size) {
            Some(class) if class.free.len() < depth => {
                class.used = true;
                if class.free.capacity() == 0 && pool::try_reserve(&mut class.free, depth).is_err()
                {
                    Some(block)
                } else {
                    // Within the capacity reserved above: no allocation.
                    class.free.push(block);
                    None
                }
            }
            _ => Some(block),
        };
        if let Some(block) = kept {
            self.free(block);
        }
    }

    /// Gives `block` back to the pool, not to its list (the pool is short). Any IRQL
    /// ≤ DISPATCH_LEVEL.
    pub fn free(&mut self, block: Box<[u8]>) {
        drop(block);
        self.stats.freed = self.stats.freed.wrapping_add(1);
    }

    /// Gives every cached block back to the pool. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn flush(&mut self) {
        let mut freed = 0;
        for class in &mut self.classes {
            freed += class.flush();
        }
        self.stats.freed = self.stats.freed.wrapping_add(freed as u64);
        self.tick = None;
    }

    /// Gives the cached blocks of every class but `size`'s back to the pool (buffer
    /// pressure: new sockets take only `size` blocks). Any IRQL ≤ DISPATCH_LEVEL.
    pub fn flush_except(&mut self, size: usize) {
        let mut freed = 0;
        for class in self.classes.iter_mut().filter(|class| class.size != size) {
            freed += class.flush();
        }
        self.stats.freed = self.stats.freed.wrapping_add(freed as u64);
    }

    /// At the end of a trim interval, frees the classes that were not used during it, and
    /// starts the next interval if anything is still cached. Run by every pass.
    /// Any IRQL ≤ DISPATCH_LEVEL.
    pub fn trim(&mut self, now: Instant) {
        if self.cached_blocks() == 0 {
            self.tick = None;
            return;
        }
        let Some(tick) = self.tick else {
            self.tick = Some(now + self.idle);
            return;
        };
        if now < tick {
            return;
        }
        let mut freed = 0;
        for class in &mut self.classes {
            if !class.used {
                freed += class.flush();
            }
            class.used = false;
        }
        self.stats.freed = self.stats.freed.wrapping_add(freed as u64);
        self.tick = (self.cached_blocks() > 0).then_some(now + self.idle);
    }

    /// When the next trim is due, while anything is cached (an interval not started yet is
    /// reckoned from `now`). Any IRQL.
    pub fn trim_at(&self, now: Instant) -> Option<Instant> {
        if self.cached_blocks() == 0 {
            return None;
        }
        Some(self.tick.unwrap_or(now + self.idle))
    }

    fn cached_blocks(&self) -> usize {
        self.classes.iter().map(|class| class.free.len()).sum()
    }

    /// The counters, and what is cached now. Any IRQL.
    pub fn stats(&self) -> LookasideStats {
        LookasideStats {
            cached_blocks: self.cached_blocks(),
            cached_bytes: self
                .classes
                .iter()
                .map(|class| class.free.len().saturating_mul(class.size))
                .sum(),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: usize = 4096;
    const SMALL: usize = 512;

    fn lookaside(depth: usize) -> Lookaside {
        Lookaside::new([BIG, BIG, SMALL], depth, Duration::from_secs(5))
    }

    #[test]
    fn a_block_given_back_is_the_next_one_taken_as_it_was_left() {
        let mut cache = lookaside(4);
        let mut block = cache.take(BIG).expect("fresh");
        assert!(
            block.iter().all(|&byte| byte == 0),
            "a fresh block is zeroed"
        );
        block.fill(0xa5);
        let address = block.as_ptr();
        cache.give(block);
        let again = cache.take(BIG).expect("cached");
        assert_eq!(again.as_ptr(), address, "the same block");
        assert!(
            again.iter().all(|&byte| byte == 0xa5),
            "not zeroed again: smoltcp never reads ring bytes it did not write"
        );
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.freed), (1, 1, 0));
        assert_eq!((stats.cached_blocks, stats.cached_bytes), (0, 0));
    }

    #[test]
    fn each_size_class_serves_its_own_blocks() {
        let mut cache = lookaside(4);
        let big = cache.take(BIG).expect("big");
        let small = cache.take(SMALL).expect("small");
        let (big_at, small_at) = (big.as_ptr(), small.as_ptr());
        cache.give(small);
        cache.give(big);
        assert_eq!(cache.stats().cached_bytes, BIG + SMALL);
        let (small, big) = (
            cache.take(SMALL).expect("small"),
            cache.take(BIG).expect("big"),
        );
        assert_eq!((small.as_ptr(), big.as_ptr()), (small_at, big_at));
        // A size that is no class's is neither cached nor refused.
        let odd = cache.take(100).expect("odd");
        cache.give(odd);
        assert_eq!(cache.stats().cached_blocks, 0);
        assert_eq!(cache.stats().freed, 1);
    }

    #[test]
    fn a_class_keeps_at_most_depth_blocks_and_frees_the_rest() {
        let mut cache = lookaside(3);
        let blocks: Vec<_> = (0..5).map(|_| cache.take(BIG).expect("fresh")).collect();
        for block in blocks {
            cache.give(block);
        }
        let stats = cache.stats();
        assert_eq!(stats.cached_blocks, 3);
        assert_eq!(stats.cached_bytes, 3 * BIG);
        assert_eq!(stats.freed, 2);
        // The depth is per class: small blocks have their own room.
        let small: Vec<_> = (0..3).map(|_| cache.take(SMALL).expect("fresh")).collect();
        for block in small {
            cache.give(block);
        }
        assert_eq!(cache.stats().cached_blocks, 6);
    }

    #[test]
    fn a_failed_allocation_flushes_the_cache_and_reports_insufficient_resources() {
        let mut cache = Lookaside::new([BIG, usize::MAX, SMALL], 4, Duration::from_secs(5));
        let small = cache.take(SMALL).expect("small");
        cache.give(small);
        // No pool has `usize::MAX` bytes: the allocation fails, the cache is given back to the
        // pool to make room, and the retry fails too.
        assert_eq!(
            cache.take(usize::MAX).map(|_| ()),
            Err(NtStatus::INSUFFICIENT_RESOURCES)
        );
        let stats = cache.stats();
        assert_eq!(
            (stats.failures, stats.freed, stats.cached_blocks),
            (2, 1, 0)
        );
        // The cache still works.
        let big = cache.take(BIG).expect("big");
        cache.give(big);
        assert_eq!(cache.stats().cached_blocks, 1);
    }

    #[test]
    fn a_class_unused_for_a_whole_interval_is_freed() {
        let mut cache = lookaside(4);
        let start = Instant::from_secs(100);
        let big = cache.take(BIG).expect("big");
        let small = cache.take(SMALL).expect("small");
        cache.give(big);
        cache.give(small);
        assert_eq!(cache.trim_at(start), Some(start + Duration::from_secs(5)));
        cache.trim(start);
        // Both were used in the first interval: kept.
        cache.trim(start + Duration::from_secs(5));
        assert_eq!(cache.stats().cached_blocks, 2);
        // Only the big class is used in the second.
        let big = cache.take(BIG).expect("big");
        cache.give(big);
        cache.trim(start + Duration::from_secs(10));
        assert_eq!(cache.stats().cached_bytes, BIG);
        // Then nothing: all freed, and no trim is due any more.
        cache.trim(start + Duration::from_secs(15));
        assert_eq!(cache.stats().cached_blocks, 0);
        assert_eq!(cache.trim_at(start + Duration::from_secs(15)), None);
    }

    #[test]
    fn buffer_pressure_frees_every_class_but_the_small_one() {
        let mut cache = lookaside(4);
        let big = cache.take(BIG).expect("big");
        let small = cache.take(SMALL).expect("small");
        cache.give(big);
        cache.give(small);
        cache.flush_except(SMALL);
        assert_eq!(cache.stats().cached_bytes, SMALL);
        cache.flush();
        assert_eq!(cache.stats().cached_blocks, 0);
        assert_eq!(cache.stats().freed, 2);
    }
}
