//! I/O manager structures: IRP, IO_STACK_LOCATION, FILE_OBJECT, DEVICE_OBJECT, DRIVER_OBJECT, MDL.
//!
//! Offsets are given in comments as x86 / x64.

use super::ke::{KAPC, KDEVICE_QUEUE, KDPC, KEVENT, WAIT_CONTEXT_BLOCK};
use super::{
    ACCESS_MASK, BOOLEAN, CCHAR, CSHORT, IO_STATUS_BLOCK, KIRQL, KPROCESSOR_MODE, KSPIN_LOCK,
    LARGE_INTEGER, LIST_ENTRY, NTSTATUS, UNICODE_STRING,
};
use core::ffi::c_void;

/// `PDRIVER_DISPATCH`: a major-function dispatch routine, called at PASSIVE_LEVEL.
pub type PDRIVER_DISPATCH =
    Option<unsafe extern "system" fn(*mut DEVICE_OBJECT, *mut IRP) -> NTSTATUS>;
/// `PDRIVER_UNLOAD`.
pub type PDRIVER_UNLOAD = Option<unsafe extern "system" fn(*mut DRIVER_OBJECT)>;
/// `PDRIVER_CANCEL`: called at DISPATCH_LEVEL with the cancel spin lock held.
pub type PDRIVER_CANCEL = Option<unsafe extern "system" fn(*mut DEVICE_OBJECT, *mut IRP)>;
/// `PIO_COMPLETION_ROUTINE`.
pub type PIO_COMPLETION_ROUTINE =
    Option<unsafe extern "system" fn(*mut DEVICE_OBJECT, *mut IRP, *mut c_void) -> NTSTATUS>;
/// `PIO_WORKITEM_ROUTINE`: called at PASSIVE_LEVEL on a system worker thread.
pub type PIO_WORKITEM_ROUTINE = Option<unsafe extern "system" fn(*mut DEVICE_OBJECT, *mut c_void)>;

/// Number of major function codes (`IRP_MJ_MAXIMUM_FUNCTION + 1`).
pub const IRP_MJ_COUNT: usize = 28;
pub const IRP_MJ_CREATE: u8 = 0x00;
pub const IRP_MJ_CLOSE: u8 = 0x02;
pub const IRP_MJ_DEVICE_CONTROL: u8 = 0x0e;
pub const IRP_MJ_INTERNAL_DEVICE_CONTROL: u8 = 0x0f;
pub const IRP_MJ_CLEANUP: u8 = 0x12;

/// `IO_STACK_LOCATION::Control` bits.
pub const SL_PENDING_RETURNED: u8 = 0x01;
pub const SL_INVOKE_ON_CANCEL: u8 = 0x20;
pub const SL_INVOKE_ON_SUCCESS: u8 = 0x40;
pub const SL_INVOKE_ON_ERROR: u8 = 0x80;

/// `DEVICE_OBJECT::Flags` bits.
pub const DO_DIRECT_IO: u32 = 0x0000_0010;
pub const DO_DEVICE_INITIALIZING: u32 = 0x0000_0080;
/// `FILE_DEVICE_NETWORK`.
pub const FILE_DEVICE_NETWORK: u32 = 0x0000_0012;
/// `IO_TYPE_FILE`: `FILE_OBJECT::Type`.
pub const IO_TYPE_FILE: CSHORT = 5;
/// `IO_TYPE_IRP`: `IRP::Type`.
pub const IO_TYPE_IRP: CSHORT = 6;
/// `IO_TYPE_DEVICE`: `DEVICE_OBJECT::Type`.
pub const IO_TYPE_DEVICE: CSHORT = 3;
/// `IO_NO_INCREMENT`: the priority boost passed to `IoCompleteRequest`.
pub const IO_NO_INCREMENT: i8 = 0;
/// `IO_NETWORK_INCREMENT`.
pub const IO_NETWORK_INCREMENT: i8 = 2;

