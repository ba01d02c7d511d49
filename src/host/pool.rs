//! Pool tracking, the host's global allocator, and fault injection.
//!
//! On the kernel the driver's global allocator is non-paged pool with the driver's tag
//! ([`crate::nt::pool::TAG`]), so every `Box`/`Vec` of the driver (and of smoltcp) is pool. On
//! the host, [`TrackingAllocator`] is the process's `#[global_allocator]`:
//! - allocations made while the current thread is inside the driver (see
//!   `super::context`) are recorded in that kernel's `PoolTracker` under the driver's tag,
//!   with the driver's call site ([`note_call_site`]) or entry point, and fault injection may
//!   fail them (return null);
//! - every other allocation (tests, the model) goes straight to the system allocator.
//!
//! Every block, tracked or not, carries a `BlockHeader` just below the pointer handed out, so
//! `dealloc` knows whether and where a block was tracked without a lookup. The tracker's own
//! bookkeeping allocates through this allocator too; a reentrancy flag makes those nested
//! allocations untracked. A tracked block holds a strong count on its tracker, so a block freed
//! after its kernel is gone still finds valid bookkeeping. That count is the only cross-kernel
//! state: the "registry" of trackers is the set of live blocks pointing at them.
//!
//! `ExAllocatePoolWithTag`/`ExFreePoolWithTag` use the same blocks with an explicit tag.

use super::AddressMap;
use super::context::{self, ModelScope};
use super::verifier::{self, Rule, Site};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Records the driver's call site for its next allocation. The `nt::pool` wrappers
/// (`#[track_caller]`) call this just before allocating, so that leak reports point at driver
/// code rather than at `alloc`. Any IRQL.
pub fn note_call_site(loc: &'static Location<'static>) {
    context::note_site(loc);
}

/// Which allocations made on the driver's behalf fail on purpose.
///
/// The candidates are the driver's `alloc` allocations, `ExAllocatePoolWithTag` and
/// `IoAllocateWorkItem`, counted from the moment the policy is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaultInjection {
    #[default]
    None,
    /// Fail exactly the `n`th candidate (1-based).
    FailNth(u64),
    /// Fail each candidate with probability `percent`/100, from a deterministic generator
    /// seeded with `seed`.
    Random { seed: u64, percent: u8 },
}

/// One live tracked block.
#[derive(Clone, Debug)]
pub struct PoolRecord {
    pub address: usize,
    pub size: usize,
    pub tag: u32,
    pub site: Site,
    /// Allocation order within the kernel.
    pub sequence: u64,
}

impl fmt::Display for PoolRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes tagged '{}' at {:#x}, allocated at {}",
            self.size,
            tag_name(self.tag),
            self.address,
            self.site
        )
    }
}

/// A pool tag as the four characters pool tools show.
pub fn tag_name(tag: u32) -> String {
    tag.to_le_bytes()
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Counters of one kernel's tracked pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Tracked blocks currently allocated.
    pub live_blocks: usize,
    pub live_bytes: usize,
    /// Tracked allocations that succeeded, since the kernel started.
    pub allocations: u64,
    /// Candidates failed by fault injection.
    pub injected_failures: u64,
    /// Allocations refused because the pool was at its limit (`Config::nonpaged_pool_limit`).
    pub limit_failures: u64,
    /// Live blocks and bytes per tag.
    pub by_tag: BTreeMap<u32, (usize, usize)>,
}

/// The pool bookkeeping of one kernel.
pub(crate) struct PoolTracker {
    records: Mutex<AddressMap<PoolRecord>>,
    fault: Mutex<FaultState>,
    sequence: AtomicU64,
    injected_failures: AtomicU64,
    /// Live bytes of tracked blocks, and the most there may be.
    live_bytes: AtomicUsize,
    limit: usize,
    /// Allocations refused because they would have gone past `limit`.
    limit_failures: AtomicU64,
}

struct FaultState {
    policy: FaultInjection,
    candidates: u64,
    rng: u64,
}

impl PoolTracker {
    pub(crate) fn new(policy: FaultInjection, limit: Option<usize>) -> Arc<PoolTracker> {
        let tracker = PoolTracker {
            records: Mutex::new(AddressMap::default()),
            fault: Mutex::new(FaultState {
                policy: FaultInjection::None,
                candidates: 0,
                rng: 0,
            }),
            sequence: AtomicU64::new(0),
            injected_failures: AtomicU64::new(0),
            live_bytes: AtomicUsize::new(0),
            limit: limit.unwrap_or(usize::MAX),
            limit_failures: AtomicU64::new(0),
        };
        tracker.set_fault(policy);
        Arc::new(tracker)
    }

