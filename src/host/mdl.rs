//! Memory descriptor lists over host buffers.
//!
//! A model MDL has the real layout (header plus one PFN per page spanned) and describes a host
//! buffer, which the host identity-maps. Two kinds let tests exercise both paths of
//! `MmGetSystemAddressForMdlSafe`:
//! - [`MdlKind::NonPagedPool`]: as `MmBuildMdlForNonPagedPool` leaves it,
//!   `MDL_SOURCE_IS_NONPAGED_POOL` with `MappedSystemVa` set;
//! - [`MdlKind::Locked`]: as `MmProbeAndLockPages` leaves it, `MDL_PAGES_LOCKED` and not
//!   mapped, with `MappedSystemVa` poisoned so that code reading it without checking the flags
//!   faults; `MmMapLockedPagesSpecifyCache` maps it (and can be made to fail).
//!
//! MDLs chain through `Next`. The I/O manager frees the MDLs of an IRP it completes; the model
//! does the same for the MDLs it built.

use super::AddressMap;
use super::kernel::{KernelHandle, KernelInner};
use super::verifier::{self, Rule, Site};
use crate::nt::types::{CSHORT, MDL, MDL_MAPPED_TO_SYSTEM_VA, MDL_SOURCE_IS_NONPAGED_POOL};
use std::alloc::Layout;
use std::ffi::c_void;
use std::sync::Mutex;

/// `MDL_PAGES_LOCKED`.
const MDL_PAGES_LOCKED: CSHORT = 0x0002;
const PAGE_SIZE: usize = 4096;
/// `MappedSystemVa` of an unmapped MDL: a non-canonical address, so any use faults.
const UNMAPPED_POISON: usize = 0xDEAD_0000_0000_0000;

/// How a model MDL starts out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MdlKind {
    /// Built for non-paged pool: mapped, `MDL_SOURCE_IS_NONPAGED_POOL`.
    NonPagedPool,
    /// Locked pages, not mapped into system space.
    Locked,
}

#[derive(Default)]
pub(crate) struct Mdls {
    state: Mutex<MdlState>,
}

#[derive(Default)]
struct MdlState {
    /// The model's MDLs and their layouts.
    live: AddressMap<Layout>,
    fail_mappings: bool,
    mappings: u64,
}

impl Mdls {
    fn lock(&self) -> std::sync::MutexGuard<'_, MdlState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) fn allocate(kernel: &KernelInner, va: *mut u8, len: usize, kind: MdlKind) -> *mut MDL {
    let offset = va as usize % PAGE_SIZE;
    let pages = (offset + len).div_ceil(PAGE_SIZE);
    let size = size_of::<MDL>() + pages * size_of::<usize>();
    let layout = Layout::from_size_align(size, align_of::<MDL>()).expect("MDL layout");
    // SAFETY: non-zero size.
    let mdl = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<MDL>();
    assert!(!mdl.is_null(), "out of memory allocating an MDL");
    // SAFETY: a fresh allocation of the header and `pages` PFNs.
    unsafe {
        let m = &mut *mdl;
        m.Size = size as CSHORT;
        m.StartVa = (va as usize - offset) as *mut c_void;
        m.ByteOffset = offset as u32;
        m.ByteCount = u32::try_from(len).expect("MDL byte count fits in 32 bits");
        match kind {
            MdlKind::NonPagedPool => {
                m.MdlFlags = MDL_SOURCE_IS_NONPAGED_POOL;
                m.MappedSystemVa = va.cast();
            }
            MdlKind::Locked => {
                m.MdlFlags = MDL_PAGES_LOCKED;
                m.MappedSystemVa = UNMAPPED_POISON as *mut c_void;
            }
        }
        let pfns = mdl.add(1).cast::<usize>();
        for page in 0..pages {
            pfns.add(page)
                .write((va as usize - offset) / PAGE_SIZE + page);
        }
    }
    kernel.mdls.lock().live.insert(mdl as usize, layout);
    mdl
}

