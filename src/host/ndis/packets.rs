//! Packet and buffer descriptors of the NDIS model: real `NDIS_PACKET`s and MDLs in host
//! memory, each tracked with its pool and its owner.

use crate::nt::types::*;
use std::collections::{HashMap, HashSet};
use std::ffi::c_void;

/// Who may touch a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    /// The protocol (allocated, not handed to NDIS).
    Protocol,
    /// NDIS, for a send or a transfer that has not completed.
    Ndis,
}

pub(super) struct PacketRecord {
    pub(super) pool: usize,
    pub(super) owner: Owner,
    words: usize,
}

pub(super) struct Pool {
    pub(super) capacity: usize,
    /// Protocol-reserved bytes per packet (packet pools).
    pub(super) reserved: usize,
    pub(super) live: HashSet<usize>,
}

/// The descriptors of one model.
#[derive(Default)]
pub(super) struct Descriptors {
    pub(super) packet_pools: HashMap<usize, Pool>,
    pub(super) buffer_pools: HashMap<usize, Pool>,
    pub(super) packets: HashMap<usize, PacketRecord>,
    /// Buffer → its pool (0 for the model's own indication buffers).
    pub(super) buffers: HashMap<usize, usize>,
}

/// A fresh pool handle: a unique, never dereferenced address.
pub(super) fn new_handle() -> usize {
    Box::into_raw(Box::new(0u8)) as usize
}

/// Releases a handle made by [`new_handle`].
pub(super) fn drop_handle(handle: usize) {
    // SAFETY: made by `new_handle`, released once (the caller removed it from its table).
    drop(unsafe { Box::from_raw(handle as *mut u8) });
}

/// A zeroed `NDIS_PACKET` with `reserved` protocol-reserved bytes; returns it and its size in
/// words.
pub(super) fn new_packet(reserved: usize) -> (*mut NDIS_PACKET, usize) {
    let words = (size_of::<NDIS_PACKET>() + reserved).div_ceil(8);
    let memory = vec![0u64; words].into_boxed_slice();
    (Box::into_raw(memory).cast::<NDIS_PACKET>(), words)
}

/// Frees a packet made by [`new_packet`].
pub(super) fn free_packet(packet: usize, words: usize) {
    let slice = std::ptr::slice_from_raw_parts_mut(packet as *mut u64, words);
    // SAFETY: made by `new_packet` with `words` words, freed once.
    drop(unsafe { Box::from_raw(slice) });
}

/// An MDL describing `length` bytes at `address`, mapped.
pub(super) fn new_buffer(address: *mut c_void, length: u32) -> *mut NDIS_BUFFER {
    Box::into_raw(Box::new(MDL {
        Next: std::ptr::null_mut(),
        Size: size_of::<MDL>() as i16,
        MdlFlags: MDL_MAPPED_TO_SYSTEM_VA,
        Process: std::ptr::null_mut(),
        MappedSystemVa: address,
        StartVa: address,
        ByteCount: length,
        ByteOffset: 0,
    }))
}

/// Frees an MDL made by [`new_buffer`].
pub(super) fn free_buffer(buffer: usize) {
    // SAFETY: made by `new_buffer`, freed once.
    drop(unsafe { Box::from_raw(buffer as *mut MDL) });
}

impl Descriptors {
    pub(super) fn add_packet(&mut self, packet: usize, pool: usize, words: usize) {
        self.packets.insert(
            packet,
            PacketRecord {
                pool,
                owner: Owner::Protocol,
                words,
            },
        );
        if let Some(pool) = self.packet_pools.get_mut(&pool) {
            pool.live.insert(packet);
        }
    }

    /// Forgets and frees `packet`.
    pub(super) fn remove_packet(&mut self, packet: usize) -> Option<PacketRecord> {
        let record = self.packets.remove(&packet)?;
        if let Some(pool) = self.packet_pools.get_mut(&record.pool) {
            pool.live.remove(&packet);
        }
        free_packet(packet, record.words);
        Some(record)
    }

    pub(super) fn add_buffer(&mut self, buffer: usize, pool: usize) {
        self.buffers.insert(buffer, pool);
        if let Some(pool) = self.buffer_pools.get_mut(&pool) {
            pool.live.insert(buffer);
        }
    }

    /// Forgets and frees `buffer`; false if it was not live.
    pub(super) fn remove_buffer(&mut self, buffer: usize) -> bool {
        let Some(pool) = self.buffers.remove(&buffer) else {
            return false;
        };
        if let Some(pool) = self.buffer_pools.get_mut(&pool) {
            pool.live.remove(&buffer);
        }
        free_buffer(buffer);
        true
    }
}

/// The bytes of a packet's buffer chain. Buffers must be live MDLs with mapped addresses.
///
/// # Safety
/// `packet` is a live packet whose chain consists of live MDLs describing readable memory.
pub(super) unsafe fn gather(packet: *mut NDIS_PACKET) -> Vec<u8> {
    let mut bytes = Vec::new();
    // SAFETY: forwarded caller contract.
    let mut buffer = unsafe { (*packet).Private.Head };
    while !buffer.is_null() {
        // SAFETY: a live MDL of the chain, describing readable memory.
        unsafe {
            let data = (*buffer).MappedSystemVa.cast::<u8>();
            let len = (*buffer).ByteCount as usize;
            if !data.is_null() {
                bytes.extend_from_slice(std::slice::from_raw_parts(data, len));
            }
            buffer = (*buffer).Next;
        }
    }
    bytes
}

/// Copies `data` into a packet's buffer chain; returns the bytes copied.
///
/// # Safety
/// As for [`gather`], with writable memory.
pub(super) unsafe fn scatter(packet: *mut NDIS_PACKET, mut data: &[u8]) -> usize {
    let mut copied = 0;
    // SAFETY: forwarded caller contract.
    let mut buffer = unsafe { (*packet).Private.Head };
    while !buffer.is_null() && !data.is_empty() {
        // SAFETY: a live MDL of the chain, describing writable memory.
        unsafe {
            let target = (*buffer).MappedSystemVa.cast::<u8>();
            let take = ((*buffer).ByteCount as usize).min(data.len());
            if !target.is_null() {
                std::ptr::copy_nonoverlapping(data.as_ptr(), target, take);
                copied += take;
                data = &data[take..];
            }
            buffer = (*buffer).Next;
        }
    }
    copied
}
