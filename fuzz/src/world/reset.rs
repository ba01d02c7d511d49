//! Keeping one [`World`] between inputs (`crate::session`): what the setup leaves behind,
//! what an input may change, how the world is put back as the setup left it, and the checks
//! at the end of each input.
//!
//! What an input changed is known from what it did ([`World::change`]: segments aimed at the
//! accepted or the connecting connection, ARP frames in and ARP requests out, TDI sends,
//! receives, disconnects and closes, set requests that succeeded) and from what became of the
//! setup (its requests completed, its files closed, the virtual clock moved). With the driver
//! still loaded, the world is put back:
//! - the setup's datagram receives that the input's datagrams completed are sent again;
//! - when the neighbour caches changed, the link is unbound and a fresh one bound (a fresh
//!   smoltcp interface and ARP mirror); when they changed or time passed, the peer makes
//!   itself known again (its entry's lifetime starts again, as the setup's did);
//! - when a connection changed or time passed, or the world does not pass the checks below,
//!   the connections are made again: the setup's are aborted, the peer resets what the input
//!   left half-open or orphaned, the virtual clock runs until no timer is set (the driver's
//!   deadline heap keeps the deadlines of removed sockets until they fall due; orphans and
//!   datagrams waiting for a neighbour end), the neighbour caches are put back as above, the
//!   setup's endpoint files the input closed are opened again, and the connections are made
//!   as the setup made them: the peer's handshake (the waiting endpoint's TDI_LISTEN, queued
//!   first, takes it if the input left it: the two endpoints then swap roles), a TDI_RECEIVE
//!   on it, a TDI_LISTEN on the other endpoint, the TDI_CONNECT.
//!
//! The world is kept if, after the input and what put it back:
//! - every request the input sent has completed, and the setup's are pending;
//! - the driver's pool is what it was after the setup, block for block and byte for byte (no
//!   half-open connection, orphan, reassembly or queued datagram left, no table grown past
//!   what the setup's warm-up grew it to: `warm`);
//! - the timers set fall due when they did after the setup, relative to the clock;
//! - the verifier recorded no violation.
//!
//! An address the input set or deleted is given back first (then the connections are made
//! again, and the neighbour caches renewed).
//!
//! Otherwise (and when the input closed the UDP, raw or listening address file or set
//! a route, an ARP entry or an option: [`Part::Whole`]) the world is torn down (everything
//! closed, every request completed, the driver unloaded with its leak check) and the next
//! input gets a fresh one.
//!
//! A world put back is a fresh one as far as these checks tell. What they cannot see (none of
//! it holds pool or sets a timer):
//! - the clock, later than a fresh world's: the driver's deadlines are relative to it (which
//!   the timers check compares), and what holds a time (the connections, the peer's neighbour
//!   entry) is made again when time passed;
//! - the driver's random generator: initial sequence numbers and ephemeral ports differ, as
//!   they do between fresh worlds (the generator is seeded from the time stamp counter);
//! - the statistics counters;
//! - the order of the driver's table slots: a file or socket made again takes a freed slot,
//!   and the accepted and waiting endpoints may have swapped, where a fresh world's were
//!   taken in order;
//! - what the marks miss: a raw frame built by the fuzzer that changes the accepted
//!   connection without completing a request, sending anything or setting a timer (a window
//!   update, say).

use super::{Keep, LISTEN_PORT, LISTENER_ISN, RECEIVE_ROOM, World, file};
use crate::frames::{self, OURS, PEER, PEER_MAC, RST};
use std::net::SocketAddrV4;
use std::time::Duration;
use tcpip::host::PoolStats;
use tcpip::host::afd::wire;
use tcpip::nt::NtStatus;
use tcpip::nt::types::{
    IOCTL_DELETE_IP_ADDRESS, IOCTL_SET_IP_ADDRESS, TDI_DISCONNECT, TDI_DISCONNECT_ABORT,
};