    pub(crate) fn set_fault(&self, policy: FaultInjection) {
        let mut fault = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        fault.policy = policy;
        fault.candidates = 0;
        fault.rng = match policy {
            FaultInjection::Random { seed, .. } => seed,
            _ => 0,
        };
    }

    /// Counts one candidate allocation and decides whether it fails.
    pub(crate) fn should_fail(&self) -> bool {
        let mut fault = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        fault.candidates += 1;
        let fail = match fault.policy {
            FaultInjection::None => false,
            FaultInjection::FailNth(n) => fault.candidates == n,
            FaultInjection::Random { percent, .. } => {
                fault.rng = fault.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = fault.rng;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                z % 100 < u64::from(percent)
            }
        };
        if fail {
            self.injected_failures.fetch_add(1, Ordering::Relaxed);
        }
        fail
    }

    /// Takes `size` bytes out of the pool, or refuses (and counts it) when the pool would go
    /// past its limit. A granted reservation is given back by [`PoolTracker::remove`].
    fn reserve(&self, size: usize) -> bool {
        let granted = self
            .live_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| {
                live.checked_add(size).filter(|&total| total <= self.limit)
            })
            .is_ok();
        if !granted {
            self.limit_failures.fetch_add(1, Ordering::Relaxed);
        }
        granted
    }

    fn insert(&self, address: usize, size: usize, tag: u32) {
        let site = Site {
            location: context::take_noted_site(),
            entry: context::entry(),
        };
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let record = PoolRecord {
            address,
            size,
            tag,
            site,
            sequence,
        };
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(address, record);
    }

    fn remove(&self, address: usize) {
        let record = self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&address);
        if let Some(record) = record {
            self.live_bytes.fetch_sub(record.size, Ordering::Relaxed);
        }
    }

    /// The bytes of the live blocks, read without walking them (a benchmark samples it under
    /// load, where [`PoolTracker::stats`] would sort every record each time).
    pub(crate) fn live_bytes(&self) -> usize {
        self.live_bytes.load(Ordering::Relaxed)
    }

    /// The live blocks, in allocation order.
    pub(crate) fn live(&self) -> Vec<PoolRecord> {
        let _model = ModelScope::enter();
        let mut live: Vec<PoolRecord> = self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        live.sort_by_key(|r| r.sequence);
        live
    }

    pub(crate) fn stats(&self) -> PoolStats {
        let _model = ModelScope::enter();
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_tag = BTreeMap::new();
        let mut live_bytes = 0;
        // Counted in place, without the copy and sort of `live`: the fuzz harnesses ask after
        // every input.
        for record in records.values() {
            let entry: &mut (usize, usize) = by_tag.entry(record.tag).or_default();
            entry.0 += 1;
            entry.1 += record.size;
            live_bytes += record.size;
        }
        PoolStats {
            live_blocks: records.len(),
            live_bytes,
            allocations: self.sequence.load(Ordering::Relaxed),
            injected_failures: self.injected_failures.load(Ordering::Relaxed),
            limit_failures: self.limit_failures.load(Ordering::Relaxed),
            by_tag,
        }
    }
}

/// What kind of allocation a block came from.
const KIND_ALLOC: u32 = 0x5255_5354;
const KIND_POOL: u32 = 0x504F_4F4C;

/// The header below every block. It sits in the last [`HEADER`] bytes of the padding in front
/// of the block, which is `max(HEADER, align)` bytes long.
#[repr(C)]
struct BlockHeader {
    /// A strong count of the tracker, or null for untracked blocks.
    tracker: *const PoolTracker,
    /// The requested size (needed to free `ExAllocatePoolWithTag` blocks).
    size: usize,
    tag: u32,
    kind: u32,
}

const HEADER: usize = 32;
const MIN_ALIGN: usize = 16;
const _: () = assert!(size_of::<BlockHeader>() <= HEADER);

/// The padding in front of a block of alignment `align`: a multiple of `align` that holds
/// the header.
fn padding(align: usize) -> usize {
    HEADER.max(align)
}

/// The layout of the underlying system block, or `None` on overflow.
fn outer_layout(layout: Layout) -> Option<Layout> {
    let size = layout.size().checked_add(padding(layout.align()))?;
    Layout::from_size_align(size, layout.align().max(MIN_ALIGN)).ok()
}

