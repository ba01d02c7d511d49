//! Deferred procedure calls on simulated processors.
//!
//! Each processor is a thread with a FIFO DPC queue, running DPC routines at DISPATCH_LEVEL.
//! As on NT:
//! - `KDPC.DpcData` is the "inserted" mark: non-null while the DPC sits in a queue (it points
//!   at that processor's queue marker), cleared when the DPC is dequeued, before its routine
//!   runs, so a DPC can be queued again while its routine executes;
//! - `KeInsertQueueDpc` returns FALSE for a DPC that is already queued;
//! - the same DPC routine can therefore run concurrently on two processors.
//!
//! A DPC queued from a processor goes to that processor's queue (NT's default "current
//! processor" targeting); one queued from any other thread goes to the processors in
//! round-robin order, which makes placement deterministic for tests.

use super::context::EntryScope;
use super::irql::{self, DISPATCH_LEVEL, PASSIVE_LEVEL};
use super::kernel::KernelInner;
use super::verifier::{self, Entry, RoutineFrame, Rule, Site};
use crate::nt::types::{KDPC, PKDEFERRED_ROUTINE};
use std::cell::Cell;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// `DpcObject`, the `KDPC.Type` of an initialised DPC.
const DPC_OBJECT: u8 = 0x13;
/// `MediumImportance`.
const MEDIUM_IMPORTANCE: u8 = 1;

