//! The clock and kernel timers.
//!
//! Time is interrupt time, in 100 ns units since boot. With [`Clock::Virtual`] it only moves
//! when the test calls [`KernelHandle::advance`], which fires due timers in due order and lets
//! the system become quiescent after each, so TCP timers are tested in milliseconds of wall
//! time. With [`Clock::Real`] it follows the host's monotonic clock and a timer thread fires
//! timers when they fall due (benchmarks, stress tests).
//!
//! `KeSetTimer` takes a relative due time (negative, in 100 ns units) or an absolute system
//! time (positive, 100 ns units since 1601); the model's system time is a fixed boot date plus
//! interrupt time. A due time that has already passed expires the timer at once, as on NT.
//! Both `KeSetTimer` and `KeCancelTimer` return whether the timer was set. An expiring timer is
//! signalled and queues its DPC with the expiry time (low and high halves of the system time)
//! as its system arguments.

use super::AddressMap;
use super::dpc;
use super::kernel::{KernelHandle, KernelInner};
use crate::nt::types::{KDPC, KTIMER, LIST_ENTRY};
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How the kernel's time moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Time only moves in [`KernelHandle::advance`].
    Virtual,
    /// Time follows the host's monotonic clock; a timer thread fires timers.
    Real,
}

/// The system time at boot: 2025-01-01 00:00:00 UTC, in 100 ns units since 1601-01-01.
pub const BOOT_SYSTEM_TIME: u64 = 133_801_632_000_000_000;

/// `TimerNotificationObject`, the dispatcher type of a `KeInitializeTimer` timer.
const TIMER_NOTIFICATION_OBJECT: u8 = 8;

pub(crate) struct ClockState {
    mode: Clock,
    virtual_now: AtomicU64,
    start: Instant,
}