/// # Safety
/// `ptr` was returned by [`allocate`].
unsafe fn header(ptr: *mut u8) -> *mut BlockHeader {
    // SAFETY: the header occupies the HEADER bytes just below every block.
    unsafe { ptr.sub(HEADER).cast() }
}

thread_local! {
    /// Set while the tracker's own bookkeeping runs on this thread.
    static IN_TRACKER: Cell<bool> = const { Cell::new(false) };
}

/// Marks the tracker busy on this thread; `None` if it already is (a nested allocation).
struct Reentry;

impl Reentry {
    fn enter() -> Option<Reentry> {
        let was = IN_TRACKER.try_with(|f| f.replace(true)).unwrap_or(true);
        (!was).then_some(Reentry)
    }
}

impl Drop for Reentry {
    fn drop(&mut self) {
        let _ = IN_TRACKER.try_with(|f| f.set(false));
    }
}

/// Allocates a block with its header; tracked in `tracker` when it is non-null.
///
/// # Safety
/// `layout` has a non-zero size; `tracker` is null or a live tracker.
unsafe fn allocate(layout: Layout, tracker: *const PoolTracker, tag: u32, kind: u32) -> *mut u8 {
    let Some(outer) = outer_layout(layout) else {
        return std::ptr::null_mut();
    };
    let reentry = if tracker.is_null() {
        None
    } else {
        Reentry::enter()
    };
    // SAFETY: checked by the caller: the tracker is live.
    let tracker = reentry.as_ref().map(|_| unsafe { &*tracker });
    if tracker.is_some_and(PoolTracker::should_fail) {
        return std::ptr::null_mut();
    }
    if tracker.is_some_and(|t| !t.reserve(layout.size())) {
        return std::ptr::null_mut();
    }
    // SAFETY: `outer` has a non-zero size.
    let base = unsafe { System.alloc(outer) };
    if base.is_null() {
        if let Some(tracker) = tracker {
            tracker
                .live_bytes
                .fetch_sub(layout.size(), Ordering::Relaxed);
        }
        return base;
    }
    // SAFETY: the padding is inside the block and at least HEADER bytes.
    let ptr = unsafe { base.add(padding(layout.align())) };
    let tracker_ptr = tracker.map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: the header lies in the padding, suitably aligned (ptr is 16-aligned).
    unsafe {
        header(ptr).write(BlockHeader {
            tracker: tracker_ptr,
            size: layout.size(),
            tag,
            kind,
        })
    };
    if let Some(tracker) = tracker {
        // SAFETY: `tracker` lives in an Arc (PoolTracker::new); the block now owns one count.
        unsafe { Arc::increment_strong_count(tracker_ptr) };
        tracker.insert(ptr as usize, layout.size(), tag);
    }
    ptr
}

/// Frees a block from [`allocate`].
///
/// # Safety
/// `ptr` came from [`allocate`] with `layout` and is freed once.
unsafe fn free(ptr: *mut u8, layout: Layout) {
    // SAFETY: forwarded caller contract.
    let tracker = unsafe { (*header(ptr)).tracker };
    if !tracker.is_null() {
        let reentry = Reentry::enter();
        // SAFETY: the block holds a strong count on its tracker, released just below.
        unsafe { &*tracker }.remove(ptr as usize);
        drop(reentry);
        // SAFETY: releases the count taken in `allocate`.
        unsafe { Arc::decrement_strong_count(tracker) };
    }
    let Some(outer) = outer_layout(layout) else {
        return;
    };
    // SAFETY: the block was allocated with this outer layout at this base.
    unsafe { System.dealloc(ptr.sub(padding(layout.align())), outer) };
}

/// The process's global allocator on the host: see the module documentation.
pub struct TrackingAllocator;

#[global_allocator]
static GLOBAL: TrackingAllocator = TrackingAllocator;

