//! One binding of the protocol to an 802.3 adapter: the [`Adapter`] the core's Ethernet link
//! runs on, over NDIS.
//!
//! Bound at PASSIVE_LEVEL by [`Binding::bind`]: two pools and the slots built from them are
//! allocated first (every send and every `NdisTransferData` uses a slot, so nothing is
//! allocated after the bind), then the adapter is opened for 802.3, its MAC address and
//! maximum frame size (the IP MTU) are queried, its media state is read, and the packet filter
//! is set to directed | broadcast | multicast. Each step that fails undoes the ones before it.
//!
//! - **Send** ([`Adapter::transmit`], from the core DPC): the frame is copied into a free send
//!   slot (padded to the 60-byte Ethernet minimum), its buffer set to the frame's length, and
//!   the packet passed to `NdisSend`; the slot is free again when the send completes, at once or in
//!   `ProtocolSendComplete`. No free slot, media down, or a closing binding: the frame is
//!   lost, as on a wire.
//! - **Receive**: `ProtocolReceivePacket` copies the packet's buffer chain straight into the
//!   core's receive queue; `ProtocolReceive` copies header and lookahead when they hold the whole
//!   frame, and otherwise transfers the frame into a transfer slot with `NdisTransferData`
//!   (during the indication, as NDIS requires) and queues it from there once the transfer is
//!   done. Each binding's frames go to the receive queue of its own interface.
//! - **Unbind** ([`Binding::close`]): marks the binding closing (no new sends), detaches it from
//!   the core, waits until every send and transfer has completed, then closes the adapter. The
//!   pools are freed when the last reference to the binding goes.
#![forbid(unsafe_code)]

use crate::core::stack::Stack;
use crate::link::ethernet::{Adapter, HEADER_LEN, MAX_MTU, MIN_MTU};
use crate::nt::NtStatus;
use crate::nt::log::Level;
use crate::nt::ndis::open::Open;
use crate::nt::ndis::packet::{BufferPool, PacketId, PacketPool, SlotRing};
use crate::nt::ndis::protocol::Registration;
use crate::nt::ndis::receive::{Lookahead, ReceivedPacket};
use crate::nt::ndis::{NdisStatus, RESOURCES};
use crate::nt::pool::try_vec;
use crate::nt::thread::sleep_micros;
use crate::nt::types::*;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Send slots per binding: frames in flight to the miniport at once.
pub const SEND_SLOTS: usize = 64;
/// Transfer slots per binding, for lookahead-only miniports.
pub const TRANSFER_SLOTS: usize = 64;
/// The Ethernet minimum frame without FCS: shorter frames are padded with zeros.
const MIN_FRAME: usize = 60;
/// The largest frame a slot holds: the largest MTU a miniport may report, plus the header.
const SLOT_SIZE: usize = crate::link::ethernet::DEFAULT_MTU + HEADER_LEN;
/// Bytes of FCS a miniport may leave at the end of a frame (dropped, never queued).
const FCS_LEN: usize = 4;

/// Counters of a binding.
#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub send_failed: AtomicU64,
    pub received: AtomicU64,
    pub receive_dropped: AtomicU64,
}

/// A binding. Its address is the `ProtocolBindingContext` NDIS passes to every handler.
pub struct Binding {
    open: Open,
    /// `\Device\{GUID}`.
    name: Vec<u16>,
    stack: &'static Stack,
    mac: AtomicU64,
    mtu: AtomicUsize,
    /// The link speed in bit/s (0: the miniport did not say).
    speed: AtomicU32,
    connected: AtomicBool,
    closing: AtomicBool,
    /// The core's interface index for this adapter; 0 while not attached.
    interface: AtomicU32,
    pub counters: Counters,
    // The slots are dropped before the pools they come from.
    sends: SlotRing,
    transfers: SlotRing,
    /// Own the buffer and packet pools of the slots, freed after them.
    _buffers: BufferPool,
    _packets: PacketPool,
}

