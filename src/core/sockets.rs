//! The core's TCP sockets, each in a smoltcp `SocketSet` of its own, and the bookkeeping that
//! keeps a DPC pass proportional to the sockets it concerns rather than to all of them.
//!
//! # One set per socket
//!
//! smoltcp's `Interface::poll_*` functions visit every socket of the set they are given:
//! ingress to find the socket a segment belongs to, egress to let each one transmit, `poll_at`
//! to find the earliest deadline. With thousands of connections a pass over one big set costs
//! thousands of socket visits, whatever happened. Here each socket has its own set, and a pass
//! visits only:
//! - the socket a received segment is for, found by 4-tuple ([`crate::core::demux`]);
//! - the sockets whose deadline has come ([`crate::core::timers`]);
//! - the sockets the core changed through [`Sockets::get`] (data queued or read, a close).
//!
//! Every mutable access marks its socket *touched*; [`Sockets::egress`] lets each touched
//! socket transmit, asks smoltcp for its next deadline and files it. Sockets whose protocol
//! state moved (a segment arrived, a timer fired, a transmission changed the state) raise an
//! *event*, which the core follows up for the socket's [`Owner`]. Both lists hold slot indices
//! with a flag per slot, so a slot is listed at most once and the lists, reserved for every
//! slot when a socket is added, never grow during a pass.
//!
//! # Keys
//!
//! `SocketSet::get_mut` and `remove` panic on a handle whose slot is empty (smoltcp #501), and
//! a panic here is a bugcheck. The core therefore never stores a `SocketHandle`: it stores a
//! [`SocketKey`] into a slab whose entry owns the set and the handle. A stale key finds nothing.
//!
//! # Ring blocks
//!
//! A socket's rings are blocks of the core's lookaside, lent to smoltcp; `sockets/lifecycle.rs`
//! makes, adds and removes sockets, and takes and gives back their blocks.
#![forbid(unsafe_code)]

use crate::core::counters::{Counters, Meter, Metered};
use crate::core::demux::{Tuple, TupleMap};
use crate::core::ethernet::{self, Wire};
use crate::core::lookaside::Lookaside;
use crate::core::retransmit::{SentHigh, Watch};
use crate::core::slab::{Key, Slab};
use crate::core::timers::TimerQueue;
use crate::nt::NtStatus;
use crate::nt::lend::Lent;

use crate::nt::process::ProcessOwner;
use alloc::vec::Vec;
use core::cell::Cell;
use core::net::{Ipv4Addr, SocketAddrV4};
use smoltcp::iface::{Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint};

mod lifecycle;

/// A generation-checked reference to one of the core's TCP sockets.
pub type SocketKey = Key;

/// Segments one socket may transmit per egress, so that one busy connection cannot hold the
/// link for a whole pass.
const EGRESS_SEGMENTS: usize = 8;

/// How long a RST waits for its peer's hardware address: three ARP requests, a second apart
/// (as Windows tries an unanswered neighbour). smoltcp keeps a closed socket's tuple until its
/// RST is out and asks for the neighbour once a second for as long as it is not; the connection
/// is over either way, so after this wait the RST is sent the loopback's way, where no
/// interface owns its destination and it is dropped like a frame the wire lost, and smoltcp
/// forgets the connection. An orphan then goes, and an endpoint's timed-out or aborted
/// connection stops asking for a peer that vanished.
const RESET_WAIT: Duration = Duration::from_secs(3);

/// Flag bits per slot.
const TOUCHED: u8 = 1;
const EVENT: u8 = 2;

/// The link a socket's segments leave by, chosen from its remote address when its tuple is
/// filed: the loopback for the host's own addresses, an interface's Ethernet link (by index)
/// for the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Loopback,
    Ethernet(u32),
}

/// Who a socket works for: what the core follows up when the socket has an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The connection (by key) whose endpoint it is: connecting or connected.
    Connection(Key),
    /// The listener of the address (by key): its LISTEN socket, or a connection it holds
    /// half-open or ready for a TDI_LISTEN.
    Listener(Key),
    /// Nobody: closing after its endpoint went, holding a reference on `port` until smoltcp
    /// has finished with it or the core gives it up ([`Sockets::given_up`]).
    Orphan { port: u16 },
}