/// `MDL` header (28 / 48 bytes); the PFN array follows it.
#[repr(C)]
pub struct MDL {
    pub Next: *mut MDL,
    pub Size: CSHORT,
    pub MdlFlags: CSHORT,
    pub Process: *mut c_void,
    pub MappedSystemVa: *mut c_void,
    pub StartVa: *mut c_void,
    pub ByteCount: u32,
    pub ByteOffset: u32,
}

pub const MDL_MAPPED_TO_SYSTEM_VA: CSHORT = 0x0001;
pub const MDL_SOURCE_IS_NONPAGED_POOL: CSHORT = 0x0004;
/// `MM_PAGE_PRIORITY::NormalPagePriority`.
pub const NORMAL_PAGE_PRIORITY: u32 = 16;
/// `MEMORY_CACHING_TYPE::MmCached`.
pub const MM_CACHED: u32 = 1;
/// `KPROCESSOR_MODE::KernelMode`.
pub const KERNEL_MODE: KPROCESSOR_MODE = 0;
/// `KPROCESSOR_MODE::UserMode`.
pub const USER_MODE: KPROCESSOR_MODE = 1;

/// `IRP::AssociatedIrp`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union IrpAssociated {
    pub MasterIrp: *mut IRP,
    pub IrpCount: i32,
    pub SystemBuffer: *mut c_void,
}

/// `IRP::Overlay.AsynchronousParameters`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IrpAsynchronousParameters {
    pub UserApcRoutine: *mut c_void,
    pub UserApcContext: *mut c_void,
}

/// `IRP::Overlay`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union IrpOverlay {
    pub AsynchronousParameters: IrpAsynchronousParameters,
    pub AllocationSize: LARGE_INTEGER,
}

/// `IRP::Tail.Overlay` (40 / 80 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IrpTailOverlay {
    pub DriverContext: [*mut c_void; 4],
    pub Thread: *mut c_void,
    pub AuxiliaryBuffer: *mut u8,
    pub ListEntry: LIST_ENTRY,
    /// `union { PIO_STACK_LOCATION CurrentStackLocation; ULONG PacketType; }`.
    pub CurrentStackLocation: *mut IO_STACK_LOCATION,
    pub OriginalFileObject: *mut FILE_OBJECT,
}

/// `IRP::Tail`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union IrpTail {
    pub Overlay: IrpTailOverlay,
    pub Apc: KAPC,
    pub CompletionKey: *mut c_void,
}

/// `IRP` header (112 / 208 bytes); its `StackCount` stack locations follow it in memory.
///
/// Declared `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)` in the WDK and ReactOS headers: 8-byte
/// aligned on x86, 16-byte on x64.
#[repr(C)]
#[cfg_attr(target_pointer_width = "32", repr(align(8)))]
#[cfg_attr(target_pointer_width = "64", repr(align(16)))]
pub struct IRP {
    pub Type: CSHORT,
    pub Size: u16,
    pub MdlAddress: *mut MDL,
    pub Flags: u32,
    pub AssociatedIrp: IrpAssociated,
    pub ThreadListEntry: LIST_ENTRY,
    pub IoStatus: IO_STATUS_BLOCK,
    pub RequestorMode: KPROCESSOR_MODE,
    pub PendingReturned: BOOLEAN,
    pub StackCount: CCHAR,
    pub CurrentLocation: CCHAR,
    /// Set by `IoCancelIrp`; read it atomically.
    pub Cancel: BOOLEAN,
    pub CancelIrql: KIRQL,
    pub ApcEnvironment: CCHAR,
    pub AllocationFlags: u8,
    pub UserIosb: *mut IO_STATUS_BLOCK,
    pub UserEvent: *mut KEVENT,
    pub Overlay: IrpOverlay,
    /// Exchanged atomically by `IoSetCancelRoutine` and `IoCancelIrp`.
    pub CancelRoutine: PDRIVER_CANCEL,
    pub UserBuffer: *mut c_void,
    pub Tail: IrpTail,
}

