//! The `smoltcp::phy::Device` over a [`ReceiveQueue`] and an [`Adapter`].

use super::queue::{Frame, ReceiveQueue};
use super::{Adapter, HEADER_LEN, MAX_MTU, MIN_MTU};
use crate::nt::NtStatus;
use crate::nt::pool::try_zeroed;
use alloc::vec::Vec;
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress};

/// A transmit buffer for an adapter of IP MTU `mtu`: `mtu + 14` bytes, or
/// `STATUS_INSUFFICIENT_RESOURCES` (`STATUS_INVALID_PARAMETER` above [`MAX_MTU`](super::MAX_MTU)).
/// IRQL ≤ DISPATCH_LEVEL.
pub fn transmit_buffer(mtu: usize) -> Result<Vec<u8>, NtStatus> {
    if mtu > MAX_MTU {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    try_zeroed(mtu + HEADER_LEN)
}

/// Counters of an [`EthernetDevice`] since it was created (wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Frames handed to smoltcp.
    pub delivered: u64,
    /// Frames discarded by [`EthernetDevice::drop_front`].
    pub discarded: u64,
    /// Frames the adapter accepted.
    pub transmitted: u64,
    /// Frames the adapter refused (lost).
    pub transmit_failed: u64,
    /// Frames lost to a request larger than the MTU plus the header (smoltcp never makes one).
    pub transmit_oversized: u64,
}

/// The Ethernet device the core's `Interface` runs on. See the module documentation of
/// [`crate::link::ethernet`].
///
/// The core may keep one for the life of the binding, or build one for each DPC pass around a
/// transmit buffer it keeps ([`EthernetDevice::with_transmit_buffer`],
/// [`EthernetDevice::into_transmit_buffer`]): that allocates nothing either. A frame staged by
/// [`EthernetDevice::peek_front`] when the device goes away returns to the head of the queue.
pub struct EthernetDevice<'a> {
    queue: &'a ReceiveQueue,
    adapter: &'a dyn Adapter,
    mtu: usize,
    mac: EthernetAddress,
    /// The transmit buffer, `mtu + 14` bytes, reused for every frame.
    tx: Vec<u8>,
    /// A frame taken from the queue by [`EthernetDevice::peek_front`] and not yet received or
    /// dropped.
    staged: Option<Frame>,
    stats: DeviceStats,
}

impl<'a> EthernetDevice<'a> {
    /// A device for `adapter`, receiving from `queue`; allocates the transmit buffer.
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` if the adapter's MTU is outside
    /// [`MIN_MTU`](super::MIN_MTU)..=[`MAX_MTU`](super::MAX_MTU) or larger than the queue's;
    /// `STATUS_INSUFFICIENT_RESOURCES` if the buffer cannot be allocated. IRQL
    /// ≤ DISPATCH_LEVEL (PASSIVE_LEVEL at bind time).
    pub fn new(
        queue: &'a ReceiveQueue,
        adapter: &'a dyn Adapter,
    ) -> Result<EthernetDevice<'a>, NtStatus> {
        let tx = transmit_buffer(adapter.mtu())?;
        Self::with_transmit_buffer(queue, adapter, tx)
    }

    /// A device that uses `tx`, made by [`transmit_buffer`] for the adapter's MTU, and
    /// allocates nothing: for a core that builds the device for each DPC pass and takes the
    /// buffer back with [`EthernetDevice::into_transmit_buffer`].
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` as for [`EthernetDevice::new`], or if `tx` is
    /// shorter than the adapter's MTU plus the header (it is dropped then). IRQL
    /// ≤ DISPATCH_LEVEL.
    pub fn with_transmit_buffer(
        queue: &'a ReceiveQueue,
        adapter: &'a dyn Adapter,
        tx: Vec<u8>,
    ) -> Result<EthernetDevice<'a>, NtStatus> {
        let mtu = adapter.mtu();
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) || mtu > queue.mtu() || tx.len() < mtu + HEADER_LEN {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        Ok(EthernetDevice {
            queue,
            adapter,
            mtu,
            mac: EthernetAddress(adapter.mac()),
            tx,
            staged: None,
            stats: DeviceStats::default(),
        })
    }

    /// Gives the transmit buffer back for the next [`EthernetDevice::with_transmit_buffer`];
    /// a staged frame goes back to the head of the queue. IRQL ≤ DISPATCH_LEVEL.
    pub fn into_transmit_buffer(mut self) -> Vec<u8> {
        ::core::mem::take(&mut self.tx)
    }

    /// The IP MTU (the adapter's). Any IRQL.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// The adapter's MAC address, as smoltcp's `Config::new` takes it. Any IRQL.
    pub fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }

    /// The number of frames waiting to be received, the staged one included. IRQL
    /// ≤ DISPATCH_LEVEL.
    pub fn pending(&self) -> usize {
        self.queue.pending() + usize::from(self.staged.is_some())
    }

    /// The next frame smoltcp would receive, if any: an Ethernet frame (see
    /// [`ipv4_packet`](super::ipv4_packet)). The frame is taken from the queue and staged
    /// here until it is received or dropped. IRQL ≤ DISPATCH_LEVEL.
    pub fn peek_front(&mut self) -> Option<&[u8]> {
        if self.staged.is_none() {
            self.staged = self.queue.pop();
        }
        self.staged.as_ref().map(Frame::bytes)
    }

    /// Discards the next frame, returning its buffer to the queue's free list. Returns `false`
    /// if there is none. IRQL ≤ DISPATCH_LEVEL.
    pub fn drop_front(&mut self) -> bool {
        let Some(frame) = self.staged.take().or_else(|| self.queue.pop()) else {
            return false;
        };
        self.queue.recycle(frame);
        self.stats.discarded = self.stats.discarded.wrapping_add(1);
        true
    }

    /// The counters. Any IRQL.
    pub fn stats(&self) -> DeviceStats {
        self.stats
    }

    /// The transmit buffer's address, for the tests that check nothing was reallocated. Any
    /// IRQL.
    #[cfg(test)]
    pub(super) fn tx_address(&self) -> usize {
        self.tx.as_ptr() as usize
    }
}

