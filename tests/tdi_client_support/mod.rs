//! A kernel-mode TDI client in the host model: the counterpart of the AFD model for the
//! event-driven half of TDI (issue 18). It is written the way a Windows kernel client is:
//! address and connection files opened with `ZwCreateFile` equivalents, handlers registered
//! with TDI_SET_EVENT_HANDLER as `extern "system"` functions with a context pointer, IRPs built
//! with the `TdiBuild*` shape (`IoAllocateIrp` + the next stack location + an MDL + a
//! completion routine) and sent with `IoCallDriver` — from inside the handlers too, at
//! DISPATCH_LEVEL, as a kernel client does. Completion routines return `STATUS_SUCCESS`, so the
//! I/O manager frees the IRPs and their MDLs.
#![allow(dead_code, reason = "each suite uses a different subset")]

use std::collections::VecDeque;
use std::ffi::c_void;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use tcpip::host::afd::wire;
use tcpip::host::{CompletionFlags, Handle, KernelHandle, MdlKind, ObjectRef, StackLocation};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;

/// The arguments of TDI_SET_EVENT_HANDLER (`TdiBuildSetEventHandler`).
pub fn set_event(event: i32, handler: usize, context: usize) -> IoStackParameters {
    IoStackParameters {
        Others: OtherParameters {
            Argument1: event as u32 as usize as *mut c_void,
            Argument2: handler as *mut c_void,
            Argument3: context as *mut c_void,
            Argument4: std::ptr::null_mut(),
        },
    }
}

/// An open file of the transport and the client's reference to its file object.
pub struct File {
    pub handle: Handle,
    pub file: ObjectRef,
}

impl File {
    pub fn open(kernel: &KernelHandle, device: &str, ea: &[u8]) -> File {
        let handle = kernel.create_file(device, Some(ea), 0).expect("create");
        let file = kernel.reference_file(handle).expect("reference");
        File { handle, file }
    }

    /// Builds a TDI IRP for this file (`TdiBuild*`) with an optional buffer (its MDL) and a
    /// completion routine, and sends it (`IoCallDriver`). IRQL ≤ DISPATCH_LEVEL.
    pub fn call(
        &self,
        kernel: &KernelHandle,
        minor: u8,
        parameters: IoStackParameters,
        buffer: Option<(*mut u8, usize)>,
        completion: PIO_COMPLETION_ROUTINE,
        context: *mut c_void,
    ) -> NtStatus {
        let irp = self.build(kernel, minor, parameters, buffer, completion, context);
        kernel.call_driver(self.file.device(), irp)
    }

    /// As [`File::call`] without sending: the IRP a handler hands back to the transport.
    pub fn build(
        &self,
        kernel: &KernelHandle,
        minor: u8,
        parameters: IoStackParameters,
        buffer: Option<(*mut u8, usize)>,
        completion: PIO_COMPLETION_ROUTINE,
        context: *mut c_void,
    ) -> *mut IRP {
        let mut location =
            StackLocation::new(IRP_MJ_INTERNAL_DEVICE_CONTROL, minor, std::ptr::null_mut());
        location.parameters = parameters;
        let irp = kernel.allocate_file_irp(&self.file, location);
        if let Some((va, len)) = buffer {
            let mdl = kernel.build_mdl(va, len, MdlKind::Locked);
            // SAFETY: a fresh IRP owned by this client until it is sent.
            unsafe { kernel.with_irp(irp, |i| i.MdlAddress = mdl) };
        }
        kernel.set_completion_routine(irp, completion, context, CompletionFlags::ALWAYS);
        irp
    }

    pub fn close(self, kernel: &KernelHandle) {
        drop(self.file);
        assert_eq!(kernel.close(self.handle), NtStatus::SUCCESS);
    }
}

/// Sends a request and waits for it (PASSIVE_LEVEL): what a client does at setup.
pub fn request(
    kernel: &KernelHandle,
    file: &File,
    minor: u8,
    parameters: IoStackParameters,
) -> NtStatus {
    let mut location =
        StackLocation::new(IRP_MJ_INTERNAL_DEVICE_CONTROL, minor, std::ptr::null_mut());
    location.parameters = parameters;
    let irp = kernel.allocate_file_irp(&file.file, location);
    kernel.call_driver_sync(file.file.device(), irp).status
}

