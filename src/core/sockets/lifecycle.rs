//! A socket's life in [`Sockets`]: made with its ring blocks from the core's [`Lookaside`],
//! which are lent to smoltcp ([`Lent`]), added to the slab in a set of its own, and removed.
//! The blocks go back to the lookaside when the socket is dropped — in [`Sockets::remove`],
//! the one place an entry leaves the slab, or [`Sockets::discard`] for a socket never added —
//! or are freed with the entry when `Sockets` itself goes (unload). An entry holds its set
//! inside its `Lent`, so no block can come back while the set that borrows it still exists.
#![forbid(unsafe_code)]

use super::{Entry, Held, Owner, Route, SocketKey, Sockets, TOUCHED};
use crate::core::lookaside::{Lookaside, LookasideStats};
use crate::core::retransmit::SentHigh;
use crate::nt::NtStatus;
use crate::nt::lend::Lent;
use crate::nt::pool;
use crate::nt::process::ProcessOwner;
use alloc::vec::Vec;
use smoltcp::iface::{SocketSet, SocketStorage};
use smoltcp::socket::tcp;

impl Sockets {
    /// A new TCP socket with an `rx`-byte receive ring and a `tx`-byte send ring from the
    /// lookaside, not added yet; `STATUS_INSUFFICIENT_RESOURCES` if the pool cannot give a
    /// block (the receive block, if taken, then goes back to the pool, not to the lookaside:
    /// the pool is short). Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn new_socket(
        &mut self,
        rx: usize,
        tx: usize,
    ) -> Result<Lent<tcp::Socket<'static>>, NtStatus> {
        let rx = self.lookaside.take(rx)?;
        let tx = match self.lookaside.take(tx) {
            Ok(tx) => tx,
            Err(status) => {
                self.lookaside.free(rx);
                return Err(status);
            }
        };
        Ok(Lent::tcp_socket(rx, tx))
    }

    /// Drops a socket that was never added, its ring blocks back to the lookaside.
    /// Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn discard(&mut self, socket: Lent<tcp::Socket<'static>>) {
        for block in socket.end() {
            self.lookaside.give(block);
        }
    }

    /// The ring blocks' free lists (to trim them). Any IRQL ≤ DISPATCH_LEVEL, under the core
    /// lock.
    pub fn lookaside_mut(&mut self) -> &mut Lookaside {
        &mut self.lookaside
    }

    /// The lookaside's counters and what it holds. Any IRQL (under the core lock).
    pub fn lookaside_stats(&self) -> LookasideStats {
        self.lookaside.stats()
    }

    /// Adds a socket made by [`new_socket`](Self::new_socket) for `owner` on behalf of
    /// `process`, touched (so that its first egress and deadline follow).
    /// `STATUS_INSUFFICIENT_RESOURCES` when the set is full or the pool is exhausted: the
    /// socket is dropped, its blocks back to the lookaside, and nothing else changed.
    pub fn add(
        &mut self,
        socket: Lent<tcp::Socket<'static>>,
        owner: Owner,
        process: ProcessOwner,
    ) -> Result<SocketKey, NtStatus> {
        let storage = match self.reserve() {
            Ok(storage) => storage,
            Err(status) => {
                self.discard(socket);
                return Err(status);
            }
        };
        let buffer_bytes = socket.get().recv_capacity() + socket.get().send_capacity();
        let (held, ()) = socket.map(|socket| {
            let mut set = SocketSet::new(storage);
            let handle = set.add(socket);
            (Held { set, handle }, ())
        });
        // Room for the entry was reserved: this fails only past 2³² slots (`capacity` is far
        // below), and would drop the entry, set before blocks, freeing them.
        let key = self.entries.try_insert(Entry {
            held,
            owner,
            process,
            tuple: None,
            route: Route::Loopback,
            deadline: None,
            sent: SentHigh::default(),
            buffer_bytes,
            heard: None,
            orphaned: None,
            reset_waiting: None,
        })?;
        self.buffer_bytes += buffer_bytes;
        while self.flags.len() < self.entries.slot_count() as usize {
            self.flags.push(0);
        }
        self.mark(key.index, TOUCHED);
        Ok(key)
    }

    /// Everything [`add`](Self::add) needs before it takes the socket: room in the lists for
    /// one more slot, and the set's storage.
    fn reserve(&mut self) -> Result<Vec<SocketStorage<'static>>, NtStatus> {
        if self.entries.len() >= self.capacity {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        let slots = self.entries.slot_count() as usize + 1;
        let flags = slots.saturating_sub(self.flags.len());
        pool::try_reserve(&mut self.flags, flags)?;
        for list in [&mut self.touched, &mut self.draining, &mut self.events] {
            let more = slots.saturating_sub(list.len());
            pool::try_reserve(list, more)?;
        }
        self.timers.reserve(2 * slots)?;
        self.entries.reserve_one()?;
        let mut storage: Vec<SocketStorage<'static>> = pool::try_vec(1)?;
        storage.push(SocketStorage::EMPTY);
        Ok(storage)
    }

    /// Removes the socket behind `key` (no-op for a stale key) and its tuple; its ring blocks
    /// go back to the lookaside, which is flushed when no socket is left (nothing would take
    /// its blocks until the next connection, and an idle driver then holds none).
    pub fn remove(&mut self, key: SocketKey) {
        let Some(entry) = self.entries.remove(key) else {
            return;
        };
        let Entry {
            held,
            tuple,
            buffer_bytes,
            ..
        } = entry;
        self.buffer_bytes = self.buffer_bytes.saturating_sub(buffer_bytes);
        if let Some(tuple) = tuple {
            self.tuples.remove(&tuple, key);
        }
        // Ending the loan drops the set (and its socket) before the blocks come out.
        for block in held.end() {
            self.lookaside.give(block);
        }
        if self.entries.is_empty() {
            self.lookaside.flush();
        }
    }
}
