//! The dispatch fast path (issue 17, ARCHITECTURE.md "The dispatch fast path"): a request
//! dispatched at PASSIVE_LEVEL while the core is idle is served by the dispatching thread,
//! which runs the core and completes its own finished requests before its dispatch routine
//! returns; at DISPATCH_LEVEL, or short of stack, the request goes the DPC's way and still
//! completes. The suites (AFD's nested completions, the cancellation races, the verifier's IRQL
//! and lock rules) run through the fast path too.

mod tdi_support;

use std::ffi::c_void;
use std::sync::Mutex;
use std::thread::ThreadId;
use tcpip::core::stack::InlineStats;
use tcpip::host::afd::wire;
use tcpip::host::stats::inline_stats;
use tcpip::host::{DISPATCH_LEVEL, Driver, lower_irql, raise_irql};
use tcpip::nt::NtStatus;
use tcpip::nt::thread::remaining_stack;
use tcpip::nt::types::*;
use tdi_support::{
    Extras, Loaded, PendingRequest, close_pair, connected_pair, loaded, local, start_with,
};

fn stats(driver: &Driver) -> InlineStats {
    inline_stats(driver).expect("driver loaded")
}

/// Starts a TDI_SEND of `data` on `connection` without waiting (the buffer is the request's).
fn start_send(t: &Loaded, connection: tcpip::host::Handle, data: &mut [u8]) -> PendingRequest {
    let length = data.len() as u32;
    t.start(connection, TDI_SEND, wire::send(length, 0), Some(data))
}

/// Starts a TDI_QUERY_INFORMATION of the address of `handle`.
fn start_query(t: &Loaded, handle: tcpip::host::Handle, out: &mut [u8]) -> PendingRequest {
    t.start(
        handle,
        TDI_QUERY_INFORMATION,
        wire::query_information(TDI_QUERY_ADDRESS_INFO),
        Some(out),
    )
}

#[test]
fn waited_for_requests_at_passive_level_are_complete_when_their_dispatch_returns() {
    let t = loaded();
    let pair = connected_pair(&t, local(5710));
    let before = stats(t.driver());
    let rounds = 100;
    let mut immediate = 0;
    for i in 0..rounds {
        // A synchronous request, a send, and a receive of the bytes already there.
        let mut out = [0u8; 64];
        let query = start_query(&t, pair.client, &mut out);
        let mut data = [i as u8; 32];
        let send = start_send(&t, pair.client, &mut data);
        // The query is waited for: done in this thread. The send's completion runs AFD's
        // completion routine, which issues the next request: it goes to the work item.
        let done = query.is_complete();
        assert_eq!(query.wait().status, NtStatus::SUCCESS);
        assert_eq!(send.wait().status, NtStatus::SUCCESS);
        let (received, bytes) = tdi_support::receive(&t, pair.server, 32);
        assert_eq!(received.status, NtStatus::SUCCESS);
        assert_eq!(bytes, [i as u8; 32]);
        if done {
            immediate += 1;
        }
    }
    // A timer's DPC that happens to hold the core sends a request the DPC's way; nearly
    // all find the core idle. Through the DPC and the work item none would be complete yet.
    assert!(
        immediate >= rounds * 9 / 10,
        "{immediate} of {rounds} rounds complete when IoCallDriver returned"
    );
    let after = stats(t.driver());
    assert!(after.inline - before.inline >= immediate * 3);
    // The room left is measured at every run (the depth a run uses, by painting, only in the
    // kernel image).
    assert!(
        after.least_room < usize::MAX,
        "the runs measure the room left"
    );
    close_pair(&t, pair);
    t.unload();
}

#[test]
fn a_request_sent_at_dispatch_level_is_served_by_the_dpc() {
    let t = loaded();
    let pair = connected_pair(&t, local(5711));
    let before = stats(t.driver());
    let mut data = *b"from a DPC-level caller";
    let old = raise_irql(DISPATCH_LEVEL);
    let send = start_send(&t, pair.client, &mut data);
    lower_irql(old);
    let sent = send.wait();
    assert_eq!(
        (sent.status, sent.information),
        (NtStatus::SUCCESS, data.len())
    );
    let after = stats(t.driver());
    assert_eq!(after.declined, before.declined + 1);
    assert_eq!(after.inline, before.inline);
    let (received, bytes) = tdi_support::receive(&t, pair.server, 64);
    assert_eq!(received.status, NtStatus::SUCCESS);
    assert_eq!(bytes, data);
    close_pair(&t, pair);
    t.unload();
}

