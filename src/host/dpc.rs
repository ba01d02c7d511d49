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
use super::irql::{self, DISPATCH_LEVEL};
use super::kernel::KernelInner;
use super::verifier::{self, Entry, RoutineFrame, Rule, Site};
use crate::nt::types::{KDPC, PKDEFERRED_ROUTINE};
use std::cell::Cell;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

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
    kernel.activity.begin();
    drop(state);
    processors.changed.notify_all();
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
    state.queues[processor].retain(|q| q.dpc != dpc as usize);
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
        let Some(queued) = state.queues[index].pop_front() else {
            return;
        };
        let dpc = queued.dpc as *mut KDPC;
        // SAFETY: a queued DPC stays valid until its routine has run (KeInsertQueueDpc
        // contract); its fields are only touched under the lock held here.
        let (routine, context, arg1, arg2) = unsafe {
            let d = &mut *dpc;
            d.DpcData = std::ptr::null_mut();
            (
                d.DeferredRoutine,
                d.DeferredContext,
                d.SystemArgument1,
                d.SystemArgument2,
            )
        };
        state.running[index] = Some(queued.sequence);
        drop(state);
        if let Some(routine) = routine {
            let _scope = EntryScope::enter(Arc::as_ptr(&kernel.pool), Entry::Dpc);
            let frame = RoutineFrame::begin();
            // SAFETY: the driver initialised the DPC with this routine and context, and calls
            // it at DISPATCH_LEVEL as NT does.
            unsafe { routine(dpc, context, arg1, arg2) };
            frame.end(Entry::Dpc, routine as usize);
        }
        processors.lock().running[index] = None;
        processors.changed.notify_all();
        kernel.activity.end();
    }
}
