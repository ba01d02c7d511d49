//! A kernel-mode TDI client in the host model: the counterpart of the AFD model for the
//! event-driven half of TDI (issue 18). It is written the way a Windows kernel client is:
//! address and connection files opened with `ZwCreateFile` equivalents, handlers registered
//! with TDI_SET_EVENT_HANDLER as `extern "system"` functions with a context pointer, IRPs built
//! with the `TdiBuild*` shape (`IoAllocateIrp` + the next stack location + an MDL + a
//! completion routine) and sent with `IoCallDriver` — from inside the handlers too, at
//! DISPATCH_LEVEL, as a kernel client does. Completion routines return `STATUS_SUCCESS`, so the
//! I/O manager frees the IRPs and their MDLs.
#![allow(dead_code, reason = "each suite uses a different subset")]

use std::collections::{BTreeMap, VecDeque};
use std::ffi::c_void;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex};
use tcpip::host::afd::wire;
use tcpip::host::{CompletionFlags, Handle, KernelHandle, MdlKind, ObjectRef, StackLocation};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;

mod handlers;
use handlers::{
    SendContext, ignore_done, on_connect, on_datagram, on_disconnect, on_error_ex, on_receive,
    send_done,
};

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

/// The most one TDI_SEND of a [`Peer`] carries.
const SEND_WINDOW: usize = 64 * 1024;

/// What one connection of a [`Peer`] saw and has to send.
#[derive(Default)]
pub struct Conn {
    /// Bytes received, through events and returned IRPs, in order.
    pub received: Vec<u8>,
    /// Tickets handed out in handler order (each indication's bytes, each returned IRP), the
    /// next one to append, and data that came ahead of its turn (IRPs may complete out of
    /// order on the I/O manager's threads; a real client sequences them the same way).
    issued: u64,
    next: u64,
    parked: BTreeMap<u64, Vec<u8>>,
    /// Bytes waiting to be sent (one TDI_SEND in flight at a time).
    backlog: VecDeque<Vec<u8>>,
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
    /// The address file; taken out at close, while the `Peer` (the handlers' context) lives.
    address: Mutex<Option<File>>,
    pub endpoints: Vec<File>,
    free: Mutex<Vec<usize>>,
    pub conns: Mutex<Vec<Conn>>,
    changed: Condvar,
    pub take: Mutex<Take>,
    /// Echo what is received.
    pub echo: bool,
    /// `ClientEventErrorEx` calls: the status and the destination of the datagram.
    pub errors: Mutex<Vec<(NtStatus, SocketAddrV4)>>,
    /// The receive handler clears itself (TDI_SET_EVENT_HANDLER from inside the handler).
    pub clear_in_handler: AtomicBool,
    pub stats: Arc<Stats>,
    /// How long the receive handler takes (to catch a close that does not wait for it).
    pub handler_delay_ms: AtomicUsize,
}

