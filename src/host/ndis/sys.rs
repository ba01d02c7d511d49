//! The `ndis.sys` exports and registry functions of `crate::nt::sys::ndis` on the host: one
//! function per import of `src/nt/sys/ndis.rs`, same signature, forwarding to the kernel's
//! NDIS model. Each enters a `ModelScope` first, so the model's allocations are not the
//! driver's.
#![allow(
    non_snake_case,
    clippy::missing_safety_doc,
    reason = "the exports' names, as in src/nt/sys/ndis.rs"
)]

use super::model::text;
use crate::host::context::{self, ModelScope};
use crate::host::irql::{self, PASSIVE_LEVEL};
use crate::host::verifier::{self, Rule, Site};
use crate::nt::NtStatus;
use crate::nt::types::*;
use std::ffi::c_void;

/// Reports a call above the IRQL the function allows.
#[track_caller]
fn at_passive(function: &str) {
    let irql = irql::current_irql();
    if irql > PASSIVE_LEVEL {
        verifier::report(
            Rule::NdisIrql,
            Site::caller(),
            format!("{function} at IRQL {irql}"),
        );
    }
}

/// Whether fault injection fails this allocation of the driver's.
fn fail_allocation(model: &ModelScope) -> bool {
    model.called_by_driver() && context::current().pool.should_fail()
}

/// The protocol context for `BindAdapterHandler`: per kernel in the model.
pub fn protocol_context() -> *mut c_void {
    context::current().ndis.protocol_context()
}

/// Publishes the protocol context.
pub fn set_protocol_context(context: *mut c_void) {
    context::current().ndis.set_protocol_context(context);
}

#[track_caller]
pub unsafe fn NdisRegisterProtocol(
    status: *mut NDIS_STATUS,
    handle: *mut NDIS_HANDLE,
    characteristics: *mut NDIS_PROTOCOL_CHARACTERISTICS,
    length: u32,
) {
    at_passive("NdisRegisterProtocol");
    let _model = ModelScope::enter();
    let kernel = context::current();
    // SAFETY: forwarded caller contract.
    match unsafe { kernel.ndis.register(characteristics, length) } {
        Err(error) => unsafe {
            // SAFETY: forwarded caller contract.
            *handle = std::ptr::null_mut();
            *status = error;
        },
        Ok(registered) => {
            // SAFETY: forwarded caller contract: the handle is written before any bind.
            unsafe { *handle = registered as NDIS_HANDLE };
            kernel.ndis.bind_all(&kernel);
            // SAFETY: forwarded caller contract.
            unsafe { *status = NDIS_STATUS_SUCCESS };
        }
    }
}

#[track_caller]
pub unsafe fn NdisDeregisterProtocol(status: *mut NDIS_STATUS, handle: NDIS_HANDLE) {
    at_passive("NdisDeregisterProtocol");
    let _model = ModelScope::enter();
    let result = context::current().ndis.deregister(handle as usize);
    // SAFETY: forwarded caller contract.
    unsafe { *status = result };
}

#[track_caller]
#[allow(clippy::too_many_arguments, reason = "NdisOpenAdapter's signature")]
pub unsafe fn NdisOpenAdapter(
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
) {
    let _ = (open_options, addressing);
    at_passive("NdisOpenAdapter");
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract: the media array and the name are valid.
    let (media, name) = unsafe {
        (
            std::slice::from_raw_parts(media, media_count as usize),
            text(adapter_name),
        )
    };
    let (result, handle, selected) =
        context::current()
            .ndis
            .open_adapter(protocol as usize, context as usize, &name, media);
    // SAFETY: forwarded caller contract.
    unsafe {
        *binding = handle as NDIS_HANDLE;
        *selected_medium = selected;
        *open_error = NDIS_STATUS_SUCCESS;
        *status = result;
    }
}

#[track_caller]
pub unsafe fn NdisCloseAdapter(status: *mut NDIS_STATUS, binding: NDIS_HANDLE) {
    at_passive("NdisCloseAdapter");
    let _model = ModelScope::enter();
    let result = context::current().ndis.close_adapter(binding as usize);
    // SAFETY: forwarded caller contract.
    unsafe { *status = result };
}

pub unsafe fn NdisRequest(
    status: *mut NDIS_STATUS,
    binding: NDIS_HANDLE,
    request: *mut NDIS_REQUEST,
) {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    let result = unsafe { context::current().ndis.request(binding as usize, request) };
    // SAFETY: forwarded caller contract.
    unsafe { *status = result };
}

pub unsafe fn NdisSend(status: *mut NDIS_STATUS, binding: NDIS_HANDLE, packet: *mut NDIS_PACKET) {
    let _model = ModelScope::enter();
    let result = context::current().ndis.send(binding as usize, packet);
    // SAFETY: forwarded caller contract.
    unsafe { *status = result };
}

