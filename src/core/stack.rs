//! The stack: the core behind its spin lock, the inbound and outbound queues, and the DPC,
//! timer and work item that move requests through them (see ARCHITECTURE.md, "The core").
//!
//! Lock order: core → inbound, core → outbound. Dispatch routines take only the queue locks;
//! the DPC and cancel routines take the core lock first. Completion happens only in
//! [`Stack::run_completions`], at PASSIVE_LEVEL with no lock held, or in a cancel routine,
//! with no lock held.
#![forbid(unsafe_code)]

use crate::core::claim::CoreClaim;
use crate::core::ethernet::{Link, MAX_INTERFACES};
use crate::core::events::{self, EventHub};
use crate::core::fragment::FragmentStats;
use crate::core::icmp::IcmpStats;
use crate::core::lookaside::LookasideStats;
use crate::core::passes::{self, PassMeter, PassStats};
use crate::core::raw::RawStats;
use crate::core::state::{Completer, Core, CoreConfig};
use crate::core::udp::UdpStats;
use crate::core::work::{Completion, Finish, Inbound, Outbound, Request, Work};
use crate::info::set::Setting;
use crate::info::{adapters, provider, query};
use crate::link::ethernet::Adapter;
use crate::nt::NtStatus;
use crate::nt::dpc::{self, Dpc, DpcHandler};
use crate::nt::irp::{CancelRoutine, Dispatched, Irp, IrpId};
use crate::nt::irql::Irql;
use crate::nt::log::Level;
use crate::nt::pool;
use crate::nt::sync::SpinLock;
use crate::nt::thread::{self, StackPaint, ThreadId};
use crate::nt::time;
use crate::nt::timer::Timer;
use crate::nt::types::{TDI_PROVIDER_STATISTICS, TDIObjectID};
use crate::tdi::TransportAddress;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use smoltcp::time::Instant;

/// How many inbound requests one round applies before it polls the protocol.
const WORK_BUDGET: usize = 16;
/// How many apply-and-poll rounds one DPC runs at most before it re-queues itself.
const ROUND_BUDGET: usize = 8;
/// How long a pass keeps starting rounds, in processor time (`time::processor_nanos`): the
/// kernel guideline is 100 µs per DPC, and a round begun just before this mark still
/// finishes. (Not the interrupt time smoltcp's clock reads: that moves by clock ticks of 1 to
/// 15.6 ms on NT, so a budget read from it never ran out within a pass.)
const TIME_BUDGET_NANOS: u64 = 50_000;
/// The stack a fast-path run must find free below the dispatch routine's frame: a core round
/// and the completion routines the run calls. x86 kernel stacks are 12 KiB; the deepest use
/// measured (`InlineStats::deepest_stack`, logged as it grows) is in ARCHITECTURE.md.
#[cfg(target_pointer_width = "32")]
const INLINE_STACK: usize = 8 * 1024;
#[cfg(target_pointer_width = "64")]
const INLINE_STACK: usize = 16 * 1024;
/// [`Stack::armed_at`] when the timer is not set.
const NOT_ARMED: i64 = i64::MIN;
/// One fast-path run in this many measures its stack depth.
const STACK_SAMPLE: usize = 64;

/// The core and the machinery around it.
pub struct Stack {
    core: SpinLock<Box<Core>>,
    inbound: SpinLock<Inbound>,
    outbound: SpinLock<Outbound>,
    /// TDI client event handlers and the events due to them.
    hub: EventHub,
    /// The bound Ethernet links, interface `n`'s in slot `n - 1`, shared with the receive
    /// indications.
    links: SpinLock<[Option<Arc<Link>>; MAX_INTERFACES]>,
    dpc: Dpc,
    timer: Timer,
    /// The deadline the timer was last set for (µs), [`NOT_ARMED`] after a cancel. Written
    /// only by the core's runner (one at a time, see [`CoreClaim`]).
    armed_at: AtomicI64,
    /// Set at unload: the DPC stops re-arming the timer and re-queueing itself.
    stopping: AtomicBool,
    /// Which of the DPC and a dispatching thread runs the core (see [`CoreClaim`]).
    claim: CoreClaim,
    /// A fast-path run left completions that are not its own (see [`Stack::run_inline`]).
    completions_waiting: AtomicBool,
    counters: InlineCounters,
    /// How long each pass holds the core.
    passes: PassMeter,
}

