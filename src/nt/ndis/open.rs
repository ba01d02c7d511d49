//! A binding to an adapter: `NdisOpenAdapter`, OID requests and `NdisCloseAdapter`.
//!
//! NDIS may complete each of these at once or return `NDIS_STATUS_PENDING` and call the
//! protocol's `OpenAdapterComplete`, `RequestComplete` or `CloseAdapterComplete` handler later,
//! with the binding's context. [`Open`] keeps one [`NdisEvent`] for that: the caller (at
//! PASSIVE_LEVEL) resets it, starts the operation, and on `PENDING` waits until the completion
//! handler ([`Open::complete`]) stores the final status and signals it. One operation runs at a
//! time per binding (bind, unbind and reconfiguration are serialised by the protocol);
//! [`Open::query`] and [`Open::set`] refuse to start while another request is outstanding.

use super::event::NdisEvent;
use super::{NdisStatus, protocol::Registration};
use crate::nt::NtStatus;
use crate::nt::sys::ndis as sys;
use crate::nt::types::*;
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};

/// An open binding (or one being opened). Lives at a fixed address (inside the binding's `Arc`)
/// from [`Open::open`] until [`Open::close`] has returned.
pub struct Open {
    handle: AtomicPtr<c_void>,
    event: NdisEvent,
    status: AtomicI32,
    busy: AtomicBool,
    request: UnsafeCell<NDIS_REQUEST>,
    information: UnsafeCell<[u8; 8]>,
}

// SAFETY: `request` and `information` are written only by the one thread that holds `busy`,
// and read by NDIS until it completes the request, which that thread waits for; the rest is
// atomics and an event.
unsafe impl Sync for Open {}
// SAFETY: no thread affinity: the raw pointers are NDIS handles and buffers of this object.
unsafe impl Send for Open {}

impl Default for Open {
    fn default() -> Self {
        Self {
            handle: AtomicPtr::new(core::ptr::null_mut()),
            event: NdisEvent::default(),
            status: AtomicI32::new(0),
            busy: AtomicBool::new(false),
            // SAFETY: NDIS_REQUEST is plain integers and pointers, for which zero is valid.
            request: UnsafeCell::new(unsafe { core::mem::zeroed() }),
            information: UnsafeCell::new([0; 8]),
        }
    }
}

impl Open {
    /// The NDIS binding handle (null before the open succeeded). Any IRQL.
    pub fn handle(&self) -> NDIS_HANDLE {
        self.handle.load(Ordering::Acquire)
    }

    /// Opens adapter `name` (e.g. `\Device\{GUID}`) for 802.3, with `context` as the
    /// `ProtocolBindingContext` of every handler call for this binding; waits for
    /// `OpenAdapterComplete` if NDIS pends the open. PASSIVE_LEVEL.
    pub fn open(
        &self,
        protocol: &Registration,
        context: *const c_void,
        name: &[u16],
    ) -> Result<(), NdisStatus> {
        let mut medium = [NDIS_MEDIUM_802_3];
        let mut selected = 0u32;
        let mut open_error = 0;
        let bytes =
            u16::try_from(core::mem::size_of_val(name)).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let mut unicode = UNICODE_STRING {
            Length: bytes,
            MaximumLength: bytes,
            Buffer: name.as_ptr().cast_mut(),
        };
        self.event.reset();
        let mut status = NDIS_STATUS_FAILURE;
        // SAFETY: every pointer is valid for the call; NDIS copies the name; `context` is the
        // binding that owns this `Open` and outlives the binding. The binding handle goes
        // straight into `self.handle`, which outlives the open even if NDIS writes it late.
        unsafe {
            sys::NdisOpenAdapter(
                &mut status,
                &mut open_error,
                self.handle.as_ptr(),
                &mut selected,
                medium.as_mut_ptr(),
                1,
                protocol.handle(),
                context.cast_mut(),
                &mut unicode,
                0,
                core::ptr::null_mut(),
            )
        };
        let status = self.finish(status);
        if !status.is_success() {
            self.handle.store(core::ptr::null_mut(), Ordering::Release);
            return Err(status);
        }
        Ok(())
    }

