//! Packet and buffer pools, and the send/transfer [`Slot`]s built from them.
//!
//! A slot is one packet descriptor from a binding's packet pool over a non-paged block of its
//! own, described by one buffer descriptor (`NdisAllocateBuffer`) chained at the front of the
//! packet (what the DDK's `NdisChainBufferAtFront` macro does: `Private.Head`, `Private.Tail`,
//! `Private.ValidCounts`), all allocated when the adapter is bound. To send a frame the protocol
//! copies it into the block, sets the buffer's length (`NdisAdjustBufferLength`) and passes the
//! packet to `NdisSend`; the slot is free again when the send completes. Receiving through
//! `NdisTransferData` uses a slot whose buffer starts after the Ethernet header. Nothing is
//! allocated per frame.
//!
//! Ownership: a binding's slots live in a [`SlotRing`]; each is free, held by one thread
//! through a [`SlotGuard`], or with NDIS, where only the [`PacketId`] of a completion finds it
//! again ([`SlotRing::complete`]).

use super::open::Open;
use super::receive::Lookahead;
use super::{NdisStatus, RESOURCES};
use crate::nt::NtStatus;
use crate::nt::pool::try_vec;
use crate::nt::pool::try_zeroed;
use crate::nt::sys::ndis as sys;
use crate::nt::types::*;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, Ordering};

/// The identity of a packet descriptor, to recognise it when NDIS hands it back. Any IRQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketId(pub(super) usize);

/// An NDIS packet pool; freed when dropped (after every packet of it is freed).
pub struct PacketPool(NDIS_HANDLE);
/// An NDIS buffer pool; freed when dropped (after every buffer of it is freed).
pub struct BufferPool(NDIS_HANDLE);

// SAFETY: pool handles are NDIS objects usable from any thread.
unsafe impl Send for PacketPool {}
// SAFETY: NDIS serialises allocations from a pool internally.
unsafe impl Sync for PacketPool {}
// SAFETY: as for PacketPool.
unsafe impl Send for BufferPool {}
// SAFETY: as for PacketPool.
unsafe impl Sync for BufferPool {}

impl PacketPool {
    /// A pool of `count` packet descriptors with `reserved` protocol-reserved bytes each.
    /// IRQL ≤ DISPATCH_LEVEL (PASSIVE_LEVEL at bind time).
    pub fn new(count: u32, reserved: u32) -> Result<PacketPool, NdisStatus> {
        let mut status = NDIS_STATUS_FAILURE;
        let mut handle = core::ptr::null_mut();
        // SAFETY: valid out pointers.
        unsafe { sys::NdisAllocatePacketPool(&mut status, &mut handle, count, reserved) };
        NtStatus(status).ok()?;
        if handle.is_null() {
            return Err(RESOURCES);
        }
        Ok(PacketPool(handle))
    }
}

impl Drop for PacketPool {
    fn drop(&mut self) {
        // SAFETY: our pool, freed once; its packets were freed by the slots dropped before it.
        unsafe { sys::NdisFreePacketPool(self.0) };
    }
}

impl BufferPool {
    /// A pool of `count` buffer descriptors. The handle may be null: ReactOS's buffer pools
    /// are empty shells (every buffer is an MDL of its own, `IoAllocateMdl`), and its
    /// `NdisAllocateBufferPool` returns success with a null handle. IRQL ≤ DISPATCH_LEVEL.
    pub fn new(count: u32) -> Result<BufferPool, NdisStatus> {
        let mut status = NDIS_STATUS_FAILURE;
        let mut handle = core::ptr::null_mut();
        // SAFETY: valid out pointers.
        unsafe { sys::NdisAllocateBufferPool(&mut status, &mut handle, count) };
        NtStatus(status).ok()?;
        Ok(BufferPool(handle))
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        // SAFETY: our pool, freed once; its buffers were freed by their slots.
        unsafe { sys::NdisFreeBufferPool(self.0) };
    }
}

