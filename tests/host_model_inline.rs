//! Host model self-tests of `Config::inline_dpcs` (the fuzz targets' setting): DPCs and work
//! items run on the thread that waits for them, at their IRQL, and only when it waits.

mod host_model_support;

use host_model_support::Slot;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::thread::ThreadId;
use std::time::Duration;
use tcpip::host::{Config, DISPATCH_LEVEL, Event, EventType, Kernel, PASSIVE_LEVEL, current_irql};
use tcpip::nt::sys;
use tcpip::nt::types::*;

fn inline_kernel() -> Kernel {
    Kernel::new(Config {
        processors: 2,
        inline_dpcs: true,
        ..Config::default()
    })
}

/// What the routines saw.
struct Probe {
    /// The test's thread.
    thread: ThreadId,
    dpcs: AtomicUsize,
    work_items: AtomicUsize,
    /// A routine ran on another thread or at the wrong IRQL.
    wrong: AtomicBool,
    /// The work item a DPC queues, if any.
    item: AtomicPtr<IO_WORKITEM>,
    /// The event a DPC sets, if any.
    event: AtomicPtr<Event>,
}

impl Probe {
    fn new() -> Probe {
        Probe {
            thread: std::thread::current().id(),
            dpcs: AtomicUsize::new(0),
            work_items: AtomicUsize::new(0),
            wrong: AtomicBool::new(false),
            item: AtomicPtr::new(std::ptr::null_mut()),
            event: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    fn check(&self, irql: KIRQL) {
        if std::thread::current().id() != self.thread || current_irql() != irql {
            self.wrong.store(true, Ordering::Release);
        }
    }

    fn as_context(&self) -> *mut c_void {
        std::ptr::from_ref(self).cast_mut().cast()
    }
}

unsafe extern "system" fn work_routine(_device: *mut DEVICE_OBJECT, context: *mut c_void) {
    // SAFETY: the context is a Probe that outlives the item.
    let probe = unsafe { &*context.cast::<Probe>() };
    probe.check(PASSIVE_LEVEL);
    probe.work_items.fetch_add(1, Ordering::AcqRel);
}

/// Counts the run; queues the probe's work item and sets its event, if it has them.
unsafe extern "system" fn probe_dpc(
    _: *mut KDPC,
    context: *mut c_void,
    _: *mut c_void,
    _: *mut c_void,
) {
    // SAFETY: the context is a Probe that outlives the DPC.
    let probe = unsafe { &*context.cast::<Probe>() };
    probe.check(DISPATCH_LEVEL);
    probe.dpcs.fetch_add(1, Ordering::AcqRel);
    let item = probe.item.load(Ordering::Acquire);
    if !item.is_null() {
        // SAFETY: a live work item, not queued.
        unsafe { sys::IoQueueWorkItem(item, Some(work_routine), DELAYED_WORK_QUEUE, context) };
    }
    let event = probe.event.load(Ordering::Acquire);
    if !event.is_null() {
        // SAFETY: the test's event, alive until its wait returned.
        unsafe { (*event).set() };
    }
}

fn init_dpc(dpc: &Slot<KDPC>, probe: &Probe) {
    // SAFETY: unqueued DPC storage; the probe outlives the DPC's use.
    unsafe { sys::KeInitializeDpc(dpc.get(), Some(probe_dpc), probe.as_context()) };
}

fn insert(dpc: &Slot<KDPC>) -> bool {
    // SAFETY: an initialised DPC that outlives its queueing.
    unsafe { sys::KeInsertQueueDpc(dpc.get(), std::ptr::null_mut(), std::ptr::null_mut()) != 0 }
}

#[test]
fn a_queued_dpc_runs_on_the_waiting_thread_when_it_waits() {
    let kernel = inline_kernel();
    let probe = Probe::new();
    let dpc = Slot::<KDPC>::new();
    init_dpc(&dpc, &probe);
    assert!(insert(&dpc));
    // No processor thread: nothing runs it until the test waits.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(probe.dpcs.load(Ordering::Acquire), 0);
    assert!(!insert(&dpc), "still queued");
    kernel.wait_quiescent();
    assert_eq!(probe.dpcs.load(Ordering::Acquire), 1);
    assert!(!probe.wrong.load(Ordering::Acquire));
    assert_eq!(current_irql(), PASSIVE_LEVEL);
}

#[test]
fn a_timer_dpc_and_the_work_item_it_queues_run_within_advance() {
    let kernel = inline_kernel();
    let probe = Probe::new();
    // SAFETY: no device is needed by the model for a work item.
    let item = unsafe { sys::IoAllocateWorkItem(std::ptr::null_mut()) };
    assert!(!item.is_null());
    probe.item.store(item, Ordering::Release);
    let timer = Slot::<KTIMER>::new();
    let dpc = Slot::<KDPC>::new();
    init_dpc(&dpc, &probe);
    // SAFETY: fresh storage that outlives the timer.
    unsafe {
        sys::KeInitializeTimer(timer.get());
        sys::KeSetTimer(timer.get(), -10_000, dpc.get());
    }
    kernel.advance(Duration::from_millis(1));
    assert_eq!(probe.dpcs.load(Ordering::Acquire), 1);
    assert_eq!(probe.work_items.load(Ordering::Acquire), 1);
    assert!(!probe.wrong.load(Ordering::Acquire));
    // SAFETY: a live item that is not queued.
    unsafe { sys::IoFreeWorkItem(item) };
}

#[test]
fn an_event_wait_runs_the_dpc_that_sets_the_event() {
    let kernel = inline_kernel();
    let probe = Probe::new();
    let event = Event::new(&kernel, EventType::Notification, false);
    probe
        .event
        .store(std::ptr::from_ref(&event).cast_mut(), Ordering::Release);
    let dpc = Slot::<KDPC>::new();
    init_dpc(&dpc, &probe);
    assert!(insert(&dpc));
    assert!(event.wait(Some(Duration::from_secs(10))));
    assert_eq!(probe.dpcs.load(Ordering::Acquire), 1);
    assert!(!probe.wrong.load(Ordering::Acquire));
}

#[test]
fn flush_queued_dpcs_runs_them_on_the_calling_thread() {
    let _kernel = inline_kernel();
    let probe = Probe::new();
    let dpcs = [Slot::<KDPC>::new(), Slot::<KDPC>::new()];
    for dpc in &dpcs {
        init_dpc(dpc, &probe);
        assert!(insert(dpc));
    }
    // SAFETY: PASSIVE_LEVEL.
    unsafe { sys::KeFlushQueuedDpcs() };
    assert_eq!(probe.dpcs.load(Ordering::Acquire), 2);
    assert!(!probe.wrong.load(Ordering::Acquire));
}
