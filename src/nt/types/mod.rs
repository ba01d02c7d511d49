//! `#[repr(C)]` definitions of the NT structures the driver touches, with the DDK's names.
//!
//! These are raw layouts only: no methods beyond constructors, no behaviour. The safe wrappers in
//! [`crate::nt`] are built on them, and the host model (`crate::host`) allocates the very same
//! structures, so an offset bug shows up in host tests as well as in the kernel. Every size and
//! offset the driver relies on is listed in [`layout`], which asserts it at compile time for the
//! pointer width being built and is compared against the DDK headers by `tests/layout_probe.rs`.
#![allow(non_camel_case_types, non_snake_case)]

pub mod icmp;
pub mod io;
pub mod ke;
pub mod layout;
pub mod ndis;
pub mod tdi;

pub use icmp::*;
pub use io::*;
pub use ke::*;
pub use ndis::*;
pub use tdi::*;

use core::ffi::c_void;

pub type NTSTATUS = i32;
pub type KIRQL = u8;
pub type BOOLEAN = u8;
pub type CCHAR = i8;
pub type CSHORT = i16;
pub type KPROCESSOR_MODE = i8;
pub type HANDLE = *mut c_void;
pub type ACCESS_MASK = u32;
pub type ULONG_PTR = usize;
pub type KSPIN_LOCK = ULONG_PTR;
/// A `LARGE_INTEGER` passed by value or stored in a structure (8-byte aligned on both arches).
pub type LARGE_INTEGER = i64;

pub const TRUE: BOOLEAN = 1;
pub const FALSE: BOOLEAN = 0;

/// `LIST_ENTRY`: a doubly linked list link (8 / 16 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LIST_ENTRY {
    pub Flink: *mut LIST_ENTRY,
    pub Blink: *mut LIST_ENTRY,
}

/// `UNICODE_STRING`: a counted UTF-16 string; lengths are in bytes (8 / 16 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct UNICODE_STRING {
    pub Length: u16,
    pub MaximumLength: u16,
    pub Buffer: *mut u16,
}

/// `IO_STATUS_BLOCK` (8 / 16 bytes). `Status` shares its slot with a `PVOID`, so the
/// Information field sits at pointer offset.
#[repr(C)]
#[derive(Debug)]
pub struct IO_STATUS_BLOCK {
    pub Status: IoStatusUnion,
    pub Information: ULONG_PTR,
}

/// The anonymous `union { NTSTATUS Status; PVOID Pointer; }` of `IO_STATUS_BLOCK`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union IoStatusUnion {
    pub Status: NTSTATUS,
    pub Pointer: *mut c_void,
}

impl core::fmt::Debug for IoStatusUnion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // SAFETY: both members are plain integers/pointers; reading the 32-bit status view of
        // an initialised union is always defined.
        let status = unsafe { self.Status };
        write!(f, "{status:#x}")
    }
}

/// `FILE_FULL_EA_INFORMATION` header; `EaName` (NUL-terminated) follows at offset 8 and the
/// value right after the NUL, at an unaligned offset.
#[repr(C)]
#[derive(Debug)]
pub struct FILE_FULL_EA_INFORMATION {
    pub NextEntryOffset: u32,
    pub Flags: u8,
    pub EaNameLength: u8,
    pub EaValueLength: u16,
    pub EaName: [u8; 1],
}