/// The fast path's counters.
struct InlineCounters {
    inline: AtomicUsize,
    declined: AtomicUsize,
    deepest: AtomicUsize,
    least_room: AtomicUsize,
}

impl Default for InlineCounters {
    fn default() -> Self {
        Self {
            inline: AtomicUsize::new(0),
            declined: AtomicUsize::new(0),
            deepest: AtomicUsize::new(0),
            least_room: AtomicUsize::new(usize::MAX),
        }
    }
}

/// What [`Stack::inline_stats`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InlineStats {
    /// Requests whose dispatching thread ran the core.
    pub inline: usize,
    /// Requests left to the DPC (IRQL above PASSIVE, core busy, stack short, unloading).
    pub declined: usize,
    /// The deepest stack use measured below the dispatch routine's frame for a fast-path run
    /// and its completions (sampled every [`STACK_SAMPLE`] runs), in bytes.
    pub deepest_stack: usize,
    /// The least stack found free below a PASSIVE_LEVEL dispatch routine's frame, in bytes
    /// (`usize::MAX` before the first).
    pub least_room: usize,
}

/// What a DPC pass leaves for its caller.
pub struct Pass {
    /// Completions wait in the outbound queue: queue the completion work item.
    pub completions: bool,
}

fn now() -> Instant {
    Instant::from_micros(time::now_micros())
}

impl Stack {
    /// Builds the core. PASSIVE_LEVEL.
    pub fn new(config: CoreConfig) -> Result<Self, NtStatus> {
        Ok(Self {
            core: SpinLock::new(new_core(config)?),
            inbound: SpinLock::new(Inbound::default()),
            outbound: SpinLock::new(Outbound::default()),
            hub: EventHub::new(),
            links: SpinLock::new(Default::default()),
            dpc: Dpc::new(),
            timer: Timer::new(),
            armed_at: AtomicI64::new(NOT_ARMED),
            stopping: AtomicBool::new(false),
            claim: CoreClaim::new(),
            completions_waiting: AtomicBool::new(false),
            counters: InlineCounters::default(),
            passes: PassMeter::default(),
        })
    }

    /// Initialises the DPC (with `handler`, which calls [`Stack::run_dpc`]) and the timer once
    /// the stack is at its final address. PASSIVE_LEVEL.
    pub fn start<H: DpcHandler>(&'static self, handler: &'static H) {
        self.dpc.init(handler);
        self.timer.init();
    }

    /// Hands a decoded request to the core: reserves its completion slot, marks the IRP
    /// pending, arms `cancel` under the inbound lock, then either runs the core in the calling
    /// thread (the fast path, [`Stack::run_inline`]) or kicks the DPC. Failures before the IRP
    /// is queued complete it at once. PASSIVE_LEVEL (any IRQL ≤ DISPATCH_LEVEL works; above
    /// PASSIVE the DPC serves it).
    pub fn submit(
        &'static self,
        request: Request,
        irp: Irp,
        cancel: Option<CancelRoutine>,
    ) -> Dispatched {
        let file = irp.stack().file_object().map_or(0, |file| file.id());
        if let Err(status) = self.outbound.lock().reserve_slot() {
            return irp.complete(status, 0);
        }
        let mut inbound = self.inbound.lock();
        if let Err(status) = inbound.reserve() {
            drop(inbound);
            self.outbound.lock().release_slot();
            return irp.complete(status, 0);
        }
        let (dispatched, mut pending) = irp.mark_pending();
        if let Some(routine) = cancel
            && !pending.arm(routine)
        {
            drop(inbound);
            self.outbound.lock().release_slot();
            pending.complete(NtStatus::CANCELLED, 0);
            return dispatched;
        }
        inbound.push(Work {
            request,
            irp: pending,
        });
        drop(inbound);
        if !self.run_inline(file) {
            self.dpc.queue();
        }
        dispatched
    }

