//! Host model self-tests: IRQL, spin locks, DPCs, timers and the clock, work items, kernel
//! threads.

mod host_model_support;

use host_model_support::{Slot, kernel, spin_until};
use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tcpip::host::{
    BOOT_SYSTEM_TIME, Clock, Config, DISPATCH_LEVEL, Event, EventType, Kernel, PASSIVE_LEVEL,
    current_irql, lower_irql, raise_irql,
};
use tcpip::nt::sys;
use tcpip::nt::types::*;

const MS: i64 = 10_000;

#[test]
fn irql_raise_and_lower() {
    let _kernel = kernel(1);
    assert_eq!(current_irql(), PASSIVE_LEVEL);
    let old = raise_irql(DISPATCH_LEVEL);
    assert_eq!(old, PASSIVE_LEVEL);
    // SAFETY: no precondition.
    assert_eq!(unsafe { sys::KeGetCurrentIrql() }, DISPATCH_LEVEL);
    lower_irql(old);
    assert_eq!(current_irql(), PASSIVE_LEVEL);
}

#[test]
fn spin_locks_raise_and_restore_the_irql() {
    let _kernel = kernel(1);
    let a = Slot::<KSPIN_LOCK>::new();
    let b = Slot::<KSPIN_LOCK>::new();
    // SAFETY: initialised (zeroed) locks, released in order.
    unsafe {
        let old = sys::KeAcquireSpinLockRaiseToDpc(a.get());
        assert_eq!(old, PASSIVE_LEVEL);
        assert_eq!(current_irql(), DISPATCH_LEVEL);
        assert_ne!(*a.get(), 0, "the lock word is set while held");
        sys::KeAcquireSpinLockAtDpcLevel(b.get());
        sys::KeReleaseSpinLockFromDpcLevel(b.get());
        assert_eq!(current_irql(), DISPATCH_LEVEL);
        sys::KeReleaseSpinLock(a.get(), old);
        assert_eq!(*a.get(), 0);
    }
    assert_eq!(current_irql(), PASSIVE_LEVEL);
    let old = raise_irql(DISPATCH_LEVEL);
    // SAFETY: as above; acquiring at DISPATCH_LEVEL returns DISPATCH_LEVEL.
    unsafe {
        let inner = sys::KeAcquireSpinLockRaiseToDpc(a.get());
        assert_eq!(inner, DISPATCH_LEVEL);
        sys::KeReleaseSpinLock(a.get(), inner);
    }
    assert_eq!(current_irql(), DISPATCH_LEVEL);
    lower_irql(old);
}