pub unsafe fn NdisTransferData(
    status: *mut NDIS_STATUS,
    binding: NDIS_HANDLE,
    receive_context: NDIS_HANDLE,
    offset: u32,
    length: u32,
    packet: *mut NDIS_PACKET,
    transferred: *mut u32,
) {
    let _model = ModelScope::enter();
    let (result, bytes) = context::current().ndis.transfer(
        binding as usize,
        receive_context as usize,
        offset,
        length,
        packet,
    );
    // SAFETY: forwarded caller contract.
    unsafe {
        *transferred = bytes;
        *status = result;
    }
}

pub unsafe fn NdisAllocatePacketPool(
    status: *mut NDIS_STATUS,
    pool: *mut NDIS_HANDLE,
    descriptors: u32,
    protocol_reserved: u32,
) {
    let model = ModelScope::enter();
    let (result, handle) = if fail_allocation(&model) {
        (NDIS_STATUS_RESOURCES, 0)
    } else {
        let handle = context::current()
            .ndis
            .allocate_pool(true, descriptors, protocol_reserved);
        (NDIS_STATUS_SUCCESS, handle)
    };
    // SAFETY: forwarded caller contract.
    unsafe {
        *pool = handle as NDIS_HANDLE;
        *status = result;
    }
}

#[track_caller]
pub unsafe fn NdisFreePacketPool(pool: NDIS_HANDLE) {
    let _model = ModelScope::enter();
    context::current().ndis.free_pool(true, pool as usize);
}

pub unsafe fn NdisAllocatePacket(
    status: *mut NDIS_STATUS,
    packet: *mut *mut NDIS_PACKET,
    pool: NDIS_HANDLE,
) {
    let model = ModelScope::enter();
    let allocated = if fail_allocation(&model) {
        None
    } else {
        context::current().ndis.allocate_packet(pool as usize)
    };
    // SAFETY: forwarded caller contract.
    unsafe {
        *packet = allocated.unwrap_or(std::ptr::null_mut());
        *status = if allocated.is_some() {
            NDIS_STATUS_SUCCESS
        } else {
            NDIS_STATUS_RESOURCES
        };
    }
}

#[track_caller]
pub unsafe fn NdisFreePacket(packet: *mut NDIS_PACKET) {
    let _model = ModelScope::enter();
    context::current().ndis.free_packet(packet);
}

pub unsafe fn NdisAllocateBufferPool(
    status: *mut NDIS_STATUS,
    pool: *mut NDIS_HANDLE,
    descriptors: u32,
) {
    let model = ModelScope::enter();
    let (result, handle) = if fail_allocation(&model) {
        (NDIS_STATUS_RESOURCES, 0)
    } else {
        (
            NDIS_STATUS_SUCCESS,
            context::current().ndis.allocate_pool(false, descriptors, 0),
        )
    };
    // SAFETY: forwarded caller contract.
    unsafe {
        *pool = handle as NDIS_HANDLE;
        *status = result;
    }
}

#[track_caller]
pub unsafe fn NdisFreeBufferPool(pool: NDIS_HANDLE) {
    let _model = ModelScope::enter();
    context::current().ndis.free_pool(false, pool as usize);
}

pub unsafe fn NdisAllocateBuffer(
    status: *mut NDIS_STATUS,
    buffer: *mut *mut NDIS_BUFFER,
    pool: NDIS_HANDLE,
    address: *mut c_void,
    length: u32,
) {
    let model = ModelScope::enter();
    let allocated = if fail_allocation(&model) {
        None
    } else {
        context::current()
            .ndis
            .allocate_buffer(pool as usize, address, length)
    };
    // SAFETY: forwarded caller contract.
    unsafe {
        *buffer = allocated.unwrap_or(std::ptr::null_mut());
        *status = if allocated.is_some() {
            NDIS_STATUS_SUCCESS
        } else {
            NDIS_STATUS_RESOURCES
        };
    }
}

#[track_caller]
pub unsafe fn NdisFreeBuffer(buffer: *mut NDIS_BUFFER) {
    let _model = ModelScope::enter();
    context::current().ndis.free_buffer(buffer);
}

pub unsafe fn NdisAdjustBufferLength(buffer: *mut NDIS_BUFFER, length: u32) {
    let _model = ModelScope::enter();
    if context::current().ndis.buffer_is_live(buffer) {
        // SAFETY: forwarded caller contract: a live buffer of the protocol's.
        unsafe { (*buffer).ByteCount = length };
    }
}