/// A packet descriptor over a block of its own, described by one buffer chained to the packet
/// for the slot's whole life. Drop it (before its pools) to free all three.
pub struct Slot {
    packet: NonNull<NDIS_PACKET>,
    buffer: NonNull<NDIS_BUFFER>,
    block: Vec<u8>,
    /// Where the buffer starts in the block.
    offset: usize,
    /// The bytes of the block in use: the buffer's current length plus `offset`.
    len: usize,
}

// SAFETY: the packet and buffer belong to this slot alone; NDIS objects have no thread
// affinity.
unsafe impl Send for Slot {}

impl Slot {
    /// A packet from `packets` over a zeroed block of `size` bytes, with a buffer from
    /// `buffers` describing the block from `offset` on, chained at the front of the packet
    /// (what the DDK's `NdisChainBufferAtFront` macro does). PASSIVE_LEVEL (bind).
    pub fn new(
        packets: &PacketPool,
        buffers: &BufferPool,
        size: usize,
        offset: usize,
    ) -> Result<Slot, NdisStatus> {
        // ReactOS's NdisAllocateBuffer asserts a non-empty buffer.
        let length = size
            .checked_sub(offset)
            .filter(|&length| length > 0)
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        let mut block = try_zeroed(size).map_err(|_| RESOURCES)?;
        let area = block.get_mut(offset..).ok_or(NtStatus::INVALID_PARAMETER)?;
        let mut status = NDIS_STATUS_FAILURE;
        let mut buffer = core::ptr::null_mut();
        // SAFETY: the area is part of the block, which the slot owns (its heap memory does not
        // move with the slot) and frees only after the buffer.
        unsafe {
            sys::NdisAllocateBuffer(
                &mut status,
                &mut buffer,
                buffers.0,
                area.as_mut_ptr().cast(),
                length as u32,
            )
        };
        NtStatus(status).ok()?;
        let buffer = NonNull::new(buffer).ok_or(RESOURCES)?;
        let mut packet = core::ptr::null_mut();
        // SAFETY: a live pool and a valid out pointer.
        unsafe { sys::NdisAllocatePacket(&mut status, &mut packet, packets.0) };
        let Some(packet) = NonNull::new(packet).filter(|_| status == NDIS_STATUS_SUCCESS) else {
            // SAFETY: allocated above, chained nowhere, freed once.
            unsafe { sys::NdisFreeBuffer(buffer.as_ptr()) };
            return Err(if status == NDIS_STATUS_SUCCESS {
                RESOURCES
            } else {
                NtStatus(status)
            });
        };
        // SAFETY: NdisChainBufferAtFront on a fresh packet (no buffers) and a single, unchained
        // buffer.
        unsafe {
            let private = &raw mut (*packet.as_ptr()).Private;
            (*buffer.as_ptr()).Next = core::ptr::null_mut();
            (*private).Head = buffer.as_ptr();
            (*private).Tail = buffer.as_ptr();
            (*private).ValidCounts = FALSE;
        }
        Ok(Slot {
            packet,
            buffer,
            block,
            offset,
            len: size,
        })
    }

    /// This slot's packet, as NDIS will name it in completions. Any IRQL.
    pub fn id(&self) -> PacketId {
        PacketId(self.packet.as_ptr() as usize)
    }

    /// The bytes in use: those [`Slot::set_length`] described (with the bytes before the
    /// buffer's offset), or after a transfer those [`Slot::transferred`] reported. Any IRQL.
    pub fn bytes(&self) -> &[u8] {
        self.block.get(..self.len).unwrap_or_default()
    }

    /// The block, to fill before a send, or to put a header before a transfer. Any IRQL.
    pub fn block_mut(&mut self) -> &mut [u8] {
        &mut self.block
    }