impl Binding {
    /// Allocates the binding's pools and slots for adapter `name`. PASSIVE_LEVEL.
    pub fn new(stack: &'static Stack, name: &[u16]) -> Result<Binding, NdisStatus> {
        let count = (SEND_SLOTS + TRANSFER_SLOTS) as u32;
        let packets = PacketPool::new(count, 0)?;
        let buffers = BufferPool::new(count)?;
        let sends = SlotRing::new(&packets, &buffers, SEND_SLOTS, SLOT_SIZE, 0)?;
        let transfers = SlotRing::new(&packets, &buffers, TRANSFER_SLOTS, SLOT_SIZE, HEADER_LEN)?;
        let mut owned = try_vec(name.len()).map_err(|_| RESOURCES)?;
        owned.extend_from_slice(name);
        Ok(Binding {
            open: Open::default(),
            name: owned,
            stack,
            mac: AtomicU64::new(0),
            mtu: AtomicUsize::new(0),
            speed: AtomicU32::new(0),
            connected: AtomicBool::new(true),
            closing: AtomicBool::new(false),
            interface: AtomicU32::new(0),
            counters: Counters::default(),
            sends,
            transfers,
            _buffers: buffers,
            _packets: packets,
        })
    }

    /// The adapter's device name, `\Device\{GUID}`. Any IRQL.
    pub fn name(&self) -> &[u16] {
        &self.name
    }

    /// The interface name: the `{GUID}` part of the device name. Any IRQL.
    pub fn guid(&self) -> &[u16] {
        let start = self
            .name
            .iter()
            .rposition(|&unit| unit == u16::from(b'\\'))
            .map_or(0, |i| i + 1);
        self.name.get(start..).unwrap_or_default()
    }

    /// The binding's [`Open`]. Any IRQL.
    pub fn open(&self) -> &Open {
        &self.open
    }

    /// Whether the media is connected. Any IRQL.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The core's interface index for this adapter, while it is attached. Any IRQL.
    pub fn interface(&self) -> Option<u32> {
        Some(self.interface.load(Ordering::Acquire)).filter(|&index| index != 0)
    }

    /// Whether the core runs on this binding. Any IRQL.
    fn attached(&self) -> bool {
        self.interface().is_some()
    }

    /// Queues a received frame of `len` bytes that `fill` writes on this binding's interface.
    /// IRQL ≤ DISPATCH_LEVEL.
    fn indicate(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> bool) -> bool {
        self.interface()
            .is_some_and(|index| self.stack.indicate_receive_with(index, len, fill))
    }

    /// Opens the adapter and reads what the link needs (see the module documentation).
    /// `context` is this binding's address. PASSIVE_LEVEL.
    pub fn bind(&self, protocol: &Registration, context: *const Binding) -> Result<(), NdisStatus> {
        self.open.open(protocol, context.cast(), &self.name)?;
        if let Err(status) = self.configure() {
            self.open.close();
            return Err(status);
        }
        Ok(())
    }

    /// Queries the MAC address, the MTU, the link speed and the media state, and sets the
    /// packet filter.
    /// PASSIVE_LEVEL, on the open binding.
    fn configure(&self) -> Result<(), NdisStatus> {
        let (mac, written) = self.open.query(OID_802_3_CURRENT_ADDRESS, 6)?;
        if written != 6 {
            return Err(NtStatus(NDIS_STATUS_INVALID_LENGTH));
        }
        let mut bytes = [0u8; 8];
        bytes[..6].copy_from_slice(&mac[..6]);
        self.mac.store(u64::from_le_bytes(bytes), Ordering::Release);
        let (frame, written) = self.open.query(OID_GEN_MAXIMUM_FRAME_SIZE, 4)?;
        let mtu = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        if written != 4 || !(MIN_MTU..=MAX_MTU).contains(&mtu) || mtu + HEADER_LEN > SLOT_SIZE {
            return Err(NtStatus(NDIS_STATUS_NOT_SUPPORTED));
        }
        self.mtu.store(mtu, Ordering::Release);
        // Optional: in units of 100 bit/s; a miniport that does not answer has speed 0.
        if let Ok((speed, 4)) = self.open.query(OID_GEN_LINK_SPEED, 4) {
            let speed = u32::from_le_bytes([speed[0], speed[1], speed[2], speed[3]]);
            self.speed
                .store(speed.saturating_mul(100), Ordering::Release);
        }
        // Optional: a miniport that does not answer is taken as connected.
        if let Ok((state, 4)) = self.open.query(OID_GEN_MEDIA_CONNECT_STATUS, 4) {
            let state = u32::from_le_bytes([state[0], state[1], state[2], state[3]]);
            self.connected
                .store(state == NDIS_MEDIA_STATE_CONNECTED, Ordering::Release);
        }
        let filter =
            NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_BROADCAST | NDIS_PACKET_TYPE_MULTICAST;
        self.open
            .set(OID_GEN_CURRENT_PACKET_FILTER, &filter.to_le_bytes())
    }

