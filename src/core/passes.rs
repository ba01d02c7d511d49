//! How long each core pass holds the core: the figure behind the kernel's guideline that a DPC
//! (and so anything that holds a spin lock at DISPATCH_LEVEL) runs for at most about 100 µs.
//!
//! A pass is one [`Stack`](crate::core::stack::Stack) run of apply-and-poll rounds under the
//! core lock, in the DPC or in a dispatching thread (the fast path), and the application of
//! client events' outcomes after it. Each is timed with
//! [`processor_nanos`](crate::nt::time::processor_nanos): processor time, not wall time, so
//! that a host model thread that Linux deschedules mid-pass does not fake a long pass; in the
//! kernel a pass at DISPATCH_LEVEL is not preempted and the two agree.
//!
//! The meter keeps the count, the total, the longest and a histogram by powers of two, all
//! atomics written by whoever runs the core (one at a time, `core::claim`) and read by
//! anyone. Any IRQL.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

/// Histogram buckets: bucket `i` counts passes of `[2^i, 2^(i+1))` ns (bucket 0 also takes
/// 0 ns), the last one everything from about 2.1 s up.
pub const BUCKETS: usize = 32;

/// The kernel's guideline for one DPC, in nanoseconds: passes longer than this are counted.
pub const BUDGET_NANOS: u64 = 100_000;

/// The pass meter of one stack.
pub struct PassMeter {
    count: AtomicU64,
    total: AtomicU64,
    longest: AtomicU64,
    over_budget: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

/// What a [`PassMeter`] has counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Passes measured.
    pub count: u64,
    /// Their total processor time, in nanoseconds.
    pub total_nanos: u64,
    /// The longest one, in nanoseconds.
    pub longest_nanos: u64,
    /// Passes longer than [`BUDGET_NANOS`].
    pub over_budget: u64,
    /// Passes by powers of two of nanoseconds (see [`BUCKETS`]).
    pub buckets: [u64; BUCKETS],
}

impl Default for PassMeter {
    fn default() -> Self {
        Self {
            count: AtomicU64::new(0),
            total: AtomicU64::new(0),
            longest: AtomicU64::new(0),
            over_budget: AtomicU64::new(0),
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
        }
    }
}

/// The bucket of a pass of `nanos`: the position of its highest set bit. Pure.
fn bucket(nanos: u64) -> usize {
    let bits = u64::BITS - nanos.leading_zeros();
    // `bits` is at most 64; the last bucket takes everything from 2^(BUCKETS - 1) up.
    usize::try_from(bits.saturating_sub(1))
        .unwrap_or(BUCKETS)
        .min(BUCKETS - 1)
}

impl PassMeter {
    /// Records a pass of `nanos`. Whether it is the longest so far and over the budget (worth
    /// a line in the log). Any IRQL.
    pub fn record(&self, nanos: u64) -> bool {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(nanos, Ordering::Relaxed);
        if let Some(slot) = self.buckets.get(bucket(nanos)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        let over = nanos > BUDGET_NANOS;
        if over {
            self.over_budget.fetch_add(1, Ordering::Relaxed);
        }
        let longest = self.longest.fetch_max(nanos, Ordering::Relaxed);
        over && nanos > longest
    }

    /// What has been counted. Any IRQL.
    pub fn stats(&self) -> PassStats {
        PassStats {
            count: self.count.load(Ordering::Relaxed),
            total_nanos: self.total.load(Ordering::Relaxed),
            longest_nanos: self.longest.load(Ordering::Relaxed),
            over_budget: self.over_budget.load(Ordering::Relaxed),
            buckets: core::array::from_fn(|i| {
                self.buckets
                    .get(i)
                    .map_or(0, |slot| slot.load(Ordering::Relaxed))
            }),
        }
    }

    /// Starts over (a benchmark's next workload). Any IRQL.
    pub fn reset(&self) {
        for counter in [&self.count, &self.total, &self.longest, &self.over_budget] {
            counter.store(0, Ordering::Relaxed);
        }
        for slot in &self.buckets {
            slot.store(0, Ordering::Relaxed);
        }
    }
}

impl PassStats {
    /// An upper bound of the `per_mille`th percentile of the passes, in nanoseconds: the top
    /// of the bucket it falls in (never above the longest pass). 0 with no pass. Pure.
    pub fn percentile_nanos(&self, per_mille: u64) -> u64 {
        let rank = self
            .count
            .saturating_mul(per_mille.min(1000))
            .div_ceil(1000);
        let mut seen = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(*n);
            if seen >= rank.max(1) {
                let top = 1u64.checked_shl(u32::try_from(i + 1).unwrap_or(64));
                return top.unwrap_or(u64::MAX).min(self.longest_nanos);
            }
        }
        self.longest_nanos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_and_the_last_takes_the_rest() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(3), 1);
        assert_eq!(bucket(1024), 10);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn the_meter_keeps_the_longest_the_budget_and_percentiles() {
        let meter = PassMeter::default();
        // 98 short passes, one just over the budget, one long.
        for _ in 0..98 {
            assert!(!meter.record(5_000));
        }
        assert!(
            meter.record(150_000),
            "the first pass over the budget is news"
        );
        assert!(
            !meter.record(120_000),
            "a shorter one over the budget is not"
        );
        assert!(meter.record(2_000_000));
        let stats = meter.stats();
        assert_eq!(stats.count, 101);
        assert_eq!(stats.longest_nanos, 2_000_000);
        assert_eq!(stats.over_budget, 3);
        assert_eq!(
            stats.total_nanos,
            98 * 5_000 + 150_000 + 120_000 + 2_000_000
        );
        // 5,000 ns is in [4,096, 8,192): the median's bound is 8,192.
        assert_eq!(stats.percentile_nanos(500), 8_192);
        // The 99th is the 100th pass of 101: 150,000 in [131,072, 262,144).
        assert_eq!(stats.percentile_nanos(990), 262_144);
        assert_eq!(
            stats.percentile_nanos(1000),
            2_000_000,
            "capped at the longest"
        );
        meter.reset();
        assert_eq!(meter.stats(), PassStats::default());
        assert_eq!(meter.stats().percentile_nanos(500), 0);
    }
}