// SAFETY: blocks come from `System` with room for the header and the requested alignment in
// front; `dealloc` and `realloc` free exactly the block `alloc` obtained.
unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let tracker = context::driver_tracker();
        // SAFETY: GlobalAlloc callers pass a non-zero size; the tracker marker is only set while
        // its kernel is alive.
        unsafe { allocate(layout, tracker, crate::nt::pool::TAG, KIND_ALLOC) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { free(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `alloc` with `layout`.
        let tracked = !unsafe { (*header(ptr)).tracker }.is_null();
        if tracked || !context::driver_tracker().is_null() {
            // Tracking changes hands or bookkeeping must follow the block: allocate, copy, free.
            // SAFETY: `new_size` with the old alignment is a valid layout (caller contract).
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: non-zero size (caller contract).
            let new = unsafe { self.alloc(new_layout) };
            if !new.is_null() {
                // SAFETY: both blocks are at least min(size, new_size) bytes and distinct.
                unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
                // SAFETY: forwarded caller contract.
                unsafe { self.dealloc(ptr, layout) };
            }
            return new;
        }
        let Some(outer) = outer_layout(layout) else {
            return std::ptr::null_mut();
        };
        let pad = padding(layout.align());
        let Some(new_outer_size) = new_size.checked_add(pad) else {
            return std::ptr::null_mut();
        };
        // SAFETY: the block was allocated by System with `outer`; the padding (and the header
        // in it) moves with the block.
        let base = unsafe { System.realloc(ptr.sub(pad), outer, new_outer_size) };
        if base.is_null() {
            return base;
        }
        // SAFETY: the new block keeps the same padding in front.
        let new = unsafe { base.add(pad) };
        // SAFETY: the header moved with the block.
        unsafe { (*header(new)).size = new_size };
        new
    }
}

/// The alignment of pool blocks (`MEMORY_ALLOCATION_ALIGNMENT` on x64).
const POOL_ALIGN: usize = 16;

/// `ExAllocatePoolWithTag`: a tracked block of `size` bytes tagged `tag`, attributed to the
/// current kernel; null when fault injection fails it. Any IRQL ≤ DISPATCH_LEVEL.
pub(crate) fn allocate_pool(size: usize, tag: u32) -> *mut u8 {
    let kernel = context::try_current();
    let tracker = kernel
        .as_ref()
        .map_or(std::ptr::null(), |k| Arc::as_ptr(&k.pool));
    let Ok(layout) = Layout::from_size_align(size.max(1), POOL_ALIGN) else {
        return std::ptr::null_mut();
    };
    // SAFETY: non-zero size; the tracker is kept alive by `kernel` for the call.
    unsafe { allocate(layout, tracker, tag, KIND_POOL) }
}

/// `ExFreePoolWithTag`: checks that `ptr` is a pool block with tag `tag` ([`Rule::BadPoolFree`]
/// otherwise, and the block is not freed) and frees it.
///
/// # Safety
/// `ptr` is null or a block allocated by this module.
pub(crate) unsafe fn free_pool(ptr: *mut u8, tag: u32, site: Site) {
    if ptr.is_null() {
        verifier::report(
            Rule::BadPoolFree,
            site,
            "ExFreePoolWithTag(NULL)".to_owned(),
        );
        return;
    }
    // SAFETY: forwarded caller contract: the header is below the block.
    let (kind, block_tag, size) = unsafe {
        let h = &*header(ptr);
        (h.kind, h.tag, h.size)
    };
    if kind != KIND_POOL {
        verifier::report(
            Rule::BadPoolFree,
            site,
            format!("ExFreePoolWithTag({ptr:p}) on a block that is not from ExAllocatePoolWithTag"),
        );
        return;
    }
    if block_tag != tag {
        verifier::report(
            Rule::BadPoolFree,
            site,
            format!(
                "ExFreePoolWithTag({ptr:p}, '{}') on a block tagged '{}'",
                tag_name(tag),
                tag_name(block_tag)
            ),
        );
        return;
    }
    // SAFETY: a pool block allocated with this layout by `allocate_pool`.
    unsafe {
        free(
            ptr,
            Layout::from_size_align_unchecked(size.max(1), POOL_ALIGN),
        )
    };
}

impl super::kernel::KernelHandle {
    /// The driver's tracked pool: counters and live blocks per tag. Any IRQL.
    pub fn pool_stats(&self) -> PoolStats {
        let _api = self.api();
        self.0.pool.stats()
    }

    /// The bytes of the driver's live pool blocks (`pool_stats().live_bytes`, without the
    /// walk over every block). Any IRQL.
    pub fn pool_live_bytes(&self) -> usize {
        let _api = self.api();
        self.0.pool.live_bytes()
    }

    /// The driver's live pool blocks, in allocation order. Any IRQL.
    pub fn pool_records(&self) -> Vec<PoolRecord> {
        let _api = self.api();
        self.0.pool.live()
    }

    /// Replaces the fault injection policy; its candidate count restarts at zero. Any IRQL.
    pub fn set_fault_injection(&self, policy: FaultInjection) {
        let _api = self.api();
        self.0.pool.set_fault(policy);
    }
}