    /// TDI_SET_EVENT_HANDLER: registers or clears a client's handler at once (see
    /// [`EventHub::set_handler`]). IRQL ≤ DISPATCH_LEVEL.
    pub fn set_event_handler(
        &self,
        address: u32,
        event: usize,
        handler: usize,
        context: usize,
    ) -> Result<(), NtStatus> {
        self.hub.set_handler(address, event, handler, context)
    }

    /// The core DPC: applies queued requests and polls the protocol within a budget, re-arms
    /// the timer at smoltcp's next deadline, delivers the TDI client events found due with no
    /// lock held and applies their outcomes, and re-queues itself if work remains. `cancel` is
    /// armed on receive IRPs that event handlers hand back. DISPATCH_LEVEL.
    pub fn run_dpc(&'static self, cancel: CancelRoutine) -> Pass {
        if !self.claim.claim_for_dpc() {
            // A dispatching thread runs the core; it queues this DPC again when it is done.
            return Pass {
                completions: self.outbound.lock().has_ready(),
            };
        }
        let completer = Completer::new(&self.outbound, &self.hub);
        let mut more = self.pass(&completer);
        more |= self.claim.release();
        // The hand-off: events recorded under the core lock are delivered with no lock held
        // (a handler may call back into the driver's dispatch routines), then their outcomes
        // are applied under the core lock; what they changed goes out in the next run.
        let mut due = self.hub.take();
        if !due.is_empty() {
            events::deliver(&self.hub, &self.outbound, &mut due);
            let started = time::processor_nanos();
            self.core.lock().apply_events(due, cancel, &completer);
            self.measured(started);
            more = true;
        }
        if more && !self.stopping.load(Ordering::Acquire) {
            self.dpc.queue();
        }
        Pass {
            completions: self.outbound.lock().has_ready(),
        }
    }

    /// One pass: the core lock taken, [`ROUND_BUDGET`] rounds run, the lock released, and the
    /// time it was held recorded. Whether work remains. DISPATCH_LEVEL in the DPC, PASSIVE_LEVEL
    /// on the fast path (the lock raises to DISPATCH_LEVEL), with the core claimed.
    fn pass(&'static self, completer: &Completer<'_>) -> bool {
        let started = time::processor_nanos();
        let more = {
            let mut core = self.core.lock();
            self.run_rounds(&mut core, completer, ROUND_BUDGET)
        };
        self.measured(started);
        more
    }

    /// Records a pass that began at `started` ([`time::processor_nanos`]); the longest one
    /// over the budget so far gets a line in the log. Any IRQL ≤ DISPATCH_LEVEL.
    fn measured(&self, started: u64) {
        let nanos = time::processor_nanos().saturating_sub(started);
        if self.passes.record(nanos) {
            let stats = self.passes.stats();
            crate::log!(
                Level::Notice,
                "core pass of {} us, the longest yet; {} of {} passes over {} us",
                nanos / 1000,
                stats.over_budget,
                stats.count,
                passes::BUDGET_NANOS / 1000
            );
        }
    }

    /// How long the core passes held the core (see [`crate::core::passes`]). Any IRQL.
    pub fn pass_stats(&self) -> PassStats {
        self.passes.stats()
    }

    /// Forgets the passes measured so far (a benchmark's next workload). Any IRQL.
    pub fn reset_pass_stats(&self) {
        self.passes.reset();
    }