/// A socket in its own set: the borrower of the socket's ring blocks.
struct Held {
    set: SocketSet<'static>,
    handle: SocketHandle,
}

struct Entry {
    /// The set and its socket, with the blocks they borrow: dropping the entry drops the set
    /// before freeing the blocks, and `Sockets::remove` gets the blocks back only by ending
    /// the loan, which drops the set first.
    held: Lent<Held>,
    owner: Owner,
    /// The process of the address file the socket was made for (an accepted connection's is
    /// its listener's), for the owner-PID tables.
    process: ProcessOwner,
    tuple: Option<Tuple>,
    route: Route,
    /// The deadline filed in the timer queue, if any.
    deadline: Option<Instant>,
    /// The end of the sequence space sent so far (for the retransmission counter).
    sent: SentHigh,
    /// Bytes of the socket's receive and send buffers.
    buffer_bytes: usize,
    /// When a segment for the socket last arrived.
    heard: Option<Instant>,
    /// When it became an orphan.
    orphaned: Option<Instant>,
    /// Since when its RST has waited for the peer's hardware address (closed, tuple kept).
    reset_waiting: Option<Instant>,
}

impl Entry {
    fn socket(&self) -> &tcp::Socket<'static> {
        let held = self.held.get();
        held.set.get(held.handle)
    }

    fn socket_mut(&mut self) -> &mut tcp::Socket<'static> {
        let held = self.held.get_mut();
        held.set.get_mut(held.handle)
    }

    /// The socket's set, for smoltcp's polls.
    fn set_mut(&mut self) -> &mut SocketSet<'static> {
        &mut self.held.get_mut().set
    }

    /// When the core gives the socket up, if it is an orphan: once its peer has been silent
    /// for `data_timeout` since it became one (a FIN or data never acknowledged, a FIN-WAIT-2
    /// whose peer never closes: smoltcp has no timer for these). A RST left to send is not
    /// waited for here: it leaves, or is dropped after [`RESET_WAIT`], and smoltcp is done.
    fn give_up_at(&self, data_timeout: Duration) -> Option<Instant> {
        let orphaned = self.orphaned?;
        let heard = self.heard.map_or(orphaned, |heard| heard.max(orphaned));
        Some(heard + data_timeout)
    }

    /// Notes, after a transmission at `now`, whether the socket's RST is still waiting (closed
    /// with its tuple kept: smoltcp had no hardware address to send it to), and returns whether
    /// it has waited [`RESET_WAIT`]: then its next transmission takes the loopback.
    fn reset_waited(&mut self, now: Instant) -> bool {
        let (state, tuple) = self.progress();
        if state != State::Closed || !tuple {
            self.reset_waiting = None;
            return false;
        }
        let since = *self.reset_waiting.get_or_insert(now);
        now >= since + RESET_WAIT
    }

    /// What an event is raised for: the state, and whether the socket still has a tuple
    /// (an abort keeps it until its RST is out).
    fn progress(&self) -> (State, bool) {
        let socket = self.socket();
        (socket.state(), socket.local_endpoint().is_some())
    }
}

/// The core's TCP sockets. Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
pub struct Sockets {
    entries: Slab<Entry>,
    capacity: usize,
    tuples: TupleMap,
    timers: TimerQueue,
    /// Per slot: `TOUCHED` and `EVENT`.
    flags: Vec<u8>,
    touched: Vec<u32>,
    /// The touched list being worked through by `egress` (kept to reuse its storage).
    draining: Vec<u32>,
    events: Vec<u32>,
    /// A set with no socket, for segments nobody owns: smoltcp answers them with a RST.
    nobody: SocketSet<'static>,
    /// TCP segments sent again (`tcpRetransSegs`), see [`crate::core::retransmit`].
    retransmitted: u64,
    /// Bytes of socket buffers held by all the sockets.
    buffer_bytes: usize,
    /// How long a socket with data to be acknowledged waits for its peer to say anything.
    data_timeout: Duration,
    /// The free lists the sockets' ring blocks come from and go back to.
    lookaside: Lookaside,
}

