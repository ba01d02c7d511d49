//! Work items (`IoAllocateWorkItem`, `IoQueueWorkItem`, `IoFreeWorkItem`) and the system worker
//! threads that run them at PASSIVE_LEVEL.
//!
//! As on NT, a work item is dequeued before its routine runs, so the routine may queue it again
//! or free it. Queueing an item that is already queued (which corrupts the queue on NT) and
//! freeing a queued item are verifier violations. The worker threads also run the model's own
//! deferred work, such as an `IRP_MJ_CLOSE` triggered by a dereference at DISPATCH_LEVEL.

use super::AddressMap;
use super::context::{EntryScope, ModelScope};
use super::irql::{self, PASSIVE_LEVEL};
use super::kernel::KernelInner;
use super::verifier::{self, Entry, RoutineFrame, Rule, Site};
use crate::nt::types::{DEVICE_OBJECT, IO_WORKITEM, PIO_WORKITEM_ROUTINE};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// The model's `IO_WORKITEM`.
struct WorkItem {
    device: usize,
    queued: bool,
    routine: PIO_WORKITEM_ROUTINE,
    context: usize,
}

enum Job {
    /// A driver work item, by address.
    Item(usize),
    /// The model's own deferred work.
    Model(Box<dyn FnOnce() + Send>),
}

#[derive(Default)]
pub(crate) struct Workers {
    state: Mutex<WorkState>,
    changed: Condvar,
    /// Jobs in the queue (its length, kept under the lock, read without it).
    queued: AtomicUsize,
}

#[derive(Default)]
struct WorkState {
    queue: VecDeque<Job>,
    /// The live work items, by address.
    items: AddressMap<WorkItem>,
    shutdown: bool,
}

impl Workers {
    fn lock(&self) -> std::sync::MutexGuard<'_, WorkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn shutdown(&self) {
        self.lock().shutdown = true;
        self.changed.notify_all();
    }

    /// The addresses of the live work items and their devices.
    pub(crate) fn live_items(&self) -> Vec<(usize, usize)> {
        self.lock()
            .items
            .iter()
            .map(|(&a, i)| (a, i.device))
            .collect()
    }

    /// Queues the model's own work, to run at PASSIVE_LEVEL on a worker thread.
    pub(crate) fn queue_model(&self, kernel: &KernelInner, job: Box<dyn FnOnce() + Send>) {
        kernel.activity.begin();
        self.lock().queue.push_back(Job::Model(job));
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
        if kernel.config.inline_dpcs {
            kernel.activity.wake();
        }
    }
}

/// `IoAllocateWorkItem`: null when fault injection fails it.
pub(crate) fn allocate(kernel: &KernelInner, device: *mut DEVICE_OBJECT) -> *mut IO_WORKITEM {
    if kernel.pool.should_fail() {
        return std::ptr::null_mut();
    }
    // The item's address is its identity; a one-byte box gives a unique, stable one.
    let address = Box::into_raw(Box::new(0u8)) as usize;
    kernel.workers.lock().items.insert(
        address,
        WorkItem {
            device: device as usize,
            queued: false,
            routine: None,
            context: 0,
        },
    );
    address as *mut IO_WORKITEM
}

/// `IoQueueWorkItem`.
pub(crate) fn queue(
    kernel: &KernelInner,
    item: *mut IO_WORKITEM,
    routine: PIO_WORKITEM_ROUTINE,
    context: *mut c_void,
    site: Site,
) {
    let mut state = kernel.workers.lock();
    let Some(work) = state.items.get_mut(&(item as usize)) else {
        drop(state);
        verifier::report(
            Rule::InvalidObject,
            site,
            format!("IoQueueWorkItem({item:p}): not a live work item"),
        );
        return;
    };
    if work.queued {
        drop(state);
        verifier::report(
            Rule::WorkItemQueuedTwice,
            site,
            format!("IoQueueWorkItem({item:p}) on a work item that is already queued"),
        );
        return;
    }
    work.queued = true;
    work.routine = routine;
    work.context = context as usize;
    state.queue.push_back(Job::Item(item as usize));
    kernel.workers.queued.fetch_add(1, Ordering::AcqRel);
    kernel.activity.begin();
    drop(state);
    kernel.workers.changed.notify_one();
    if kernel.config.inline_dpcs {
        kernel.activity.wake();
    }
}

/// `IoFreeWorkItem`.
pub(crate) fn free(kernel: &KernelInner, item: *mut IO_WORKITEM, site: Site) {
    let mut state = kernel.workers.lock();
    let queued = state.items.get(&(item as usize)).map(|work| work.queued);
    match queued {
        None => {
            drop(state);
            verifier::report(
                Rule::InvalidObject,
                site,
                format!("IoFreeWorkItem({item:p}): not a live work item"),
            );
        }
        Some(true) => {
            drop(state);
            verifier::report(
                Rule::WorkItemFreedWhileQueued,
                site,
                format!("IoFreeWorkItem({item:p}) while the item is queued"),
            );
        }
        Some(false) => {
            state.items.remove(&(item as usize));
            drop(state);
            // SAFETY: allocated by `allocate` as a Box<u8> and freed once (it was live).
            drop(unsafe { Box::from_raw(item.cast::<u8>()) });
        }
    }
}

/// The main loop of a system worker thread.
pub(crate) fn worker_main(kernel: &Arc<KernelInner>) {
    irql::set(PASSIVE_LEVEL);
    let workers = &kernel.workers;
    loop {
        let mut state = workers
            .changed
            .wait_while(workers.lock(), |s| !s.shutdown && s.queue.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        let Some(job) = state.queue.pop_front() else {
            return;
        };
        workers.queued.fetch_sub(1, Ordering::AcqRel);
        run(kernel, state, job);
    }
}

/// Runs one job taken off the queue (`state`, released before the job runs) at the calling
/// thread's PASSIVE_LEVEL.
fn run(kernel: &KernelInner, mut state: std::sync::MutexGuard<'_, WorkState>, job: Job) {
    match job {
        Job::Model(job) => {
            drop(state);
            let _model = ModelScope::enter();
            job();
        }
        Job::Item(address) => {
            let found = state.items.get_mut(&address).map(|item| {
                item.queued = false;
                (item.routine, item.device, item.context)
            });
            drop(state);
            if let Some((Some(routine), device, context)) = found {
                let _scope = EntryScope::enter(Arc::as_ptr(&kernel.pool), Entry::WorkItem);
                let frame = RoutineFrame::begin();
                // SAFETY: the driver queued this routine with this context for this device;
                // work item routines run at PASSIVE_LEVEL on a system thread.
                unsafe { routine(device as *mut DEVICE_OBJECT, context as *mut c_void) };
                frame.end(Entry::WorkItem, routine as usize);
            }
        }
    }
    kernel.activity.end();
}

/// With [`Config::inline_dpcs`](super::Config::inline_dpcs): runs the job at the head of the
/// queue on the calling thread (at PASSIVE_LEVEL, as a worker thread would). Returns whether
/// there was one.
pub(crate) fn run_one_inline(kernel: &KernelInner) -> bool {
    let mut state = kernel.workers.lock();
    match state.queue.pop_front() {
        Some(job) => {
            kernel.workers.queued.fetch_sub(1, Ordering::AcqRel);
            run(kernel, state, job);
            true
        }
        None => false,
    }
}

/// Whether a job waits in the queue (read without the lock). Any IRQL.
pub(crate) fn any_queued(kernel: &KernelInner) -> bool {
    kernel.workers.queued.load(Ordering::Acquire) > 0
}
