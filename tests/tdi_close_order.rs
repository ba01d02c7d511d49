//! Completions and closes on one file (afd-tdi-contract.md §7.4 item 2, CORE-8640). AFD cancels a
//! socket's IRPs, then disassociates and closes its connection and frees the socket state
//! without waiting for them. An IRP the completion worker had already taken when the cancel
//! came is invisible to `IoCancelIrp`; if its completion routine ran after the free, AFD would
//! touch freed memory. So the driver completes a file's DISASSOCIATE only once the completion
//! routines other threads are running for that file have returned — and never makes a routine
//! wait for itself.

mod tdi_support;

use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;
use tcpip::host::afd::wire;
use tcpip::host::{Event, EventType, Handle, KernelHandle};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tdi_support::*;

/// How long a test waits for something that must happen (a failure, not a pace).
const MUST_HAPPEN: Duration = Duration::from_secs(20);
/// How long the first test gives a DISASSOCIATE that must stay held back to complete anyway.
const MUST_NOT_HAPPEN: Duration = Duration::from_millis(300);

/// What a test's receive completion routine does and reports.
struct Gate {
    kernel: KernelHandle,
    /// The connection the receive was posted on.
    connection: Handle,
    /// Set when the routine has started (and, in the second test, finished its DISASSOCIATE).
    entered: Event,
    /// The routine holds until this is set (first test).
    release: Event,
    /// Set just before the routine returns.
    returned: AtomicBool,
    /// The status of the routine's own DISASSOCIATE (second test).
    own_disassociate: AtomicI32,
}

impl Gate {
    fn new(kernel: &KernelHandle, connection: Handle) -> Arc<Gate> {
        Arc::new(Gate {
            kernel: kernel.clone(),
            connection,
            entered: Event::new(kernel, EventType::Notification, false),
            release: Event::new(kernel, EventType::Notification, false),
            returned: AtomicBool::new(false),
            own_disassociate: AtomicI32::new(NtStatus::PENDING.raw()),
        })
    }
}

fn disassociate(kernel: &KernelHandle, connection: Handle) -> NtStatus {
    let parameters = wire::kernel_request(
        0,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    start(
        kernel,
        connection,
        TDI_DISASSOCIATE_ADDRESS,
        parameters,
        None,
    )
    .wait()
    .status
}

/// Holds the completing thread until the test releases it.
unsafe extern "system" fn hold(
    _: *mut DEVICE_OBJECT,
    _: *mut IRP,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: the test keeps the gate alive until the request has completed.
    let gate = unsafe { &*(context as *const Gate) };
    gate.entered.set();
    gate.release.wait(None);
    gate.returned.store(true, Ordering::SeqCst);
    NtStatus::SUCCESS.raw()
}

/// Disassociates the receive's own connection, synchronously, from inside its completion.
unsafe extern "system" fn disassociate_own(
    _: *mut DEVICE_OBJECT,
    _: *mut IRP,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: as in `hold`.
    let gate = unsafe { &*(context as *const Gate) };
    let status = disassociate(&gate.kernel, gate.connection);
    gate.own_disassociate.store(status.raw(), Ordering::SeqCst);
    gate.returned.store(true, Ordering::SeqCst);
    gate.entered.set();
    NtStatus::SUCCESS.raw()
}

/// Posts a receive on `pair.server` with `routine`, and sends it one byte so it completes.
fn receive_with(
    t: &Loaded,
    pair: &Pair,
    gate: &Arc<Gate>,
    routine: PIO_COMPLETION_ROUTINE,
) -> (PendingRequest, Vec<u8>) {
    let mut buffer = vec![0u8; 64];
    let extras = Extras {
        completion: Some((routine, Arc::as_ptr(gate) as usize)),
        ..Extras::default()
    };
    let receiving = start_with(
        &t.kernel,
        pair.server,
        TDI_RECEIVE,
        wire::receive(64, TDI_RECEIVE_NORMAL),
        Some(&mut buffer),
        extras,
    );
    assert_eq!(send(t, pair.client, b"x").status, NtStatus::SUCCESS);
    (receiving, buffer)
}

#[test]
fn a_disassociate_waits_for_a_completion_routine_still_running_on_its_file() {
    let t = loaded();
    let pair = connected_pair(&t, local(7301));
    let gate = Gate::new(&t.kernel, pair.server);
    let (receiving, _buffer) = receive_with(&t, &pair, &gate, Some(hold));
    assert!(
        gate.entered.wait(Some(MUST_HAPPEN)),
        "the receive completed"
    );

    // AFD's close, on another thread, while the receive's routine is still running.
    let done = Arc::new(Event::new(&t.kernel, EventType::Notification, false));
    let closer = {
        let (kernel, gate, done, server) =
            (t.kernel.clone(), gate.clone(), done.clone(), pair.server);
        t.kernel.spawn("closesocket", move || {
            let status = disassociate(&kernel, server);
            let routine_had_returned = gate.returned.load(Ordering::SeqCst);
            done.set();
            (status, routine_had_returned)
        })
    };
    assert!(
        !done.wait(Some(MUST_NOT_HAPPEN)),
        "DISASSOCIATE completed while the file's receive completion routine was still running"
    );
    gate.release.set();
    let (status, routine_had_returned) = closer.join().expect("closer thread");
    assert_eq!(status, NtStatus::SUCCESS);
    assert!(routine_had_returned);
    assert_eq!(receiving.wait().status, NtStatus::SUCCESS);
    assert_eq!(receiving.wait().information, 1);
    close_pair(&t, pair);
    t.unload();
}

#[test]
fn a_completion_routine_that_disassociates_its_own_file_does_not_wait_for_itself() {
    let t = loaded();
    let pair = connected_pair(&t, local(7302));
    let gate = Gate::new(&t.kernel, pair.server);
    let (receiving, _buffer) = receive_with(&t, &pair, &gate, Some(disassociate_own));
    assert!(
        gate.entered.wait(Some(MUST_HAPPEN)),
        "the routine's own DISASSOCIATE completed (it would deadlock waiting for itself)"
    );
    assert_eq!(
        NtStatus(gate.own_disassociate.load(Ordering::SeqCst)),
        NtStatus::SUCCESS
    );
    assert_eq!(receiving.wait().status, NtStatus::SUCCESS);
    close_pair(&t, pair);
    t.unload();
}