    /// Makes the buffer describe `len` bytes from its offset (`NdisAdjustBufferLength`), and
    /// marks the packet's counts stale so that NDIS recomputes its length. The packet is then
    /// ready for `NdisSend` or `NdisTransferData`. IRQL ≤ DISPATCH_LEVEL.
    pub fn set_length(&mut self, len: usize) -> Result<(), NdisStatus> {
        let end = self
            .offset
            .checked_add(len)
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        if len == 0 || end > self.block.len() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        // SAFETY: our buffer and packet, in the protocol's hands (`&mut self` through a held
        // slot); the new length stays within the block.
        unsafe {
            sys::NdisAdjustBufferLength(self.buffer.as_ptr(), len as u32);
            (*self.packet.as_ptr()).Private.ValidCounts = FALSE;
        }
        self.len = end;
        Ok(())
    }

    /// Sets the bytes in use after a transfer delivered `transferred` bytes. Any IRQL.
    pub fn transferred(&mut self, transferred: usize) {
        self.len = self.offset.saturating_add(transferred).min(self.len);
    }

    /// The raw packet, for `NdisSend`/`NdisTransferData`. Any IRQL.
    fn raw(&self) -> *mut NDIS_PACKET {
        self.packet.as_ptr()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut unchained = core::ptr::null_mut();
        // SAFETY: our packet, in the protocol's hands (a slot is dropped only then), with our
        // buffer as its only buffer; each freed once. IRQL ≤ DISPATCH_LEVEL.
        unsafe {
            sys::NdisUnchainBufferAtFront(self.packet.as_ptr(), &mut unchained);
            sys::NdisFreeBuffer(self.buffer.as_ptr());
            sys::NdisFreePacket(self.packet.as_ptr());
        }
    }
}

const FREE: u8 = 0;
const HELD: u8 = 1;
const WITH_NDIS: u8 = 2;

/// One slot and who has it.
struct Cell {
    state: AtomicU8,
    slot: UnsafeCell<Slot>,
}

/// A binding's fixed set of slots. Each is free, held by one thread through a [`SlotGuard`], or
/// with NDIS (between `NdisSend`/`NdisTransferData` and its completion).
pub struct SlotRing {
    cells: Vec<Cell>,
}

// SAFETY: a slot is only accessed by the thread that moved its state FREE → HELD (or took it
// back from WITH_NDIS), so `&SlotRing` never gives two threads the same slot.
unsafe impl Sync for SlotRing {}

impl SlotRing {
    /// `count` slots (see [`Slot::new`]). PASSIVE_LEVEL (bind).
    pub fn new(
        packets: &PacketPool,
        buffers: &BufferPool,
        count: usize,
        size: usize,
        offset: usize,
    ) -> Result<SlotRing, NdisStatus> {
        let mut cells = try_vec(count).map_err(|_| RESOURCES)?;
        for _ in 0..count {
            cells.push(Cell {
                state: AtomicU8::new(FREE),
                slot: UnsafeCell::new(Slot::new(packets, buffers, size, offset)?),
            });
        }
        Ok(SlotRing { cells })
    }

    /// A free slot, if any. IRQL ≤ DISPATCH_LEVEL.
    pub fn acquire(&self) -> Option<SlotGuard<'_>> {
        let cell = self.cells.iter().find(|cell| {
            cell.state
                .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })?;
        Some(SlotGuard { cell })
    }

    /// How many slots are not free. Any IRQL.
    pub fn busy(&self) -> usize {
        self.cells
            .iter()
            .filter(|cell| cell.state.load(Ordering::Acquire) != FREE)
            .count()
    }

    /// Takes back the slot whose packet NDIS names in a completion. `None` if no slot of this
    /// ring is with NDIS under that packet (a completion for a packet that is not ours, or a
    /// second completion of one). IRQL ≤ DISPATCH_LEVEL.
    pub fn complete(&self, id: PacketId) -> Option<SlotGuard<'_>> {
        let cell = self.cells.iter().find(|cell| {
            // SAFETY: the packet pointer of a slot never changes after construction; reading
            // it does not conflict with the holder's writes to the buffer and block.
            let packet = unsafe { (*cell.slot.get()).id() };
            packet == id
        })?;
        cell.state
            .compare_exchange(WITH_NDIS, HELD, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        Some(SlotGuard { cell })
    }
}

