//! The client's handlers and completion routines: `extern "system"` functions with the
//! `Peer` as their context, as a Windows kernel client writes them.

use super::{Peer, Take};
use std::ffi::c_void;
use std::sync::atomic::Ordering;
use tcpip::host::afd::wire;
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;

pub(super) struct SendContext {
    pub(super) peer: usize,
    pub(super) slot: usize,
    pub(super) data: Vec<u8>,
}

struct ReceiveContext {
    peer: usize,
    slot: usize,
    ticket: u64,
    data: Vec<u8>,
    /// `ReturnDatagramInformation` of a TDI_RECEIVE_DATAGRAM.
    info: Option<Box<wire::ConnectionInfo>>,
}

/// Counts a handler's return, whichever way it returns.
struct Left<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Left<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The `Peer` behind a handler's context.
///
/// # Safety
/// `context` is the address of a live `Peer` (the tests keep it boxed until it is closed).
unsafe fn peer<'a>(context: *mut c_void) -> &'a Peer {
    // SAFETY: caller contract.
    unsafe { &*(context as *const Peer) }
}

/// The slot of a connection context (`slot + 1`).
fn slot_of(connection_context: *mut c_void) -> usize {
    (connection_context as usize).wrapping_sub(1)
}

pub(super) unsafe extern "system" fn send_done(
    _device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: the context boxed by `pump`, completed once; the IRP is live in its completion.
    let (context, status, sent) = unsafe {
        (
            Box::from_raw(context.cast::<SendContext>()),
            NtStatus((*irp).IoStatus.Status.Status),
            (*irp).IoStatus.Information,
        )
    };
    // SAFETY: the peer outlives its IRPs.
    let peer = unsafe { &*(context.peer as *const Peer) };
    let retry = if status == NtStatus::SUCCESS {
        context.data.get(sent..).unwrap_or_default()
    } else if status == NtStatus::INSUFFICIENT_RESOURCES {
        peer.stats.send_failures.fetch_add(1, Ordering::Relaxed);
        &context.data[..]
    } else {
        peer.stats.send_failures.fetch_add(1, Ordering::Relaxed);
        &[]
    };
    {
        let mut conns = peer.conns.lock().unwrap();
        let conn = &mut conns[context.slot];
        conn.sending = false;
        if !retry.is_empty() {
            conn.backlog.push_front(retry.to_vec());
        }
    }
    peer.pump(context.slot);
    peer.notify();
    NtStatus::SUCCESS.raw()
}

pub(super) unsafe extern "system" fn ignore_done(
    _device: *mut DEVICE_OBJECT,
    _irp: *mut IRP,
    _context: *mut c_void,
) -> NTSTATUS {
    NtStatus::SUCCESS.raw()
}

unsafe extern "system" fn accept_done(
    _device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: the context is the `Peer`'s address with the slot; the IRP is live.
    let (peer, status) = unsafe {
        let context = Box::from_raw(context.cast::<(usize, usize)>());
        (
            (&*(context.0 as *const Peer), context.1),
            NtStatus((*irp).IoStatus.Status.Status),
        )
    };
    let (peer, slot) = peer;
    peer.conns.lock().unwrap()[slot].accepted = Some(status);
    peer.notify();
    NtStatus::SUCCESS.raw()
}

unsafe extern "system" fn receive_done(
    _device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: the context boxed by `on_receive`, completed once; the IRP is live.
    let (context, status, received) = unsafe {
        (
            Box::from_raw(context.cast::<ReceiveContext>()),
            NtStatus((*irp).IoStatus.Status.Status),
            (*irp).IoStatus.Information,
        )
    };
    // SAFETY: the peer outlives its IRPs.
    let peer = unsafe { &*(context.peer as *const Peer) };
    let received = if status == NtStatus::SUCCESS {
        received
    } else {
        0
    };
    {
        peer.deliver(
            context.slot,
            context.ticket,
            &context.data[..received.min(context.data.len())],
        );
    }
    NtStatus::SUCCESS.raw()
}

