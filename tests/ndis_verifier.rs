//! The NDIS rules of the model's verifier, each broken on purpose by test code calling the
//! `ndis.sys` functions the way a faulty protocol would.

mod ndis_support;

use ndis_support::{Wire, adapter_name};
use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};
use tcpip::host::{Config, Kernel, MiniportOptions, Rule};
use tcpip::nt::sys::ndis::*;
use tcpip::nt::types::*;

fn packet_pool(count: u32) -> NDIS_HANDLE {
    let (mut status, mut pool) = (NDIS_STATUS_FAILURE, null_mut());
    // SAFETY: valid out pointers.
    unsafe { NdisAllocatePacketPool(&mut status, &mut pool, count, 0) };
    assert_eq!(status, NDIS_STATUS_SUCCESS);
    pool
}

fn packet(pool: NDIS_HANDLE) -> *mut NDIS_PACKET {
    let (mut status, mut packet) = (NDIS_STATUS_FAILURE, null_mut());
    // SAFETY: a live pool and valid out pointers.
    unsafe { NdisAllocatePacket(&mut status, &mut packet, pool) };
    assert_eq!(status, NDIS_STATUS_SUCCESS);
    packet
}

#[test]
fn a_packet_freed_twice_is_reported() {
    let kernel = Kernel::new(Config::default());
    kernel.expect_violation(Rule::NdisPacketOwnership);
    let pool = packet_pool(2);
    let p = packet(pool);
    // SAFETY: the first free is legitimate; the second is the fault under test, which the
    // model detects without touching the freed packet.
    unsafe {
        NdisFreePacket(p);
        NdisFreePacket(p);
        NdisFreePacketPool(pool);
    }
}

#[test]
fn a_pool_freed_with_packets_allocated_is_reported() {
    let kernel = Kernel::new(Config::default());
    kernel.expect_violation(Rule::NdisPoolInUse);
    let pool = packet_pool(2);
    let _leaked = packet(pool);
    // SAFETY: the fault under test.
    unsafe { NdisFreePacketPool(pool) };
}

#[test]
fn a_transfer_outside_its_receive_indication_is_reported() {
    let kernel = Kernel::new(Config::default());
    kernel.expect_violation(Rule::NdisReceiveOwnership);
    let pool = packet_pool(1);
    let p = packet(pool);
    let (mut status, mut transferred) = (NDIS_STATUS_SUCCESS, 0);
    // SAFETY: a stale receive context is the fault under test; the packet is live.
    unsafe {
        NdisTransferData(
            &mut status,
            null_mut(),
            0x1234 as NDIS_HANDLE,
            0,
            10,
            p,
            &mut transferred,
        );
        NdisFreePacket(p);
        NdisFreePacketPool(pool);
    }
    assert_eq!(status, NDIS_STATUS_FAILURE);
}

unsafe extern "system" fn ignore_send_complete(
    _: NDIS_HANDLE,
    _: *mut NDIS_PACKET,
    _: NDIS_STATUS,
) {
}

/// The first buffer of the last packet indicated to [`keep_first_buffer`].
static KEPT: AtomicPtr<NDIS_BUFFER> = AtomicPtr::new(null_mut());

/// A `ReceivePacket` handler that keeps a pointer into the indication (the fault).
unsafe extern "system" fn keep_first_buffer(_: NDIS_HANDLE, packet: *mut NDIS_PACKET) -> i32 {
    // SAFETY: the indicated packet, valid during the call.
    KEPT.store(unsafe { (*packet).Private.Head }, Ordering::SeqCst);
    0
}

/// Registers a protocol with a send-completion and a receive handler and opens miniport 1
/// (with `options`) under it; returns the protocol and the binding.
fn open_miniport(kernel: &Kernel, options: MiniportOptions) -> (NDIS_HANDLE, NDIS_HANDLE) {
    kernel.ndis_add_miniport(&adapter_name(1), Wire::new(1), options);
    // SAFETY: all-zero characteristics are valid (null handlers).
    let mut chars: NDIS_PROTOCOL_CHARACTERISTICS = unsafe { std::mem::zeroed() };
    chars.MajorNdisVersion = 5;
    chars.SendCompleteHandler = Some(ignore_send_complete);
    chars.ReceivePacketHandler = Some(keep_first_buffer);
    let mut name: Vec<u16> = "Faulty".encode_utf16().collect();
    chars.Name = UNICODE_STRING {
        Length: 12,
        MaximumLength: 12,
        Buffer: name.as_mut_ptr(),
    };
    let (mut status, mut protocol) = (NDIS_STATUS_FAILURE, null_mut());
    // SAFETY: valid characteristics and out pointers.
    unsafe {
        NdisRegisterProtocol(
            &mut status,
            &mut protocol,
            &mut chars,
            size_of::<NDIS_PROTOCOL_CHARACTERISTICS>() as u32,
        )
    };
    assert_eq!(status, NDIS_STATUS_SUCCESS);
    let mut adapter: Vec<u16> = adapter_name(1).encode_utf16().collect();
    let mut adapter = UNICODE_STRING {
        Length: (adapter.len() * 2) as u16,
        MaximumLength: (adapter.len() * 2) as u16,
        Buffer: adapter.as_mut_ptr(),
    };
    let (mut open_error, mut binding, mut selected) = (0, null_mut(), 0);
    let mut medium = [NDIS_MEDIUM_802_3];
    // SAFETY: valid arguments for the call.
    unsafe {
        NdisOpenAdapter(
            &mut status,
            &mut open_error,
            &mut binding,
            &mut selected,
            medium.as_mut_ptr(),
            1,
            protocol,
            null_mut(),
            &mut adapter,
            0,
            null_mut::<c_void>(),
        )
    };
    assert_eq!(status, NDIS_STATUS_SUCCESS);
    (protocol, binding)
}