impl Sockets {
    /// Room for `capacity` sockets; the demultiplexer's hash is keyed with `seed`; a socket
    /// with data in flight gives up after `data_timeout` without a word from its peer; ring
    /// blocks come from `lookaside`. Allocates nothing until sockets are added.
    pub fn new(capacity: usize, seed: u64, data_timeout: Duration, lookaside: Lookaside) -> Self {
        Self {
            entries: Slab::default(),
            capacity,
            tuples: TupleMap::new(seed),
            timers: TimerQueue::default(),
            flags: Vec::new(),
            touched: Vec::new(),
            draining: Vec::new(),
            events: Vec::new(),
            nobody: SocketSet::new(Vec::new()),
            retransmitted: 0,
            buffer_bytes: 0,
            data_timeout,
            lookaside,
        }
    }

    /// Bytes of receive and send buffers the sockets hold, all together. Any IRQL (a read of
    /// the core's state under its lock).
    pub fn buffer_bytes(&self) -> usize {
        self.buffer_bytes
    }

    /// The socket behind `key`, marked touched.
    pub fn get(&mut self, key: SocketKey) -> Option<&mut tcp::Socket<'static>> {
        self.entries.get(key)?;
        self.mark(key.index, TOUCHED);
        self.entries.get_mut(key).map(Entry::socket_mut)
    }

    /// The socket behind `key`, to look at.
    pub fn peek(&self, key: SocketKey) -> Option<&tcp::Socket<'static>> {
        self.entries.get(key).map(Entry::socket)
    }

    /// TCP segments retransmitted so far. Any IRQL.
    pub fn retransmitted(&self) -> u64 {
        self.retransmitted
    }

    /// Calls `each` with every socket and the process it works for, in slot order; an error
    /// stops the walk. Any IRQL.
    pub fn try_for_each(
        &self,
        mut each: impl FnMut(&tcp::Socket<'static>, ProcessOwner) -> Result<(), NtStatus>,
    ) -> Result<(), NtStatus> {
        for index in 0..self.entries.slot_count() {
            let entry = self
                .entries
                .key_at(index)
                .and_then(|key| self.entries.get(key));
            if let Some(entry) = entry {
                each(entry.socket(), entry.process)?;
            }
        }
        Ok(())
    }

    /// Aborts every connection whose local address is `ip` (the address went with its
    /// interface), each with an event for its owner, which sees a reset. Any IRQL, under the
    /// core lock.
    pub fn abort_from(&mut self, ip: Ipv4Addr) {
        for index in 0..self.entries.slot_count() {
            let Some(key) = self.entries.key_at(index) else {
                continue;
            };
            let Some(socket) = self.entries.get_mut(key).map(Entry::socket_mut) else {
                continue;
            };
            if socket
                .local_endpoint()
                .is_some_and(|local| local.addr == IpAddress::Ipv4(ip))
            {
                socket.abort();
                self.mark(index, TOUCHED | EVENT);
            }
        }
    }

    /// Hands the socket to a new owner: a connection or a listener.
    pub fn set_owner(&mut self, key: SocketKey, owner: Owner) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.owner = owner;
        }
    }

    /// Makes the socket an orphan from `now`, holding `port`, touched (so that its next egress
    /// files the deadline at which it is given up).
    pub fn orphan(&mut self, key: SocketKey, port: u16, now: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.owner = Owner::Orphan { port };
            entry.orphaned = Some(now);
            self.mark(key.index, TOUCHED);
        }
    }

    /// Whether the orphan `key` is to be given up at `now` although smoltcp has not finished
    /// with it (see `Entry::give_up_at`).
    pub fn given_up(&self, key: SocketKey, now: Instant) -> bool {
        self.entries
            .get(key)
            .and_then(|entry| entry.give_up_at(self.data_timeout))
            .is_some_and(|at| now >= at)
    }

    /// Files the socket's 4-tuple, so that its segments find it, and the link its segments
    /// leave by.
    pub fn set_tuple(
        &mut self,
        key: SocketKey,
        tuple: Tuple,
        route: Route,
    ) -> Result<(), NtStatus> {
        let entry = self
            .entries
            .get_mut(key)
            .ok_or(NtStatus::INVALID_CONNECTION)?;
        self.tuples.insert(tuple, key)?;
        entry.route = route;
        if let Some(old) = entry.tuple.replace(tuple) {
            self.tuples.remove(&old, key);
        }
        Ok(())
    }

    /// The socket that owns the connection `local` ↔ `remote`: filed for that tuple and still
    /// connected to it (a closed socket has forgotten its tuple).
    pub fn find(&self, local: SocketAddrV4, remote: SocketAddrV4) -> Option<SocketKey> {
        let key = self.tuples.get(&(local, remote))?;
        let socket = self.peek(key)?;
        let same = socket.local_endpoint() == Some(endpoint(local))
            && socket.remote_endpoint() == Some(endpoint(remote));
        same.then_some(key)
    }

    /// Lets smoltcp take the next received frame from `device` for the socket `target` (or
    /// for nobody), and raises an event for the socket.
    pub fn ingress<D: Device>(
        &mut self,
        target: Option<SocketKey>,
        iface: &mut Interface,
        device: &mut D,
        now: Instant,
    ) {
        match target.and_then(|key| self.entries.get_mut(key).map(|entry| (key, entry))) {
            Some((key, entry)) => {
                iface.poll_ingress_single(now, device, entry.set_mut());
                entry.heard = Some(now);
                self.mark(key.index, TOUCHED | EVENT);
            }
            None => {
                iface.poll_ingress_single(now, device, &mut self.nobody);
            }
        }
    }

    /// Whether `key`'s peer has been silent for the data timeout (or never spoke): how a
    /// connection that smoltcp closed without a FIN or a RST from its peer was lost.
    pub fn timed_out(&self, key: SocketKey, now: Instant) -> bool {
        self.entries
            .get(key)
            .is_some_and(|entry| entry.heard.is_none_or(|at| now >= at + self.data_timeout))
    }

    /// Touches every socket whose deadline has come, with an event.
    pub fn expire(&mut self, now: Instant) {
        while let Some((key, at)) = self.timers.pop_due(now) {
            let Some(entry) = self.entries.get_mut(key) else {
                continue;
            };
            if entry.deadline == Some(at) {
                entry.deadline = None;
                self.mark(key.index, TOUCHED | EVENT);
            }
        }
    }

    /// Lets every touched socket transmit on its link, files its next deadline, and raises an
    /// event for those whose state moved and for orphans (which may now be done).
    pub fn egress<L: Device>(
        &mut self,
        loopback: (&mut Interface, &mut L),
        wires: &mut [Option<Wire<'_>>],
        layers: &Cell<Counters>,
        now: Instant,
    ) {
        let (lo_iface, lo_device) = loopback;
        core::mem::swap(&mut self.touched, &mut self.draining);
        let mut draining = core::mem::take(&mut self.draining);
        for &index in &draining {
            if let Some(flags) = self.flags.get_mut(index as usize) {
                *flags &= !TOUCHED;
            }
            let Some(key) = self.entries.key_at(index) else {
                continue;
            };
            let Some(entry) = self.entries.get_mut(key) else {
                continue;
            };
            let timeout = self.data_timeout;
            let wire = match entry.route {
                Route::Loopback => None,
                Route::Ethernet(index) => ethernet::wire(wires, index),
            };
            let outcome = match wire {
                Some(wire) => {
                    let meter = Meter {
                        layers,
                        link: &wire.port.link,
                    };
                    let mut device = Metered {
                        device: &mut wire.device,
                        meter,
                    };
                    let iface = &mut wire.port.iface;
                    transmit(
                        entry,
                        iface,
                        &mut device,
                        now,
                        timeout,
                        &mut self.retransmitted,
                    )
                }
                // The loopback, or no link bound under the interface: then the segments go to
                // the loopback, where no interface owns their destination and they are dropped,
                // so the socket's timers still run (a connect times out as against a silent
                // host).
                None => transmit(
                    entry,
                    lo_iface,
                    lo_device,
                    now,
                    timeout,
                    &mut self.retransmitted,
                ),
            };
            let (moved, deadline) = outcome;
            if entry.reset_waited(now) {
                entry.route = Route::Loopback;
            }
            let deadline = match (deadline, entry.give_up_at(timeout)) {
                (Some(at), Some(give_up)) => Some(at.min(give_up)),
                (at, give_up) => at.or(give_up),
            };
            if deadline != entry.deadline {
                entry.deadline = deadline;
                if let Some(at) = deadline {
                    self.file_deadline(key, at);
                }
            }
            if moved {
                self.mark(index, EVENT);
            }
        }
        draining.clear();
        self.draining = draining;
    }

    /// Raises an event for `key` (a retry of what its follow-up could not do). Any IRQL, under
    /// the core lock.
    pub fn raise(&mut self, key: SocketKey) {
        if self.entries.get(key).is_some() {
            self.mark(key.index, EVENT);
        }
    }

    /// Takes the next socket with an event, with its owner.
    pub fn next_event(&mut self) -> Option<(SocketKey, Owner)> {
        while let Some(index) = self.events.pop() {
            if let Some(flags) = self.flags.get_mut(index as usize) {
                *flags &= !EVENT;
            }
            let Some(key) = self.entries.key_at(index) else {
                continue;
            };
            if let Some(entry) = self.entries.get(key) {
                return Some((key, entry.owner));
            }
        }
        None
    }

    /// Whether events wait for the next pass.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// When the core next needs a pass: now if sockets wait to transmit, otherwise the
    /// earliest deadline filed.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if !self.touched.is_empty() {
            return Some(now);
        }
        self.timers.next()
    }

    /// Files `at` for `key`, rebuilding the queue from the entries' deadlines when it is full
    /// (it was reserved for two entries per slot, and holds one per live socket after that).
    fn file_deadline(&mut self, key: SocketKey, at: Instant) {
        if self.timers.push(key, at) {
            return;
        }
        self.timers.clear();
        for (key, entry) in self.entries.iter() {
            if let Some(at) = entry.deadline {
                let _filed = self.timers.push(key, at);
            }
        }
    }

    /// Lists slot `index` for `bits` it is not listed for yet (the lists were reserved for
    /// every slot, so this never grows them).
    fn mark(&mut self, index: u32, bits: u8) {
        let Some(flags) = self.flags.get_mut(index as usize) else {
            return;
        };
        let new = bits & !*flags;
        *flags |= bits;
        if new & TOUCHED != 0 && self.touched.len() < self.touched.capacity() {
            self.touched.push(index);
        }
        if new & EVENT != 0 && self.events.len() < self.events.capacity() {
            self.events.push(index);
        }
    }
}