/// What one connection of a [`Peer`] saw and has to send.
#[derive(Default)]
pub struct Conn {
    /// Bytes received, through events and returned IRPs, in order.
    pub received: Vec<u8>,
    /// Bytes waiting to be sent (one TDI_SEND in flight at a time).
    backlog: VecDeque<u8>,
    sending: bool,
    /// `TDI_DISCONNECT_*` flags indicated, in order.
    pub disconnects: Vec<u32>,
    /// Release the connection once the backlog is sent (the peer released it).
    release: bool,
    released: bool,
    pub accepted: Option<NtStatus>,
}

/// How a receive handler takes data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// Everything indicated.
    All,
    /// At most this many bytes per indication.
    Part(usize),
    /// Nothing; a receive IRP of `BytesAvailable` bytes is returned for it.
    Irp,
    /// Nothing, no IRP (`STATUS_DATA_NOT_ACCEPTED`).
    None,
}

/// A kernel TDI client with one address file and connection endpoints, driven by events: an
/// echo server (`echo`) or a plain receiver.
pub struct Peer {
    pub kernel: KernelHandle,
    pub address: File,
    pub endpoints: Vec<File>,
    free: Mutex<Vec<usize>>,
    pub conns: Mutex<Vec<Conn>>,
    changed: Condvar,
    pub take: Mutex<Take>,
    /// Echo what is received.
    pub echo: bool,
    pub stats: Stats,
}

#[derive(Default)]
pub struct Stats {
    pub connects: AtomicUsize,
    pub refused: AtomicUsize,
    pub receives: AtomicUsize,
    pub irps_returned: AtomicUsize,
    pub datagrams: AtomicUsize,
    pub send_failures: AtomicUsize,
    /// Receive indications whose flags lacked TDI_RECEIVE_NORMAL or showed more than available.
    pub bad_indications: AtomicUsize,
}

impl Peer {
    /// Opens an address file on `device` at `local` and `endpoints` connection endpoints
    /// associated with it. PASSIVE_LEVEL.
    pub fn open(
        kernel: &KernelHandle,
        device: &str,
        local: SocketAddrV4,
        endpoints: usize,
        echo: bool,
    ) -> Box<Peer> {
        let address = File::open(kernel, device, &wire::address_file_ea(local));
        let endpoints: Vec<File> = (0..endpoints)
            .map(|slot| {
                // The CONNECTION_CONTEXT the transport passes to the handlers: slot + 1.
                let mut ea = wire::connection_file_ea();
                ea[26..26 + size_of::<usize>()].copy_from_slice(&(slot + 1).to_ne_bytes());
                let endpoint = File::open(kernel, device, &ea);
                let associate = wire::associate(address.handle.as_raw());
                assert_eq!(
                    request(kernel, &endpoint, TDI_ASSOCIATE_ADDRESS, associate),
                    NtStatus::SUCCESS
                );
                endpoint
            })
            .collect();
        let n = endpoints.len();
        Box::new(Peer {
            kernel: kernel.clone(),
            address,
            endpoints,
            free: Mutex::new((0..n).rev().collect()),
            conns: Mutex::new((0..n).map(|_| Conn::default()).collect()),
            changed: Condvar::new(),
            take: Mutex::new(Take::All),
            echo,
            stats: Stats::default(),
        })
    }

    fn context(&self) -> usize {
        self as *const Peer as usize
    }

    /// Registers (or with `false`, clears) a handler of this client on its address file.
    pub fn register(&self, event: i32, on: bool) -> NtStatus {
        let handler: usize = match event {
            TDI_EVENT_CONNECT => on_connect as *const () as usize,
            TDI_EVENT_RECEIVE => on_receive as *const () as usize,
            TDI_EVENT_DISCONNECT => on_disconnect as *const () as usize,
            TDI_EVENT_RECEIVE_DATAGRAM => on_datagram as *const () as usize,
            _ => 0,
        };
        let (handler, context) = if on {
            (handler, self.context())
        } else {
            (0, 0)
        };
        request(
            &self.kernel,
            &self.address,
            TDI_SET_EVENT_HANDLER,
            set_event(event, handler, context),
        )
    }

    /// Takes an endpoint for an outgoing connection (`TDI_CONNECT` by the caller).
    pub fn take_endpoint(&self) -> usize {
        self.free.lock().unwrap().pop().expect("a free endpoint")
    }

    /// Connects endpoint `slot` to `remote` and waits. PASSIVE_LEVEL.
    pub fn connect(&self, slot: usize, remote: SocketAddrV4) -> NtStatus {
        let mut request_info = wire::ConnectionInfo::new(remote);
        let mut return_info = wire::ConnectionInfo::new(remote);
        let parameters = wire::kernel_request(
            0,
            request_info.as_ptr(),
            return_info.as_ptr(),
            std::ptr::null_mut(),
        );
        request(&self.kernel, &self.endpoints[slot], TDI_CONNECT, parameters)
    }