/// Frees one model MDL; false if it is not one.
pub(crate) fn free(kernel: &KernelInner, mdl: *mut MDL) -> bool {
    let Some(layout) = kernel.mdls.lock().live.remove(&(mdl as usize)) else {
        return false;
    };
    // SAFETY: allocated by `allocate` with this layout, freed once (its record is gone).
    unsafe { std::alloc::dealloc(mdl.cast(), layout) };
    true
}

/// Frees the model MDLs of a chain (the I/O manager's completion does this for an IRP's MDLs).
///
/// # Safety
/// `mdl` is null or the head of a chain of valid MDLs.
pub(crate) unsafe fn free_chain(kernel: &KernelInner, mut mdl: *mut MDL) {
    while !mdl.is_null() {
        // SAFETY: a valid MDL of the chain (caller contract), read before it is freed.
        let next = unsafe { (*mdl).Next };
        free(kernel, mdl);
        mdl = next;
    }
}

/// `MmMapLockedPagesSpecifyCache` into system space: the buffer's own address on the host;
/// null if mapping failures are injected.
///
/// # Safety
/// `mdl` is a valid MDL.
pub(crate) unsafe fn map(kernel: &KernelInner, mdl: *mut MDL, site: Site) -> *mut c_void {
    let mut state = kernel.mdls.lock();
    if !state.live.contains_key(&(mdl as usize)) {
        drop(state);
        verifier::report(
            Rule::InvalidObject,
            site,
            format!("MmMapLockedPagesSpecifyCache({mdl:p}): not a live MDL"),
        );
        return std::ptr::null_mut();
    }
    if state.fail_mappings {
        return std::ptr::null_mut();
    }
    state.mappings += 1;
    // SAFETY: a live model MDL.
    unsafe {
        let m = &mut *mdl;
        let va = m
            .StartVa
            .cast::<u8>()
            .add(m.ByteOffset as usize)
            .cast::<c_void>();
        m.MappedSystemVa = va;
        m.MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA;
        va
    }
}

impl KernelHandle {
    /// An MDL describing `len` bytes at `va` (a host buffer that must outlive the MDL). Any
    /// IRQL.
    pub fn build_mdl(&self, va: *mut u8, len: usize, kind: MdlKind) -> *mut MDL {
        let _api = self.api();
        allocate(&self.0, va, len, kind)
    }

    /// A chain of MDLs, one per buffer, linked through `Next`; returns the head (null for no
    /// buffers). Any IRQL.
    pub fn build_mdl_chain(&self, buffers: &mut [&mut [u8]], kind: MdlKind) -> *mut MDL {
        let _api = self.api();
        let mut head: *mut MDL = std::ptr::null_mut();
        for buffer in buffers.iter_mut().rev() {
            let mdl = allocate(&self.0, buffer.as_mut_ptr(), buffer.len(), kind);
            // SAFETY: a fresh MDL.
            unsafe { (*mdl).Next = head };
            head = mdl;
        }
        head
    }

    /// `IoFreeMdl` for each MDL of a chain the model built (for IRPs the test frees itself),
    /// stopping at the first MDL that is not a live model MDL. Any IRQL.
    #[expect(
        clippy::not_unsafe_ptr_arg_deref,
        reason = "each MDL is checked against the kernel's live MDLs before it is read"
    )]
    pub fn free_mdl_chain(&self, mut mdl: *mut MDL) {
        let _api = self.api();
        while self.mdl_is_live(mdl) {
            // SAFETY: a live model MDL, read before it is freed.
            let next = unsafe { (*mdl).Next };
            free(&self.0, mdl);
            mdl = next;
        }
    }

    /// Makes `MmMapLockedPagesSpecifyCache` fail (return null) or succeed again. Any IRQL.
    pub fn set_mdl_mapping_failure(&self, fail: bool) {
        self.0.mdls.lock().fail_mappings = fail;
    }

    /// How many times `MmMapLockedPagesSpecifyCache` mapped an MDL. Any IRQL.
    pub fn mdl_mappings(&self) -> u64 {
        self.0.mdls.lock().mappings
    }

    /// Whether `mdl` is a live MDL the model built. Any IRQL.
    pub fn mdl_is_live(&self, mdl: *mut MDL) -> bool {
        self.0.mdls.lock().live.contains_key(&(mdl as usize))
    }
}