#[test]
fn a_packet_sent_again_before_its_completion_and_a_close_with_sends_outstanding_are_reported() {
    let kernel = Kernel::new(Config::default());
    kernel.expect_violation(Rule::NdisSendInFlight);
    kernel.expect_violation(Rule::NdisCloseWithOutstanding);
    let (protocol, binding) = open_miniport(
        &kernel,
        MiniportOptions {
            pend_sends: true,
            ..MiniportOptions::default()
        },
    );
    let pool = packet_pool(1);
    let p = packet(pool);
    let mut status = NDIS_STATUS_FAILURE;
    // SAFETY: a live binding and packet (with no buffers: an empty frame); sending it again
    // and closing with it outstanding are the faults under test.
    unsafe {
        NdisSend(&mut status, binding, p);
        assert_eq!(status, NDIS_STATUS_PENDING);
        NdisSend(&mut status, binding, p);
        assert_eq!(status, NDIS_STATUS_FAILURE);
        NdisCloseAdapter(&mut status, binding);
    }
    // SAFETY: the protocol registered above (the packet stays with NDIS: its completion is
    // not delivered once the binding is closed).
    unsafe { NdisDeregisterProtocol(&mut status, protocol) };
}

#[test]
fn a_receive_buffer_used_after_its_indication_is_reported() {
    let kernel = Kernel::new(Config::default());
    kernel.expect_violation(Rule::NdisReceiveOwnership);
    let (protocol, binding) = open_miniport(&kernel, MiniportOptions::default());
    assert!(kernel.ndis_indicate(&adapter_name(1), &[0xAB; 60]));
    let stale = KEPT.load(Ordering::SeqCst);
    assert!(!stale.is_null(), "the packet was indicated with buffers");
    let (mut address, mut length) = (null_mut(), 0);
    let mut status = NDIS_STATUS_FAILURE;
    // SAFETY: the stale buffer is the fault under test; the model checks it before use.
    unsafe {
        NdisQueryBufferSafe(stale, &mut address, &mut length, 16);
        NdisCloseAdapter(&mut status, binding);
        NdisDeregisterProtocol(&mut status, protocol);
    }
    assert!(
        address.is_null() && length == 0,
        "nothing is read from a dead indication"
    );
}

/// A `DriverEntry` that registers a protocol and allocates a packet pool, and never gives
/// either back.
unsafe extern "system" fn entry_leaking_ndis(
    _: *mut DRIVER_OBJECT,
    _: *const UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: all-zero characteristics are valid (null handlers).
    let mut chars: NDIS_PROTOCOL_CHARACTERISTICS = unsafe { std::mem::zeroed() };
    chars.MajorNdisVersion = 5;
    let (mut status, mut protocol) = (NDIS_STATUS_FAILURE, null_mut());
    // SAFETY: valid characteristics and out pointers.
    unsafe {
        NdisRegisterProtocol(
            &mut status,
            &mut protocol,
            &mut chars,
            size_of::<NDIS_PROTOCOL_CHARACTERISTICS>() as u32,
        )
    };
    packet_pool(4);
    status
}

#[test]
fn a_registration_and_a_pool_left_at_unload_are_leaks() {
    let kernel = Kernel::new(Config::default());
    kernel.expect_violation(Rule::NdisLeak);
    let driver = kernel.load_driver(entry_leaking_ndis).expect("DriverEntry");
    let report = driver.unload();
    let leaks: Vec<_> = report
        .leaks_of(Rule::NdisLeak)
        .map(|l| l.detail.clone())
        .collect();
    assert_eq!(leaks.len(), 2, "{leaks:?}");
    assert!(leaks[0].contains("still registered"), "{leaks:?}");
    assert!(leaks[1].contains("packet pool"), "{leaks:?}");
}
