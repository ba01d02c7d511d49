//! The layout table: every structure size, alignment and field offset the driver or the host
//! model relies on, for x86 and x64.
//!
//! The `layout!` invocation below does two things with one list:
//! - it asserts each entry at compile time for the pointer width being built (so the x86 kernel
//!   build checks the x86 column and the x64/host builds check the x64 column);
//! - it exports the whole table as [`FACTS`], which `tests/layout_probe.rs` compares, for both
//!   architectures, with the values a C probe compiled by mingw-w64 against the DDK headers
//!   reports. The probe is generated from [`FACTS`], so a new entry here is probed automatically.
//!
//! An entry reads `ITEM = size86 / size64, align a86 / a64 { field.path: off86 / off64, ... }`:
//! - `ITEM` is the Rust type, named as in the DDK headers.
//! - `, align ...` is optional. It is left out only for the byte-wise wire views (`TA_ADDRESS`
//!   and friends), which are deliberately unaligned here while the C declarations are not.
//! - `field.path` is the Rust field path. When the C path differs (anonymous unions, the `[0]`
//!   of the DDK's one-element arrays), the C path follows as a string: `Status.Pointer as
//!   "Pointer"`.
//! - `ITEM = ..Trailing size86 / size64` declares a structure that ends in a variable-length
//!   array (`UCHAR Buffer[1]`): the Rust type stops where the array starts, so its size is
//!   checked against the C `offsetof(ITEM, Trailing)` rather than `sizeof(ITEM)`, which would
//!   include the first array element and its padding.

use super::*;

/// What a [`LayoutFact`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// `sizeof(item)`.
    Size,
    /// `_Alignof(item)`.
    Align,
    /// `offsetof(item, path)`, with the field path as written in C (`Tail.Overlay.Thread`,
    /// `Address[0].AddressType`). For a `..Trailing` entry, the Rust size of the header.
    Offset(&'static str),
}

/// One size, alignment or field offset, with its expected value on each architecture.
#[derive(Debug, Clone, Copy)]
pub struct LayoutFact {
    /// The C type name, as in the DDK headers.
    pub item: &'static str,
    pub measure: Measure,
    pub x86: usize,
    pub x64: usize,
}

/// Picks the column for the pointer width being compiled.
pub(super) const fn for_this_arch(x86: usize, x64: usize) -> usize {
    if cfg!(target_pointer_width = "64") {
        x64
    } else {
        x86
    }
}

/// The C field path of a table entry: the explicit `as "..."` string, or the Rust path.
macro_rules! c_path {
    ($($field:ident).+ ;) => {
        stringify!($($field).+)
    };
    ($($field:ident).+ ; $c:literal) => {
        $c
    };
}

/// The measure of a table entry's size: `sizeof`, or the offset of the trailing array.
macro_rules! size_measure {
    () => {
        Measure::Size
    };
    ($trailing:ident) => {
        Measure::Offset(stringify!($trailing))
    };
}

macro_rules! layout {
    ($( $ty:ident = $(.. $trailing:ident)? $s86:literal / $s64:literal
        $(, align $a86:literal / $a64:literal)?
        { $( $($field:ident).+ $(as $cpath:literal)? : $o86:literal / $o64:literal ),* $(,)? } )*) => {
        $(
            const _: () = assert!(
                core::mem::size_of::<$ty>() == for_this_arch($s86, $s64),
                concat!("layout: size of ", stringify!($ty)),
            );
            $(
                const _: () = assert!(
                    core::mem::align_of::<$ty>() == for_this_arch($a86, $a64),
                    concat!("layout: alignment of ", stringify!($ty)),
                );
            )?
            $(
                const _: () = assert!(
                    core::mem::offset_of!($ty, $($field).+) == for_this_arch($o86, $o64),
                    concat!("layout: offset of ", stringify!($ty), ".", stringify!($($field).+)),
                );
            )*
        )*
        /// Every checked fact, in declaration order.
        pub static FACTS: &[LayoutFact] = &[
            $(
                LayoutFact {
                    item: stringify!($ty),
                    measure: size_measure!($($trailing)?),
                    x86: $s86,
                    x64: $s64,
                },
                $(
                    LayoutFact { item: stringify!($ty), measure: Measure::Align, x86: $a86, x64: $a64 },
                )?
                $(
                    LayoutFact {
                        item: stringify!($ty),
                        measure: Measure::Offset(c_path!($($field).+ ; $($cpath)?)),
                        x86: $o86,
                        x64: $o64,
                    },
                )*
            )*
        ];
    };
}