    /// Up to `rounds` rounds of applying queued requests and polling the protocol (fewer once
    /// [`TIME_BUDGET_NANOS`] has passed), then the timer re-armed at the core's next deadline.
    /// Whether work remains. DISPATCH_LEVEL, with the core lock held (`core`).
    fn run_rounds(
        &'static self,
        core: &mut Core,
        completer: &Completer<'_>,
        rounds: usize,
    ) -> bool {
        let started = time::processor_nanos();
        let mut more = true;
        for _ in 0..rounds {
            // Requests are applied at the present time (deadlines, round trips), not at the
            // last pass's, which on an idle stack may be long past.
            core.set_now(now());
            for _ in 0..WORK_BUDGET {
                let work = self.inbound.lock().pop();
                match work {
                    Some(work) => core.apply(work, completer),
                    None => break,
                }
            }
            let frames = core.poll(now(), completer);
            more = frames || !self.inbound.lock().is_empty();
            if !more || time::processor_nanos().saturating_sub(started) > TIME_BUDGET_NANOS {
                break;
            }
        }
        let now = now();
        let next = core
            .poll_at(now)
            .filter(|_| !self.stopping.load(Ordering::Acquire));
        self.arm_timer(next, now);
        more
    }

    /// Sets the timer for `at`, or cancels it. A future deadline the timer is already set for
    /// is left alone: an idle core's deadline (the lookaside's next trim, a socket's timer)
    /// often stays the same across runs, and re-setting a KTIMER each run is wasted work
    /// (in the host model it also wakes the timer thread). Once the timer may have fired
    /// (`at` reached) it is set again. DISPATCH_LEVEL, by the core's runner.
    fn arm_timer(&'static self, at: Option<Instant>, now: Instant) {
        let wanted = at.map_or(NOT_ARMED, |at| at.total_micros());
        if at.is_some_and(|at| at > now) && self.armed_at.load(Ordering::Relaxed) == wanted {
            return;
        }
        match at {
            Some(at) => {
                let delay = (at - now).total_micros().max(1);
                self.timer.set_relative(delay.saturating_mul(10), &self.dpc);
            }
            None => {
                self.timer.cancel();
            }
        }
        self.armed_at.store(wanted, Ordering::Relaxed);
    }