    /// Attaches this binding to the core as an interface of its own; returns its index.
    /// PASSIVE_LEVEL.
    pub fn attach(self: &alloc::sync::Arc<Self>, frames: usize) -> Result<u32, NtStatus> {
        let index = self.stack.attach_link(self.clone(), frames)?;
        self.interface.store(index, Ordering::Release);
        Ok(index)
    }

    /// Unbinds (see the module documentation). PASSIVE_LEVEL.
    pub fn close(&self) -> NdisStatus {
        self.closing.store(true, Ordering::Release);
        let index = self.interface.swap(0, Ordering::AcqRel);
        if index != 0 {
            // The interface goes with its address and gateway.
            let _ = self.stack.configure_address(index, None);
            self.stack.set_gateway(index, None);
            self.stack.detach_link(index);
        }
        while self.sends.busy() + self.transfers.busy() > 0 {
            sleep_micros(1000);
        }
        self.open.close()
    }

    /// `ProtocolSendComplete`. DISPATCH_LEVEL.
    pub fn send_complete(&self, packet: PacketId, status: NdisStatus) {
        match self.sends.complete(packet) {
            Some(_slot) if status.is_success() => bump(&self.counters.sent),
            Some(_slot) => bump(&self.counters.send_failed),
            None => crate::log!(
                Level::Error,
                "SendComplete for a packet that is not in flight: {packet:?}"
            ),
        }
    }

    /// `ProtocolReceivePacket`. DISPATCH_LEVEL.
    pub fn receive_packet(&self, packet: &ReceivedPacket<'_>) {
        if !self.attached() {
            return;
        }
        let Ok(total) = packet.copy_to(&mut []) else {
            return bump(&self.counters.receive_dropped);
        };
        let len = self.queued_length(total);
        let queued = self.indicate(len, |buffer| {
            packet.copy_to(buffer).is_ok_and(|copied| copied >= len)
        });
        self.count_receive(queued);
    }

    /// `ProtocolReceive`. DISPATCH_LEVEL.
    pub fn receive(&self, indication: &Lookahead<'_>) -> NdisStatus {
        if !self.attached() || indication.header.len() != HEADER_LEN {
            return NtStatus::SUCCESS;
        }
        let data_len = self
            .queued_length(HEADER_LEN.saturating_add(indication.packet_size))
            .saturating_sub(HEADER_LEN);
        if let Some(data) = indication.lookahead.get(..data_len) {
            let queued = self.indicate(HEADER_LEN + data_len, |buffer| {
                let Some((header, rest)) = buffer.split_at_mut_checked(HEADER_LEN) else {
                    return false;
                };
                header.copy_from_slice(indication.header);
                rest.copy_from_slice(data);
                true
            });
            self.count_receive(queued);
            return NtStatus::SUCCESS;
        }
        let Some(mut slot) = self.transfers.acquire() else {
            bump(&self.counters.receive_dropped);
            return NtStatus::SUCCESS;
        };
        if let Some(header) = slot.block_mut().get_mut(..HEADER_LEN) {
            header.copy_from_slice(indication.header);
        }
        if slot.set_length(data_len).is_err() {
            bump(&self.counters.receive_dropped);
            return NtStatus::SUCCESS;
        }
        match slot.transfer(&self.open, indication, 0, data_len as u32) {
            Ok((mut slot, transferred)) => {
                slot.transferred(transferred as usize);
                let queued = self.indicate(slot.bytes().len(), |buffer| {
                    buffer.copy_from_slice(slot.bytes());
                    true
                });
                self.count_receive(queued);
            }
            Err(NDIS_STATUS_PENDING) => {}
            Err(_) => bump(&self.counters.receive_dropped),
        }
        NtStatus::SUCCESS
    }