/// `ClientEventConnect`: accepts onto a free endpoint with a TDI_ACCEPT IRP, or refuses.
pub(super) unsafe extern "system" fn on_connect(
    context: *mut c_void,
    _remote_length: i32,
    _remote: *mut c_void,
    _user_data_length: i32,
    _user_data: *mut c_void,
    _options_length: i32,
    _options: *mut c_void,
    connection_context: *mut *mut c_void,
    accept_irp: *mut *mut IRP,
) -> NTSTATUS {
    // SAFETY: registered with a live `Peer` as its context.
    let peer = unsafe { peer(context) };
    let Some(slot) = peer.free.lock().unwrap().pop() else {
        peer.stats.refused.fetch_add(1, Ordering::Relaxed);
        return NtStatus::CONNECTION_REFUSED.raw();
    };
    peer.stats.connects.fetch_add(1, Ordering::Relaxed);
    let done = Box::into_raw(Box::new((peer.context(), slot)));
    let irp = peer.endpoints[slot].build(
        &peer.kernel,
        TDI_ACCEPT,
        wire::kernel_request(
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        ),
        None,
        Some(accept_done),
        done.cast(),
    );
    // SAFETY: out-parameters of the handler.
    unsafe {
        *connection_context = (slot + 1) as *mut c_void;
        *accept_irp = irp;
    }
    NtStatus::MORE_PROCESSING_REQUIRED.raw()
}

/// `ClientEventReceive`: takes data as the peer's [`Take`] says.
pub(super) unsafe extern "system" fn on_receive(
    context: *mut c_void,
    connection_context: *mut c_void,
    flags: u32,
    indicated: u32,
    available: u32,
    taken: *mut u32,
    tsdu: *mut c_void,
    irp: *mut *mut IRP,
) -> NTSTATUS {
    // SAFETY: registered with a live `Peer` as its context.
    let peer = unsafe { peer(context) };
    let slot = slot_of(connection_context);
    peer.stats.entered.fetch_add(1, Ordering::SeqCst);
    let delay = peer.handler_delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        std::thread::sleep(std::time::Duration::from_millis(delay as u64));
    }
    let _left = Left(&peer.stats.left);
    peer.stats.receives.fetch_add(1, Ordering::Relaxed);
    if flags & TDI_RECEIVE_NORMAL == 0
        || indicated > available
        || indicated == 0
        || tcpip::host::current_irql() != tcpip::host::DISPATCH_LEVEL
    {
        peer.stats.bad_indications.fetch_add(1, Ordering::Relaxed);
    }
    if peer.clear_in_handler.load(Ordering::Relaxed) {
        // Cleared from inside the handler, at DISPATCH_LEVEL: asynchronously, as a kernel
        // client must (it cannot wait here).
        peer.with_address(|address| {
            address.call(
                &peer.kernel,
                TDI_SET_EVENT_HANDLER,
                super::set_event(TDI_EVENT_RECEIVE, 0, 0),
                None,
                Some(ignore_done),
                std::ptr::null_mut(),
            )
        });
    }
    // SAFETY: the transport's lookahead buffer of `indicated` bytes, valid for the call.
    let data = unsafe { std::slice::from_raw_parts(tsdu.cast::<u8>(), indicated as usize) };
    let take = *peer.take.lock().unwrap();
    let count = match take {
        Take::All => data.len(),
        Take::Part(n) => n.min(data.len()),
        // Some bytes taken, and an IRP for the rest.
        Take::Irp => 10.min(data.len()),
        Take::None => 0,
    };
    let ticket = peer.ticket(slot);
    peer.deliver(slot, ticket, &data[..count]);
    // SAFETY: out-parameter.
    unsafe { *taken = count as u32 };
    match take {
        Take::Irp => {
            peer.stats.irps_returned.fetch_add(1, Ordering::Relaxed);
            let mut context = Box::new(ReceiveContext {
                peer: peer.context(),
                slot,
                ticket: peer.ticket(slot),
                data: vec![0; available as usize - count],
                info: None,
            });
            let buffer = (context.data.as_mut_ptr(), context.data.len());
            let built = peer.endpoints[slot].build(
                &peer.kernel,
                TDI_RECEIVE,
                wire::receive(available - count as u32, TDI_RECEIVE_NORMAL),
                Some(buffer),
                Some(receive_done),
                Box::into_raw(context).cast(),
            );
            // SAFETY: out-parameter.
            unsafe { *irp = built };
            NtStatus::MORE_PROCESSING_REQUIRED.raw()
        }
        Take::None => NtStatus::DATA_NOT_ACCEPTED.raw(),
        Take::All | Take::Part(_) => NtStatus::SUCCESS.raw(),
    }
}