/// A part of the world an input may change for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The accepted connection.
    Accepted,
    /// The waiting endpoint's TDI_LISTEN (a connection from the fuzzer takes it).
    Waiting,
    /// The connection the driver opens, and its address file.
    Connecting,
    /// The neighbour caches (ARP frames in; ARP requests out, after which smoltcp sends no
    /// other for a second).
    Neighbours,
    /// The interface's address, set or deleted (the connections from it were aborted or
    /// stranded, and smoltcp empties its neighbour cache when the addresses change).
    Address,
    /// What is not put back: the UDP, raw or listening address file, routes, ARP entries and
    /// options set.
    Whole,
}

/// The parts an input changed.
#[derive(Clone, Copy, Default)]
struct Changed {
    accepted: bool,
    waiting: bool,
    connecting: bool,
    neighbours: bool,
    address: bool,
    whole: bool,
}

impl Changed {
    fn mark(&mut self, part: Part) {
        match part {
            Part::Accepted => self.accepted = true,
            Part::Waiting => self.waiting = true,
            Part::Connecting => self.connecting = true,
            Part::Neighbours => self.neighbours = true,
            Part::Address => self.address = true,
            Part::Whole => self.whole = true,
        }
    }

    /// Whether a connection changed (they are made again).
    fn connections(&self) -> bool {
        self.accepted || self.waiting || self.connecting
    }
}

/// The part a request on, or the closing of, setup file `file` changes.
pub fn part_of(file: usize) -> Part {
    match file {
        file::ACCEPTED => Part::Accepted,
        file::WAITING => Part::Waiting,
        file::CLIENT | file::CLIENT_ADDRESS => Part::Connecting,
        _ => Part::Whole,
    }
}

/// The setup's requests, pending after it, by their index in `pending`.
const UDP_RECEIVE: usize = 0;
const RAW_RECEIVE: usize = 1;
const ACCEPTED_RECEIVE: usize = 2;
const WAITING_LISTEN: usize = 3;
const CONNECT: usize = 4;
const SETUP_PENDING: usize = 5;
/// The datagram receives, and their files.
const DATAGRAM_RECEIVES: [(usize, usize); 2] = [(UDP_RECEIVE, file::UDP), (RAW_RECEIVE, file::RAW)];
/// How many times an input's datagrams may complete a setup receive before the world is
/// torn down (each completion sends the receive again).
const REPOSTS: usize = 4;
/// How long the clock may run for the timers to end once the connections are taken down:
/// past the longest deadline a removed socket may have filed (the data timeout, 120 s; the
/// SYN-RECEIVED one, 75 s), a reassembly's 30 s and an orphan's TIME-WAIT.
const DRAIN: Duration = Duration::from_secs(180);

/// What the setup left, and the input's state.
#[derive(Default)]
pub struct Baseline {
    /// Live blocks and bytes of the driver's pool after the setup.
    pool: (usize, usize),
    /// When the timers set after the setup fall due, relative to the clock.
    timers: Vec<u64>,
    /// The virtual clock when the input started.
    clock: u64,
    /// Marked by [`World::change`].
    changed: Changed,
    /// Inputs run on this world.
    pub inputs: usize,
}

fn pool_of(stats: &PoolStats) -> (usize, usize) {
    (stats.live_blocks, stats.live_bytes)
}

/// A RST from `src` to `dst` with sequence number `seq`.
fn reset(src: SocketAddrV4, dst: SocketAddrV4, seq: u32) -> Vec<u8> {
    let segment = frames::Segment {
        src,
        dst,
        seq,
        ack: 0,
        flags: RST,
        window: 0,
        options: &[],
        payload: &[],
    };
    segment.packet()
}

impl World {
    /// The driver's live pool blocks and bytes, with its socket ring lookaside flushed first:
    /// blocks a closed socket left there are the driver's cache, not a leak, and a flushed
    /// cache gives every input the same start (a hit or a miss would otherwise depend on the
    /// inputs before it).
    fn pool(&self) -> (usize, usize) {
        self.stack.flush_lookaside();
        pool_of(&self.kernel.pool_stats())
    }

