//! One instance of the NT kernel model: its configuration, its threads (DPC processors, system
//! worker threads, the real-time timer thread), quiescence, and teardown with the verifier's
//! verdict.

use super::clock::{Clock, ClockState, Timers};
use super::context::{self, KernelContext, ModelScope};
use super::debug::DebugLog;
use super::device::Drivers;
use super::dpc::Processors;
use super::io::Irps;
use super::irql::{self, DISPATCH_LEVEL, PASSIVE_LEVEL};
use super::mdl::Mdls;
use super::object::Objects;
use super::pool::{FaultInjection, PoolTracker};
use super::sync::Dispatcher;
use super::verifier::{Entry, RoutineFrame, Rule, Verifier, Violation};
use super::work::Workers;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long [`KernelHandle::wait_quiescent`] waits before it declares the system stuck.
const QUIESCENCE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long teardown waits for the model's threads to stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The configuration of a [`Kernel`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Simulated processors, each a thread running DPCs at DISPATCH_LEVEL. At least 1.
    pub processors: usize,
    /// System worker threads running work items at PASSIVE_LEVEL. At least 1.
    pub workers: usize,
    pub clock: Clock,
    /// Fault injection for the driver's allocations, from the start.
    pub fault: FaultInjection,
    /// How many `DbgPrintEx` lines the kernel keeps for tests to read.
    pub debug_lines: usize,
    /// The non-paged pool's size: a driver allocation that would take the driver's live
    /// bytes above it fails, as it does on a real machine (a ReactOS livecd with 1 GiB has
    /// about 160 MiB, [`NONPAGED_POOL_1GIB`]). `None`: no limit.
    pub nonpaged_pool_limit: Option<usize>,
    /// The machine's physical memory, as `ZwQuerySystemInformation(SystemBasicInformation)`
    /// reports it (the driver sizes its socket memory from it). A multiple of 4 KiB pages.
    pub physical_memory: u64,
    /// DPCs and work items run on the threads that wait for them, not on processor and worker
    /// threads: at [`KernelHandle::wait_quiescent`] (so also at [`KernelHandle::advance`] and
    /// unload), in event waits, `KeFlushQueuedDpcs` and `KeDelayExecutionThread` below
    /// DISPATCH_LEVEL; a DPC raised to DISPATCH_LEVEL as the processor of its queue, a work
    /// item (at PASSIVE_LEVEL only) when no DPC is queued. No processor or worker thread is
    /// started: the caller and the driver's routines take turns, without a thread switch per
    /// DPC, in an order that depends on the calls alone (the fuzz targets' setting). What is
    /// queued while nobody waits runs at the next wait.
    pub inline_dpcs: bool,
}

/// About the non-paged pool of a ReactOS machine with 1 GiB of memory.
pub const NONPAGED_POOL_1GIB: usize = 160 * 1024 * 1024;
/// The physical memory of the model's default machine: the livecd's VM.
pub const PHYSICAL_MEMORY_1GIB: u64 = 1 << 30;

impl Default for Config {
    fn default() -> Config {
        Config {
            processors: 2,
            workers: 2,
            clock: Clock::Virtual,
            fault: FaultInjection::None,
            debug_lines: 1024,
            nonpaged_pool_limit: None,
            physical_memory: PHYSICAL_MEMORY_1GIB,
            inline_dpcs: false,
        }
    }
}

/// The shared state of one kernel instance.
pub(crate) struct KernelInner {
    pub(crate) config: Config,
    pub(crate) pool: Arc<PoolTracker>,
    pub(crate) verifier: Verifier,
    pub(crate) activity: Activity,
    pub(crate) clock: ClockState,
    pub(crate) timers: Timers,
    pub(crate) processors: Processors,
    pub(crate) workers: Workers,
    pub(crate) irps: Irps,
    pub(crate) objects: Objects,
    pub(crate) drivers: Drivers,
    pub(crate) mdls: Mdls,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) debug: DebugLog,
    pub(crate) ndis: super::ndis::NdisState,
    /// The user ranges mapped for requests (METHOD_NEITHER buffers).
    pub(crate) user_space: super::user::UserSpace,
    /// The I/O manager's cancel spin lock.
    pub(crate) cancel_lock: AtomicUsize,
    /// Model threads still running.
    threads: Mutex<usize>,
    threads_exited: Condvar,
}

/// Counts the queued and running DPCs and work items: the system is quiescent at zero.
#[derive(Default)]
pub(crate) struct Activity {
    busy: Mutex<usize>,
    idle: Condvar,
}

