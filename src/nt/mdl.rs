//! MDL chains: the data buffers of TDI send and receive requests.

use crate::nt::NtStatus;
use crate::nt::sys;
use crate::nt::types::*;
use core::marker::PhantomData;
use core::ptr::NonNull;

/// A chain of locked MDLs (`Irp->MdlAddress` and its `Next` links), viewed as one buffer.
pub struct MdlChain<'a> {
    head: NonNull<MDL>,
    _irp: PhantomData<&'a MDL>,
}

impl MdlChain<'_> {
    /// # Safety
    /// `head` is null or the first of a chain of MDLs describing locked pages that stay valid
    /// for `'a`.
    pub(crate) unsafe fn from_raw<'a>(head: *mut MDL) -> Option<MdlChain<'a>> {
        NonNull::new(head).map(|head| MdlChain {
            head,
            _irp: PhantomData,
        })
    }

    fn mdls(&self) -> impl Iterator<Item = NonNull<MDL>> + '_ {
        core::iter::successors(Some(self.head), |mdl| {
            // SAFETY: every MDL in the chain is valid for the chain's lifetime (type invariant).
            let next = unsafe { mdl.as_ref() }.Next;
            NonNull::new(next)
        })
    }

    /// Total bytes described by the chain.
    pub fn len(&self) -> usize {
        self.mdls()
            // SAFETY: valid MDL (type invariant).
            .map(|mdl| unsafe { mdl.as_ref() }.ByteCount as usize)
            .sum()
    }

    /// Whether the chain describes no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority)`: the system address and length
    /// of one MDL's bytes.
    fn map(mut mdl: NonNull<MDL>) -> Result<(*mut u8, usize), NtStatus> {
        // SAFETY: valid MDL (type invariant); reading its header.
        let header = unsafe { mdl.as_mut() };
        let len = header.ByteCount as usize;
        if len == 0 {
            return Ok((core::ptr::null_mut(), 0));
        }
        let address =
            if header.MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) != 0 {
                header.MappedSystemVa
            } else {
                // SAFETY: the MDL describes locked pages; mapping them into system space is what
                // MmGetSystemAddressForMdlSafe does, and it is allowed at IRQL ≤ DISPATCH_LEVEL.
                unsafe {
                    sys::MmMapLockedPagesSpecifyCache(
                        mdl.as_ptr(),
                        KERNEL_MODE,
                        MM_CACHED,
                        core::ptr::null_mut(),
                        0,
                        NORMAL_PAGE_PRIORITY,
                    )
                }
            };
        if address.is_null() {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        Ok((address.cast::<u8>(), len))
    }

    /// Calls `f` on each mapped segment in order with its offset in the chain, until `f`
    /// returns `false`.
    fn for_each_segment(
        &self,
        mut f: impl FnMut(usize, &mut [u8]) -> bool,
    ) -> Result<(), NtStatus> {
        let mut offset = 0;
        for mdl in self.mdls() {
            let (address, len) = Self::map(mdl)?;
            if len == 0 {
                continue;
            }
            // SAFETY: the mapping covers `len` bytes of locked memory owned by the IRP's client
            // for the IRP's lifetime; the driver is the only user while it owns the IRP, and the
            // slice does not outlive this iteration.
            let segment = unsafe { core::slice::from_raw_parts_mut(address, len) };
            if !f(offset, segment) {
                break;
            }
            offset += len;
        }
        Ok(())
    }

    /// Calls `f(part, done)` on the pieces of the chain that cover `[skip, skip + len)`, in
    /// order; `done` counts the bytes of the range before `part`. Returns the bytes covered
    /// (less than `len` if the chain is shorter).
    fn for_range(
        &self,
        skip: usize,
        len: usize,
        mut f: impl FnMut(&mut [u8], usize),
    ) -> Result<usize, NtStatus> {
        let mut done = 0;
        self.for_each_segment(|offset, segment| {
            if offset + segment.len() > skip {
                let room = len.saturating_sub(done);
                if let Some(part) = segment.get_mut(skip.saturating_sub(offset)..) {
                    let take = part.len().min(room);
                    if let Some(part) = part.get_mut(..take) {
                        f(part, done);
                        done += take;
                    }
                }
            }
            done < len
        })?;
        Ok(done)
    }

    /// Copies from the chain, starting `skip` bytes in, into `out`. Returns the bytes copied.
    pub fn read(&self, skip: usize, out: &mut [u8]) -> Result<usize, NtStatus> {
        self.for_range(skip, out.len(), |part, done| {
            // `for_range` hands out at most `out.len()` bytes in all, in order.
            if let Some(slot) = out.get_mut(done..done + part.len()) {
                slot.copy_from_slice(part);
            }
        })
    }

    /// Copies `data` into the chain from its start. Returns the bytes copied (at most the
    /// chain's length).
    pub fn write(&self, data: &[u8]) -> Result<usize, NtStatus> {
        self.write_at(0, data)
    }

    /// Copies `data` into the chain starting `skip` bytes in. Returns the bytes copied.
    pub fn write_at(&self, skip: usize, data: &[u8]) -> Result<usize, NtStatus> {
        self.for_range(skip, data.len(), |part, done| {
            // `for_range` asks for at most `data.len()` bytes in all, in order.
            if let Some(bytes) = data.get(done..done + part.len()) {
                part.copy_from_slice(bytes);
            }
        })
    }
}
