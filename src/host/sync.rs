//! Dispatcher objects for clients of the driver (the test, the AFD model): a `KEVENT` and a
//! `KMUTEX`, with waits that check the IRQL.
//!
//! As on NT, waiting with a non-zero timeout at DISPATCH_LEVEL or above is forbidden
//! ([`Rule::WaitAtDispatch`]); the model reports it and still performs the wait. Waits use the
//! host's wall clock, not the model clock. The event is a real `KEVENT` (its `SignalState` is the
//! state), so it can be an IRP's `UserEvent`.

use super::context;
use super::irql::{self, DISPATCH_LEVEL};
use super::kernel::{KernelHandle, KernelInner};
use super::verifier::{self, Rule, Site};
use crate::nt::types::KEVENT;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a wait blocks at a time with [`Config::inline_dpcs`](super::Config::inline_dpcs)
/// before it looks at the DPC queues again.
const INLINE_SLICE: Duration = Duration::from_millis(1);

/// How many wait queues the dispatcher objects hash to.
const SHARDS: usize = 64;

/// The wait queues of the kernel's dispatcher objects. An object hashes (by address) to one
/// queue; signalling it wakes the waiters of that queue only, so a thousand threads blocked
/// on their own events do not all wake for each completion.
pub(crate) struct Dispatcher {
    shards: [Shard; SHARDS],
}

#[derive(Default)]
struct Shard {
    lock: Mutex<()>,
    signalled: Condvar,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Shard::default()),
        }
    }
}

impl Dispatcher {
    fn shard(&self, object: usize) -> &Shard {
        let hash = (object >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize);
        &self.shards[(hash >> 32) % SHARDS]
    }