/// Exclusive use of one slot; frees it when dropped.
pub struct SlotGuard<'a> {
    cell: &'a Cell,
}

impl Deref for SlotGuard<'_> {
    type Target = Slot;

    fn deref(&self) -> &Slot {
        // SAFETY: HELD by this guard.
        unsafe { &*self.cell.slot.get() }
    }
}

impl DerefMut for SlotGuard<'_> {
    fn deref_mut(&mut self) -> &mut Slot {
        // SAFETY: HELD by this guard, which is borrowed mutably.
        unsafe { &mut *self.cell.slot.get() }
    }
}

impl<'a> SlotGuard<'a> {
    /// Sends the packet on binding `open`. `PENDING`: NDIS has it until `SendComplete`
    /// names it ([`SlotRing::complete`]). Anything else: the send is over and the slot is free
    /// again. IRQL ≤ DISPATCH_LEVEL.
    pub fn send(self, open: &Open) -> NDIS_STATUS {
        let handle = open.handle();
        if handle.is_null() {
            return NDIS_STATUS_FAILURE;
        }
        let packet = self.raw();
        let cell = self.hand_over();
        let mut status = NDIS_STATUS_FAILURE;
        // SAFETY: an open binding and a packet with its buffer chained; the slot is WITH_NDIS,
        // so no thread touches it until the completion takes it back.
        unsafe { sys::NdisSend(&mut status, handle, packet) };
        if status != NDIS_STATUS_PENDING {
            take_back(cell);
        }
        status
    }

    /// `NdisTransferData` of `length` bytes from `offset` in the received frame's data (after
    /// the header) into the buffer described on this slot, during `indication` on `open`. `Ok(bytes)` when done at once (the guard is back), `Err(PENDING)` when
    /// `TransferDataComplete` will name the packet, other errors when it failed (the slot is
    /// free again). IRQL = DISPATCH_LEVEL, inside `ProtocolReceive`.
    pub fn transfer(
        self,
        open: &Open,
        indication: &Lookahead<'_>,
        offset: u32,
        length: u32,
    ) -> Result<(SlotGuard<'a>, u32), NDIS_STATUS> {
        let (handle, context) = (open.handle(), indication.context());
        if handle.is_null() {
            return Err(NDIS_STATUS_FAILURE);
        }
        let packet = self.raw();
        let cell = self.hand_over();
        let mut status = NDIS_STATUS_FAILURE;
        let mut transferred = 0u32;
        // SAFETY: an open binding and the receive context of the indication in progress; the
        // packet's buffer lies inside the slot's block, which NDIS owns until the transfer is
        // over.
        unsafe {
            sys::NdisTransferData(
                &mut status,
                handle,
                context,
                offset,
                length,
                packet,
                &mut transferred,
            )
        };
        if status == NDIS_STATUS_PENDING {
            return Err(status);
        }
        let guard = take_back(cell);
        if status != NDIS_STATUS_SUCCESS {
            return Err(status);
        }
        Ok((guard, transferred))
    }

    /// Marks the slot as NDIS's and forgets the guard. IRQL ≤ DISPATCH_LEVEL.
    fn hand_over(self) -> &'a Cell {
        let cell = self.cell;
        core::mem::forget(self);
        cell.state.store(WITH_NDIS, Ordering::Release);
        cell
    }
}

/// Takes a slot back from NDIS after a call that did not pend.
/// IRQL ≤ DISPATCH_LEVEL.
fn take_back(cell: &Cell) -> SlotGuard<'_> {
    cell.state.store(HELD, Ordering::Release);
    SlotGuard { cell }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.cell.state.store(FREE, Ordering::Release);
    }
}