/// `Parameters.Create` of `IO_STACK_LOCATION`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CreateParameters {
    pub SecurityContext: *mut c_void,
    pub Options: u32,
    /// `USHORT POINTER_ALIGNMENT FileAttributes`.
    #[cfg(target_pointer_width = "64")]
    _align: u32,
    pub FileAttributes: u16,
    pub ShareAccess: u16,
    /// `ULONG POINTER_ALIGNMENT EaLength`.
    #[cfg(target_pointer_width = "64")]
    _align2: u32,
    pub EaLength: u32,
}

/// `Parameters.DeviceIoControl` of `IO_STACK_LOCATION`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DeviceIoControlParameters {
    pub OutputBufferLength: u32,
    #[cfg(target_pointer_width = "64")]
    _align: u32,
    pub InputBufferLength: u32,
    #[cfg(target_pointer_width = "64")]
    _align2: u32,
    pub IoControlCode: u32,
    #[cfg(target_pointer_width = "64")]
    _align3: u32,
    pub Type3InputBuffer: *mut c_void,
}

/// `Parameters.Others`: four pointer-sized arguments, the overlay the TDI request structures
/// (`TDI_REQUEST_KERNEL_*`) are read through.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OtherParameters {
    pub Argument1: *mut c_void,
    pub Argument2: *mut c_void,
    pub Argument3: *mut c_void,
    pub Argument4: *mut c_void,
}

/// The `Parameters` union of `IO_STACK_LOCATION` (16 / 32 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub union IoStackParameters {
    pub Create: CreateParameters,
    pub DeviceIoControl: DeviceIoControlParameters,
    pub Others: OtherParameters,
}

impl CreateParameters {
    /// A `Parameters.Create` with the given share access and EA length.
    pub const fn new(share_access: u16, ea_length: u32) -> Self {
        Self {
            SecurityContext: core::ptr::null_mut(),
            Options: 0,
            #[cfg(target_pointer_width = "64")]
            _align: 0,
            FileAttributes: 0,
            ShareAccess: share_access,
            #[cfg(target_pointer_width = "64")]
            _align2: 0,
            EaLength: ea_length,
        }
    }
}

impl DeviceIoControlParameters {
    /// A `Parameters.DeviceIoControl` for the given code and buffer lengths.
    pub const fn new(code: u32, input: u32, output: u32, type3_input: *mut c_void) -> Self {
        Self {
            OutputBufferLength: output,
            #[cfg(target_pointer_width = "64")]
            _align: 0,
            InputBufferLength: input,
            #[cfg(target_pointer_width = "64")]
            _align2: 0,
            IoControlCode: code,
            #[cfg(target_pointer_width = "64")]
            _align3: 0,
            Type3InputBuffer: type3_input,
        }
    }
}

/// `IO_STACK_LOCATION` (36 / 72 bytes).
#[repr(C)]
pub struct IO_STACK_LOCATION {
    pub MajorFunction: u8,
    pub MinorFunction: u8,
    pub Flags: u8,
    pub Control: u8,
    pub Parameters: IoStackParameters,
    pub DeviceObject: *mut DEVICE_OBJECT,
    pub FileObject: *mut FILE_OBJECT,
    pub CompletionRoutine: PIO_COMPLETION_ROUTINE,
    pub Context: *mut c_void,
}