impl Activity {
    pub(crate) fn begin(&self) {
        *self.busy.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    /// Whether nothing is queued or running.
    fn is_idle(&self) -> bool {
        *self.busy.lock().unwrap_or_else(|e| e.into_inner()) == 0
    }

    pub(crate) fn end(&self) {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        *busy -= 1;
        if *busy == 0 {
            self.idle.notify_all();
        }
    }

    /// Wakes the waiters for zero, so that they look at the DPC queues
    /// ([`Config::inline_dpcs`]).
    pub(crate) fn wake(&self) {
        let _busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        self.idle.notify_all();
    }

    /// Waits for zero, or (with `dpcs`) for a DPC to run inline; false on timeout.
    fn wait_idle_or(&self, timeout: Duration, dpcs: impl Fn() -> bool) -> bool {
        let busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let (_busy, result) = self
            .idle
            .wait_timeout_while(busy, timeout, |busy| *busy > 0 && !dpcs())
            .unwrap_or_else(|e| e.into_inner());
        !result.timed_out()
    }

    /// Waits for zero; false on timeout.
    fn wait_idle(&self, timeout: Duration) -> bool {
        let busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let (_busy, result) = self
            .idle
            .wait_timeout_while(busy, timeout, |busy| *busy > 0)
            .unwrap_or_else(|e| e.into_inner());
        !result.timed_out()
    }
}

/// A reference to a kernel instance: the host API. Cloneable and usable from any thread; the
/// [`Kernel`] that owns the instance tears it down.
#[derive(Clone)]
pub struct KernelHandle(pub(crate) Arc<KernelInner>);

/// A kernel instance, torn down on drop: loaded drivers are unloaded (with their leak checks),
/// the system is left to become quiescent, the model's threads stop, and the test fails if the
/// verifier recorded a violation the test did not take or expect. Derefs to [`KernelHandle`].
pub struct Kernel {
    handle: KernelHandle,
    threads: Vec<JoinHandle<()>>,
    _context: KernelContext,
}

impl Deref for Kernel {
    type Target = KernelHandle;

    fn deref(&self) -> &KernelHandle {
        &self.handle
    }
}

/// While alive, the calling thread belongs to the kernel (see [`KernelHandle::enter`]).
pub struct EnteredKernel {
    _context: KernelContext,
}

/// The host API's guard: the calling thread belongs to the kernel, and the model's allocations
/// are not attributed to the driver even when a fake driver calls the host API.
pub(crate) struct ApiScope {
    _context: Option<KernelContext>,
    _model: ModelScope,
}

impl Kernel {
    /// Starts a kernel: its processors, worker threads and (for [`Clock::Real`]) timer thread.
    /// The calling thread belongs to it until the `Kernel` is dropped. PASSIVE_LEVEL.
    pub fn new(config: Config) -> Kernel {
        let _model = ModelScope::enter();
        assert!(config.processors >= 1, "at least one processor");
        assert!(config.workers >= 1, "at least one worker thread");
        let inner = Arc::new(KernelInner {
            pool: PoolTracker::new(config.fault, config.nonpaged_pool_limit),
            verifier: Verifier::default(),
            activity: Activity::default(),
            clock: ClockState::new(config.clock),
            timers: Timers::default(),
            processors: Processors::new(config.processors),
            workers: Workers::default(),
            irps: Irps::default(),
            objects: Objects::default(),
            drivers: Drivers::default(),
            mdls: Mdls::default(),
            dispatcher: Dispatcher::default(),
            debug: DebugLog::new(config.debug_lines),
            ndis: super::ndis::NdisState::default(),
            user_space: super::user::UserSpace::default(),
            cancel_lock: AtomicUsize::new(0),
            threads: Mutex::new(0),
            threads_exited: Condvar::new(),
            config,
        });
        let context = KernelContext::install(inner.clone());
        let mut threads = Vec::new();
        let processor_threads = if inner.config.inline_dpcs {
            0
        } else {
            inner.config.processors
        };
        for index in 0..processor_threads {
            threads.push(model_thread(&inner, format!("nt-cpu{index}"), move |k| {
                super::dpc::processor_main(k, index)
            }));
        }
        let worker_threads = if inner.config.inline_dpcs {
            0
        } else {
            inner.config.workers
        };
        for index in 0..worker_threads {
            threads.push(model_thread(&inner, format!("nt-worker{index}"), |k| {
                super::work::worker_main(k)
            }));
        }
        if !inner.config.inline_dpcs {
            inner.ndis.thread_started.store(true, Ordering::Release);
            threads.push(model_thread(&inner, "nt-ndis".to_owned(), |k| {
                k.ndis.run(k)
            }));
        }
        if inner.config.clock == Clock::Real {
            threads.push(model_thread(&inner, "nt-timer".to_owned(), |k| {
                super::clock::timer_main(k)
            }));
        }
        Kernel {
            handle: KernelHandle(inner),
            threads,
            _context: context,
        }
    }