    /// Records what the setup left.
    pub(super) fn record_baseline(&mut self) {
        assert_eq!(self.pending.len(), SETUP_PENDING, "the setup's requests");
        self.keep.pool = self.pool();
        self.keep.timers = self.timers();
        self.sent.clear();
        self.half_open.clear();
    }

    /// When the timers set fall due, relative to the clock.
    fn timers(&self) -> Vec<u64> {
        let now = self.kernel.interrupt_time();
        let dues = self.kernel.timer_dues();
        dues.into_iter()
            .map(|due| due.saturating_sub(now))
            .collect()
    }

    /// The input changed `part` for good: it is put back after the input.
    pub fn change(&mut self, part: Part) {
        self.keep.changed.mark(part);
    }

    /// Inputs run on this world so far.
    pub fn inputs(&self) -> usize {
        self.keep.inputs
    }

    /// Before an input.
    pub fn begin_input(&mut self) {
        self.keep.clock = self.kernel.interrupt_time();
        self.keep.changed = Changed::default();
        self.keep.inputs += 1;
    }

    /// After an input: closes the control channel, checks the verifier (panics on a
    /// violation, as at teardown), puts back what the input changed and checks the result.
    /// Returns whether the world is as the setup left it (see the module's documentation); if
    /// not, [`finish`](World::finish) tears it down.
    pub fn end_input(&mut self) -> bool {
        if let Some(control) = self.control.take() {
            assert_eq!(self.kernel.close(control), NtStatus::SUCCESS);
            self.settle();
        }
        self.check_verifier();
        let mut changed = self.keep.changed;
        let moved = self.kernel.interrupt_time() != self.keep.clock;
        if moved {
            // The connections' timers ran, their last-heard times aged.
            changed.mark(Part::Connecting);
        }
        for (index, part) in [
            (ACCEPTED_RECEIVE, Part::Accepted),
            (WAITING_LISTEN, Part::Waiting),
            (CONNECT, Part::Connecting),
        ] {
            if self.pending[index].event.is_signaled() {
                changed.mark(part);
            }
        }
        for file in 0..file::COUNT {
            if self.handle(file).is_none() {
                changed.mark(part_of(file));
            }
        }
        if changed.whole {
            return false;
        }
        if changed.address {
            self.give_address_back();
            // The connections from it are gone, and smoltcp emptied its neighbour cache.
            changed.mark(Part::Connecting);
            changed.mark(Part::Neighbours);
            self.change(Part::Neighbours);
        }
        // First, so that the resets the aborts send (if it comes to that) find the peer. (After
        // time passed the peer's entry may have expired: the drain answers the driver's ARP
        // request then, and the caches are renewed after it.)
        if changed.neighbours {
            self.refresh_neighbours();
        }
        if !changed.connections() && self.is_as_set_up() {
            return true;
        }
        self.reconnect() && self.is_as_set_up()
    }