    /// `ProtocolTransferDataComplete`. DISPATCH_LEVEL.
    pub fn transfer_complete(&self, packet: PacketId, status: NdisStatus, bytes: u32) {
        let Some(mut slot) = self.transfers.complete(packet) else {
            crate::log!(
                Level::Error,
                "TransferDataComplete for a packet that is not in flight: {packet:?}"
            );
            return;
        };
        if !status.is_success() || !self.attached() {
            return bump(&self.counters.receive_dropped);
        }
        slot.transferred(bytes as usize);
        let queued = self.indicate(slot.bytes().len(), |buffer| {
            buffer.copy_from_slice(slot.bytes());
            true
        });
        self.count_receive(queued);
    }

    /// `ProtocolStatus`: media connect and disconnect. DISPATCH_LEVEL.
    pub fn status(&self, status: NdisStatus) {
        let connected = match status.raw() {
            NDIS_STATUS_MEDIA_CONNECT => true,
            NDIS_STATUS_MEDIA_DISCONNECT => false,
            _ => return,
        };
        self.connected.store(connected, Ordering::Release);
        crate::log!(
            Level::Notice,
            "{}: media {}",
            super::Wide(self.guid()),
            if connected {
                "connected"
            } else {
                "disconnected"
            }
        );
    }

    /// The length of a frame of `total` bytes once a trailing FCS is cut off: a miniport that
    /// leaves the FCS makes a full-size frame 4 bytes longer than the MTU allows.
    fn queued_length(&self, total: usize) -> usize {
        let largest = self.mtu() + HEADER_LEN;
        if total > largest && total - largest <= FCS_LEN {
            largest
        } else {
            total
        }
    }

    /// Counts a frame queued or dropped. Any IRQL.
    fn count_receive(&self, queued: bool) {
        bump(if queued {
            &self.counters.received
        } else {
            &self.counters.receive_dropped
        });
    }
}

/// Adds one to a counter. Any IRQL.
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Adapter for Binding {
    /// Any IRQL.
    fn mac(&self) -> [u8; 6] {
        let bytes = self.mac.load(Ordering::Acquire).to_le_bytes();
        [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]]
    }

    /// Any IRQL.
    fn mtu(&self) -> usize {
        self.mtu.load(Ordering::Acquire)
    }

    /// The `{GUID}` of `\Device\{GUID}`. Any IRQL.
    fn interface_name(&self) -> &[u16] {
        self.guid()
    }

    /// The media state NDIS last reported. Any IRQL.
    fn media_connected(&self) -> bool {
        self.connected()
    }

    /// What `OID_GEN_LINK_SPEED` said at bind time, in bit/s. Any IRQL.
    fn link_speed(&self) -> u32 {
        self.speed.load(Ordering::Acquire)
    }

    /// Copies the frame into a send slot and sends it (see the module documentation).
    /// IRQL ≤ DISPATCH_LEVEL.
    fn transmit(&self, frame: &[u8]) -> bool {
        if self.closing.load(Ordering::Acquire) || !self.connected() {
            return false;
        }
        let Some(mut slot) = self.sends.acquire() else {
            bump(&self.counters.send_failed);
            return false;
        };
        // Re-checked with the slot held: `close` waits for held slots after setting `closing`.
        if self.closing.load(Ordering::Acquire) {
            return false;
        }
        let len = frame.len().max(MIN_FRAME);
        let Some(area) = slot.block_mut().get_mut(..len) else {
            bump(&self.counters.send_failed);
            return false;
        };
        let Some((data, padding)) = area.split_at_mut_checked(frame.len()) else {
            return false;
        };
        data.copy_from_slice(frame);
        padding.fill(0);
        if slot.set_length(len).is_err() {
            bump(&self.counters.send_failed);
            return false;
        }
        match slot.send(&self.open) {
            NDIS_STATUS_PENDING => true,
            NDIS_STATUS_SUCCESS => {
                bump(&self.counters.sent);
                true
            }
            _ => {
                bump(&self.counters.send_failed);
                false
            }
        }
    }
}