impl ClockState {
    pub(crate) fn new(mode: Clock) -> ClockState {
        ClockState {
            mode,
            virtual_now: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// Interrupt time, in 100 ns units.
    pub(crate) fn now(&self) -> u64 {
        match self.mode {
            Clock::Virtual => self.virtual_now.load(Ordering::Acquire),
            Clock::Real => u64::try_from(self.start.elapsed().as_nanos() / 100).unwrap_or(u64::MAX),
        }
    }
}

/// The set timers, ordered by due time.
#[derive(Default)]
pub(crate) struct Timers {
    state: Mutex<TimerQueue>,
    /// Wakes the real-time timer thread.
    changed: Condvar,
}

#[derive(Default)]
struct TimerQueue {
    /// (due, sequence) → timer address.
    by_due: BTreeMap<(u64, u64), usize>,
    /// Timer address → its key in `by_due`.
    keys: AddressMap<(u64, u64)>,
    sequence: u64,
    shutdown: bool,
}

impl TimerQueue {
    fn remove(&mut self, timer: usize) -> bool {
        match self.keys.remove(&timer) {
            Some(key) => {
                self.by_due.remove(&key);
                true
            }
            None => false,
        }
    }

    /// Removes and returns the earliest timer due at or before `limit`.
    fn pop_due(&mut self, limit: u64) -> Option<(u64, usize)> {
        let (&(due, sequence), &timer) = self.by_due.first_key_value()?;
        if due > limit {
            return None;
        }
        self.by_due.remove(&(due, sequence));
        self.keys.remove(&timer);
        Some((due, timer))
    }
}

impl Timers {
    fn lock(&self) -> std::sync::MutexGuard<'_, TimerQueue> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn shutdown(&self) {
        self.lock().shutdown = true;
        self.changed.notify_all();
    }

    /// The addresses of the timers still set.
    pub(crate) fn set_timers(&self) -> Vec<usize> {
        self.lock().by_due.values().copied().collect()
    }
}

/// `KeInitializeTimer`: a notification timer, not set, not signalled.
///
/// # Safety
/// `timer` points to writable `KTIMER` storage that is not set.
pub(crate) unsafe fn initialize(timer: *mut KTIMER) {
    // SAFETY: forwarded caller contract; KTIMER is plain data, valid when zeroed.
    unsafe {
        timer.write_bytes(0, 1);
        let t = &mut *timer;
        t.Header.Type = TIMER_NOTIFICATION_OBJECT;
        t.Header.Size = (size_of::<KTIMER>() / 4) as u8;
        let list = &raw mut t.Header.WaitListHead;
        t.Header.WaitListHead = LIST_ENTRY {
            Flink: list,
            Blink: list,
        };
    }
}

/// `KeSetTimer`: (re)sets the timer; returns whether it was set before.
///
/// # Safety
/// `timer` is an initialised timer and `dpc` null or an initialised DPC; both stay valid while
/// the timer is set.
pub(crate) unsafe fn set(
    kernel: &KernelInner,
    timer: *mut KTIMER,
    due: i64,
    dpc: *mut KDPC,
) -> bool {
    let now = kernel.clock.now();
    let due_at = if due < 0 {
        now.saturating_add(due.unsigned_abs())
    } else {
        (due as u64).saturating_sub(BOOT_SYSTEM_TIME)
    };
    let mut queue = kernel.timers.lock();
    let was_set = queue.remove(timer as usize);
    // SAFETY: forwarded caller contract; the timer's fields are only touched under this lock.
    let t = unsafe { &mut *timer };
    t.Header.Absolute = u8::from(due >= 0);
    t.Header.SignalState = 0;
    t.DueTime = due_at;
    t.Dpc = dpc;
    if due_at <= now {
        t.Header.Inserted = 0;
        t.Header.SignalState = 1;
        drop(queue);
        // SAFETY: forwarded caller contract.
        unsafe { queue_timer_dpc(kernel, dpc, now) };
        return was_set;
    }
    t.Header.Inserted = 1;
    queue.sequence += 1;
    let key = (due_at, queue.sequence);
    queue.by_due.insert(key, timer as usize);
    queue.keys.insert(timer as usize, key);
    drop(queue);
    kernel.timers.changed.notify_all();
    was_set
}

/// `KeCancelTimer`: returns whether the timer was set.
///
/// # Safety
/// `timer` is an initialised timer.
pub(crate) unsafe fn cancel(kernel: &KernelInner, timer: *mut KTIMER) -> bool {
    let mut queue = kernel.timers.lock();
    let was_set = queue.remove(timer as usize);
    if was_set {
        // SAFETY: forwarded caller contract; touched under the timer lock.
        unsafe { (*timer).Header.Inserted = 0 };
    }
    was_set
}

/// Queues an expired timer's DPC.
///
/// # Safety
/// `dpc` is null or an initialised DPC.
unsafe fn queue_timer_dpc(kernel: &KernelInner, dpc: *mut KDPC, expiry: u64) {
    if dpc.is_null() {
        return;
    }
    let system_time = BOOT_SYSTEM_TIME + expiry;
    let low = (system_time & 0xFFFF_FFFF) as usize as *mut c_void;
    let high = (system_time >> 32) as usize as *mut c_void;
    // SAFETY: forwarded caller contract.
    unsafe { dpc::insert(kernel, dpc, low, high) };
}

/// Expires the earliest timer due at or before `limit`, if any; returns its due time.
fn expire_next(kernel: &KernelInner, limit: u64) -> Option<u64> {
    let mut queue = kernel.timers.lock();
    let (due, timer) = queue.pop_due(limit)?;
    let timer = timer as *mut KTIMER;
    // SAFETY: a set timer stays valid while set (KeSetTimer contract); its fields are only
    // touched under the timer lock, held here.
    let dpc = unsafe {
        (*timer).Header.Inserted = 0;
        (*timer).Header.SignalState = 1;
        (*timer).Dpc
    };
    drop(queue);
    // SAFETY: the timer's DPC is valid while the timer is set.
    unsafe { queue_timer_dpc(kernel, dpc, due) };
    Some(due)
}

/// The real-time timer thread: fires timers as they fall due.
pub(crate) fn timer_main(kernel: &Arc<KernelInner>) {
    loop {
        let queue = kernel.timers.lock();
        if queue.shutdown {
            return;
        }
        let now = kernel.clock.now();
        match queue.by_due.first_key_value().map(|(&(due, _), _)| due) {
            Some(due) if due <= now => {
                drop(queue);
                expire_next(kernel, now);
            }
            Some(due) => {
                let wait = Duration::from_nanos((due - now).saturating_mul(100));
                let _queue = kernel.timers.changed.wait_timeout(queue, wait);
            }
            None => {
                let _queue = kernel.timers.changed.wait(queue);
            }
        }
    }
}

impl KernelHandle {
    /// Moves the virtual clock forward by `by`: fires the timers falling due in that span, in
    /// due order, with the clock set to each one's due time, and waits for quiescence after
    /// each; then sets the clock to the end of the span and waits for quiescence again.
    /// Panics with [`Clock::Real`]. PASSIVE_LEVEL.
    pub fn advance(&self, by: Duration) {
        let _api = self.api();
        let kernel = &self.0;
        assert_eq!(
            kernel.config.clock,
            Clock::Virtual,
            "advance() needs Clock::Virtual"
        );
        let ticks = u64::try_from(by.as_nanos() / 100).unwrap_or(u64::MAX);
        let target = kernel.clock.now().saturating_add(ticks);
        self.wait_quiescent();
        loop {
            let next = kernel
                .timers
                .lock()
                .by_due
                .first_key_value()
                .map(|(&(due, _), _)| due)
                .filter(|&due| due <= target);
            let Some(due) = next else { break };
            kernel.clock.virtual_now.fetch_max(due, Ordering::AcqRel);
            expire_next(kernel, due);
            self.wait_quiescent();
        }
        kernel.clock.virtual_now.fetch_max(target, Ordering::AcqRel);
        self.wait_quiescent();
    }

    /// The due times (interrupt time, 100 ns units) of the timers set, earliest first: what a
    /// harness compares, relative to [`interrupt_time`](Self::interrupt_time), to tell whether
    /// two worlds wait for the same deadlines. Any IRQL.
    pub fn timer_dues(&self) -> Vec<u64> {
        let _api = self.api();
        self.0
            .timers
            .lock()
            .by_due
            .keys()
            .map(|&(due, _)| due)
            .collect()
    }

    /// `KeQueryInterruptTime`: the model's interrupt time in 100 ns units. Any IRQL.
    pub fn interrupt_time(&self) -> u64 {
        self.0.clock.now()
    }

    /// The model's system time (`KeQuerySystemTime`): [`BOOT_SYSTEM_TIME`] plus interrupt time.
    /// Any IRQL.
    pub fn system_time(&self) -> u64 {
        BOOT_SYSTEM_TIME + self.0.clock.now()
    }
}