#[derive(Default)]
pub struct Stats {
    pub connects: AtomicUsize,
    pub refused: AtomicUsize,
    pub receives: AtomicUsize,
    pub irps_returned: AtomicUsize,
    pub datagrams: AtomicUsize,
    pub send_failures: AtomicUsize,
    /// Receive handler calls entered and returned.
    pub entered: AtomicUsize,
    pub left: AtomicUsize,
    /// Receive indications whose flags lacked TDI_RECEIVE_NORMAL, showed more than available,
    /// or came at another IRQL than DISPATCH_LEVEL.
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
            address: Mutex::new(Some(address)),
            endpoints,
            free: Mutex::new((0..n).rev().collect()),
            conns: Mutex::new((0..n).map(|_| Conn::default()).collect()),
            changed: Condvar::new(),
            take: Mutex::new(Take::All),
            echo,
            clear_in_handler: AtomicBool::new(false),
            errors: Mutex::new(Vec::new()),
            stats: Arc::new(Stats::default()),
            handler_delay_ms: AtomicUsize::new(0),
        })
    }

    fn context(&self) -> usize {
        self as *const Peer as usize
    }

    /// An event-driven echo server on 127.0.0.1:`port` with `endpoints` endpoints for
    /// accepted connections: connect, receive and disconnect handlers registered.
    pub fn echo_server(kernel: &KernelHandle, port: u16, endpoints: usize) -> Box<Peer> {
        let local = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
        let server = Peer::open(kernel, "\\Device\\Tcp", local, endpoints, true);
        for event in [TDI_EVENT_CONNECT, TDI_EVENT_RECEIVE, TDI_EVENT_DISCONNECT] {
            assert_eq!(server.register(event, true), NtStatus::SUCCESS);
        }
        server
    }

    /// Registers (or with `false`, clears) a handler of this client on its address file.
    pub fn register(&self, event: i32, on: bool) -> NtStatus {
        let handler: usize = match event {
            TDI_EVENT_CONNECT => on_connect as *const () as usize,
            TDI_EVENT_RECEIVE => on_receive as *const () as usize,
            TDI_EVENT_DISCONNECT => on_disconnect as *const () as usize,
            TDI_EVENT_RECEIVE_DATAGRAM => on_datagram as *const () as usize,
            TDI_EVENT_ERROR_EX => on_error_ex as *const () as usize,
            _ => 0,
        };
        let (handler, context) = if on {
            (handler, self.context())
        } else {
            (0, 0)
        };
        self.with_address(|address| {
            request(
                &self.kernel,
                address,
                TDI_SET_EVENT_HANDLER,
                set_event(event, handler, context),
            )
        })
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
        self.conns.lock().unwrap()[slot]
            .backlog
            .push_back(data.to_vec());
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
                // Up to 64 KiB per TDI_SEND, as a client with a send window does.
                let mut data = Vec::new();
                while let Some(chunk) = conn.backlog.pop_front() {
                    if !data.is_empty() && data.len() + chunk.len() > SEND_WINDOW {
                        conn.backlog.push_front(chunk);
                        break;
                    }
                    data.extend_from_slice(&chunk);
                }
                Next::Send(data)
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
        let (irp, device) = self.with_address(|address| {
            (
                self.kernel.allocate_file_irp(&address.file, location),
                address.file.device(),
            )
        });
        let mdl = self
            .kernel
            .build_mdl(buffer.as_mut_ptr(), buffer.len(), MdlKind::Locked);
        // SAFETY: a fresh IRP owned here until it is sent.
        unsafe { self.kernel.with_irp(irp, |i| i.MdlAddress = mdl) };
        self.kernel.call_driver_sync(device, irp).status
    }

    /// Received bytes of connection `slot`.
    pub fn received(&self, slot: usize) -> Vec<u8> {
        self.conns.lock().unwrap()[slot].received.clone()
    }

    /// Runs `f` on the address file (open until [`Peer::close`]).
    pub fn with_address<R>(&self, f: impl FnOnce(&File) -> R) -> R {
        f(self
            .address
            .lock()
            .unwrap()
            .as_ref()
            .expect("address file open"))
    }

    /// Closes the address file, then the endpoints (PASSIVE_LEVEL). The `Peer`, which is the
    /// handlers' context, is freed only after the address file's close has completed: the
    /// transport completes it once no handler call is in progress.
    pub fn close(self: Box<Peer>) {
        let address = self.address.lock().unwrap().take();
        if let Some(address) = address {
            address.close(&self.kernel);
        }
        let kernel = self.kernel.clone();
        for endpoint in self.endpoints {
            endpoint.close(&kernel);
        }
    }

    /// A ticket for data of `slot` that arrives now or later (through an IRP).
    fn ticket(&self, slot: usize) -> u64 {
        let mut conns = self.conns.lock().unwrap();
        let conn = &mut conns[slot];
        conn.issued += 1;
        conn.issued - 1
    }

    /// Records `data` of `ticket` received on `slot`, in ticket order, and echoes it if this
    /// is an echo server.
    fn deliver(&self, slot: usize, ticket: u64, data: &[u8]) {
        {
            let mut conns = self.conns.lock().unwrap();
            let conn = &mut conns[slot];
            conn.parked.insert(ticket, data.to_vec());
            while let Some(data) = conn.parked.remove(&conn.next) {
                conn.received.extend_from_slice(&data);
                if self.echo && !data.is_empty() {
                    conn.backlog.push_back(data);
                }
                conn.next += 1;
            }
        }
        if self.echo {
            self.pump(slot);
        }
        self.notify();
    }
}
