//! What a receive indication lends the protocol, for the duration of the handler call only.
//!
//! - `ProtocolReceivePacket` gets a whole packet: a chain of buffers (MDLs) that
//!   [`ReceivedPacket::copy_to`] gathers into one contiguous frame. The protocol returns 0
//!   (it keeps no reference), so the miniport gets the packet back when the handler returns.
//! - `ProtocolReceive` gets the 14-byte header and a lookahead: the whole frame, or only its
//!   first bytes when the miniport indicates lookahead only. The rest is fetched with
//!   `NdisTransferData`, only during the indication (`SlotGuard::transfer` takes it).

use super::NdisStatus;
use crate::nt::NtStatus;
use crate::nt::sys::ndis as sys;
use crate::nt::types::*;
use core::ffi::c_void;
use core::marker::PhantomData;
use core::ptr::NonNull;

/// A packet indicated to `ProtocolReceivePacket`, valid for the handler call.
pub struct ReceivedPacket<'a> {
    packet: NonNull<NDIS_PACKET>,
    _indication: PhantomData<&'a NDIS_PACKET>,
}

impl ReceivedPacket<'_> {
    /// Wraps the handler's packet argument.
    ///
    /// # Safety
    /// `packet` is the packet NDIS indicated, and the value does not outlive the handler call.
    pub(super) unsafe fn new(packet: NonNull<NDIS_PACKET>) -> Self {
        Self {
            packet,
            _indication: PhantomData,
        }
    }

    /// Copies the packet's bytes (the Ethernet frame) into `out`, up to its length; returns the
    /// packet's total length, which may exceed what was copied. Buffers NDIS cannot map are an
    /// error. IRQL ≤ DISPATCH_LEVEL.
    pub fn copy_to(&self, out: &mut [u8]) -> Result<usize, NdisStatus> {
        // SAFETY: NDIS's packet, valid during the indication; `Head` is what the DDK's
        // NdisQueryPacket reads.
        let mut buffer = unsafe { (*self.packet.as_ptr()).Private.Head };
        let mut total = 0usize;
        while let Some(current) = NonNull::new(buffer) {
            let mut address: *mut c_void = core::ptr::null_mut();
            let mut length = 0u32;
            // SAFETY: a buffer of the indicated packet; valid out pointers.
            unsafe {
                sys::NdisQueryBufferSafe(
                    current.as_ptr(),
                    &mut address,
                    &mut length,
                    NORMAL_PAGE_PRIORITY,
                )
            };
            let length = length as usize;
            if address.is_null() && length > 0 {
                return Err(NtStatus::INSUFFICIENT_RESOURCES);
            }
            if let Some(room) = out.get_mut(total.min(out.len())..) {
                let take = length.min(room.len());
                if take > 0 {
                    // SAFETY: NDIS maps `length` bytes at `address` for the indication.
                    let bytes = unsafe { core::slice::from_raw_parts(address.cast::<u8>(), take) };
                    if let Some(area) = room.get_mut(..take) {
                        area.copy_from_slice(bytes);
                    }
                }
            }
            total = total.saturating_add(length);
            // SAFETY: NdisGetNextBuffer: the MDL's link.
            buffer = unsafe { (*current.as_ptr()).Next };
        }
        Ok(total)
    }
}

/// A lookahead indication to `ProtocolReceive`, valid for the handler call.
pub struct Lookahead<'a> {
    /// The Ethernet header.
    pub header: &'a [u8],
    /// The first bytes of the frame's data (after the header): all of them when
    /// `lookahead.len() == packet_size`.
    pub lookahead: &'a [u8],
    /// The length of the frame's data (after the header).
    pub packet_size: usize,
    context: NDIS_HANDLE,
}

impl<'a> Lookahead<'a> {
    /// Wraps the handler's arguments.
    ///
    /// # Safety
    /// The buffers are the ones NDIS passed, with their sizes, valid during the handler call,
    /// which the value does not outlive.
    pub(super) unsafe fn new(
        context: NDIS_HANDLE,
        header: *const c_void,
        header_size: u32,
        lookahead: *const c_void,
        lookahead_size: u32,
        packet_size: u32,
    ) -> Self {
        // SAFETY: forwarded caller contract; null buffers are read as empty.
        let header = unsafe { bytes(header, header_size) };
        // SAFETY: forwarded caller contract.
        let lookahead = unsafe { bytes(lookahead, lookahead_size) };
        Self {
            header,
            lookahead,
            packet_size: packet_size as usize,
            context,
        }
    }

    /// The receive context `NdisTransferData` needs, during this indication. DISPATCH_LEVEL.
    pub(super) fn context(&self) -> NDIS_HANDLE {
        self.context
    }
}

/// `size` bytes at `data`, or nothing for a null pointer.
///
/// # Safety
/// `data` is null or valid for `size` bytes for `'a`. Any IRQL.
unsafe fn bytes<'a>(data: *const c_void, size: u32) -> &'a [u8] {
    if data.is_null() {
        return &[];
    }
    // SAFETY: forwarded caller contract.
    unsafe { core::slice::from_raw_parts(data.cast::<u8>(), size as usize) }
}