    /// A handle to this kernel, for other threads and for closures. Any IRQL.
    pub fn handle(&self) -> KernelHandle {
        self.handle.clone()
    }
}

/// Starts the `nt-ndis` thread late (`Config::inline_dpcs`, at the first deferred NDIS
/// completion), detached: teardown waits for it as for every model thread.
pub(crate) fn start_ndis_thread(inner: &Arc<KernelInner>) {
    drop(model_thread(inner, "nt-ndis".to_owned(), |k| k.ndis.run(k)));
}

/// Starts one of the model's own threads.
fn model_thread(
    inner: &Arc<KernelInner>,
    name: String,
    main: impl FnOnce(&Arc<KernelInner>) + Send + 'static,
) -> JoinHandle<()> {
    *inner.threads.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    let inner = inner.clone();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _context = KernelContext::install(inner.clone());
            main(&inner);
            let mut threads = inner.threads.lock().unwrap_or_else(|e| e.into_inner());
            *threads -= 1;
            inner.threads_exited.notify_all();
        })
        .expect("spawn a kernel model thread")
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let inner = self.handle.0.clone();
        let _api = self.handle.api();
        let panicking = std::thread::panicking();
        if !panicking {
            super::driver::unload_remaining(&inner);
            self.handle.wait_quiescent();
        }
        inner.processors.shutdown();
        inner.workers.shutdown();
        inner.timers.shutdown();
        inner.ndis.shutdown();
        let threads = inner.threads.lock().unwrap_or_else(|e| e.into_inner());
        let (threads, wait) = inner
            .threads_exited
            .wait_timeout_while(threads, SHUTDOWN_TIMEOUT, |n| *n > 0)
            .unwrap_or_else(|e| e.into_inner());
        let stuck = wait.timed_out().then_some(*threads);
        drop(threads);
        match stuck {
            // A routine never returned: leave its thread behind rather than hang the test.
            Some(n) => eprintln!("tcpip host model: {n} kernel thread(s) did not stop"),
            None => {
                for thread in self.threads.drain(..) {
                    let _ = thread.join();
                }
            }
        }
        super::device::free_foreign(&inner);
        if let Some(failures) = inner.verifier.teardown_failures()
            && !panicking
        {
            panic!("NT kernel model verifier failures:\n{failures}");
        }
    }
}

impl KernelHandle {
    /// The kernel the current thread belongs to. Panics on threads that belong to none. Any
    /// IRQL.
    pub fn current() -> KernelHandle {
        KernelHandle(context::current())
    }

    /// Makes the calling thread belong to this kernel until the guard is dropped (for threads
    /// not made by [`KernelHandle::spawn`]). Any IRQL.
    pub fn enter(&self) -> EnteredKernel {
        EnteredKernel {
            _context: KernelContext::install(self.0.clone()),
        }
    }

    pub(crate) fn api(&self) -> ApiScope {
        let same = context::try_current().is_some_and(|k| Arc::ptr_eq(&k, &self.0));
        ApiScope {
            _context: (!same).then(|| KernelContext::install(self.0.clone())),
            _model: ModelScope::enter(),
        }
    }

    /// The configuration the kernel was started with. Any IRQL.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// Runs `f` on a new thread that belongs to this kernel, at PASSIVE_LEVEL. When `f` returns,
    /// the thread must be back at PASSIVE_LEVEL holding no spin lock (checked like a driver
    /// routine); then, as the thread ends, the I/O manager cancels the IRPs still queued to it
    /// ([`KernelHandle::queue_thread_irp`]) and waits for them. Any IRQL.
    pub fn spawn<T, F>(&self, name: &str, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let _api = self.api();
        let inner = self.0.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _context = KernelContext::install(inner.clone());
                irql::set(PASSIVE_LEVEL);
                let frame = RoutineFrame::begin();
                let result = f();
                frame.end(Entry::Client, 0);
                KernelHandle(inner).cancel_thread_io();
                result
            })
            .expect("spawn a kernel thread")
    }

    /// Waits until no DPC or work item is queued or running. Panics (from the calling test
    /// thread) if that does not happen within 20 s: a DPC or work item that requeues itself
    /// forever, or one that never returns. PASSIVE_LEVEL.
    pub fn wait_quiescent(&self) {
        let started = Instant::now();
        let kernel = &self.0;
        let quiescent = if kernel.config.inline_dpcs && irql::current_irql() < DISPATCH_LEVEL {
            // Runs the DPCs here; waits for the rest (work items, DPCs another thread runs).
            loop {
                super::dpc::run_inline(kernel);
                let left = QUIESCENCE_TIMEOUT.saturating_sub(started.elapsed());
                let queued = || super::dpc::any_queued(kernel);
                if !kernel.activity.wait_idle_or(left, queued) {
                    break false;
                }
                if !queued() && kernel.activity.is_idle() {
                    break true;
                }
            }
        } else {
            kernel.activity.wait_idle(QUIESCENCE_TIMEOUT)
        };
        if !quiescent {
            panic!(
                "NT kernel model: not quiescent after {:?}: {}",
                started.elapsed(),
                kernel.processors.describe()
            );
        }
    }

    /// Takes the violations recorded so far; they no longer fail the test at teardown. Any
    /// IRQL.
    pub fn take_violations(&self) -> Vec<Violation> {
        self.0.verifier.take()
    }

    /// Declares that the test expects `rule` to fire: its violations do not fail the test, and
    /// teardown fails if it never fired. Any IRQL.
    pub fn expect_violation(&self, rule: Rule) {
        self.0.verifier.expect(rule);
    }
}