/// Lets one socket transmit up to [`EGRESS_SEGMENTS`] segments on `iface`. Returns whether an
/// event is due (its state moved, or it is an orphan) and its next deadline.
fn transmit<D: Device>(
    entry: &mut Entry,
    iface: &mut Interface,
    device: &mut D,
    now: Instant,
    data_timeout: Duration,
    retransmitted: &mut u64,
) -> (bool, Option<Instant>) {
    arm_data_timeout(entry.socket_mut(), data_timeout);
    let before = entry.progress();
    let mut device = Watch {
        device,
        high: &mut entry.sent,
        retransmitted,
    };
    for _ in 0..EGRESS_SEGMENTS {
        if iface.poll_egress(now, &mut device, &mut entry.held.get_mut().set) == PollResult::None {
            break;
        }
    }
    let moved = entry.progress() != before || matches!(entry.owner, Owner::Orphan { .. });
    (moved, iface.poll_at(now, &entry.held.get().set))
}

/// Gives a connection smoltcp's timeout while it has data to be acknowledged, and takes it
/// away when it has none. smoltcp aborts a socket whose peer stays silent for its timeout
/// whether or not anything waits for the peer, so an idle connection must not carry one; and
/// it restarts the count when data is queued on an empty transmit buffer, so the count starts
/// with the data. (A FIN alone in flight is not covered: smoltcp does not restart the count at
/// a close, so arming it then would time out a connection that was merely idle.) The states
/// before ESTABLISHED keep the connect and half-open timeouts the core gave them.
fn arm_data_timeout(socket: &mut tcp::Socket<'static>, data_timeout: Duration) {
    if !matches!(
        socket.state(),
        State::Established
            | State::CloseWait
            | State::FinWait1
            | State::FinWait2
            | State::Closing
            | State::LastAck
            | State::TimeWait
    ) {
        return;
    }
    let wanted = (socket.send_queue() > 0).then_some(data_timeout);
    if socket.timeout() != wanted {
        socket.set_timeout(wanted);
    }
}

fn endpoint(address: SocketAddrV4) -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(*address.ip()), address.port())
}