#[test]
fn spin_locks_exclude_each_other_across_threads() {
    struct Shared {
        lock: Slot<KSPIN_LOCK>,
        counter: UnsafeCell<u64>,
    }
    // SAFETY: `counter` is only accessed with `lock` held.
    unsafe impl Sync for Shared {}
    let kernel = kernel(2);
    let shared = Arc::new(Shared {
        lock: Slot::new(),
        counter: UnsafeCell::new(0),
    });
    let threads: Vec<_> = (0..3)
        .map(|i| {
            let shared = shared.clone();
            kernel.spawn(&format!("adder{i}"), move || {
                for _ in 0..2000 {
                    // SAFETY: the counter is only touched with the lock held.
                    unsafe {
                        let old = sys::KeAcquireSpinLockRaiseToDpc(shared.lock.get());
                        *shared.counter.get() += 1;
                        sys::KeReleaseSpinLock(shared.lock.get(), old);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // SAFETY: all writers have finished.
    assert_eq!(unsafe { *shared.counter.get() }, 6000);
}

/// State for DPC routines.
#[derive(Default)]
struct DpcProbe {
    runs: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// While false, routines that wait on the gate spin.
    gate: AtomicBool,
    bad_irql: AtomicBool,
    bad_thread: AtomicBool,
}

fn record_entry(probe: &DpcProbe) {
    let running = probe.running.fetch_add(1, Ordering::AcqRel) + 1;
    probe.max_running.fetch_max(running, Ordering::AcqRel);
    if current_irql() != DISPATCH_LEVEL {
        probe.bad_irql.store(true, Ordering::Release);
    }
    let on_cpu = std::thread::current()
        .name()
        .is_some_and(|n| n.starts_with("nt-cpu"));
    if !on_cpu {
        probe.bad_thread.store(true, Ordering::Release);
    }
}

fn record_exit(probe: &DpcProbe) {
    probe.running.fetch_sub(1, Ordering::AcqRel);
    probe.runs.fetch_add(1, Ordering::AcqRel);
}

/// Counts the run; waits for the gate.
unsafe extern "system" fn gated_dpc(
    _: *mut KDPC,
    context: *mut c_void,
    _: *mut c_void,
    _: *mut c_void,
) {
    // SAFETY: the context is a DpcProbe that outlives the DPC.
    let probe = unsafe { &*context.cast::<DpcProbe>() };
    record_entry(probe);
    spin_until("the DPC gate", || probe.gate.load(Ordering::Acquire));
    record_exit(probe);
}

/// Counts the run; waits (bounded) until two instances run at once.
unsafe extern "system" fn pairing_dpc(
    _: *mut KDPC,
    context: *mut c_void,
    _: *mut c_void,
    _: *mut c_void,
) {
    // SAFETY: the context is a DpcProbe that outlives the DPC.
    let probe = unsafe { &*context.cast::<DpcProbe>() };
    record_entry(probe);
    spin_until("a second concurrent instance", || {
        probe.max_running.load(Ordering::Acquire) >= 2
    });
    record_exit(probe);
}

/// Counts the run.
unsafe extern "system" fn counting_dpc(
    _: *mut KDPC,
    context: *mut c_void,
    _: *mut c_void,
    _: *mut c_void,
) {
    // SAFETY: the context is a DpcProbe that outlives the DPC.
    let probe = unsafe { &*context.cast::<DpcProbe>() };
    record_entry(probe);
    std::thread::yield_now();
    record_exit(probe);
}

fn init_dpc(dpc: &Slot<KDPC>, routine: PKDEFERRED_ROUTINE, probe: &DpcProbe) {
    // SAFETY: unqueued DPC storage; the probe outlives the DPC's use.
    unsafe {
        sys::KeInitializeDpc(
            dpc.get(),
            routine,
            std::ptr::from_ref(probe).cast_mut().cast(),
        )
    };
}

fn insert(dpc: &Slot<KDPC>) -> bool {
    // SAFETY: an initialised DPC that outlives its queueing.
    unsafe { sys::KeInsertQueueDpc(dpc.get(), std::ptr::null_mut(), std::ptr::null_mut()) != 0 }
}

#[test]
fn inserting_a_queued_dpc_returns_false_and_remove_dequeues_it() {
    let kernel = kernel(1);
    let (blocker, target) = (Slot::<KDPC>::new(), Slot::<KDPC>::new());
    let (blocking, counted) = (DpcProbe::default(), DpcProbe::default());
    init_dpc(&blocker, Some(gated_dpc), &blocking);
    init_dpc(&target, Some(counting_dpc), &counted);
    assert!(insert(&blocker));
    spin_until("the blocker to run", || {
        blocking.running.load(Ordering::Acquire) == 1
    });
    // The only processor is busy: the target stays queued.
    assert!(insert(&target));
    // SAFETY: reading the inserted mark of an initialised DPC.
    assert!(!unsafe { (*target.get()).DpcData }.is_null());
    assert!(!insert(&target), "already queued");
    // SAFETY: an initialised DPC.
    unsafe {
        assert_eq!(sys::KeRemoveQueueDpc(target.get()), TRUE);
        assert_eq!(sys::KeRemoveQueueDpc(target.get()), FALSE);
    }
    assert!(insert(&target));
    blocking.gate.store(true, Ordering::Release);
    kernel.wait_quiescent();
    assert_eq!(counted.runs.load(Ordering::Acquire), 1);
    assert!(!counted.bad_irql.load(Ordering::Acquire));
    assert!(!counted.bad_thread.load(Ordering::Acquire));
}

/// The DPC timing hook (`dpc_durations`): one record per routine call, covering the call.
#[test]
fn dpc_durations_time_each_routine_call() {
    let kernel = kernel(1);
    assert_eq!(kernel.dpc_durations().count, 0);
    let (gated, counted) = (Slot::<KDPC>::new(), Slot::<KDPC>::new());
    let (gate_probe, count_probe) = (DpcProbe::default(), DpcProbe::default());
    init_dpc(&gated, Some(gated_dpc), &gate_probe);
    init_dpc(&counted, Some(counting_dpc), &count_probe);
    assert!(insert(&gated));
    spin_until("the DPC to run", || {
        gate_probe.running.load(Ordering::Acquire) == 1
    });
    // The routine cannot return before the gate opens: its call lasts at least this long.
    std::thread::sleep(Duration::from_millis(2));
    gate_probe.gate.store(true, Ordering::Release);
    assert!(insert(&counted));
    kernel.wait_quiescent();
    let durations = kernel.dpc_durations();
    assert_eq!(durations.count, 2);
    assert!(durations.max >= Duration::from_millis(2), "{durations:?}");
    assert!(durations.total >= durations.max);
    assert_eq!(durations.percentile(1.0), durations.max);
    assert!(durations.percentile(0.5) <= durations.max);
    kernel.reset_dpc_durations();
    assert_eq!(kernel.dpc_durations().count, 0);
}

#[test]
fn a_dpc_can_be_requeued_while_its_routine_runs() {
    let kernel = kernel(1);
    let dpc = Slot::<KDPC>::new();
    let probe = DpcProbe::default();
    init_dpc(&dpc, Some(gated_dpc), &probe);
    assert!(insert(&dpc));
    spin_until("the DPC to run", || {
        probe.running.load(Ordering::Acquire) == 1
    });
    // SAFETY: reading the inserted mark of an initialised DPC.
    let mark = unsafe { (*dpc.get()).DpcData };
    assert!(mark.is_null(), "dequeued before it runs");
    assert!(insert(&dpc));
    probe.gate.store(true, Ordering::Release);
    kernel.wait_quiescent();
    assert_eq!(probe.runs.load(Ordering::Acquire), 2);
    assert_eq!(
        probe.max_running.load(Ordering::Acquire),
        1,
        "one processor"
    );
}

#[test]
fn the_same_dpc_runs_concurrently_on_two_processors() {
    let kernel = kernel(2);
    let dpc = Slot::<KDPC>::new();
    let probe = DpcProbe::default();
    init_dpc(&dpc, Some(pairing_dpc), &probe);
    assert!(insert(&dpc));
    spin_until("the first instance", || {
        probe.running.load(Ordering::Acquire) == 1
    });
    assert!(insert(&dpc), "requeued while running");
    kernel.wait_quiescent();
    assert_eq!(probe.runs.load(Ordering::Acquire), 2);
    assert_eq!(probe.max_running.load(Ordering::Acquire), 2);
    assert!(!probe.bad_irql.load(Ordering::Acquire));
}

#[test]
fn dpcs_on_one_processor_never_overlap() {
    let kernel = kernel(1);
    let dpcs: Vec<Slot<KDPC>> = (0..8).map(|_| Slot::new()).collect();
    let probe = DpcProbe::default();
    for _ in 0..20 {
        for dpc in &dpcs {
            init_dpc(dpc, Some(counting_dpc), &probe);
            insert(dpc);
        }
        kernel.wait_quiescent();
    }
    assert_eq!(probe.runs.load(Ordering::Acquire), 160);
    assert_eq!(probe.max_running.load(Ordering::Acquire), 1);
}

#[test]
fn dpcs_spread_over_four_processors() {
    let kernel = kernel(4);
    let dpcs: Vec<Slot<KDPC>> = (0..4).map(|_| Slot::new()).collect();
    let probe = DpcProbe::default();
    for dpc in &dpcs {
        init_dpc(dpc, Some(gated_dpc), &probe);
        insert(dpc);
    }
    spin_until("four DPCs running at once", || {
        probe.running.load(Ordering::Acquire) == 4
    });
    probe.gate.store(true, Ordering::Release);
    kernel.wait_quiescent();
    assert_eq!(probe.runs.load(Ordering::Acquire), 4);
}

#[test]
fn flush_queued_dpcs_waits_for_queued_dpcs() {
    let _kernel = kernel(2);
    let dpcs: Vec<Slot<KDPC>> = (0..6).map(|_| Slot::new()).collect();
    let probe = DpcProbe::default();
    for dpc in &dpcs {
        init_dpc(dpc, Some(counting_dpc), &probe);
        insert(dpc);
    }
    // SAFETY: called at PASSIVE_LEVEL.
    unsafe { sys::KeFlushQueuedDpcs() };
    assert_eq!(probe.runs.load(Ordering::Acquire), 6);
}

/// Records the interrupt time at which a timer DPC ran, and the DPC's system arguments.
#[derive(Default)]
struct TimerProbe {
    fired: Mutex<Vec<(usize, u64)>>,
    system_time: AtomicU64,
}

struct TimerCase {
    probe: Arc<TimerProbe>,
    id: usize,
    /// Re-arm this many ms after each expiry, this many times.
    period_ms: i64,
    rearms: AtomicUsize,
    timer: Slot<KTIMER>,
    dpc: Slot<KDPC>,
}

unsafe extern "system" fn timer_dpc(
    _: *mut KDPC,
    context: *mut c_void,
    a1: *mut c_void,
    a2: *mut c_void,
) {
    // SAFETY: the context is a TimerCase that outlives its timer.
    let case = unsafe { &*context.cast::<TimerCase>() };
    // SAFETY: no precondition.
    let now = unsafe { sys::KeQueryInterruptTime() };
    case.probe
        .system_time
        .store((a1 as u64) | ((a2 as u64) << 32), Ordering::Release);
    // The model's own allocation would be attributed to the driver here, but no driver is
    // loaded in these tests, so there is no leak check.
    case.probe.fired.lock().unwrap().push((case.id, now));
    if case.rearms.load(Ordering::Acquire) > 0 {
        case.rearms.fetch_sub(1, Ordering::AcqRel);
        // SAFETY: an initialised timer and DPC that outlive the timer.
        unsafe { sys::KeSetTimer(case.timer.get(), -case.period_ms * MS, case.dpc.get()) };
    }
}

fn timer_case(probe: &Arc<TimerProbe>, id: usize) -> Box<TimerCase> {
    let case = Box::new(TimerCase {
        probe: probe.clone(),
        id,
        period_ms: 0,
        rearms: AtomicUsize::new(0),
        timer: Slot::new(),
        dpc: Slot::new(),
    });
    // SAFETY: fresh storage; the boxed case outlives the timer.
    unsafe {
        sys::KeInitializeTimer(case.timer.get());
        sys::KeInitializeDpc(
            case.dpc.get(),
            Some(timer_dpc),
            std::ptr::from_ref::<TimerCase>(&case).cast_mut().cast(),
        );
    }
    case
}

fn set_timer(case: &TimerCase, due: i64) -> bool {
    // SAFETY: an initialised timer and DPC that outlive the timer.
    unsafe { sys::KeSetTimer(case.timer.get(), due, case.dpc.get()) != 0 }
}

#[test]
fn relative_timers_fire_in_due_order_on_the_virtual_clock() {
    let kernel = kernel(2);
    let probe = Arc::new(TimerProbe::default());
    let (a, b, c) = (
        timer_case(&probe, 1),
        timer_case(&probe, 2),
        timer_case(&probe, 3),
    );
    assert!(!set_timer(&a, -30 * MS));
    assert!(!set_timer(&b, -10 * MS));
    assert!(!set_timer(&c, -20 * MS));
    kernel.advance(Duration::from_millis(5));
    assert!(probe.fired.lock().unwrap().is_empty());
    assert_eq!(kernel.interrupt_time(), 5 * MS as u64);
    kernel.advance(Duration::from_millis(25));
    assert_eq!(
        *probe.fired.lock().unwrap(),
        vec![
            (2, 10 * MS as u64),
            (3, 20 * MS as u64),
            (1, 30 * MS as u64)
        ]
    );
    assert_eq!(kernel.interrupt_time(), 30 * MS as u64);
    assert_eq!(
        probe.system_time.load(Ordering::Acquire),
        BOOT_SYSTEM_TIME + 30 * MS as u64
    );
    // SAFETY: an initialised timer.
    let signalled = unsafe { (*a.timer.get()).Header.SignalState };
    assert_eq!(signalled, 1);
}

#[test]
fn absolute_timers_use_system_time() {
    let kernel = kernel(1);
    let probe = Arc::new(TimerProbe::default());
    let case = timer_case(&probe, 1);
    kernel.advance(Duration::from_millis(3));
    let due = kernel.system_time() + 7 * MS as u64;
    set_timer(&case, due as i64);
    kernel.advance(Duration::from_millis(6));
    assert!(probe.fired.lock().unwrap().is_empty());
    kernel.advance(Duration::from_millis(1));
    assert_eq!(*probe.fired.lock().unwrap(), vec![(1, 10 * MS as u64)]);
}

#[test]
fn setting_and_cancelling_report_whether_the_timer_was_set() {
    let kernel = kernel(1);
    let probe = Arc::new(TimerProbe::default());
    let case = timer_case(&probe, 1);
    assert!(!set_timer(&case, -10 * MS));
    assert!(set_timer(&case, -20 * MS), "reset while set");
    // SAFETY: an initialised timer.
    unsafe {
        assert_eq!(sys::KeCancelTimer(case.timer.get()), TRUE);
        assert_eq!(sys::KeCancelTimer(case.timer.get()), FALSE);
    }
    kernel.advance(Duration::from_millis(50));
    assert!(probe.fired.lock().unwrap().is_empty());
    set_timer(&case, -20 * MS);
    kernel.advance(Duration::from_millis(10));
    assert!(set_timer(&case, -5 * MS), "moved earlier");
    kernel.advance(Duration::from_millis(5));
    assert_eq!(*probe.fired.lock().unwrap(), vec![(1, 65 * MS as u64)]);
}

#[test]
fn timer_dues_lists_the_set_timers_earliest_first() {
    let kernel = kernel(1);
    let probe = Arc::new(TimerProbe::default());
    let (a, b) = (timer_case(&probe, 1), timer_case(&probe, 2));
    assert!(kernel.timer_dues().is_empty());
    kernel.advance(Duration::from_millis(5));
    set_timer(&a, -30 * MS);
    set_timer(&b, -10 * MS);
    assert_eq!(kernel.timer_dues(), vec![15 * MS as u64, 35 * MS as u64]);
    // SAFETY: an initialised timer.
    unsafe { sys::KeCancelTimer(b.timer.get()) };
    assert_eq!(kernel.timer_dues(), vec![35 * MS as u64]);
    kernel.advance(Duration::from_millis(30));
    assert!(
        kernel.timer_dues().is_empty(),
        "an expired timer is no longer set"
    );
}

#[test]
fn an_expired_due_time_fires_at_once() {
    let kernel = kernel(1);
    let probe = Arc::new(TimerProbe::default());
    let case = timer_case(&probe, 1);
    kernel.advance(Duration::from_millis(1));
    assert!(!set_timer(&case, 0), "relative zero is already due");
    kernel.wait_quiescent();
    assert_eq!(*probe.fired.lock().unwrap(), vec![(1, MS as u64)]);
    assert!(
        !set_timer(&case, BOOT_SYSTEM_TIME as i64),
        "an absolute time in the past"
    );
    kernel.wait_quiescent();
    assert_eq!(probe.fired.lock().unwrap().len(), 2);
}

#[test]
fn a_timer_rearmed_by_its_dpc_fires_periodically_within_one_advance() {
    let kernel = kernel(2);
    let probe = Arc::new(TimerProbe::default());
    let mut case = timer_case(&probe, 7);
    case.period_ms = 10;
    case.rearms.store(9, Ordering::Release);
    set_timer(&case, -10 * MS);
    kernel.advance(Duration::from_millis(1000));
    let times: Vec<u64> = probe.fired.lock().unwrap().iter().map(|f| f.1).collect();
    let expected: Vec<u64> = (1..=10).map(|i| i * 10 * MS as u64).collect();
    assert_eq!(times, expected);
}

#[test]
fn real_clock_timers_fire_on_their_own() {
    let kernel = Kernel::new(Config {
        processors: 2,
        clock: Clock::Real,
        ..Config::default()
    });
    let probe = Arc::new(TimerProbe::default());
    let case = timer_case(&probe, 1);
    let before = kernel.interrupt_time();
    set_timer(&case, -2 * MS);
    spin_until("the real-time timer", || {
        !probe.fired.lock().unwrap().is_empty()
    });
    let fired_at = probe.fired.lock().unwrap()[0].1;
    assert!(fired_at >= before + 2 * MS as u64);
    assert!(kernel.interrupt_time() >= fired_at);
}

/// State of work item tests.
struct WorkProbe {
    item: std::sync::atomic::AtomicPtr<IO_WORKITEM>,
    runs: AtomicUsize,
    requeues: AtomicUsize,
    bad_context: AtomicBool,
}

unsafe extern "system" fn work_routine(_device: *mut DEVICE_OBJECT, context: *mut c_void) {
    // SAFETY: the context is a WorkProbe that outlives the item.
    let probe = unsafe { &*context.cast::<WorkProbe>() };
    let on_worker = std::thread::current()
        .name()
        .is_some_and(|n| n.starts_with("nt-worker"));
    if current_irql() != PASSIVE_LEVEL || !on_worker {
        probe.bad_context.store(true, Ordering::Release);
    }
    probe.runs.fetch_add(1, Ordering::AcqRel);
    if probe.requeues.load(Ordering::Acquire) > 0 {
        probe.requeues.fetch_sub(1, Ordering::AcqRel);
        // SAFETY: a live work item, dequeued before this routine ran.
        unsafe {
            sys::IoQueueWorkItem(
                probe.item.load(Ordering::Acquire),
                Some(work_routine),
                DELAYED_WORK_QUEUE,
                context,
            )
        };
    }
}

#[test]
fn work_items_run_at_passive_level_and_may_requeue_themselves() {
    let kernel = kernel(1);
    // SAFETY: no device is needed by the model for a work item.
    let item = unsafe { sys::IoAllocateWorkItem(std::ptr::null_mut()) };
    assert!(!item.is_null());
    let probe = WorkProbe {
        item: std::sync::atomic::AtomicPtr::new(item),
        runs: AtomicUsize::new(0),
        requeues: AtomicUsize::new(4),
        bad_context: AtomicBool::new(false),
    };
    // SAFETY: a live item; the probe outlives it.
    unsafe {
        sys::IoQueueWorkItem(
            item,
            Some(work_routine),
            DELAYED_WORK_QUEUE,
            std::ptr::from_ref(&probe).cast_mut().cast(),
        )
    };
    kernel.wait_quiescent();
    assert_eq!(probe.runs.load(Ordering::Acquire), 5);
    assert!(!probe.bad_context.load(Ordering::Acquire));
    // SAFETY: a live item that is not queued.
    unsafe { sys::IoFreeWorkItem(item) };
}

/// A timer DPC that queues a work item: `advance` waits for both.
unsafe extern "system" fn dpc_queueing_work(
    _: *mut KDPC,
    context: *mut c_void,
    _: *mut c_void,
    _: *mut c_void,
) {
    // SAFETY: the context is a WorkProbe that outlives the timer.
    let probe = unsafe { &*context.cast::<WorkProbe>() };
    // SAFETY: a live item, not queued.
    unsafe {
        sys::IoQueueWorkItem(
            probe.item.load(Ordering::Acquire),
            Some(work_routine),
            DELAYED_WORK_QUEUE,
            context,
        )
    };
}

#[test]
fn advance_waits_for_work_queued_by_timer_dpcs() {
    let kernel = kernel(2);
    // SAFETY: no device is needed by the model for a work item.
    let item = unsafe { sys::IoAllocateWorkItem(std::ptr::null_mut()) };
    let probe = WorkProbe {
        item: std::sync::atomic::AtomicPtr::new(item),
        runs: AtomicUsize::new(0),
        requeues: AtomicUsize::new(0),
        bad_context: AtomicBool::new(false),
    };
    let timer = Slot::<KTIMER>::new();
    let dpc = Slot::<KDPC>::new();
    // SAFETY: fresh storage that outlives the timer.
    unsafe {
        sys::KeInitializeTimer(timer.get());
        sys::KeInitializeDpc(
            dpc.get(),
            Some(dpc_queueing_work),
            std::ptr::from_ref(&probe).cast_mut().cast(),
        );
        sys::KeSetTimer(timer.get(), -MS, dpc.get());
    }
    kernel.advance(Duration::from_millis(1));
    assert_eq!(probe.runs.load(Ordering::Acquire), 1);
    // SAFETY: a live item that is not queued.
    unsafe { sys::IoFreeWorkItem(item) };
}

#[test]
fn spawned_threads_belong_to_the_kernel_at_passive_level() {
    let kernel = kernel(1);
    let event = Arc::new(Event::new(&kernel, EventType::Notification, false));
    let signal = event.clone();
    let thread = kernel.spawn("client", move || {
        assert_eq!(current_irql(), PASSIVE_LEVEL);
        // SAFETY: no precondition.
        let time = unsafe { sys::KeQueryInterruptTime() };
        signal.set();
        time
    });
    assert!(event.wait(Some(Duration::from_secs(10))));
    assert_eq!(thread.join().unwrap(), 0);
}

#[test]
fn synchronization_events_reset_when_a_wait_is_satisfied() {
    let kernel = kernel(1);
    let event = Event::new(&kernel, EventType::Synchronization, true);
    assert!(event.wait(Some(Duration::ZERO)));
    assert!(!event.is_signaled());
    assert!(!event.wait(Some(Duration::ZERO)));
    let notification = Event::new(&kernel, EventType::Notification, false);
    notification.set();
    assert!(notification.wait(None));
    assert!(notification.is_signaled());
}

#[test]
fn kernels_in_parallel_threads_are_independent() {
    let run = |ms: u64| {
        std::thread::spawn(move || {
            let kernel = kernel(1);
            kernel.advance(Duration::from_millis(ms));
            kernel.interrupt_time()
        })
    };
    let (a, b) = (run(3), run(5));
    assert_eq!(a.join().unwrap(), 3 * MS as u64);
    assert_eq!(b.join().unwrap(), 5 * MS as u64);
}

#[test]
#[should_panic(expected = "KeBugCheckEx(0x20544350, 0x1")]
fn ke_bug_check_ex_panics_with_its_code() {
    let _kernel = kernel(1);
    // SAFETY: no precondition; it does not return.
    unsafe { sys::KeBugCheckEx(0x2054_4350, 1, 2, 3, 4) };
}
