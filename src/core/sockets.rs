//! smoltcp sockets behind generation-checked keys.
//!
//! `SocketSet::get_mut` and `remove` panic on a handle whose slot is empty (smoltcp #501), and
//! a panic here is a bugcheck. The core therefore never stores a `SocketHandle`: it stores a
//! [`SocketKey`] into a slab that maps to the handle, and removes both together. A stale key
//! finds nothing.
#![forbid(unsafe_code)]

use crate::core::slab::{Key, Slab};
use crate::nt::NtStatus;
use crate::nt::pool;
use alloc::vec::Vec;
use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::tcp;

/// A generation-checked reference to one of the core's TCP sockets.
pub type SocketKey = Key;

/// The core's TCP sockets.
pub struct Sockets {
    set: SocketSet<'static>,
    keys: Slab<Option<SocketHandle>>,
    capacity: usize,
}

impl Sockets {
    /// A set with room for `capacity` sockets, reserved now: smoltcp grows its storage with an
    /// infallible push, so the set is never allowed to grow past what was reserved.
    pub fn new(capacity: usize) -> Result<Self, NtStatus> {
        let storage: Vec<SocketStorage<'static>> = pool::try_vec(capacity)?;
        Ok(Self {
            set: SocketSet::new(storage),
            keys: Slab::default(),
            capacity,
        })
    }

    /// Adds a socket. `STATUS_INSUFFICIENT_RESOURCES` when the set is full.
    pub fn add(&mut self, socket: tcp::Socket<'static>) -> Result<SocketKey, NtStatus> {
        if self.keys.len() >= self.capacity {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        // Reserve the key first so that a failure leaves the set unchanged.
        let key = self.keys.try_insert(None)?;
        let handle = self.set.add(socket);
        if let Some(slot) = self.keys.get_mut(key) {
            *slot = Some(handle);
        }
        Ok(key)
    }

    /// The socket behind `key`, if it still exists.
    pub fn get(&mut self, key: SocketKey) -> Option<&mut tcp::Socket<'static>> {
        let handle = (*self.keys.get(key)?)?;
        Some(self.set.get_mut::<tcp::Socket<'static>>(handle))
    }

    /// Removes the socket behind `key` (no-op for a stale key).
    pub fn remove(&mut self, key: SocketKey) {
        if let Some(Some(handle)) = self.keys.remove(key) {
            self.set.remove(handle);
        }
    }

    /// One past the highest slot index; see [`Slab::slot_count`].
    pub fn slot_count(&self) -> u32 {
        self.keys.slot_count()
    }

    /// The key of the socket in slot `index`, if any.
    pub fn key_at(&self, index: u32) -> Option<SocketKey> {
        self.keys.key_at(index)
    }

    /// The smoltcp set, for `Interface::poll*`.
    pub fn set_mut(&mut self) -> &mut SocketSet<'static> {
        &mut self.set
    }
}