    /// Releases connection `slot` (TDI_DISCONNECT_RELEASE) once its backlog is sent.
    pub fn release(&self, slot: usize) {
        self.conns.lock().unwrap()[slot].release = true;
        self.pump(slot);
    }

    /// Queues `data` on connection `slot` and sends it (one TDI_SEND in flight). Any IRQL ≤
    /// DISPATCH_LEVEL: handlers call it.
    pub fn send(&self, slot: usize, data: &[u8]) {
        self.conns.lock().unwrap()[slot].backlog.extend(data);
        self.pump(slot);
    }

    /// Posts the next send or, once the backlog is empty after the peer released, the release.
    /// No lock is held while calling the driver (it may complete the IRP at once, and the
    /// completion routine comes back here).
    fn pump(&self, slot: usize) {
        enum Next {
            Send(Vec<u8>),
            Release,
        }
        let next = {
            let mut conns = self.conns.lock().unwrap();
            let conn = &mut conns[slot];
            if conn.sending {
                return;
            }
            if !conn.backlog.is_empty() {
                conn.sending = true;
                Next::Send(conn.backlog.drain(..).collect())
            } else if conn.release && !conn.released {
                conn.released = true;
                Next::Release
            } else {
                return;
            }
        };
        let endpoint = &self.endpoints[slot];
        match next {
            Next::Send(data) => {
                let mut context = Box::new(SendContext {
                    peer: self.context(),
                    slot,
                    data,
                });
                let buffer = (context.data.as_mut_ptr(), context.data.len());
                let length = context.data.len() as u32;
                endpoint.call(
                    &self.kernel,
                    TDI_SEND,
                    wire::send(length, 0),
                    Some(buffer),
                    Some(send_done),
                    Box::into_raw(context).cast(),
                );
            }
            Next::Release => {
                endpoint.call(
                    &self.kernel,
                    TDI_DISCONNECT,
                    wire::kernel_request(
                        TDI_DISCONNECT_RELEASE,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    ),
                    None,
                    Some(ignore_done),
                    std::ptr::null_mut(),
                );
            }
        }
    }

    fn notify(&self) {
        self.changed.notify_all();
    }

    /// Waits until `done` holds for the connections (or panics after `seconds`).
    pub fn wait_until(&self, seconds: u64, mut done: impl FnMut(&[Conn]) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        let mut conns = self.conns.lock().unwrap();
        while !done(&conns) {
            let now = std::time::Instant::now();
            assert!(
                now < deadline,
                "timed out waiting for the TDI client's events"
            );
            conns = self.changed.wait_timeout(conns, deadline - now).unwrap().0;
        }
    }

    /// Posts one TDI_RECEIVE of up to `room` bytes on connection `slot` and waits for it
    /// (PASSIVE_LEVEL).
    pub fn receive_sync(&self, slot: usize, room: usize) -> (NtStatus, Vec<u8>) {
        let mut buffer = vec![0u8; room];
        let mut location = StackLocation::new(
            IRP_MJ_INTERNAL_DEVICE_CONTROL,
            TDI_RECEIVE,
            std::ptr::null_mut(),
        );
        location.parameters = wire::receive(room as u32, TDI_RECEIVE_NORMAL);
        let endpoint = &self.endpoints[slot];
        let irp = self.kernel.allocate_file_irp(&endpoint.file, location);
        let mdl = self
            .kernel
            .build_mdl(buffer.as_mut_ptr(), buffer.len(), MdlKind::Locked);
        // SAFETY: a fresh IRP owned here until it is sent.
        unsafe { self.kernel.with_irp(irp, |i| i.MdlAddress = mdl) };
        let result = self.kernel.call_driver_sync(endpoint.file.device(), irp);
        buffer.truncate(result.information);
        (result.status, buffer)
    }

    /// Sends one datagram of `data` from this (datagram) address file to `remote` and waits
    /// (PASSIVE_LEVEL).
    pub fn send_datagram_sync(&self, remote: SocketAddrV4, data: &[u8]) -> NtStatus {
        let mut buffer = data.to_vec();
        let mut info = wire::ConnectionInfo::new(remote);
        let mut location = StackLocation::new(
            IRP_MJ_INTERNAL_DEVICE_CONTROL,
            TDI_SEND_DATAGRAM,
            std::ptr::null_mut(),
        );
        location.parameters = wire::send_datagram(buffer.len() as u32, info.as_ptr());
        let irp = self.kernel.allocate_file_irp(&self.address.file, location);
        let mdl = self
            .kernel
            .build_mdl(buffer.as_mut_ptr(), buffer.len(), MdlKind::Locked);
        // SAFETY: a fresh IRP owned here until it is sent.
        unsafe { self.kernel.with_irp(irp, |i| i.MdlAddress = mdl) };
        self.kernel
            .call_driver_sync(self.address.file.device(), irp)
            .status
    }