/// `ClientEventDisconnect`: records the flags; a release is answered with a release once the
/// echo backlog is sent.
pub(super) unsafe extern "system" fn on_disconnect(
    context: *mut c_void,
    connection_context: *mut c_void,
    _data_length: i32,
    _data: *mut c_void,
    _information_length: i32,
    _information: *mut c_void,
    flags: u32,
) -> NTSTATUS {
    // SAFETY: registered with a live `Peer` as its context.
    let peer = unsafe { peer(context) };
    let slot = slot_of(connection_context);
    {
        let mut conns = peer.conns.lock().unwrap();
        let conn = &mut conns[slot];
        conn.disconnects.push(flags);
        conn.release = peer.echo && flags == TDI_DISCONNECT_RELEASE;
    }
    if peer.echo {
        peer.pump(slot);
    }
    peer.notify();
    NtStatus::SUCCESS.raw()
}

/// `ClientEventReceiveDatagram`: records the datagram (slot 0) and, as the peer's [`Take`]
/// says, takes it or returns a TDI_RECEIVE_DATAGRAM IRP for it.
pub(super) unsafe extern "system" fn on_datagram(
    context: *mut c_void,
    _source_length: i32,
    _source: *mut c_void,
    _options_length: i32,
    _options: *mut c_void,
    flags: u32,
    indicated: u32,
    available: u32,
    taken: *mut u32,
    tsdu: *mut c_void,
    irp: *mut *mut IRP,
) -> NTSTATUS {
    // SAFETY: registered with a live `Peer` as its context.
    let peer = unsafe { peer(context) };
    peer.stats.datagrams.fetch_add(1, Ordering::Relaxed);
    if flags & TDI_RECEIVE_ENTIRE_MESSAGE == 0 || indicated != available {
        peer.stats.bad_indications.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: the transport's buffer of `indicated` bytes, valid for the call.
    let data = unsafe { std::slice::from_raw_parts(tsdu.cast::<u8>(), indicated as usize) };
    if *peer.take.lock().unwrap() == Take::Irp {
        let mut context = Box::new(ReceiveContext {
            peer: peer.context(),
            slot: 0,
            ticket: peer.ticket(0),
            data: vec![0; available as usize],
            info: None,
        });
        let buffer = (context.data.as_mut_ptr(), context.data.len());
        // The return information lives with the IRP's context until its completion.
        let info_ptr = context.info.insert(wire::ConnectionInfo::null()).as_ptr();
        let built = peer.with_address(|address| {
            address.build(
                &peer.kernel,
                TDI_RECEIVE_DATAGRAM,
                wire::receive_datagram(available, info_ptr, info_ptr, 0),
                Some(buffer),
                Some(receive_done),
                Box::into_raw(context).cast(),
            )
        });
        // SAFETY: out-parameters.
        unsafe {
            *taken = 0;
            *irp = built;
        }
        return NtStatus::MORE_PROCESSING_REQUIRED.raw();
    }
    let ticket = peer.ticket(0);
    peer.deliver(0, ticket, data);
    // SAFETY: out-parameter.
    unsafe { *taken = indicated };
    NtStatus::SUCCESS.raw()
}

/// `ClientEventErrorEx`: records the status and the destination (`TA_IP_ADDRESS`).
pub(super) unsafe extern "system" fn on_error_ex(
    context: *mut c_void,
    status: NTSTATUS,
    buffer: *mut c_void,
) -> NTSTATUS {
    // SAFETY: registered with a live `Peer` as its context.
    let peer = unsafe { peer(context) };
    // SAFETY: the transport passes a TA_IP_ADDRESS (22 bytes) valid for the call.
    let ta = unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), 22) };
    let port = u16::from_be_bytes([ta[8], ta[9]]);
    let ip = std::net::Ipv4Addr::new(ta[10], ta[11], ta[12], ta[13]);
    peer.errors
        .lock()
        .unwrap()
        .push((NtStatus(status), std::net::SocketAddrV4::new(ip, port)));
    peer.notify();
    NtStatus::SUCCESS.raw()
}