    /// The dispatch fast path: when the calling thread is at PASSIVE_LEVEL, the core is idle
    /// and the stack has room, runs the core here (as many rounds as the DPC would), then
    /// completes here, at PASSIVE_LEVEL with no lock held, the finished requests that this
    /// thread dispatched on `file` (the file the request came for) — saving the DPC's and the
    /// work item's thread hops. Requests of other threads or files are left to the work item
    /// ([`Stack::take_completions_waiting`] tells the dispatch routine to queue it; the DPC is
    /// kicked for client events and for work left over): completing
    /// them here could take a lock of the client's while this thread holds another of its
    /// locks (AFD holds the socket's mutex while it calls the transport). A completion routine
    /// that sends the next request nests a run (AFD's listen completion waits for the
    /// ASSOCIATE it sends, so that one must complete); the stack test bounds the nesting.
    /// Whether the request was served here; if not, the caller kicks the DPC. PASSIVE_LEVEL.
    fn run_inline(&'static self, file: usize) -> bool {
        if Irql::current() != Irql::PASSIVE || self.stopping.load(Ordering::Acquire) {
            self.counters.declined.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let room = thread::remaining_stack();
        self.counters.least_room.fetch_min(room, Ordering::Relaxed);
        if room < INLINE_STACK || !self.claim.try_claim() {
            self.counters.declined.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let sample = self
            .counters
            .inline
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(STACK_SAMPLE);
        let paint = sample.then(|| StackPaint::new(INLINE_STACK));
        let completer = Completer::new(&self.outbound, &self.hub);
        let mut more = self.pass(&completer);
        more |= self.claim.release();
        self.complete(Some(file));
        if more || self.hub.has_due() {
            self.dpc.queue();
        }
        if self.outbound.lock().has_ready() {
            self.completions_waiting.store(true, Ordering::Release);
        }
        if let Some(paint) = paint {
            let used = paint.used();
            let deepest = self.counters.deepest.fetch_max(used, Ordering::Relaxed);
            if used > deepest {
                let stats = self.inline_stats();
                crate::log!(
                    Level::Notice,
                    "fast path: {used} bytes of stack at the deepest, {} bytes free at the \
                     least; {} requests served inline, {} left to the DPC",
                    stats.least_room,
                    stats.inline,
                    stats.declined
                );
            }
        }
        true
    }

    /// Whether a fast-path run left completions for the work item (and forgets it): the
    /// dispatch routine then queues the work item. Any IRQL.
    pub fn take_completions_waiting(&self) -> bool {
        self.completions_waiting.swap(false, Ordering::AcqRel)
    }

    /// How often the fast path served requests and declined to, and the deepest stack use
    /// measured. Any IRQL.
    pub fn inline_stats(&self) -> InlineStats {
        InlineStats {
            inline: self.counters.inline.load(Ordering::Relaxed),
            declined: self.counters.declined.load(Ordering::Relaxed),
            deepest_stack: self.counters.deepest.load(Ordering::Relaxed),
            least_room: self.counters.least_room.load(Ordering::Relaxed),
        }
    }

    /// Binds an Ethernet adapter under the lowest free interface (what the NDIS protocol's
    /// bind does for each adapter), with a receive queue of `frames` buffers. Returns the
    /// interface index. PASSIVE_LEVEL.
    pub fn attach_link(&self, adapter: Arc<dyn Adapter>, frames: usize) -> Result<u32, NtStatus> {
        let link = Link::new(adapter, frames)?;
        let index = self.core.lock().attach_link(&link)?;
        if let Some(slot) = self.links.lock().get_mut(index.wrapping_sub(1) as usize) {
            *slot = Some(link);
        }
        self.dpc.queue();
        Ok(index)
    }

    /// Unbinds interface `index`'s adapter. PASSIVE_LEVEL.
    pub fn detach_link(&self, index: u32) {
        self.core.lock().detach_link(index);
        let link = self
            .links
            .lock()
            .get_mut(index.wrapping_sub(1) as usize)
            .and_then(Option::take);
        drop(link);
        self.dpc.queue();
    }

    /// The receive indication of interface `index`'s adapter: queues `frame` for the core and
    /// kicks the DPC. `false` if it was dropped (no link, queue full, bad size).
    /// IRQL ≤ DISPATCH_LEVEL.
    pub fn indicate_receive(&self, index: u32, frame: &[u8]) -> bool {
        self.indicate_receive_with(index, frame.len(), |buffer| {
            buffer.copy_from_slice(frame);
            true
        })
    }

    /// Answers an `IOCTL_TCP_QUERY_INFORMATION_EX` object from the core's state, under the core
    /// lock: the answer is one consistent snapshot. IRQL ≤ DISPATCH_LEVEL.
    pub fn query_information(
        &self,
        id: &TDIObjectID,
        context: &[u8; 16],
    ) -> Result<Vec<u8>, NtStatus> {
        let core = self.core.lock();
        query::answer(&**core, id, context)
    }

    /// The answer to `IOCTL_IP_INTERFACE_INFO`. IRQL ≤ DISPATCH_LEVEL.
    pub fn interface_info(&self) -> Result<Vec<u8>, NtStatus> {
        let core = self.core.lock();
        adapters::interface_info(&**core)
    }

    /// The `TDI_PROVIDER_STATISTICS` of the transport. IRQL ≤ DISPATCH_LEVEL.
    pub fn provider_statistics(&self) -> Result<TDI_PROVIDER_STATISTICS, NtStatus> {
        let core = self.core.lock();
        provider::statistics(&**core)
    }

    /// Applies a decoded `IOCTL_TCP_SET_INFORMATION_EX` setting. ARP entries cannot be set:
    /// smoltcp's neighbour cache takes no entries from outside. IRQL ≤ DISPATCH_LEVEL.
    pub fn apply_setting(&self, setting: Setting) -> NtStatus {
        let mut core = self.core.lock();
        let status = match setting {
            Setting::Route(change) => core.change_route(change),
            Setting::Neighbor {
                interface,
                ip,
                change,
            } => core.set_neighbor(interface, ip, change),
            Setting::Option {
                transport,
                instance,
                option,
            } => core.set_socket_option(transport, instance, option),
        };
        drop(core);
        // A changed socket transmits at the next pass.
        self.dpc.queue();
        status
    }

    /// The receive indication of a frame of `len` bytes that `fill` writes into the queue's
    /// buffer (an NDIS packet's buffer chain, a header and its lookahead). Otherwise as
    /// [`Stack::indicate_receive`]. IRQL ≤ DISPATCH_LEVEL.
    pub fn indicate_receive_with(
        &self,
        index: u32,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> bool,
    ) -> bool {
        let link = self
            .links
            .lock()
            .get(index.wrapping_sub(1) as usize)
            .and_then(Option::clone);
        let queued = link.is_some_and(|link| link.indicate_with(len, fill));
        if queued {
            self.dpc.queue();
        }
        queued
    }

    /// Gives interface `index` `address` (IP and prefix length), or removes its address: the
    /// configuration read from the registry when an adapter is bound, as
    /// IOCTL_SET/DELETE_IP_ADDRESS do later. PASSIVE_LEVEL.
    pub fn configure_address(
        &self,
        index: u32,
        address: Option<(Ipv4Addr, u8)>,
    ) -> Result<(), NtStatus> {
        let result = self.core.lock().configure_address(index, address);
        self.dpc.queue();
        result
    }

    /// The UDP layer's counters. PASSIVE_LEVEL (takes the core lock).
    pub fn udp_stats(&self) -> UdpStats {
        self.core.lock().udp_stats()
    }

    /// The fragmentation counters and the bytes reassembly holds now. PASSIVE_LEVEL (takes
    /// the core lock).
    pub fn fragment_stats(&self) -> (FragmentStats, usize) {
        self.core.lock().fragment_stats()
    }

    /// The raw IP layer's counters. PASSIVE_LEVEL (takes the core lock).
    pub fn raw_stats(&self) -> RawStats {
        self.core.lock().raw_stats()
    }

    /// The ICMP layer's counters. PASSIVE_LEVEL (takes the core lock).
    pub fn icmp_stats(&self) -> IcmpStats {
        self.core.lock().icmp_stats()
    }

    /// The socket ring lookaside's counters and what it holds (pool the driver keeps for the
    /// next sockets). PASSIVE_LEVEL (takes the core lock).
    pub fn lookaside_stats(&self) -> LookasideStats {
        self.core.lock().lookaside_stats()
    }

    /// Gives every ring block the lookaside holds back to the pool (as an idle core does by
    /// itself after `CoreConfig::lookaside_idle`). PASSIVE_LEVEL (takes the core lock).
    pub fn flush_lookaside(&self) {
        self.core.lock().flush_lookaside();
    }

    /// Sets or clears interface `index`'s default gateway (`STATUS_DEVICE_DOES_NOT_EXIST` for
    /// an interface that does not exist). PASSIVE_LEVEL.
    pub fn set_gateway(&self, index: u32, gateway: Option<Ipv4Addr>) -> NtStatus {
        self.core.lock().set_gateway(index, gateway)
    }

    /// Completes everything in the outbound queue that may be completed now (a file's close
    /// waits for the completions other threads are still running on it, see [`Outbound`]).
    /// Several runs may overlap: AFD's completion routines re-enter the driver from here and
    /// wait for synchronous requests that another run completes. PASSIVE_LEVEL, no lock held.
    pub fn run_completions(&self) {
        self.complete(None);
    }

    /// The completion loop: everything that may be completed now, or with `own_file`, only the
    /// finished requests the calling thread sent to that file (the fast path's). PASSIVE_LEVEL,
    /// no lock held.
    fn complete(&self, own_file: Option<usize>) {
        let thread = ThreadId::current();
        let mut finished = None;
        loop {
            let taken = self
                .outbound
                .lock()
                .take_ready_of(thread, finished, own_file);
            let Some((completion, ticket)) = taken else {
                break;
            };
            finish(&self.hub, completion);
            finished = Some(ticket);
        }
    }

    /// The body of the cancel routine: finds IRP `id` wherever it is — in the core, still in
    /// the inbound queue, or already finished in the outbound queue — and completes it before
    /// returning: `STATUS_CANCELLED` if it had not been served, its result otherwise. All
    /// three places are searched under the core lock, which every move between them holds, so
    /// the IRP cannot slip past. At the `IoCancelIrp` caller's IRQL.
    pub fn cancel(&self, id: IrpId) {
        let (cancelled, finished) = {
            let mut core = self.core.lock();
            let cancelled = core
                .cancel(id)
                .or_else(|| self.inbound.lock().take(id).map(|work| work.irp));
            let finished = match cancelled {
                Some(_) => None,
                None => self.outbound.lock().take(id),
            };
            (cancelled, finished)
        };
        if let Some(mut irp) = cancelled {
            self.outbound.lock().release_slot();
            irp.claimed_by_cancel();
            irp.complete(NtStatus::CANCELLED, 0);
            // The cancellation may have touched a socket (an abandoned connect sends its RST).
            self.dpc.queue();
        } else if let Some(mut completion) = finished {
            completion.irp.claimed_by_cancel();
            finish(&self.hub, completion);
        }
    }

    /// Stops the timer and waits for the DPC to be idle: once `stopping` is set the DPC
    /// neither re-queues itself nor re-arms the timer, so flushing the queued DPCs drains it. A
    /// DPC already running when the flag is set may still arm the timer once, hence the second
    /// round. PASSIVE_LEVEL, at unload.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        for _ in 0..2 {
            self.timer.cancel();
            dpc::flush_queued_dpcs();
        }
    }
}