    /// Received bytes of connection `slot`.
    pub fn received(&self, slot: usize) -> Vec<u8> {
        self.conns.lock().unwrap()[slot].received.clone()
    }

    /// Closes every endpoint, then the address file (PASSIVE_LEVEL).
    pub fn close(self: Box<Peer>) {
        let Peer {
            kernel,
            address,
            endpoints,
            ..
        } = *self;
        address.close(&kernel);
        for endpoint in endpoints {
            endpoint.close(&kernel);
        }
    }

    /// Records `data` received on `slot` and echoes it if this is an echo server.
    fn deliver(&self, slot: usize, data: &[u8]) {
        self.conns.lock().unwrap()[slot]
            .received
            .extend_from_slice(data);
        if self.echo {
            self.send(slot, data);
        }
        self.notify();
    }
}

struct SendContext {
    peer: usize,
    slot: usize,
    data: Vec<u8>,
}

struct ReceiveContext {
    peer: usize,
    slot: usize,
    data: Vec<u8>,
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

unsafe extern "system" fn send_done(
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
        for (i, byte) in retry.iter().enumerate() {
            conn.backlog.insert(i, *byte);
        }
    }
    peer.pump(context.slot);
    peer.notify();
    NtStatus::SUCCESS.raw()
}

unsafe extern "system" fn ignore_done(
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
    if status == NtStatus::SUCCESS {
        peer.deliver(
            context.slot,
            &context.data[..received.min(context.data.len())],
        );
    }
    NtStatus::SUCCESS.raw()
}

/// `ClientEventConnect`: accepts onto a free endpoint with a TDI_ACCEPT IRP, or refuses.
unsafe extern "system" fn on_connect(
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
unsafe extern "system" fn on_receive(
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
    peer.stats.receives.fetch_add(1, Ordering::Relaxed);
    if flags & TDI_RECEIVE_NORMAL == 0 || indicated > available || indicated == 0 {
        peer.stats.bad_indications.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: the transport's lookahead buffer of `indicated` bytes, valid for the call.
    let data = unsafe { std::slice::from_raw_parts(tsdu.cast::<u8>(), indicated as usize) };
    let take = *peer.take.lock().unwrap();
    let count = match take {
        Take::All => data.len(),
        Take::Part(n) => n.min(data.len()),
        Take::Irp | Take::None => 0,
    };
    peer.deliver(slot, &data[..count]);
    // SAFETY: out-parameter.
    unsafe { *taken = count as u32 };
    match take {
        Take::Irp => {
            peer.stats.irps_returned.fetch_add(1, Ordering::Relaxed);
            let mut context = Box::new(ReceiveContext {
                peer: peer.context(),
                slot,
                data: vec![0; available as usize],
            });
            let buffer = (context.data.as_mut_ptr(), context.data.len());
            let built = peer.endpoints[slot].build(
                &peer.kernel,
                TDI_RECEIVE,
                wire::receive(available, TDI_RECEIVE_NORMAL),
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
unsafe extern "system" fn on_disconnect(
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
unsafe extern "system" fn on_datagram(
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
            data: vec![0; available as usize],
        });
        let buffer = (context.data.as_mut_ptr(), context.data.len());
        let mut info = wire::ConnectionInfo::null();
        let info_ptr = info.as_ptr();
        // The return information must outlive the IRP: leaked with it (a test helper).
        std::mem::forget(info);
        let built = peer.address.build(
            &peer.kernel,
            TDI_RECEIVE_DATAGRAM,
            wire::receive_datagram(available, info_ptr, info_ptr, 0),
            Some(buffer),
            Some(receive_done),
            Box::into_raw(context).cast(),
        );
        // SAFETY: out-parameters.
        unsafe {
            *taken = 0;
            *irp = built;
        }
        return NtStatus::MORE_PROCESSING_REQUIRED.raw();
    }
    peer.deliver(0, data);
    // SAFETY: out-parameter.
    unsafe { *taken = indicated };
    NtStatus::SUCCESS.raw()
}