/// Recurses until less than `left` bytes of stack remain below the frame, then starts a query
/// there (the model's and the driver's dispatch frames come on top, so the driver finds even
/// less).
#[inline(never)]
fn start_deep(
    t: &Loaded,
    handle: tcpip::host::Handle,
    out: &mut [u8],
    left: usize,
) -> PendingRequest {
    let ballast = std::hint::black_box([0u8; 512]);
    if remaining_stack() >= left {
        let pending = start_deep(t, handle, out, left);
        std::hint::black_box(&ballast);
        return pending;
    }
    start_query(t, handle, out)
}

#[test]
fn a_thread_short_of_stack_leaves_its_request_to_the_dpc() {
    let t = loaded();
    let address = t.open_address(local(5712), 0).expect("address file");
    let before = stats(t.driver());
    let mut out = [0u8; 64];
    // Below the 16 KiB a 64-bit fast-path run asks for, above what the model's dispatch needs.
    let query = start_deep(&t, address, &mut out, 16 * 1024);
    assert_eq!(query.wait().status, NtStatus::SUCCESS);
    assert_eq!(
        wire::parse_address_info(&out),
        Some(local(5712)),
        "the query is answered"
    );
    let after = stats(t.driver());
    assert_eq!(after.declined, before.declined + 1);
    assert_eq!(after.inline, before.inline);
    t.close(address);
    t.unload();
}

/// Where a completion routine ran: set by [`record_thread`].
struct Ran(Mutex<Option<ThreadId>>);

/// A completion routine that records the thread it runs on.
unsafe extern "system" fn record_thread(
    _: *mut DEVICE_OBJECT,
    _: *mut IRP,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: `context` is the `Ran` the test keeps alive until the request completes.
    let ran = unsafe { &*(context as *const Ran) };
    *ran.0.lock().unwrap() = Some(std::thread::current().id());
    NtStatus::SUCCESS.raw()
}

/// Sends `minor` on `handle` with [`record_thread`] as its completion routine, waits, and
/// returns the thread the routine ran on.
fn completion_thread(
    t: &Loaded,
    handle: tcpip::host::Handle,
    minor: u8,
    parameters: IoStackParameters,
    buffer: &mut [u8],
) -> ThreadId {
    let ran = Ran(Mutex::new(None));
    let extras = Extras {
        completion: Some((Some(record_thread), &ran as *const Ran as usize)),
        ..Extras::default()
    };
    let pending = start_with(&t.kernel, handle, minor, parameters, Some(buffer), extras);
    assert_eq!(pending.wait().status, NtStatus::SUCCESS);
    ran.0.lock().unwrap().expect("the completion routine ran")
}

/// AFD's completion routines issue the next TDI request as a threaded IRP, which the I/O
/// manager cancels when its thread exits: a send's completion must not run in an application
/// thread (in ReactOS, server threads that ended took their next TDI_SEND with them), while a
/// waited-for request's may.
#[test]
fn a_sends_completion_runs_on_a_system_thread_and_a_querys_in_the_caller() {
    let t = loaded();
    let pair = connected_pair(&t, local(5713));
    let here = std::thread::current().id();
    let mut data = *b"not in the caller's thread";
    let length = data.len() as u32;
    let send = completion_thread(&t, pair.client, TDI_SEND, wire::send(length, 0), &mut data);
    assert_ne!(
        send, here,
        "a send's completion routine ran in the sending thread"
    );
    // The core idle again, a query's completion runs right here (a timer's DPC could hold
    // the core now and then: a few tries).
    let inline = (0..20).any(|_| {
        let mut out = [0u8; 64];
        let parameters = wire::query_information(TDI_QUERY_ADDRESS_INFO);
        completion_thread(&t, pair.client, TDI_QUERY_INFORMATION, parameters, &mut out) == here
    });
    assert!(
        inline,
        "a query's completion never ran in the caller's thread"
    );
    let (received, bytes) = tdi_support::receive(&t, pair.server, 64);
    assert_eq!(received.status, NtStatus::SUCCESS);
    assert_eq!(bytes, data);
    close_pair(&t, pair);
    t.unload();
}
