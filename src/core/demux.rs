//! Received segments to sockets by 4-tuple, in constant time.
//!
//! smoltcp finds the socket for a segment by asking every socket of the set it is given, so a
//! set of all sockets makes each received frame cost the socket count. The core instead keeps
//! each socket in a set of its own and picks the set here: a connection's 4-tuple (local
//! address and port, remote address and port) is filed when it becomes known — at an active
//! open, or when a LISTEN socket takes a SYN — and removed with the socket. A segment that
//! matches no tuple is a connection request for a listener, or goes to smoltcp with no socket
//! at all, which answers it with a RST as any unmatched segment.
//!
//! The hash is keyed from the driver's CSPRNG, so a remote sender cannot choose 4-tuples that
//! collide. Insertion reserves first and fails cleanly with `STATUS_INSUFFICIENT_RESOURCES`.
#![forbid(unsafe_code)]

use crate::core::slab::Key;
use crate::nt::NtStatus;
use crate::nt::pool;
use core::net::SocketAddrV4;
use foldhash::fast::FixedState;
use hashbrown::HashMap;

/// A connection's addressing: (local, remote).
pub type Tuple = (SocketAddrV4, SocketAddrV4);

/// 4-tuple → socket. Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
pub struct TupleMap {
    map: HashMap<Tuple, Key, FixedState>,
}

impl TupleMap {
    /// An empty map whose hash is keyed with `seed`. Allocates nothing.
    pub fn new(seed: u64) -> Self {
        Self {
            map: HashMap::with_hasher(FixedState::with_seed(seed)),
        }
    }

    /// Files `tuple` for `socket`, replacing an older entry for the same tuple.
    pub fn insert(&mut self, tuple: Tuple, socket: Key) -> Result<(), NtStatus> {
        pool::note_call_site();
        self.map
            .try_reserve(1)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        self.map.insert(tuple, socket);
        Ok(())
    }

    /// The socket filed for `tuple`.
    pub fn get(&self, tuple: &Tuple) -> Option<Key> {
        self.map.get(tuple).copied()
    }

    /// Removes `tuple` if it is still filed for `socket` (a newer socket may own it now).
    pub fn remove(&mut self, tuple: &Tuple, socket: Key) {
        if self.map.get(tuple) == Some(&socket) {
            self.map.remove(tuple);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn tuple(remote_port: u16) -> Tuple {
        (
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, remote_port),
        )
    }

    fn key(index: u32, generation: u32) -> Key {
        Key { index, generation }
    }

    #[test]
    fn finds_only_the_exact_tuple() {
        let mut map = TupleMap::new(7);
        map.insert(tuple(5000), key(1, 0)).unwrap();
        assert_eq!(map.get(&tuple(5000)), Some(key(1, 0)));
        assert_eq!(map.get(&tuple(5001)), None);
        let (local, remote) = tuple(5000);
        assert_eq!(map.get(&(remote, local)), None);
    }

    #[test]
    fn removal_by_a_former_owner_keeps_the_new_owner() {
        let mut map = TupleMap::new(7);
        map.insert(tuple(5000), key(1, 0)).unwrap();
        map.insert(tuple(5000), key(2, 0)).unwrap();
        map.remove(&tuple(5000), key(1, 0));
        assert_eq!(map.get(&tuple(5000)), Some(key(2, 0)));
        map.remove(&tuple(5000), key(2, 0));
        assert_eq!(map.get(&tuple(5000)), None);
    }
}