impl Drop for EthernetDevice<'_> {
    /// Puts a staged frame back at the head of the queue. IRQL ≤ DISPATCH_LEVEL.
    fn drop(&mut self) {
        if let Some(frame) = self.staged.take() {
            self.queue.unpop(frame);
        }
    }
}

impl phy::Device for EthernetDevice<'_> {
    type RxToken<'b>
        = RxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = TxToken<'b>
    where
        Self: 'b;

    /// The next queued frame (the staged one first) and a token for a reply. `None` if the
    /// queue is empty. IRQL ≤ DISPATCH_LEVEL.
    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let frame = self.staged.take().or_else(|| self.queue.pop())?;
        self.stats.delivered = self.stats.delivered.wrapping_add(1);
        Some((
            RxToken {
                frame,
                queue: self.queue,
            },
            TxToken {
                buf: &mut self.tx,
                adapter: self.adapter,
                stats: &mut self.stats,
            },
        ))
    }

    /// A token for one frame; never `None` (the adapter copies each frame out, so the one
    /// buffer is always free). IRQL ≤ DISPATCH_LEVEL.
    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            buf: &mut self.tx,
            adapter: self.adapter,
            stats: &mut self.stats,
        })
    }

    /// `Medium::Ethernet`, the MTU plus the header as smoltcp counts it on this medium, no
    /// burst limit, checksums computed and verified by smoltcp. Any IRQL.
    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + HEADER_LEN;
        caps.max_burst_size = None;
        caps.checksum = ChecksumCapabilities::default();
        caps
    }
}

/// A received frame lent to smoltcp; its buffer goes back to the queue's free list when the
/// token is consumed or dropped.
pub struct RxToken<'b> {
    frame: Frame,
    queue: &'b ReceiveQueue,
}

impl phy::RxToken for RxToken<'_> {
    /// Calls `f` with the frame, in place. IRQL ≤ DISPATCH_LEVEL.
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame.bytes())
    }
}

impl Drop for RxToken<'_> {
    /// Returns the buffer to the queue's free list. IRQL ≤ DISPATCH_LEVEL.
    fn drop(&mut self) {
        self.queue.recycle(::core::mem::take(&mut self.frame));
    }
}

/// The device's transmit buffer lent to smoltcp for one frame, which goes to the adapter once
/// written.
pub struct TxToken<'b> {
    buf: &'b mut [u8],
    adapter: &'b dyn Adapter,
    stats: &'b mut DeviceStats,
}

impl phy::TxToken for TxToken<'_> {
    /// Lets `f` write a `len`-byte frame, then hands it to [`Adapter::transmit`]. A request
    /// larger than the buffer gets the whole buffer and is not sent. IRQL ≤ DISPATCH_LEVEL.
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let Some(frame) = self.buf.get_mut(..len) else {
            self.stats.transmit_oversized = self.stats.transmit_oversized.wrapping_add(1);
            return f(self.buf);
        };
        let result = f(frame);
        if self.adapter.transmit(frame) {
            self.stats.transmitted = self.stats.transmitted.wrapping_add(1);
        } else {
            self.stats.transmit_failed = self.stats.transmit_failed.wrapping_add(1);
        }
        result
    }
}
