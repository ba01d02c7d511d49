//! The Ethernet link: the shape an NDIS miniport gives the core. The adapter under it is an
//! NDIS binding (`crate::ndis::binding`), on ReactOS as in the host model, where the TAP
//! adapter of `host::tap` is a miniport of the model's NDIS.
//!
//! # The NDIS shape
//!
//! The driver is an NDIS protocol bound to a miniport. The miniport indicates each received
//! frame to the protocol's receive handler (`ProtocolReceive` / `ProtocolReceivePacket`) at
//! IRQL ≤ DISPATCH_LEVEL, and the frame is only lent for the duration of the call. Here that
//! handler ends in [`ReceiveQueue::indicate`] (or [`ReceiveQueue::indicate_with`] for a frame
//! in pieces): it copies the frame
//! into one of the queue's preallocated buffers — **the one copy in** — and returns; the caller
//! then queues the core DPC. The DPC, holding the core lock, lets smoltcp take the queued
//! frames through an [`EthernetDevice`], which hands each buffer to smoltcp to be read in
//! place and returns it to the queue's free list afterwards.
//!
//! In the other direction smoltcp writes every outgoing frame (ARP included: the medium is
//! `Medium::Ethernet`, so smoltcp resolves neighbours itself) into the device's preallocated
//! transmit buffer, and the device hands it to [`Adapter::transmit`], which copies it into the
//! adapter's own send resources (`NdisSend`, or `write(2)` on a TAP) — **the one copy out**.
//! Short frames are not padded to the Ethernet minimum of 60 bytes: padding is the adapter's
//! job, as it is a NIC's.
//!
//! # Exhaustion
//!
//! The queue has a fixed number of buffers, all allocated (fallibly) by [`ReceiveQueue::new`].
//! When every one of them holds a frame the DPC has not taken yet, `indicate` refuses the next
//! frame and counts it in [`ReceiveStats::dropped_full`], as a NIC whose receive ring is full
//! drops frames; TCP recovers by retransmission. Frames shorter than an Ethernet header or
//! longer than the MTU plus the header are refused as well ([`ReceiveStats::dropped_size`]).
//! Nothing is allocated after construction, on either path: the transmit buffer is reused for
//! every frame because the adapter copies it out before `transmit` returns, and a frame the
//! adapter cannot send is counted in [`DeviceStats::transmit_failed`] and lost like a frame
//! lost on the wire.
//!
//! # Checksums
//!
//! smoltcp computes and verifies the IPv4, TCP and ICMP checksums on this link (the default
//! [`ChecksumCapabilities`](smoltcp::phy::ChecksumCapabilities)): frames come from and go to a
//! real network. Checksum offload can be declared later from the miniport's capabilities.
//!
//! # Locks
//!
//! The queue's spin lock is taken by `indicate` alone, and by the device while the DPC holds
//! the core lock: the order is core → receive queue. It is never held while smoltcp runs, nor
//! while the adapter transmits.
//!
//! # The core's view of the queue
//!
//! As with the loopback, the core classifies each frame before smoltcp sees it:
//! [`EthernetDevice::peek_front`] shows the next frame smoltcp would receive,
//! [`EthernetDevice::drop_front`] discards it, and [`ipv4_packet`] finds the IPv4 packet in a
//! frame, which is what `core::segment` reads.
#![forbid(unsafe_code)]

mod device;
mod queue;

pub use device::{DeviceStats, EthernetDevice, RxToken, TxToken, transmit_buffer};
pub use queue::{ReceiveQueue, ReceiveStats};

use smoltcp::wire::{EthernetFrame, EthernetProtocol, IPV4_MIN_MTU};

pub use smoltcp::wire::ETHERNET_HEADER_LEN as HEADER_LEN;

/// The usual Ethernet MTU.
pub const DEFAULT_MTU: usize = 1500;
/// The smallest MTU: every IPv4 host must accept 576-byte datagrams (RFC 791).
pub const MIN_MTU: usize = IPV4_MIN_MTU;
/// The largest MTU: an IPv4 packet's total length is 16 bits.
pub const MAX_MTU: usize = 65535;
/// A default number of receive buffers: 256 frames of [`DEFAULT_MTU`] are about 380 KiB of
/// non-paged pool, enough for several full TCP windows indicated before the DPC runs.
pub const DEFAULT_FRAMES: usize = 256;

/// The NIC under the link: what an NDIS miniport binding gives the protocol, and what the host
/// model's TAP adapter provides. Received frames go the other way, through
/// [`ReceiveQueue::indicate`].
pub trait Adapter: Send + Sync {
    /// The adapter's MAC address. Any IRQL.
    fn mac(&self) -> [u8; 6];

    /// The IP MTU: the largest Ethernet payload, without the 14-byte header (1500 for
    /// Ethernet). Any IRQL.
    fn mtu(&self) -> usize;

    /// Sends one Ethernet frame (header included, without FCS and padding), copying it before
    /// returning: the caller reuses the buffer at once. Returns `false` if the frame could not
    /// be sent (no send resources, link down); it is then lost. Called from the core DPC at
    /// IRQL ≤ DISPATCH_LEVEL, with the core lock held: it must not wait or call back into the
    /// core.
    fn transmit(&self, frame: &[u8]) -> bool;

    /// The interface name the IP helper shows (`IFEntry::if_descr`, the adapter name of
    /// `GetAdaptersInfo`): an NDIS adapter's `{GUID}`, in UTF-16. Empty if the adapter has
    /// none (the information model then says `Ethernet`). Any IRQL.
    fn interface_name(&self) -> &[u16] {
        &[]
    }

    /// Whether the medium is connected (`if_operstatus`). Any IRQL.
    fn media_connected(&self) -> bool {
        true
    }

    /// The link speed in bit/s (`if_speed`), or 0 if the adapter does not say. Any IRQL.
    fn link_speed(&self) -> u32 {
        0
    }
}

/// The IPv4 packet an Ethernet frame carries, header included (with any padding after it:
/// the IPv4 total length says where the packet ends), or `None` if the frame is too short for
/// an Ethernet header or its EtherType is not IPv4. Reads in place; never panics. Any IRQL.
pub fn ipv4_packet(frame: &[u8]) -> Option<&[u8]> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    frame.get(HEADER_LEN..)
}

#[cfg(test)]
mod tests;
