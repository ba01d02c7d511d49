//! `raw-dylib` imports from `ndis.sys`, and the registry functions of `ntoskrnl.exe` the binding
//! reads its configuration with (kernel targets only).
//!
//! Only real exports of ReactOS's `ndis.sys` are imported (`tests/image_checks.rs` checks them
//! against `reactos-exports/ndis.*.txt`). What the DDK defines as macros over structure fields
//! (`NdisChainBufferAtFront`, `NdisGetNextBuffer`, `NdisQueryPacket`) is done in
//! [`crate::nt::ndis`] on the structures themselves. Every function is stdcall on x86 and
//! imported by its undecorated name, like the ntoskrnl imports in `kernel.rs`.
#![allow(non_snake_case, clippy::missing_safety_doc)]

use crate::nt::types::*;
use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

macro_rules! imports {
    ($dll:literal { $($item:tt)* }) => {
        #[cfg_attr(target_arch = "x86", link(name = $dll, kind = "raw-dylib", modifiers = "+verbatim", import_name_type = "undecorated"))]
        #[cfg_attr(not(target_arch = "x86"), link(name = $dll, kind = "raw-dylib", modifiers = "+verbatim"))]
        unsafe extern "system" { $($item)* }
    };
}

imports!("ndis.sys" {
    pub fn NdisRegisterProtocol(
        status: *mut NDIS_STATUS,
        handle: *mut NDIS_HANDLE,
        characteristics: *mut NDIS_PROTOCOL_CHARACTERISTICS,
        length: u32,
    );
    pub fn NdisDeregisterProtocol(status: *mut NDIS_STATUS, handle: NDIS_HANDLE);
    pub fn NdisOpenAdapter(
        status: *mut NDIS_STATUS,
        open_error: *mut NDIS_STATUS,
        binding: *mut NDIS_HANDLE,
        selected_medium: *mut u32,
        media: *mut NDIS_MEDIUM,
        media_count: u32,
        protocol: NDIS_HANDLE,
        context: NDIS_HANDLE,
        adapter_name: *mut NDIS_STRING,
        open_options: u32,
        addressing: *mut c_void,
    );
    pub fn NdisCloseAdapter(status: *mut NDIS_STATUS, binding: NDIS_HANDLE);
    pub fn NdisRequest(status: *mut NDIS_STATUS, binding: NDIS_HANDLE, request: *mut NDIS_REQUEST);
    pub fn NdisSend(status: *mut NDIS_STATUS, binding: NDIS_HANDLE, packet: *mut NDIS_PACKET);
    pub fn NdisTransferData(
        status: *mut NDIS_STATUS,
        binding: NDIS_HANDLE,
        receive_context: NDIS_HANDLE,
        offset: u32,
        length: u32,
        packet: *mut NDIS_PACKET,
        transferred: *mut u32,
    );
    pub fn NdisAllocatePacketPool(
        status: *mut NDIS_STATUS,
        pool: *mut NDIS_HANDLE,
        descriptors: u32,
        protocol_reserved: u32,
    );
    pub fn NdisFreePacketPool(pool: NDIS_HANDLE);
    pub fn NdisAllocatePacket(status: *mut NDIS_STATUS, packet: *mut *mut NDIS_PACKET, pool: NDIS_HANDLE);
    pub fn NdisFreePacket(packet: *mut NDIS_PACKET);
    pub fn NdisAllocateBufferPool(status: *mut NDIS_STATUS, pool: *mut NDIS_HANDLE, descriptors: u32);
    pub fn NdisFreeBufferPool(pool: NDIS_HANDLE);
    pub fn NdisAllocateBuffer(
        status: *mut NDIS_STATUS,
        buffer: *mut *mut NDIS_BUFFER,
        pool: NDIS_HANDLE,
        address: *mut c_void,
        length: u32,
    );
    pub fn NdisFreeBuffer(buffer: *mut NDIS_BUFFER);
    pub fn NdisAdjustBufferLength(buffer: *mut NDIS_BUFFER, length: u32);
    pub fn NdisQueryBufferSafe(
        buffer: *mut NDIS_BUFFER,
        address: *mut *mut c_void,
        length: *mut u32,
        priority: u32,
    );
    pub fn NdisUnchainBufferAtFront(packet: *mut NDIS_PACKET, buffer: *mut *mut NDIS_BUFFER);
    pub fn NdisInitializeEvent(event: *mut NDIS_EVENT);
    pub fn NdisSetEvent(event: *mut NDIS_EVENT);
    pub fn NdisResetEvent(event: *mut NDIS_EVENT);
    pub fn NdisWaitEvent(event: *mut NDIS_EVENT, milliseconds: u32) -> BOOLEAN;
});

imports!("ntoskrnl.exe" {
    pub fn ZwOpenKey(key: *mut HANDLE, access: ACCESS_MASK, attributes: *mut OBJECT_ATTRIBUTES) -> NTSTATUS;
    pub fn ZwQueryValueKey(
        key: HANDLE,
        name: *mut UNICODE_STRING,
        class: u32,
        information: *mut c_void,
        length: u32,
        result_length: *mut u32,
    ) -> NTSTATUS;
    pub fn ZwClose(handle: HANDLE) -> NTSTATUS;
});

/// The protocol's state, for the handlers NDIS calls without a context (`BindAdapterHandler`).
/// One image, one protocol: a static.
static PROTOCOL: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// The protocol state published by [`set_protocol_context`]. Any IRQL.
pub fn protocol_context() -> *mut c_void {
    PROTOCOL.load(Ordering::Acquire)
}

/// Publishes (or, with null, withdraws) the protocol state. PASSIVE_LEVEL.
pub fn set_protocol_context(context: *mut c_void) {
    PROTOCOL.store(context, Ordering::Release);
}