    /// Waits until `ready` returns true (checked under the object's queue lock) or the timeout
    /// expires; returns the last result of `ready`.
    ///
    /// With [`Config::inline_dpcs`](super::Config::inline_dpcs), below DISPATCH_LEVEL, the
    /// queued DPCs run here first (one of them may be what signals the object), and the wait
    /// blocks in slices of [`INLINE_SLICE`], since queueing a DPC does not wake it.
    fn wait_until(
        &self,
        kernel: &KernelInner,
        object: usize,
        timeout: Option<Duration>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        let shard = self.shard(object);
        let deadline = timeout.map(|t| Instant::now() + t);
        let inline = kernel.config.inline_dpcs && irql::current_irql() < DISPATCH_LEVEL;
        let mut guard = shard.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if ready() {
                return true;
            }
            if inline {
                drop(guard);
                let ran = super::dpc::run_inline(kernel);
                guard = shard.lock.lock().unwrap_or_else(|e| e.into_inner());
                if ran {
                    continue;
                }
                let slice = Instant::now() + INLINE_SLICE;
                let until = deadline.map_or(slice, |d| d.min(slice));
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return false;
                }
                guard = shard
                    .signalled
                    .wait_timeout(guard, until.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            match deadline {
                None => {
                    guard = shard
                        .signalled
                        .wait(guard)
                        .unwrap_or_else(|e| e.into_inner());
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    guard = shard
                        .signalled
                        .wait_timeout(guard, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Runs `signal` under the object's queue lock and wakes that queue's waiters.
    fn signal(&self, object: usize, signal: impl FnOnce()) {
        let shard = self.shard(object);
        let guard = shard.lock.lock().unwrap_or_else(|e| e.into_inner());
        signal();
        drop(guard);
        shard.signalled.notify_all();
    }
}

/// Reports a wait with a non-zero timeout at DISPATCH_LEVEL or above.
fn check_wait_irql(timeout: Option<Duration>, site: Site, what: &str) {
    let irql = irql::current_irql();
    if irql >= DISPATCH_LEVEL && timeout != Some(Duration::ZERO) {
        verifier::report(
            Rule::WaitAtDispatch,
            site,
            format!("{what} with a non-zero timeout at IRQL {irql}"),
        );
    }
}

/// `EVENT_TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Stays signalled until reset; releases every waiter.
    Notification,
    /// Auto-reset: a satisfied wait resets it.
    Synchronization,
}

/// The signal state of a `KEVENT`.
///
/// # Safety
/// `event` points to a live `KEVENT` whose `SignalState` is only accessed atomically.
unsafe fn signal_state<'a>(event: *mut KEVENT) -> &'a AtomicI32 {
    // SAFETY: forwarded caller contract; the field is an aligned i32.
    unsafe { AtomicI32::from_ptr(&raw mut (*event).Header.SignalState) }
}

/// `KeSetEvent` on any `KEVENT` of this kernel (used by IRP completion for `UserEvent`).
///
/// # Safety
/// `event` points to a live, initialised `KEVENT`.
pub(crate) unsafe fn signal_kevent(kernel: &KernelInner, event: *mut KEVENT) {
    kernel.dispatcher.signal(event as usize, || {
        // SAFETY: forwarded caller contract.
        unsafe { signal_state(event) }.store(1, Ordering::Release)
    });
}

/// A `KEVENT` owned by the host, usable as an IRP's `UserEvent`.
pub struct Event {
    kernel: KernelHandle,
    event: Box<UnsafeCell<KEVENT>>,
}

// SAFETY: the KEVENT's state is only accessed atomically; its other fields are never written
// after creation.
unsafe impl Send for Event {}
// SAFETY: as above.
unsafe impl Sync for Event {}

impl Event {
    /// `KeInitializeEvent`. Any IRQL.
    pub fn new(kernel: &KernelHandle, kind: EventType, signaled: bool) -> Event {
        // SAFETY: KEVENT is plain data, valid when zeroed.
        let event: Box<UnsafeCell<KEVENT>> = unsafe { Box::new_zeroed().assume_init() };
        // SAFETY: a fresh event owned here.
        let header = unsafe { &mut (*event.get()).Header };
        header.Type = match kind {
            EventType::Notification => 0,
            EventType::Synchronization => 1,
        };
        header.Size = (size_of::<KEVENT>() / 4) as u8;
        header.SignalState = i32::from(signaled);
        Event {
            kernel: kernel.clone(),
            event,
        }
    }

    /// The `KEVENT`, for `IRP::UserEvent`. Any IRQL.
    pub fn as_ptr(&self) -> *mut KEVENT {
        self.event.get()
    }

    fn is_synchronization(&self) -> bool {
        // SAFETY: the type is written once at creation.
        unsafe { (*self.as_ptr()).Header.Type == 1 }
    }

    fn state(&self) -> &AtomicI32 {
        // SAFETY: a live KEVENT owned by self, whose state is only accessed atomically.
        unsafe { signal_state(self.as_ptr()) }
    }

    /// `KeSetEvent`. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn set(&self) {
        // SAFETY: a live, initialised KEVENT.
        unsafe { signal_kevent(&self.kernel.0, self.as_ptr()) };
    }

    /// `KeClearEvent`. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn reset(&self) {
        self.state().store(0, Ordering::Release);
    }

    /// `KeReadStateEvent`. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn is_signaled(&self) -> bool {
        self.state().load(Ordering::Acquire) != 0
    }

    /// `KeWaitForSingleObject`: true when the event was signalled, false on timeout (`None`
    /// waits forever). A satisfied wait resets a synchronization event. PASSIVE_LEVEL, or any
    /// IRQL ≤ DISPATCH_LEVEL with a zero timeout.
    #[track_caller]
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let site = Site::caller();
        let _model = context::ModelScope::enter();
        check_wait_irql(timeout, site, "KeWaitForSingleObject on an event");
        let synchronization = self.is_synchronization();
        let object = self.as_ptr() as usize;
        self.kernel
            .0
            .dispatcher
            .wait_until(&self.kernel.0, object, timeout, || {
                if synchronization {
                    self.state()
                        .compare_exchange(1, 0, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                } else {
                    self.is_signaled()
                }
            })
    }
}

/// A `KMUTEX`: recursive for its owner thread.
pub struct KMutex {
    kernel: KernelHandle,
    /// Owner thread token (0 when free) and recursion depth.
    state: Mutex<(usize, u32)>,
}

impl KMutex {
    /// `KeInitializeMutex`. Any IRQL.
    pub fn new(kernel: &KernelHandle) -> KMutex {
        KMutex {
            kernel: kernel.clone(),
            state: Mutex::new((0, 0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, u32)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `KeWaitForMutexObject`: true when acquired, false on timeout (`None` waits forever).
    /// PASSIVE_LEVEL, or any IRQL ≤ DISPATCH_LEVEL with a zero timeout.
    #[track_caller]
    pub fn acquire(&self, timeout: Option<Duration>) -> bool {
        let site = Site::caller();
        let _model = context::ModelScope::enter();
        check_wait_irql(timeout, site, "KeWaitForMutexObject");
        let me = context::thread_token();
        let object = std::ptr::from_ref(self) as usize;
        self.kernel
            .0
            .dispatcher
            .wait_until(&self.kernel.0, object, timeout, || {
                let mut state = self.lock();
                if state.0 == 0 || state.0 == me {
                    *state = (me, state.1 + 1);
                    true
                } else {
                    false
                }
            })
    }

    /// `KeReleaseMutex`. Releasing a mutex the thread does not own is a
    /// [`Rule::MutexNotOwned`] (and changes nothing). Any IRQL ≤ DISPATCH_LEVEL.
    #[track_caller]
    pub fn release(&self) {
        let site = Site::caller();
        let _model = context::ModelScope::enter();
        let me = context::thread_token();
        let owned = {
            let state = self.lock();
            state.0 == me
        };
        if !owned {
            verifier::report(
                Rule::MutexNotOwned,
                site,
                "KeReleaseMutex by a thread that does not own the mutex".to_owned(),
            );
            return;
        }
        let object = std::ptr::from_ref(self) as usize;
        self.kernel.0.dispatcher.signal(object, || {
            let mut state = self.lock();
            state.1 -= 1;
            if state.1 == 0 {
                state.0 = 0;
            }
        });
    }
}