    /// Gives the interface the setup's address again: deleted first (which aborts what is left
    /// of the connections from it), since the driver refuses an address the host has, which
    /// the input may have set with another mask.
    fn give_address_back(&mut self) {
        let control = self.kernel.create_file("\\Device\\Tcp", None, 0);
        let control = control.expect("control channel");
        let interface = 1u32.to_le_bytes();
        let (status, _) =
            self.kernel
                .device_io_control(control, IOCTL_DELETE_IP_ADDRESS, &interface, &mut []);
        assert_eq!(status, NtStatus::SUCCESS, "the address deleted");
        let input = [interface, OURS.octets(), [255, 255, 255, 0]].concat();
        let (status, _) =
            self.kernel
                .device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut [0u8; 12]);
        assert_eq!(status, NtStatus::SUCCESS, "the address given back");
        assert_eq!(self.kernel.close(control), NtStatus::SUCCESS);
        self.settle();
    }

    /// Panics on a violation the verifier recorded.
    fn check_verifier(&self) {
        let violations = self.kernel.take_violations();
        assert!(violations.is_empty(), "verifier: {violations:?}");
    }

    /// Drops the input's requests if they all completed, sends the setup's datagram receives
    /// the input completed again, and checks the world against what the setup left (see the
    /// module's documentation).
    fn is_as_set_up(&mut self) -> bool {
        let extra = &self.pending[SETUP_PENDING..];
        if extra.iter().any(|p| !p.event.is_signaled()) {
            return false;
        }
        self.pending.truncate(SETUP_PENDING);
        for (index, file) in DATAGRAM_RECEIVES {
            let Some(handle) = self.handle(file) else {
                return false;
            };
            for _ in 0..REPOSTS {
                if !self.pending[index].event.is_signaled() {
                    break;
                }
                self.start_datagram_receive(handle, RECEIVE_ROOM);
                self.replace_setup(index);
            }
        }
        self.check_verifier();
        self.sent.clear();
        self.half_open.clear();
        self.asked.clear();
        self.pending.iter().all(|p| !p.event.is_signaled())
            && self.pool() == self.keep.pool
            && self.timers() == self.keep.timers
    }

    /// Puts the neighbour caches back as the setup left them. If they changed since they were
    /// last put back (an ARP frame in, an ARP request out), the link is unbound and a fresh one
    /// bound (a fresh smoltcp interface and ARP mirror); then the peer makes itself known
    /// again, so that its entry's lifetime starts again as the setup's did (time passed).
    pub(super) fn refresh_neighbours(&mut self) {
        if std::mem::take(&mut self.keep.changed.neighbours) {
            self.stack.detach_link(self.link);
            let link = self.stack.attach_link(self.recorder.clone(), 64);
            self.link = link.expect("attach");
        }
        self.learn_peer();
    }

    /// Makes the connections again (see the module's documentation). `false` if timers are
    /// still set [`DRAIN`] after the connections were taken down, or the driver did not accept
    /// or open a connection as it did for the setup.
    fn reconnect(&mut self) -> bool {
        self.abort(file::ACCEPTED);
        if self.pending[WAITING_LISTEN].event.is_signaled() {
            self.abort(file::WAITING);
        }
        self.abort(file::CLIENT);
        if self.handle(file::CLIENT_ADDRESS).is_none()
            && let Some(client) = self.handles[file::CLIENT].take()
        {
            // An endpoint whose address file was closed is made again with a new one.
            assert_eq!(self.kernel.close(client), NtStatus::SUCCESS);
            self.settle();
        }
        self.reset_from_peer();
        if !self.drain() {
            return false;
        }
        self.refresh_neighbours();
        self.rebuild()
    }

    /// An abortive TDI_DISCONNECT on endpoint `file`, if open: its connection, if any, ends
    /// with a RST at once (closing it would end it with a FIN, and leave its orphan to its
    /// timers) and its requests complete; the endpoint is left for a new connection.
    pub(super) fn abort(&mut self, file: usize) {
        let Some(handle) = self.handle(file) else {
            return;
        };
        let null = std::ptr::null_mut();
        let parameters =
            wire::kernel_request(TDI_DISCONNECT_ABORT, null, null, std::ptr::null_mut());
        self.start(handle, TDI_DISCONNECT, parameters, Keep::default(), "abort");
        self.settle();
    }

    /// The peer resets what the aborts could not reach: the connection of a setup endpoint the
    /// input closed (an orphan, in FIN-WAIT, TIME-WAIT or LAST-ACK) and the connections it
    /// left half-open. A RST in the receive window ends either at once. An orphan gets one at
    /// the sequence number the harness follows and one at the number the driver acknowledged
    /// last (they differ when the input sent data out of order).
    fn reset_from_peer(&mut self) {
        let mut resets = self.half_open_resets();
        for (connection, endpoint) in [
            (self.accepted, file::ACCEPTED),
            (self.connecting, file::CLIENT),
        ] {
            if self.handle(endpoint).is_none() {
                let (src, dst) = (connection.remote, connection.local);
                resets.push(reset(src, dst, connection.peer_next));
                if connection.acked != connection.peer_next {
                    resets.push(reset(src, dst, connection.acked));
                }
            }
        }
        if !resets.is_empty() {
            self.indicate_packets(resets);
        }
    }

    /// The peer's resets of the connections to the listener it has seen a SYN-ACK for (see
    /// [`World::half_open`], which they empty), at the sequence number that follows its SYN.
    pub(super) fn half_open_resets(&mut self) -> Vec<Vec<u8>> {
        let listener = SocketAddrV4::new(OURS, LISTEN_PORT);
        let half_open = std::mem::take(&mut self.half_open);
        half_open
            .into_iter()
            .map(|(port, _)| {
                let peer = SocketAddrV4::new(PEER, port);
                reset(peer, listener, LISTENER_ISN.wrapping_add(1))
            })
            .collect()
    }

    /// Runs the virtual clock from one timer to the next until none is set, for at most
    /// [`DRAIN`]; whether none is set then. The driver's ARP requests are answered, so that
    /// datagrams waiting for a neighbour leave rather than ask again every 10 ms until they
    /// give up (the neighbour caches are renewed after the drain).
    pub(super) fn drain(&mut self) -> bool {
        let start = self.kernel.interrupt_time();
        let limit = start.saturating_add(DRAIN.as_nanos() as u64 / 100);
        loop {
            for ip in std::mem::take(&mut self.asked) {
                let mac = if ip == PEER {
                    PEER_MAC
                } else {
                    [0x02, 0, 0, 0, 0, ip.octets()[3]]
                };
                self.indicate(&frames::arp(true, mac, ip, OURS));
                self.change(Part::Neighbours);
            }
            let Some(&due) = self.kernel.timer_dues().first() else {
                return true;
            };
            if due > limit {
                return false;
            }
            let now = self.kernel.interrupt_time();
            self.advance(Duration::from_nanos(due.saturating_sub(now) * 100));
        }
    }

    /// Opens the setup's files the input closed, in the setup's order, and makes the
    /// connections as the setup made them. `false` if the driver did not accept or open one.
    fn rebuild(&mut self) -> bool {
        let Some(listener) = self.handle(file::LISTENER) else {
            return false;
        };
        for endpoint in [file::ACCEPTED, file::WAITING] {
            if self.handle(endpoint).is_none() {
                let handle = self.create("\\Device\\Tcp", None);
                self.associate(handle, listener);
                self.handles[endpoint] = Some(handle);
            }
        }
        if self.handle(file::CLIENT_ADDRESS).is_none() {
            self.handles[file::CLIENT_ADDRESS] = Some(self.create_client_address());
        }
        if self.handle(file::CLIENT).is_none() {
            let Some(address) = self.handle(file::CLIENT_ADDRESS) else {
                return false;
            };
            let handle = self.create("\\Device\\Tcp", None);
            self.associate(handle, address);
            self.handles[file::CLIENT] = Some(handle);
        }
        if self.pending[WAITING_LISTEN].event.is_signaled() {
            if self.accept().is_none() {
                return false;
            }
        } else {
            // The waiting endpoint's TDI_LISTEN, queued first, takes the connection.
            if self.handshake(WAITING_LISTEN).is_none() {
                return false;
            }
            self.handles.swap(file::ACCEPTED, file::WAITING);
            let Some(accepted) = self.handle(file::ACCEPTED) else {
                return false;
            };
            self.start_receive(accepted, RECEIVE_ROOM);
        }
        self.replace_setup(ACCEPTED_RECEIVE);
        let Some(waiting) = self.handle(file::WAITING) else {
            return false;
        };
        self.listen(waiting);
        self.replace_setup(WAITING_LISTEN);
        if self.connect().is_none() {
            return false;
        }
        self.replace_setup(CONNECT);
        true
    }

    /// Puts the request just sent (the last in `pending`) in the place of setup request
    /// `index`, which must have completed.
    fn replace_setup(&mut self, index: usize) {
        let old = self.pending.swap_remove(index);
        assert!(old.event.is_signaled(), "{} never completed", old.what);
    }
}