    /// Closes the binding; waits for `CloseAdapterComplete` if NDIS pends it. Every send must
    /// have completed. PASSIVE_LEVEL.
    pub fn close(&self) -> NdisStatus {
        let handle = self.handle.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if handle.is_null() {
            return NtStatus::SUCCESS;
        }
        self.event.reset();
        let mut status = NDIS_STATUS_FAILURE;
        // SAFETY: an open binding handle, closed once (swapped out above).
        unsafe { sys::NdisCloseAdapter(&mut status, handle) };
        self.finish(status)
    }

    /// The completion handler of a pended open, close or request: records `status` and wakes
    /// the waiting thread. IRQL ≤ DISPATCH_LEVEL.
    pub fn complete(&self, status: NDIS_STATUS) {
        self.status.store(status, Ordering::Release);
        self.event.set();
    }

    /// Queries `oid` into a buffer of `length` bytes (at most 8); returns the bytes NDIS
    /// wrote. PASSIVE_LEVEL.
    pub fn query(&self, oid: NDIS_OID, length: usize) -> Result<([u8; 8], usize), NdisStatus> {
        let written = self.request(NDIS_REQUEST_QUERY_INFORMATION, oid, &[0; 8], length)?;
        // SAFETY: the request is over (`request` waited for it); `busy` was ours.
        let information = unsafe { *self.information.get() };
        Ok((information, written))
    }

    /// Sets `oid` to `value`. PASSIVE_LEVEL.
    pub fn set(&self, oid: NDIS_OID, value: &[u8]) -> Result<(), NdisStatus> {
        self.request(NDIS_REQUEST_SET_INFORMATION, oid, value, value.len())
            .map(|_| ())
    }

    /// Runs one OID request and waits for it. PASSIVE_LEVEL.
    fn request(
        &self,
        kind: u32,
        oid: NDIS_OID,
        value: &[u8],
        length: usize,
    ) -> Result<usize, NdisStatus> {
        let handle = self.handle();
        if handle.is_null() || length > 8 || value.len() > 8 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if self.busy.swap(true, Ordering::Acquire) {
            return Err(NtStatus::DEVICE_BUSY);
        }
        let request = self.request.get();
        let information = self.information.get();
        // SAFETY: `busy` gives this thread the request and its buffer until NDIS is done.
        unsafe {
            let mut bytes = [0u8; 8];
            if let Some(head) = bytes.get_mut(..value.len()) {
                head.copy_from_slice(value);
            }
            *information = bytes;
            request.write(core::mem::zeroed());
            (*request).RequestType = kind;
            (*request).DATA = NDIS_REQUEST_INFORMATION {
                Oid: oid,
                InformationBuffer: information.cast(),
                InformationBufferLength: length as u32,
                BytesTransferred: 0,
                BytesNeeded: 0,
            };
        }
        self.event.reset();
        let mut status = NDIS_STATUS_FAILURE;
        // SAFETY: an open binding; the request and its buffer stay valid until completion,
        // which `finish` waits for.
        unsafe { sys::NdisRequest(&mut status, handle, request) };
        let status = self.finish(status);
        // SAFETY: the request is complete.
        let transferred = unsafe { (*request).DATA.BytesTransferred } as usize;
        self.busy.store(false, Ordering::Release);
        status.ok()?;
        Ok(transferred.min(length))
    }

    /// The final status of an operation that returned `status`: itself, or the one its
    /// completion handler stored, once it ran. PASSIVE_LEVEL.
    fn finish(&self, status: NDIS_STATUS) -> NdisStatus {
        if status != NDIS_STATUS_PENDING {
            return NtStatus(status);
        }
        self.event.wait();
        NtStatus(self.status.load(Ordering::Acquire))
    }
}