/// `FILE_OBJECT` (128 / 216 bytes).
#[repr(C)]
pub struct FILE_OBJECT {
    pub Type: CSHORT,
    pub Size: CSHORT,
    pub DeviceObject: *mut DEVICE_OBJECT,
    pub Vpb: *mut c_void,
    pub FsContext: *mut c_void,
    pub FsContext2: *mut c_void,
    pub SectionObjectPointer: *mut c_void,
    pub PrivateCacheMap: *mut c_void,
    pub FinalStatus: NTSTATUS,
    pub RelatedFileObject: *mut FILE_OBJECT,
    pub LockOperation: BOOLEAN,
    pub DeletePending: BOOLEAN,
    pub ReadAccess: BOOLEAN,
    pub WriteAccess: BOOLEAN,
    pub DeleteAccess: BOOLEAN,
    pub SharedRead: BOOLEAN,
    pub SharedWrite: BOOLEAN,
    pub SharedDelete: BOOLEAN,
    pub Flags: u32,
    pub FileName: UNICODE_STRING,
    pub CurrentByteOffset: LARGE_INTEGER,
    pub Waiters: u32,
    pub Busy: u32,
    pub LastLock: *mut c_void,
    pub Lock: KEVENT,
    pub Event: KEVENT,
    pub CompletionContext: *mut c_void,
    pub IrpListLock: KSPIN_LOCK,
    pub IrpList: LIST_ENTRY,
    pub FileObjectExtension: *mut c_void,
}

/// `DEVICE_OBJECT::Queue`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union DeviceQueueUnion {
    pub ListEntry: LIST_ENTRY,
    pub Wcb: WAIT_CONTEXT_BLOCK,
}

/// `DEVICE_OBJECT` (184 / 336 bytes).
///
/// Declared `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)` in the WDK and ReactOS headers: 8-byte
/// aligned on x86, 16-byte on x64, which pads the x64 structure from 328 to 336 bytes.
#[repr(C)]
#[cfg_attr(target_pointer_width = "32", repr(align(8)))]
#[cfg_attr(target_pointer_width = "64", repr(align(16)))]
pub struct DEVICE_OBJECT {
    pub Type: CSHORT,
    pub Size: u16,
    pub ReferenceCount: i32,
    pub DriverObject: *mut DRIVER_OBJECT,
    pub NextDevice: *mut DEVICE_OBJECT,
    pub AttachedDevice: *mut DEVICE_OBJECT,
    pub CurrentIrp: *mut IRP,
    pub Timer: *mut c_void,
    pub Flags: u32,
    pub Characteristics: u32,
    pub Vpb: *mut c_void,
    pub DeviceExtension: *mut c_void,
    pub DeviceType: u32,
    pub StackSize: CCHAR,
    pub Queue: DeviceQueueUnion,
    pub AlignmentRequirement: u32,
    pub DeviceQueue: KDEVICE_QUEUE,
    pub Dpc: KDPC,
    pub ActiveThreadCount: u32,
    pub SecurityDescriptor: *mut c_void,
    pub DeviceLock: KEVENT,
    pub SectorSize: u16,
    pub Spare1: u16,
    pub DeviceObjectExtension: *mut c_void,
    pub Reserved: *mut c_void,
}

/// `DRIVER_OBJECT` (168 / 336 bytes).
#[repr(C)]
pub struct DRIVER_OBJECT {
    pub Type: CSHORT,
    pub Size: CSHORT,
    pub DeviceObject: *mut DEVICE_OBJECT,
    pub Flags: u32,
    pub DriverStart: *mut c_void,
    pub DriverSize: u32,
    pub DriverSection: *mut c_void,
    pub DriverExtension: *mut c_void,
    pub DriverName: UNICODE_STRING,
    pub HardwareDatabase: *mut UNICODE_STRING,
    pub FastIoDispatch: *mut c_void,
    pub DriverInit: *mut c_void,
    pub DriverStartIo: *mut c_void,
    pub DriverUnload: PDRIVER_UNLOAD,
    pub MajorFunction: [PDRIVER_DISPATCH; IRP_MJ_COUNT],
}

/// `GENERIC_READ | GENERIC_WRITE`.
pub const GENERIC_READ_WRITE: ACCESS_MASK = 0x8000_0000 | 0x4000_0000;
/// `FILE_OPEN_IF`: the create disposition TDI clients pass.
pub const FILE_OPEN_IF: u32 = 3;
/// `FILE_ATTRIBUTE_NORMAL`.
pub const FILE_ATTRIBUTE_NORMAL: u32 = 0x80;