thread_local! {
    /// The processor a model processor thread simulates.
    static PROCESSOR: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The DPC queues of all processors.
pub(crate) struct Processors {
    state: Mutex<DpcState>,
    /// Wakes processors (new DPC, shutdown) and flushers (a DPC finished).
    changed: Condvar,
    /// One byte per processor; `DpcData` of a queued DPC is the address of its queue's byte.
    markers: Box<[u8]>,
    next: AtomicUsize,
    /// How long each DPC routine call took (see [`DpcDurations`]).
    pub(crate) durations: DpcHistogram,
    /// DPCs in the queues (the queues' lengths, kept under the lock, read without it).
    queued: AtomicUsize,
    /// Set while a thread runs DPCs inline ([`run_inline`]).
    inline_runner: AtomicBool,
}

struct DpcState {
    queues: Vec<VecDeque<Queued>>,
    /// The sequence number of the DPC each processor is running.
    running: Vec<Option<u64>>,
    sequence: u64,
    shutdown: bool,
}

struct Queued {
    dpc: usize,
    sequence: u64,
}

impl Processors {
    pub(crate) fn new(count: usize) -> Processors {
        Processors {
            state: Mutex::new(DpcState {
                queues: (0..count).map(|_| VecDeque::new()).collect(),
                running: vec![None; count],
                sequence: 0,
                shutdown: false,
            }),
            changed: Condvar::new(),
            markers: vec![0; count].into_boxed_slice(),
            next: AtomicUsize::new(0),
            durations: DpcHistogram::default(),
            queued: AtomicUsize::new(0),
            inline_runner: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DpcState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn marker(&self, processor: usize) -> *mut c_void {
        self.markers[processor..].as_ptr().cast_mut().cast()
    }

    fn processor_of(&self, marker: *mut c_void) -> Option<usize> {
        let offset = (marker as usize).checked_sub(self.markers.as_ptr() as usize)?;
        (offset < self.markers.len()).then_some(offset)
    }

    pub(crate) fn shutdown(&self) {
        self.lock().shutdown = true;
        self.changed.notify_all();
    }

    /// A one-line description of the queues, for diagnostics.
    pub(crate) fn describe(&self) -> String {
        let state = self.lock();
        let queued: Vec<usize> = state.queues.iter().map(VecDeque::len).collect();
        let running = state.running.iter().filter(|r| r.is_some()).count();
        format!("DPCs queued per processor {queued:?}, DPCs running {running}")
    }
}

/// `KeInitializeDpc`.
///
/// # Safety
/// `dpc` points to writable `KDPC` storage that is not queued.
pub(crate) unsafe fn initialize(dpc: *mut KDPC, routine: PKDEFERRED_ROUTINE, context: *mut c_void) {
    // SAFETY: forwarded caller contract; KDPC is plain data, valid when zeroed.
    unsafe {
        dpc.write_bytes(0, 1);
        let d = &mut *dpc;
        d.Type = DPC_OBJECT;
        d.Importance = MEDIUM_IMPORTANCE;
        d.DeferredRoutine = routine;
        d.DeferredContext = context;
    }
}

/// `KeInsertQueueDpc`: FALSE if the DPC is already queued.
///
/// # Safety
/// `dpc` is an initialised DPC that stays valid until its routine has run or it is removed.
pub(crate) unsafe fn insert(
    kernel: &KernelInner,
    dpc: *mut KDPC,
    arg1: *mut c_void,
    arg2: *mut c_void,
) -> bool {
    let processors = &kernel.processors;
    let mut state = processors.lock();
    // SAFETY: forwarded caller contract; the DPC fields are only touched under this lock.
    let dpc_ref = unsafe { &mut *dpc };
    if !dpc_ref.DpcData.is_null() {
        return false;
    }
    let count = state.queues.len();
    let target = PROCESSOR
        .with(Cell::get)
        .unwrap_or_else(|| processors.next.fetch_add(1, Ordering::Relaxed) % count);
    dpc_ref.SystemArgument1 = arg1;
    dpc_ref.SystemArgument2 = arg2;
    dpc_ref.DpcData = processors.marker(target);
    state.sequence += 1;
    let sequence = state.sequence;
    state.queues[target].push_back(Queued {
        dpc: dpc as usize,
        sequence,
    });
    processors.queued.fetch_add(1, Ordering::AcqRel);
    kernel.activity.begin();
    drop(state);
    processors.changed.notify_all();
    if kernel.config.inline_dpcs {
        // A thread waiting for quiescence runs it.
        kernel.activity.wake();
    }
    true
}

/// `KeRemoveQueueDpc`: TRUE if the DPC was queued (it will not run for that insertion).
///
/// # Safety
/// `dpc` is an initialised DPC.
pub(crate) unsafe fn remove(kernel: &KernelInner, dpc: *mut KDPC) -> bool {
    let processors = &kernel.processors;
    let mut state = processors.lock();
    // SAFETY: forwarded caller contract; the DPC fields are only touched under this lock.
    let dpc_ref = unsafe { &mut *dpc };
    let Some(processor) = processors.processor_of(dpc_ref.DpcData) else {
        return false;
    };
    dpc_ref.DpcData = std::ptr::null_mut();
    let before = state.queues[processor].len();
    state.queues[processor].retain(|q| q.dpc != dpc as usize);
    let removed = before - state.queues[processor].len();
    processors.queued.fetch_sub(removed, Ordering::AcqRel);
    drop(state);
    processors.changed.notify_all();
    kernel.activity.end();
    true
}

/// `KeFlushQueuedDpcs`: waits until every DPC queued before the call has run. PASSIVE_LEVEL;
/// at DISPATCH_LEVEL it would wait for itself, so the model reports
/// [`Rule::WaitAtDispatch`] and returns at once.
pub(crate) fn flush(kernel: &KernelInner, site: Site) {
    let irql = irql::current_irql();
    if irql >= DISPATCH_LEVEL {
        verifier::report(
            Rule::WaitAtDispatch,
            site,
            format!("KeFlushQueuedDpcs at IRQL {irql}"),
        );
        return;
    }
    run_inline(kernel);
    let processors = &kernel.processors;
    let state = processors.lock();
    let target = state.sequence;
    let _state = processors
        .changed
        .wait_while(state, |s| {
            let queued = s.queues.iter().flatten().any(|q| q.sequence <= target);
            let running = s.running.iter().flatten().any(|&r| r <= target);
            queued || running
        })
        .unwrap_or_else(|e| e.into_inner());
}

/// A DPC taken off a queue to run: its routine and arguments, read under the DPC lock.
struct Call {
    dpc: *mut KDPC,
    routine: PKDEFERRED_ROUTINE,
    context: *mut c_void,
    arg1: *mut c_void,
    arg2: *mut c_void,
}

/// Takes the DPC at the head of processor `index`'s queue: clears its "inserted" mark (so it
/// can be queued again while its routine runs) and records it as running on `index`.
fn take(processors: &Processors, state: &mut DpcState, index: usize) -> Option<Call> {
    let queued = state.queues[index].pop_front()?;
    processors.queued.fetch_sub(1, Ordering::AcqRel);
    let dpc = queued.dpc as *mut KDPC;
    // SAFETY: a queued DPC stays valid until its routine has run (KeInsertQueueDpc contract);
    // its fields are only touched under the DPC lock, which the caller holds.
    let call = unsafe {
        let d = &mut *dpc;
        d.DpcData = std::ptr::null_mut();
        Call {
            dpc,
            routine: d.DeferredRoutine,
            context: d.DeferredContext,
            arg1: d.SystemArgument1,
            arg2: d.SystemArgument2,
        }
    };
    state.running[index] = Some(queued.sequence);
    Some(call)
}

/// Runs a taken DPC's routine (the calling thread is at DISPATCH_LEVEL, simulating processor
/// `index`), then marks the processor idle.
fn run(kernel: &KernelInner, index: usize, call: Call) {
    let processors = &kernel.processors;
    if let Some(routine) = call.routine {
        let _scope = EntryScope::enter(Arc::as_ptr(&kernel.pool), Entry::Dpc);
        let frame = RoutineFrame::begin();
        let started = Instant::now();
        // SAFETY: the driver initialised the DPC with this routine and context, and calls it
        // at DISPATCH_LEVEL as NT does.
        unsafe { routine(call.dpc, call.context, call.arg1, call.arg2) };
        processors.durations.record(started.elapsed());
        frame.end(Entry::Dpc, routine as usize);
    }
    processors.lock().running[index] = None;
    processors.changed.notify_all();
    kernel.activity.end();
}

/// The main loop of processor `index`.
pub(crate) fn processor_main(kernel: &Arc<KernelInner>, index: usize) {
    PROCESSOR.with(|p| p.set(Some(index)));
    irql::set(DISPATCH_LEVEL);
    let processors = &kernel.processors;
    loop {
        let mut state = processors
            .changed
            .wait_while(processors.lock(), |s| {
                !s.shutdown && s.queues[index].is_empty()
            })
            .unwrap_or_else(|e| e.into_inner());
        let Some(call) = take(processors, &mut state, index) else {
            return;
        };
        drop(state);
        run(kernel, index, call);
    }
}

/// With [`Config::inline_dpcs`](super::Config::inline_dpcs): runs the queued DPCs of every
/// processor on the calling thread, raised to DISPATCH_LEVEL as the processor of the queue,
/// and, at PASSIVE_LEVEL, the queued work items when no DPC is left, until nothing is queued.
/// Does nothing without that option, at DISPATCH_LEVEL or above (so never inside a DPC or
/// under a spin lock), or while another thread runs them so. Returns whether it ran any.
/// Below DISPATCH_LEVEL.
pub(crate) fn run_inline(kernel: &KernelInner) -> bool {
    let processors = &kernel.processors;
    let previous_irql = irql::current_irql();
    if !kernel.config.inline_dpcs
        || previous_irql >= DISPATCH_LEVEL
        || processors.inline_runner.swap(true, Ordering::AcqRel)
    {
        return false;
    }
    let previous_processor = PROCESSOR.with(Cell::get);
    let mut ran = false;
    // Bounded, so that a DPC that queues itself forever is reported by the caller's timeout
    // (wait_quiescent's) rather than spinning here.
    for _ in 0..INLINE_BATCH {
        let mut state = processors.lock();
        let index = state.queues.iter().position(|q| !q.is_empty());
        let call = index.and_then(|index| Some((index, take(processors, &mut state, index)?)));
        drop(state);
        match call {
            Some((index, call)) => {
                PROCESSOR.with(|p| p.set(Some(index)));
                irql::set(DISPATCH_LEVEL);
                run(kernel, index, call);
                irql::set(previous_irql);
                PROCESSOR.with(|p| p.set(previous_processor));
            }
            None if previous_irql == PASSIVE_LEVEL && super::work::run_one_inline(kernel) => {}
            None => break,
        }
        ran = true;
    }
    processors.inline_runner.store(false, Ordering::Release);
    ran
}

/// DPCs [`run_inline`] runs at most per call.
const INLINE_BATCH: usize = 10_000;

/// Whether a DPC or a work item waits in a queue (what [`run_inline`] would run). Any IRQL.
pub(crate) fn any_queued(kernel: &KernelInner) -> bool {
    kernel.processors.queued.load(Ordering::Acquire) > 0 || super::work::any_queued(kernel)
}

/// Sub-buckets per power of two in [`DpcHistogram`]: durations are kept to within 1/32
/// (about 3 %).
const SUB_BUCKETS: usize = 32;
/// Powers of two covered: 1 ns up to 2^40 ns (about 18 minutes); longer calls land in the
/// last bucket.
const OCTAVES: usize = 40;

/// A lock-free log-linear histogram of DPC routine durations (nanoseconds), filled by the
/// processor threads: a bucket's count is bumped with one atomic add per DPC call.
pub(crate) struct DpcHistogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for DpcHistogram {
    fn default() -> DpcHistogram {
        DpcHistogram {
            buckets: (0..SUB_BUCKETS * (OCTAVES + 1))
                .map(|_| AtomicU64::new(0))
                .collect(),
            count: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

/// The bucket of a duration of `ns` nanoseconds: values below `SUB_BUCKETS` get a bucket each;
/// above, each power of two is split into `SUB_BUCKETS` equal parts.
fn bucket_of(ns: u64) -> usize {
    if ns < SUB_BUCKETS as u64 {
        return ns as usize;
    }
    let octave = 63 - ns.leading_zeros() as usize; // >= log2(SUB_BUCKETS)
    let shift = octave - SUB_BUCKETS.trailing_zeros() as usize;
    let sub = ((ns >> shift) as usize) - SUB_BUCKETS;
    let index = (shift + 1) * SUB_BUCKETS + sub;
    index.min(SUB_BUCKETS * (OCTAVES + 1) - 1)
}

/// The largest duration (ns) that falls in bucket `index`.
fn bucket_upper(index: usize) -> u64 {
    if index < SUB_BUCKETS {
        return index as u64;
    }
    let shift = index / SUB_BUCKETS - 1;
    let sub = (index % SUB_BUCKETS + SUB_BUCKETS) as u64;
    ((sub + 1) << shift) - 1
}

impl DpcHistogram {
    fn record(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DpcDurations {
        DpcDurations {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            total: Duration::from_nanos(self.total_ns.load(Ordering::Relaxed)),
            max: Duration::from_nanos(self.max_ns.load(Ordering::Relaxed)),
        }
    }

    pub(crate) fn reset(&self) {
        for bucket in self.buckets.iter() {
            bucket.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
        self.total_ns.store(0, Ordering::Relaxed);
        self.max_ns.store(0, Ordering::Relaxed);
    }
}

/// A snapshot of how long the DPC routines the model ran took (wall-clock time of each call
/// of a `DeferredRoutine` on a processor thread, measured around the call only; the model's
/// queueing and bookkeeping are not included). A measurement hook for benchmarks: the
/// kernel guideline is at most 100 µs per DPC. Percentiles are bucket upper bounds, within
/// about 3 % of the true value; `max` is exact.
#[derive(Clone, Debug, Default)]
pub struct DpcDurations {
    buckets: Vec<u64>,
    /// DPC routine calls recorded.
    pub count: u64,
    /// Their total duration.
    pub total: Duration,
    /// The longest one.
    pub max: Duration,
}

impl DpcDurations {
    /// The duration that `quantile` (0.0–1.0) of the calls did not exceed; zero when none
    /// was recorded.
    pub fn percentile(&self, quantile: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(bucket_upper(index)).min(self.max);
            }
        }
        self.max
    }

    /// The calls recorded between `earlier` and this snapshot (counts, total; `max` is this
    /// snapshot's, as the histogram keeps no history of it).
    pub fn since(&self, earlier: &DpcDurations) -> DpcDurations {
        DpcDurations {
            buckets: self
                .buckets
                .iter()
                .zip(earlier.buckets.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            count: self.count.saturating_sub(earlier.count),
            total: self.total.saturating_sub(earlier.total),
            max: self.max,
        }
    }
}

impl super::kernel::KernelHandle {
    /// How long the DPC routines run so far took (see [`DpcDurations`]). Any IRQL.
    pub fn dpc_durations(&self) -> DpcDurations {
        self.0.processors.durations.snapshot()
    }

    /// Clears the DPC duration histogram (between benchmark workloads). Any IRQL.
    pub fn reset_dpc_durations(&self) {
        self.0.processors.durations.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_bound_their_values() {
        let mut last = 0;
        for ns in (0..5000).chain([1 << 20, 123_456_789, u64::from(u32::MAX), 1 << 39]) {
            let index = bucket_of(ns);
            assert!(index >= last || ns < 5000, "monotonic");
            if ns < 5000 {
                last = index;
            }
            assert!(bucket_upper(index) >= ns, "{ns} in bucket {index}");
            assert!(index == 0 || bucket_upper(index - 1) < ns, "{ns} tight");
            // Within 1/32 of the value.
            assert!(bucket_upper(index) - ns <= ns / 32 + 1, "{ns}");
        }
        assert_eq!(bucket_of(u64::MAX), SUB_BUCKETS * (OCTAVES + 1) - 1);
    }

    #[test]
    fn percentiles_count_and_max() {
        let histogram = DpcHistogram::default();
        assert_eq!(histogram.snapshot().percentile(0.5), Duration::ZERO);
        for us in 1..=100u64 {
            histogram.record(Duration::from_micros(us));
        }
        let snap = histogram.snapshot();
        assert_eq!(snap.count, 100);
        assert_eq!(snap.max, Duration::from_micros(100));
        assert_eq!(snap.total, Duration::from_micros(5050));
        let p50 = snap.percentile(0.5).as_nanos();
        assert!((50_000..=51_600).contains(&p50), "{p50}");
        assert_eq!(snap.percentile(1.0), Duration::from_micros(100));
        histogram.record(Duration::from_micros(7));
        assert_eq!(histogram.snapshot().since(&snap).count, 1);
        histogram.reset();
        assert_eq!(histogram.snapshot().count, 0);
    }
}