layout! {
    // ---- Basic types (ntdef.h, wdm.h) ----
    LIST_ENTRY = 8 / 16, align 4 / 8 { Flink: 0 / 0, Blink: 4 / 8 }
    SECURITY_SUBJECT_CONTEXT = 16 / 32, align 4 / 8 {
        ClientToken: 0 / 0,
        ImpersonationLevel: 4 / 8,
        PrimaryToken: 8 / 16,
        ProcessAuditId: 12 / 24,
    }
    UNICODE_STRING = 8 / 16, align 4 / 8 {
        Length: 0 / 0,
        MaximumLength: 2 / 2,
        Buffer: 4 / 8,
    }
    IO_STATUS_BLOCK = 8 / 16, align 4 / 8 {
        Status: 0 / 0,
        Status.Pointer as "Pointer": 0 / 0,
        Information: 4 / 8,
    }
    FILE_FULL_EA_INFORMATION = 12 / 12, align 4 / 4 {
        NextEntryOffset: 0 / 0,
        Flags: 4 / 4,
        EaNameLength: 5 / 5,
        EaValueLength: 6 / 6,
        EaName: 8 / 8,
    }

    // ---- Kernel objects (wdm.h) ----
    KDPC = 32 / 64, align 4 / 8 {
        Type: 0 / 0,
        Importance: 1 / 1,
        Number: 2 / 2,
        DpcListEntry: 4 / 8,
        DeferredRoutine: 12 / 24,
        DeferredContext: 16 / 32,
        SystemArgument1: 20 / 40,
        SystemArgument2: 24 / 48,
        DpcData: 28 / 56,
    }
    // The second and fourth bytes are unions of bit fields in the DDK; the probe measures the
    // byte-sized member of each union.
    DISPATCHER_HEADER = 16 / 24, align 4 / 8 {
        Type: 0 / 0,
        Absolute as "TimerControlFlags": 1 / 1,
        Size: 2 / 2,
        Inserted as "DpcActive": 3 / 3,
        SignalState: 4 / 4,
        WaitListHead: 8 / 8,
    }
    KTIMER = 40 / 64, align 8 / 8 {
        Header: 0 / 0,
        DueTime: 16 / 24,
        TimerListEntry: 24 / 32,
        Dpc: 32 / 48,
        Period: 36 / 60,
    }
    KEVENT = 16 / 24, align 4 / 8 { Header: 0 / 0 }
    KAPC = 48 / 88, align 4 / 8 {}
    KDEVICE_QUEUE = 20 / 40, align 4 / 8 {
        Type: 0 / 0,
        Size: 2 / 2,
        DeviceListHead: 4 / 8,
        Lock: 12 / 24,
        Busy: 16 / 32,
    }
    KDEVICE_QUEUE_ENTRY = 16 / 24, align 4 / 8 {
        DeviceListEntry: 0 / 0,
        SortKey: 8 / 16,
        Inserted: 12 / 20,
    }
    WAIT_CONTEXT_BLOCK = 40 / 72, align 4 / 8 {}

    // ---- I/O manager (wdm.h) ----
    MDL = 28 / 48, align 4 / 8 {
        Next: 0 / 0,
        Size: 4 / 8,
        MdlFlags: 6 / 10,
        Process: 8 / 16,
        MappedSystemVa: 12 / 24,
        StartVa: 16 / 32,
        ByteCount: 20 / 40,
        ByteOffset: 24 / 44,
    }
    IRP = 112 / 208, align 8 / 16 {
        Type: 0 / 0,
        Size: 2 / 2,
        MdlAddress: 4 / 8,
        Flags: 8 / 16,
        AssociatedIrp: 12 / 24,
        AssociatedIrp.MasterIrp: 12 / 24,
        AssociatedIrp.IrpCount: 12 / 24,
        AssociatedIrp.SystemBuffer: 12 / 24,
        ThreadListEntry: 16 / 32,
        IoStatus: 24 / 48,
        IoStatus.Information: 28 / 56,
        RequestorMode: 32 / 64,
        PendingReturned: 33 / 65,
        StackCount: 34 / 66,
        CurrentLocation: 35 / 67,
        Cancel: 36 / 68,
        CancelIrql: 37 / 69,
        ApcEnvironment: 38 / 70,
        AllocationFlags: 39 / 71,
        UserIosb: 40 / 72,
        UserEvent: 44 / 80,
        Overlay: 48 / 88,
        Overlay.AsynchronousParameters.UserApcRoutine: 48 / 88,
        Overlay.AsynchronousParameters.UserApcContext: 52 / 96,
        Overlay.AllocationSize: 48 / 88,
        CancelRoutine: 56 / 104,
        UserBuffer: 60 / 112,
        Tail: 64 / 120,
        Tail.Overlay.DriverContext: 64 / 120,
        Tail.Overlay.Thread: 80 / 152,
        Tail.Overlay.AuxiliaryBuffer: 84 / 160,
        Tail.Overlay.ListEntry: 88 / 168,
        Tail.Overlay.CurrentStackLocation: 96 / 184,
        Tail.Overlay.OriginalFileObject: 100 / 192,
        Tail.Apc: 64 / 120,
        Tail.CompletionKey: 64 / 120,
    }
    IO_STACK_LOCATION = 36 / 72, align 4 / 8 {
        MajorFunction: 0 / 0,
        MinorFunction: 1 / 1,
        Flags: 2 / 2,
        Control: 3 / 3,
        Parameters: 4 / 8,
        Parameters.Create.SecurityContext: 4 / 8,
        Parameters.Create.Options: 8 / 16,
        Parameters.Create.FileAttributes: 12 / 24,
        Parameters.Create.ShareAccess: 14 / 26,
        Parameters.Create.EaLength: 16 / 32,
        Parameters.DeviceIoControl.OutputBufferLength: 4 / 8,
        Parameters.DeviceIoControl.InputBufferLength: 8 / 16,
        Parameters.DeviceIoControl.IoControlCode: 12 / 24,
        Parameters.DeviceIoControl.Type3InputBuffer: 16 / 32,
        Parameters.Others.Argument1: 4 / 8,
        Parameters.Others.Argument2: 8 / 16,
        Parameters.Others.Argument3: 12 / 24,
        Parameters.Others.Argument4: 16 / 32,
        DeviceObject: 20 / 40,
        FileObject: 24 / 48,
        CompletionRoutine: 28 / 56,
        Context: 32 / 64,
    }
    FILE_OBJECT = 128 / 216, align 8 / 8 {
        Type: 0 / 0,
        Size: 2 / 2,
        DeviceObject: 4 / 8,
        Vpb: 8 / 16,
        FsContext: 12 / 24,
        FsContext2: 16 / 32,
        SectionObjectPointer: 20 / 40,
        PrivateCacheMap: 24 / 48,
        FinalStatus: 28 / 56,
        RelatedFileObject: 32 / 64,
        LockOperation: 36 / 72,
        DeletePending: 37 / 73,
        ReadAccess: 38 / 74,
        WriteAccess: 39 / 75,
        DeleteAccess: 40 / 76,
        SharedRead: 41 / 77,
        SharedWrite: 42 / 78,
        SharedDelete: 43 / 79,
        Flags: 44 / 80,
        FileName: 48 / 88,
        CurrentByteOffset: 56 / 104,
        Waiters: 64 / 112,
        Busy: 68 / 116,
        LastLock: 72 / 120,
        Lock: 76 / 128,
        Event: 92 / 152,
        CompletionContext: 108 / 176,
        IrpListLock: 112 / 184,
        IrpList: 116 / 192,
        FileObjectExtension: 124 / 208,
    }
    DEVICE_OBJECT = 184 / 336, align 8 / 16 {
        Type: 0 / 0,
        Size: 2 / 2,
        ReferenceCount: 4 / 4,
        DriverObject: 8 / 8,
        NextDevice: 12 / 16,
        AttachedDevice: 16 / 24,
        CurrentIrp: 20 / 32,
        Timer: 24 / 40,
        Flags: 28 / 48,
        Characteristics: 32 / 52,
        Vpb: 36 / 56,
        DeviceExtension: 40 / 64,
        DeviceType: 44 / 72,
        StackSize: 48 / 76,
        Queue: 52 / 80,
        Queue.ListEntry: 52 / 80,
        Queue.Wcb: 52 / 80,
        AlignmentRequirement: 92 / 152,
        DeviceQueue: 96 / 160,
        Dpc: 116 / 200,
        ActiveThreadCount: 148 / 264,
        SecurityDescriptor: 152 / 272,
        DeviceLock: 156 / 280,
        SectorSize: 172 / 304,
        Spare1: 174 / 306,
        DeviceObjectExtension: 176 / 312,
        Reserved: 180 / 320,
    }
    DRIVER_OBJECT = 168 / 336, align 4 / 8 {
        Type: 0 / 0,
        Size: 2 / 2,
        DeviceObject: 4 / 8,
        Flags: 8 / 16,
        DriverStart: 12 / 24,
        DriverSize: 16 / 32,
        DriverSection: 20 / 40,
        DriverExtension: 24 / 48,
        DriverName: 28 / 56,
        HardwareDatabase: 36 / 72,
        FastIoDispatch: 40 / 80,
        DriverInit: 44 / 88,
        DriverStartIo: 48 / 96,
        DriverUnload: 52 / 104,
        MajorFunction: 56 / 112,
    }

    // ---- Transport addresses (tdi.h) ----
    TDI_ADDRESS_IP = 14 / 14, align 1 / 1 {
        sin_port: 0 / 0,
        in_addr: 2 / 2,
        sin_zero: 6 / 6,
    }
    TA_ADDRESS = ..Address 4 / 4 { AddressLength: 0 / 0, AddressType: 2 / 2 }
    TRANSPORT_ADDRESS = ..Address 4 / 4 { TAAddressCount: 0 / 0 }
    TA_IP_ADDRESS = 22 / 22, align 1 / 1 {
        TAAddressCount: 0 / 0,
        Address as "Address[0]": 4 / 4,
        Address.AddressLength as "Address[0].AddressLength": 4 / 4,
        Address.AddressType as "Address[0].AddressType": 6 / 6,
        Address.Address as "Address[0].Address[0]": 8 / 8,
        Address.Address.sin_port as "Address[0].Address[0].sin_port": 8 / 8,
        Address.Address.in_addr as "Address[0].Address[0].in_addr": 10 / 10,
        Address.Address.sin_zero as "Address[0].Address[0].sin_zero": 14 / 14,
    }
    TDI_ADDRESS_INFO = ..Address 4 / 4 { ActivityCount: 0 / 0 }
    TDI_CONNECTION_INFORMATION = 24 / 48, align 4 / 8 {
        UserDataLength: 0 / 0,
        UserData: 4 / 8,
        OptionsLength: 8 / 16,
        Options: 12 / 24,
        RemoteAddressLength: 16 / 32,
        RemoteAddress: 20 / 40,
    }

    // ---- TDI request overlays of IO_STACK_LOCATION::Parameters (tdikrnl.h) ----
    TDI_REQUEST_KERNEL = 16 / 32, align 4 / 8 {
        RequestFlags: 0 / 0,
        RequestConnectionInformation: 4 / 8,
        ReturnConnectionInformation: 8 / 16,
        RequestSpecific: 12 / 24,
    }
    TDI_REQUEST_KERNEL_ASSOCIATE = 4 / 8, align 4 / 8 { AddressHandle: 0 / 0 }
    TDI_REQUEST_KERNEL_RECEIVE = 8 / 8, align 4 / 4 { ReceiveLength: 0 / 0, ReceiveFlags: 4 / 4 }
    TDI_REQUEST_KERNEL_SEND = 8 / 8, align 4 / 4 { SendLength: 0 / 0, SendFlags: 4 / 4 }
    TDI_REQUEST_KERNEL_RECEIVEDG = 16 / 32, align 4 / 8 {
        ReceiveLength: 0 / 0,
        ReceiveDatagramInformation: 4 / 8,
        ReturnDatagramInformation: 8 / 16,
        ReceiveFlags: 12 / 24,
    }
    TDI_REQUEST_KERNEL_SENDDG = 8 / 16, align 4 / 8 {
        SendLength: 0 / 0,
        SendDatagramInformation: 4 / 8,
    }
    TDI_REQUEST_KERNEL_QUERY_INFORMATION = 8 / 16, align 4 / 8 {
        QueryType: 0 / 0,
        RequestConnectionInformation: 4 / 8,
    }
    TDI_REQUEST_KERNEL_SET_EVENT = 12 / 24, align 4 / 8 {
        EventType: 0 / 0,
        EventHandler: 4 / 8,
        EventContext: 8 / 16,
    }

    // ---- TDI_QUERY_INFORMATION answers (tdi.h) ----
    TDI_PROVIDER_STATISTICS = ..ResourceStats 200 / 200, align 8 / 8 {
        Version: 0 / 0,
        OpenConnections: 4 / 4,
        NoListenFailures: 52 / 52,
        DatagramsSent: 56 / 56,
        DatagramBytesSent: 64 / 64,
        DatagramsReceived: 72 / 72,
        DatagramBytesReceived: 80 / 80,
        PacketsSent: 88 / 88,
        PacketsReceived: 92 / 92,
        DataFramesSent: 96 / 96,
        DataFrameBytesSent: 104 / 104,
        DataFramesReceived: 112 / 112,
        DataFrameBytesReceived: 120 / 120,
        DataFramesResent: 128 / 128,
        DataFrameBytesResent: 136 / 136,
        DataFramesRejected: 144 / 144,
        DataFrameBytesRejected: 152 / 152,
        ResponseTimerExpirations: 160 / 160,
        PiggybackAckTimeouts: 180 / 180,
        WastedPacketSpace: 184 / 184,
        WastedSpacePackets: 192 / 192,
        NumberOfResources: 196 / 196,
    }
    TDI_PROVIDER_INFO = 40 / 40, align 8 / 8 {
        Version: 0 / 0,
        MaxSendSize: 4 / 4,
        MaxConnectionUserData: 8 / 8,
        MaxDatagramSize: 12 / 12,
        ServiceFlags: 16 / 16,
        MinimumLookaheadData: 20 / 20,
        MaximumLookaheadData: 24 / 24,
        NumberOfResources: 28 / 28,
        StartTime: 32 / 32,
    }
    TDI_CONNECTION_INFO = 56 / 56, align 8 / 8 {
        State: 0 / 0,
        Event: 4 / 4,
        TransmittedTsdus: 8 / 8,
        ReceivedTsdus: 12 / 12,
        TransmissionErrors: 16 / 16,
        ReceiveErrors: 20 / 20,
        Throughput: 24 / 24,
        Delay: 32 / 32,
        SendBufferSize: 40 / 40,
        ReceiveBufferSize: 44 / 44,
        Unreliable: 48 / 48,
    }
    TDI_MAX_DATAGRAM_INFO = 4 / 4, align 4 / 4 { MaxDatagramSize: 0 / 0 }

    // ---- IOCTL_TCP_{QUERY,SET}_INFORMATION_EX (tdiinfo.h) ----
    TDIEntityID = 8 / 8, align 4 / 4 { tei_entity: 0 / 0, tei_instance: 4 / 4 }
    TDIObjectID = 20 / 20, align 4 / 4 {
        toi_entity: 0 / 0,
        toi_entity.tei_instance: 4 / 4,
        toi_class: 8 / 8,
        toi_type: 12 / 12,
        toi_id: 16 / 16,
    }
    TCP_REQUEST_QUERY_INFORMATION_EX = 36 / 40, align 4 / 8 { ID: 0 / 0, Context: 20 / 24 }
    TCP_REQUEST_SET_INFORMATION_EX = ..Buffer 24 / 24, align 4 / 4 {
        ID: 0 / 0,
        BufferSize: 20 / 20,
    }

    // ---- NDIS 5.0 protocol (ndis.h, NDIS50) and the registry (wdm.h) ----
    NDIS_PROTOCOL_CHARACTERISTICS = 108 / 208, align 4 / 8 {
        MajorNdisVersion: 0 / 0,
        Flags: 4 / 4,
        OpenAdapterCompleteHandler: 8 / 8,
        SendCompleteHandler: 16 / 24,
        RequestCompleteHandler: 28 / 48,
        ReceiveHandler: 32 / 56,
        StatusHandler: 40 / 72,
        StatusCompleteHandler: 44 / 80,
        Name: 48 / 88,
        ReceivePacketHandler: 56 / 104,
        BindAdapterHandler: 60 / 112,
        UnbindAdapterHandler: 64 / 120,
        PnPEventHandler: 68 / 128,
        UnloadHandler: 72 / 136,
        ReservedHandlers: 76 / 144,
        CoSendCompleteHandler: 92 / 176,
        CoAfRegisterNotifyHandler: 104 / 200,
    }
    NDIS_PACKET_PRIVATE = 32 / 48, align 4 / 8 {
        PhysicalCount: 0 / 0,
        TotalLength: 4 / 4,
        Head: 8 / 8,
        Tail: 12 / 16,
        Pool: 16 / 24,
        Count: 20 / 32,
        Flags: 24 / 36,
        ValidCounts: 28 / 40,
        NdisPacketOobOffset: 30 / 42,
    }
    NDIS_PACKET = ..ProtocolReserved 56 / 96, align 4 / 8 {
        Private: 0 / 0,
        MacReserved as "u.s3.MacReserved": 32 / 48,
        Reserved: 48 / 80,
    }
    NDIS_REQUEST = 92 / 176, align 4 / 8 {
        MacReserved: 0 / 0,
        RequestType: 16 / 32,
        DATA.Oid as "DATA.QUERY_INFORMATION.Oid": 20 / 40,
        DATA.InformationBuffer as "DATA.QUERY_INFORMATION.InformationBuffer": 24 / 48,
        DATA.InformationBufferLength as "DATA.QUERY_INFORMATION.InformationBufferLength": 28 / 56,
        DATA.BytesTransferred as "DATA.QUERY_INFORMATION.BytesWritten": 32 / 60,
        DATA.BytesNeeded as "DATA.QUERY_INFORMATION.BytesNeeded": 36 / 64,
        NdisReserved: 40 / 72,
        MiniportReserved: 84 / 160,
    }
    NDIS_EVENT = 16 / 24, align 4 / 8 { Event: 0 / 0 }
    OBJECT_ATTRIBUTES = 24 / 48, align 4 / 8 {
        Length: 0 / 0,
        RootDirectory: 4 / 8,
        ObjectName: 8 / 16,
        Attributes: 12 / 24,
        SecurityDescriptor: 16 / 32,
        SecurityQualityOfService: 20 / 40,
    }
    KEY_VALUE_PARTIAL_INFORMATION = ..Data 12 / 12, align 4 / 4 {
        TitleIndex: 0 / 0,
        Type: 4 / 4,
        DataLength: 8 / 8,
    }
}
