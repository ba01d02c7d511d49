//! Kernel executive objects: DPCs, timers, dispatcher headers, events, APCs.
//!
//! The driver treats these as opaque storage that the kernel initialises (`KeInitializeDpc`,
//! `KeInitializeTimer`); only their size and alignment matter to it. The host model reads and
//! writes the named fields, with the same meaning as the NT kernel gives them.

use super::{KSPIN_LOCK, LIST_ENTRY};
use core::ffi::c_void;

/// `PKDEFERRED_ROUTINE`: a DPC routine, called at DISPATCH_LEVEL.
pub type PKDEFERRED_ROUTINE =
    Option<unsafe extern "system" fn(*mut KDPC, *mut c_void, *mut c_void, *mut c_void)>;

/// `KDPC` (32 / 64 bytes), in its NT 5.x shape.
#[repr(C)]
pub struct KDPC {
    pub Type: u8,
    pub Importance: u8,
    pub Number: u16,
    pub DpcListEntry: LIST_ENTRY,
    pub DeferredRoutine: PKDEFERRED_ROUTINE,
    pub DeferredContext: *mut c_void,
    pub SystemArgument1: *mut c_void,
    pub SystemArgument2: *mut c_void,
    /// Non-null while the DPC sits in a processor's queue (the "inserted" mark).
    pub DpcData: *mut c_void,
}

/// `DISPATCHER_HEADER` (16 / 24 bytes).
#[repr(C)]
pub struct DISPATCHER_HEADER {
    pub Type: u8,
    pub Absolute: u8,
    pub Size: u8,
    pub Inserted: u8,
    pub SignalState: i32,
    pub WaitListHead: LIST_ENTRY,
}

/// `KTIMER` (40 / 64 bytes).
///
/// On x64 the DDK (and ReactOS's headers from `NTDDI_WIN7` on) put a `Processor` field before
/// `Period`; NT 5.2 x64 had padding there instead. The driver only passes timers to the kernel, so
/// only the size matters to it; the host model follows the DDK.
#[repr(C)]
pub struct KTIMER {
    pub Header: DISPATCHER_HEADER,
    pub DueTime: u64,
    pub TimerListEntry: LIST_ENTRY,
    pub Dpc: *mut KDPC,
    #[cfg(target_pointer_width = "64")]
    pub Processor: u32,
    pub Period: i32,
}

/// `KEVENT` (16 / 24 bytes).
#[repr(C)]
pub struct KEVENT {
    pub Header: DISPATCHER_HEADER,
}

/// `KAPC` (48 / 88 bytes). Only its size matters: it overlays `IRP::Tail`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct KAPC {
    #[cfg(target_pointer_width = "64")]
    pub Opaque: [u64; 11],
    #[cfg(target_pointer_width = "32")]
    pub Opaque: [u32; 12],
}

/// `KDEVICE_QUEUE` (20 / 40 bytes).
#[repr(C)]
pub struct KDEVICE_QUEUE {
    pub Type: i16,
    pub Size: i16,
    pub DeviceListHead: LIST_ENTRY,
    pub Lock: KSPIN_LOCK,
    pub Busy: u8,
}

/// `KDEVICE_QUEUE_ENTRY` (16 / 24 bytes).
#[repr(C)]
pub struct KDEVICE_QUEUE_ENTRY {
    pub DeviceListEntry: LIST_ENTRY,
    pub SortKey: u32,
    pub Inserted: u8,
}

/// `WAIT_CONTEXT_BLOCK` (40 / 72 bytes). Only its size matters: it overlays
/// `DEVICE_OBJECT::Queue`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WAIT_CONTEXT_BLOCK {
    #[cfg(target_pointer_width = "64")]
    pub Opaque: [u64; 9],
    #[cfg(target_pointer_width = "32")]
    pub Opaque: [u32; 10],
}

/// The opaque `IO_WORKITEM`, allocated by `IoAllocateWorkItem`.
#[repr(C)]
pub struct IO_WORKITEM {
    _private: [u8; 0],
}

/// `POOL_TYPE` values used by the driver.
pub const NON_PAGED_POOL: u32 = 0;
/// `WORK_QUEUE_TYPE::DelayedWorkQueue`.
pub const DELAYED_WORK_QUEUE: u32 = 1;
/// `WORK_QUEUE_TYPE::CriticalWorkQueue`.
pub const CRITICAL_WORK_QUEUE: u32 = 0;

/// `SECURITY_SUBJECT_CONTEXT` (16 / 32 bytes): the tokens `SeCaptureSubjectContext` captures.
#[repr(C)]
pub struct SECURITY_SUBJECT_CONTEXT {
    pub ClientToken: *mut c_void,
    /// `SECURITY_IMPERSONATION_LEVEL`.
    pub ImpersonationLevel: u32,
    pub PrimaryToken: *mut c_void,
    pub ProcessAuditId: *mut c_void,
}