pub unsafe fn NdisQueryBufferSafe(
    buffer: *mut NDIS_BUFFER,
    address: *mut *mut c_void,
    length: *mut u32,
    priority: u32,
) {
    let _ = priority;
    let _model = ModelScope::enter();
    let live = context::current().ndis.buffer_is_live(buffer);
    // SAFETY: forwarded caller contract; a buffer that is not live is not read.
    unsafe {
        if live {
            *address = (*buffer).MappedSystemVa;
            *length = (*buffer).ByteCount;
        } else {
            *address = std::ptr::null_mut();
            *length = 0;
        }
    }
}

pub unsafe fn NdisUnchainBufferAtFront(packet: *mut NDIS_PACKET, buffer: *mut *mut NDIS_BUFFER) {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract: a live packet whose chain is made of live MDLs.
    unsafe {
        let private = &raw mut (*packet).Private;
        let head = (*private).Head;
        if !head.is_null() {
            (*private).Head = (*head).Next;
            if (*private).Head.is_null() {
                (*private).Tail = std::ptr::null_mut();
            }
            (*head).Next = std::ptr::null_mut();
            (*private).ValidCounts = FALSE;
        }
        *buffer = head;
    }
}

pub unsafe fn NdisInitializeEvent(event: *mut NDIS_EVENT) {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe {
        event.write(std::mem::zeroed());
        context::current().ndis.signal(event, 0);
    }
}

pub unsafe fn NdisSetEvent(event: *mut NDIS_EVENT) {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe { context::current().ndis.signal(event, 1) };
}

pub unsafe fn NdisResetEvent(event: *mut NDIS_EVENT) {
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    unsafe { context::current().ndis.signal(event, 0) };
}

#[track_caller]
pub unsafe fn NdisWaitEvent(event: *mut NDIS_EVENT, milliseconds: u32) -> BOOLEAN {
    at_passive("NdisWaitEvent");
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    BOOLEAN::from(unsafe { context::current().ndis.wait(event, milliseconds) })
}

// ---- Registry -----------------------------------------------------------------------------

#[track_caller]
pub unsafe fn ZwOpenKey(
    key: *mut HANDLE,
    access: ACCESS_MASK,
    attributes: *mut OBJECT_ATTRIBUTES,
) -> NTSTATUS {
    let _ = access;
    at_passive("ZwOpenKey");
    let _model = ModelScope::enter();
    // SAFETY: forwarded caller contract.
    let path = unsafe { text((*attributes).ObjectName) };
    match context::current().ndis.registry.open(&path) {
        Some(handle) => {
            // SAFETY: forwarded caller contract.
            unsafe { *key = handle as HANDLE };
            NtStatus::SUCCESS.raw()
        }
        None => NtStatus::OBJECT_NAME_NOT_FOUND.raw(),
    }
}

#[track_caller]
pub unsafe fn ZwQueryValueKey(
    key: HANDLE,
    name: *mut UNICODE_STRING,
    class: u32,
    information: *mut c_void,
    length: u32,
    result_length: *mut u32,
) -> NTSTATUS {
    at_passive("ZwQueryValueKey");
    let _model = ModelScope::enter();
    if class != KEY_VALUE_PARTIAL_INFORMATION_CLASS {
        return NtStatus::INVALID_PARAMETER.raw();
    }
    // SAFETY: forwarded caller contract.
    let name = unsafe { text(name) };
    let value = match context::current().ndis.registry.query(key as usize, &name) {
        None => return NtStatus::INVALID_HANDLE.raw(),
        Some(None) => return NtStatus::OBJECT_NAME_NOT_FOUND.raw(),
        Some(Some(value)) => value,
    };
    let (kind, data) = value.encode();
    let header = size_of::<KEY_VALUE_PARTIAL_INFORMATION>();
    let needed = header + data.len();
    // SAFETY: forwarded caller contract.
    unsafe { *result_length = needed as u32 };
    if (length as usize) < needed {
        return NtStatus::BUFFER_OVERFLOW.raw();
    }
    // SAFETY: the caller's buffer holds `length` ≥ `needed` bytes.
    unsafe {
        information
            .cast::<KEY_VALUE_PARTIAL_INFORMATION>()
            .write_unaligned(KEY_VALUE_PARTIAL_INFORMATION {
                TitleIndex: 0,
                Type: kind,
                DataLength: data.len() as u32,
            });
        std::ptr::copy_nonoverlapping(
            data.as_ptr(),
            information.cast::<u8>().add(header),
            data.len(),
        );
    }
    NtStatus::SUCCESS.raw()
}

pub unsafe fn ZwClose(handle: HANDLE) -> NTSTATUS {
    let _model = ModelScope::enter();
    if context::current().ndis.registry.close(handle as usize) {
        NtStatus::SUCCESS.raw()
    } else {
        NtStatus::INVALID_HANDLE.raw()
    }
}
