//! Packet and buffer pools and descriptors, and `NDIS_EVENT`s.

use super::model::*;
use super::packets::{self, Owner, Pool};
use crate::host::verifier::Rule;
use crate::nt::types::*;
use std::collections::HashSet;
use std::ffi::c_void;
use std::time::Duration;

impl NdisState {
    pub(crate) fn allocate_pool(&self, packets: bool, capacity: u32, reserved: u32) -> usize {
        let handle = packets::new_handle();
        let pool = Pool {
            capacity: capacity as usize,
            reserved: reserved as usize,
            live: HashSet::new(),
        };
        let mut model = self.model();
        if packets {
            model.descriptors.packet_pools.insert(handle, pool);
        } else {
            model.descriptors.buffer_pools.insert(handle, pool);
        }
        handle
    }

    pub(crate) fn free_pool(&self, packets: bool, handle: usize) {
        let mut model = self.model();
        let pools = if packets {
            &mut model.descriptors.packet_pools
        } else {
            &mut model.descriptors.buffer_pools
        };
        match pools.remove(&handle) {
            None => report(
                Rule::NdisPacketOwnership,
                format!("pool {handle:#x} freed twice or never allocated"),
            ),
            Some(pool) => {
                if !pool.live.is_empty() {
                    report(
                        Rule::NdisPoolInUse,
                        format!(
                            "pool {handle:#x} freed with {} descriptor(s) allocated",
                            pool.live.len()
                        ),
                    );
                }
                drop(model);
                packets::drop_handle(handle);
            }
        }
    }

    pub(crate) fn allocate_packet(&self, pool: usize) -> Option<*mut NDIS_PACKET> {
        let mut model = self.model();
        let entry = model.descriptors.packet_pools.get(&pool)?;
        if entry.live.len() >= entry.capacity {
            return None;
        }
        let (packet, words) = packets::new_packet(entry.reserved);
        // SAFETY: a fresh packet.
        unsafe { (*packet).Private.Pool = pool as *mut c_void };
        model.descriptors.add_packet(packet as usize, pool, words);
        Some(packet)
    }

    pub(crate) fn free_packet(&self, packet: *mut NDIS_PACKET) {
        let mut model = self.model();
        match model
            .descriptors
            .packets
            .get(&(packet as usize))
            .map(|p| p.owner)
        {
            None => report(
                Rule::NdisPacketOwnership,
                format!("NdisFreePacket({packet:p}): freed twice or not a packet"),
            ),
            Some(Owner::Ndis) => report(
                Rule::NdisPacketOwnership,
                format!("NdisFreePacket({packet:p}) while NDIS owns it for a send or transfer"),
            ),
            Some(Owner::Protocol) => {
                model.descriptors.remove_packet(packet as usize);
            }
        }
    }

    pub(crate) fn allocate_buffer(
        &self,
        pool: usize,
        address: *mut c_void,
        length: u32,
    ) -> Option<*mut NDIS_BUFFER> {
        let mut model = self.model();
        let entry = model.descriptors.buffer_pools.get(&pool)?;
        if entry.live.len() >= entry.capacity {
            return None;
        }
        let buffer = packets::new_buffer(address, length);
        model.descriptors.add_buffer(buffer as usize, pool);
        Some(buffer)
    }

    pub(crate) fn free_buffer(&self, buffer: *mut NDIS_BUFFER) {
        if !self.model().descriptors.remove_buffer(buffer as usize) {
            report(
                Rule::NdisPacketOwnership,
                format!("NdisFreeBuffer({buffer:p}): freed twice or not a buffer"),
            );
        }
    }

    /// Whether `buffer` may be read: a live buffer of a pool, or of an indication in progress.
    pub(crate) fn buffer_is_live(&self, buffer: *mut NDIS_BUFFER) -> bool {
        let model = self.model();
        let key = buffer as usize;
        let live = model.descriptors.buffers.contains_key(&key) || model.indicated.contains(&key);
        if !live {
            report(
                Rule::NdisReceiveOwnership,
                format!("buffer {buffer:p} used after its indication returned, or never allocated"),
            );
        }
        live
    }

    // ---- Events ------------------------------------------------------------------------

    /// `NdisSetEvent`/`NdisResetEvent`.
    ///
    /// # Safety
    /// `event` is a valid `NDIS_EVENT`.
    pub(crate) unsafe fn signal(&self, event: *mut NDIS_EVENT, state: i32) {
        let _guard = lock(&self.events);
        // SAFETY: forwarded caller contract; writes are serialised by `events`.
        unsafe { (*event).Event.Header.SignalState = state };
        self.signalled.notify_all();
    }

    /// `NdisWaitEvent`: true once signalled, false after `milliseconds`. As in ReactOS (whose
    /// `NdisWaitEvent` hands 0 ms to `KeWaitForSingleObject` as its timeout), 0 does not wait;
    /// on Windows it waits forever, so a driver must not rely on either.
    ///
    /// # Safety
    /// `event` is a valid `NDIS_EVENT`.
    pub(crate) unsafe fn wait(&self, event: *mut NDIS_EVENT, milliseconds: u32) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_millis(u64::from(milliseconds));
        let mut guard = lock(&self.events);
        loop {
            // SAFETY: forwarded caller contract; read under `events`.
            if unsafe { (*event).Event.Header.SignalState } != 0 {
                return true;
            }
            let Some(wait) = deadline.checked_duration_since(std::time::Instant::now()) else {
                return false;
            };
            guard = self
                .signalled
                .wait_timeout(guard, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