/// Completes a finished request, writing a listen's peer or a datagram's sender first; the
/// close of an address file waits until no handler of the file is being called (a handler runs
/// in a DPC, which is never held up by this wait at PASSIVE_LEVEL). PASSIVE_LEVEL (or the
/// cancel routine's IRQL, for cancellable requests, which are never closes), no lock held.
fn finish(hub: &EventHub, mut completion: Completion) {
    if let Finish::AfterHandlers(address) = completion.finish {
        while hub.calls(address) != 0 {
            thread::sleep_micros(100);
        }
    }
    if let Finish::ReturnPeer(peer) = completion.finish {
        let address = TransportAddress {
            ip: *peer.ip(),
            port: peer.port(),
        };
        if let Some(mut info) = completion.irp.irp_mut().tdi_connection_information(2) {
            info.set_remote_address(&address.emit_ta_ip_address());
            info.clear_data_and_options();
        }
    }
    completion
        .irp
        .complete(completion.status, completion.information);
}

/// The core, built in pool by a function of its own: with everything inlined into
/// `DriverEntry`, building it in place took an 11 KiB stack frame on x86, past the 12 KiB
/// kernel stack once NDIS binds adapters under it (bugcheck 0x50 in the VM). PASSIVE_LEVEL.
#[inline(never)]
fn new_core(config: CoreConfig) -> Result<Box<Core>, NtStatus> {
    pool::try_box(Core::new(config, time::entropy(), now())?)
}
