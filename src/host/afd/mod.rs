//! A model of ReactOS's `afd.sys` as a TDI client of the driver: the host-side counterpart of
//! `drivers/network/afd/afd/*.c`, following contract §2, §3, §4.0–4.3 and §7.4
//! (`../shared/reference/afd-tdi-contract.md`), habits included:
//!
//! - **A socket** ([`SocketId`], an FCB) is an address file (CREATE `\Device\Tcp` with the
//!   `TransportAddress` EA; share access `FILE_SHARE_READ|WRITE` only for `AFD_SHARE_REUSE`)
//!   plus a connection file (`ConnectionContext` EA, a NULL pointer) plus a **synchronous**
//!   `TDI_ASSOCIATE_ADDRESS` (`WarmSocketForConnection`), waiting on an event when the driver
//!   returns `STATUS_PENDING`. bind() also opens a second, "user-mode" handle to the address file
//!   as `AfdBindSocket`'s `ObOpenObjectByPointer` does for msafd (no IRP); msafd closes it in
//!   `WSPCloseSocket` ([`Afd::close_user_address_handle`]).
//! - **TDI IRPs** are built like `TdiBuildInternalDeviceControlIrp` + `TdiBuildXxx`: kernel mode,
//!   `IrpSp->FileObject` set, the request in `MinorFunction` and the `Parameters` overlay
//!   ([`wire`]). Asynchronous requests carry **no event and no IOSB**, a completion routine that
//!   needs PASSIVE_LEVEL, and the model **ignores what `IoCallDriver` returns** for them.
//!   Synchronous ones (ASSOCIATE, DISASSOCIATE, QUERY_INFORMATION) wait on an event only when
//!   the driver returns `STATUS_PENDING`.
//! - **Exactly one `TDI_RECEIVE` pending** per connected socket while the 8 KiB receive window
//!   has room (`RefillSocketBuffer`), re-posted from its completion routine. FIN (success with 0
//!   bytes) closes the receive side and no receive is posted again; an error becomes
//!   `LastReceiveStatus`.
//! - **One `TDI_SEND` in flight**, the rest queued in an 8 KiB send window: a partial
//!   completion slides the window and the remainder is sent at once (`SendComplete`).
//! - **One `TDI_LISTEN` pending per listening socket, re-armed from its completion routine**
//!   (`ListenComplete`): the connected endpoint moves to the pending-connections queue, a new
//!   endpoint is opened and associated synchronously, and the next listen is posted. A listen
//!   that completes with an error is *not* re-armed: the listening socket is dead
//!   ([`AfdStats::dead_listeners`]). accept() takes from the queue with no TDI traffic and
//!   posts the first receive.
//! - **Completion routines take the socket's `KMUTEX`** and declare they need PASSIVE_LEVEL, so
//!   a completion at DISPATCH_LEVEL is a verifier failure.
//! - **closesocket** in `AfdCloseSocket`'s order: mark CLOSED, `IoCancelIrp` each in-flight IRP
//!   (listen, receive, send, connect, disconnect) **without waiting**, DISASSOCIATE and close
//!   every never-accepted pending connection, DISASSOCIATE the socket's connection, close the
//!   address file handle, then the connection handle. The FCB is **poisoned right after the
//!   `IoCancelIrp` loop**: a completion routine that finds it poisoned is AFD's CORE-8640
//!   use-after-free (see [`Afd::close`] for how late completions are classified).
//! - **Errors** reach Winsock through msafd's `TranslateNtStatusError` ([`translate_nt_status`]).
//! - **Datagram sockets** (`datagram.rs`): an address file on `\Device\Udp` and no connection
//!   object; one `TDI_RECEIVE_DATAGRAM` posted at bind (`WarmSocketForBind`) and re-posted from
//!   its completion while the stored datagrams stay under the 8 KiB window; one
//!   `TDI_SEND_DATAGRAM` per `sendto`, its destination block freed as soon as `IoCallDriver`
//!   returns.
//!
//! Buffers the driver writes into (the receive buffer, connection-information blocks, the
//! disconnect timeout) belong to each IRP's completion context, not to the FCB, so that a late
//! completion is detected without the host itself touching freed memory.
//!
//! Not reproduced: non-blocking sockets and select() beyond "readable",
//! overlapped I/O, event select, SO_SNDBUF/SO_RCVBUF (the windows stay 8 KiB), connect/disconnect
//! data, the `Overread` flag of shutdown(SD_RECEIVE), and threaded-IRP cancellation on thread
//! exit (tests can cancel an in-flight IRP explicitly with [`Afd::cancel_in_flight`]).

mod datagram;
pub mod status;
pub mod wire;

pub use datagram::{ReceivedDatagram, UDP_DEVICE};

pub use status::{WsaError, check, translate_nt_status};

use super::io::{CompletionFlags, IoStatus, StackLocation};
use super::verifier::{self, Entry, Rule, Site};
use super::{Event, EventType, Handle, KMutex, KernelHandle, MdlKind, ObjectRef};
use crate::nt::NtStatus;
use crate::nt::types::*;
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use wire::ConnectionInfo;

/// AFD's default receive and send window (`AfdReceiveWindowSize`, `AfdSendWindowSize`): 0x2000.
pub const WINDOW_SIZE: usize = 0x2000;

/// The TDI device every stream socket uses (`DD_TCP_DEVICE_NAME`).
pub const TCP_DEVICE: &str = "\\Device\\Tcp";

/// `AFD_SHARE_*`: how msafd asks AFD to open an address file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareType {
    Unique,
    /// SO_REUSEADDR: the only one with a non-zero ShareAccess (`FILE_SHARE_READ|WRITE`).
    Reuse,
    /// Port 0.
    Wildcard,
    Exclusive,
}

impl ShareType {
    /// The `ShareAccess` `TdiOpenDevice` passes to `ZwCreateFile`.
    pub fn share_access(self) -> u16 {
        match self {
            ShareType::Reuse => wire::SHARE_READ_WRITE,
            _ => 0,
        }
    }
}

/// `SOCKET_STATE_*` of an FCB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketState {
    Created,
    Bound,
    Connecting,
    Connected,
    Listening,
    Closed,
}

/// The kind of an in-flight TDI request (AFD's `IN_FLIGHT_REQUESTS`, in its cancel order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    Listen,
    Receive,
    Send,
    Connect,
    Disconnect,
}

impl RequestKind {
    /// All kinds, in `AfdCloseSocket`'s cancel order.
    pub const ALL: [RequestKind; 5] = [
        RequestKind::Listen,
        RequestKind::Receive,
        RequestKind::Send,
        RequestKind::Connect,
        RequestKind::Disconnect,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// What `AfdDisconnect` is asked to do (`AFD_DISCONNECT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectKind {
    /// `AFD_DISCONNECT_SEND`: `TDI_DISCONNECT_RELEASE` once the send queue is empty.
    Send,
    /// `AFD_DISCONNECT_RECV`: no TDI request; AFD stops reading.
    Receive,
    /// `AFD_DISCONNECT_SEND | AFD_DISCONNECT_RECV` or `AFD_DISCONNECT_ABORT`:
    /// `TDI_DISCONNECT_ABORT`, issued at once after cancelling the receive.
    Abort,
}

/// A socket of the AFD model (an FCB behind a socket handle).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketId(u64);

/// Counters of what the model did and saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AfdStats {
    /// TDI requests sent, by minor function (index = `TDI_*` code).
    pub tdi_requests: [u64; 16],
    /// Completion routines that ran.
    pub completions: u64,
    /// Late completions inside AFD's own CORE-8640 window: `IoCancelIrp` found no cancel
    /// routine (the driver had already taken the IRP for completion) and the completion
    /// arrived after the FCB was poisoned but before `AfdCloseSocket` finished.
    pub raced_completions: u64,
    /// Use-after-free completions (each is also a violation).
    pub use_after_free: u64,
    /// Listening sockets whose `TDI_LISTEN` completed with an error (not re-armed), or whose
    /// re-arm failed (`WarmSocketForConnection` or the new `TDI_LISTEN` could not be issued).
    pub dead_listeners: u64,
    /// Listens re-armed from `ListenComplete`.
    pub listens_rearmed: u64,
    /// Datagram sockets whose `TDI_RECEIVE_DATAGRAM` AFD did not post again: it completed with
    /// an error, or the stored datagrams filled the 8 KiB window (ReactOS's AFD never resumes).
    pub datagram_receives_stopped: u64,
    /// Sockets created and closed.
    pub sockets_created: u64,
    pub sockets_closed: u64,
}

/// A completion routine's view of a user request queued in AFD (`PendingIrpList`): the
/// Winsock layer waits on the event, AFD fills the result and signals it.
pub struct Waiter<T> {
    event: Event,
    result: Mutex<Option<Result<T, NtStatus>>>,
}

impl<T> Waiter<T> {
    fn new(kernel: &KernelHandle) -> Arc<Waiter<T>> {
        Arc::new(Waiter {
            event: Event::new(kernel, EventType::Notification, false),
            result: Mutex::new(None),
        })
    }

    /// Completes the request (the first result wins) and signals its event.
    fn complete(&self, result: Result<T, NtStatus>) {
        let mut slot = lock(&self.result);
        if slot.is_none() {
            *slot = Some(result);
            drop(slot);
            self.event.set();
        }
    }

    fn take(&self) -> Option<Result<T, NtStatus>> {
        lock(&self.result).take()
    }
}

/// Locks a std mutex, ignoring poisoning (a panicking test thread must not hide the report).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A TDI file AFD holds: its kernel handle and a referenced object pointer.
struct TdiObject {
    handle: Handle,
    object: ObjectRef,
}

/// `IoCancelIrp` outcomes recorded for the close path's classification of late completions.
const NOT_CANCELLED: u8 = 0;
const CANCEL_RAN: u8 = 1;
const NO_CANCEL_ROUTINE: u8 = 2;

/// One in-flight TDI IRP (`AFD_IN_FLIGHT_REQUEST::InFlightRequest`).
struct InFlight {
    irp: usize,
    cancel: Arc<AtomicU8>,
}

/// A connection accepted by the transport and not yet accept()ed (`AFD_TDI_OBJECT_QELT`).
struct PendingConnection {
    endpoint: Arc<TdiObject>,
    peer: Option<SocketAddrV4>,
}

/// A user send queued in AFD (`PendingIrpList[FUNCTION_SEND]`).
struct PendingSend {
    waiter: Arc<Waiter<usize>>,
    data: Vec<u8>,
    /// Bytes copied into the send window (`DriverContext[3]`), once copied.
    copied: Option<usize>,
    /// Of those, the bytes not yet accepted by a TDI_SEND.
    unacked: usize,
}

/// A user receive queued in AFD (`PendingIrpList[FUNCTION_RECV]`).
struct PendingRecv {
    waiter: Arc<Waiter<Vec<u8>>>,
    max: usize,
}

/// The state `SocketAcquireStateLock` protects.
struct FcbState {
    state: SocketState,
    /// `AFD_ENDPOINT_CONNECTIONLESS`: a datagram socket (its address file is on
    /// `\Device\Udp`, it has no connection object).
    datagram: bool,
    /// Datagram sockets: `FCB->DatagramList` (their bytes count in `recv_content`), the user
    /// receives and sends queued in AFD.
    datagrams: VecDeque<datagram::Stored>,
    pending_recvfroms: VecDeque<datagram::PendingRecvFrom>,
    pending_sendtos: VecDeque<datagram::PendingSendTo>,
    address_file: Option<Arc<TdiObject>>,
    /// msafd's handle to the address file (`Socket->TdiAddressHandle`).
    user_address_handle: Option<Handle>,
    connection: Option<Arc<TdiObject>>,
    local: Option<SocketAddrV4>,
    peer: Option<SocketAddrV4>,
    in_flight: [Option<InFlight>; 5],
    // Receive window (`FCB->Recv`).
    recv_window: Vec<u8>,
    /// The buffer of the last TDI_RECEIVE, kept for the next one: AFD receives into a buffer
    /// of the socket's, not a new one per request (a zeroed allocation per receive was 7 % of
    /// the benchmark's instructions).
    spare_receive: Vec<u8>,
    recv_content: usize,
    recv_used: usize,
    tdi_receive_closed: bool,
    last_receive_status: NtStatus,
    pending_recvs: VecDeque<PendingRecv>,
    // Send window (`FCB->Send`).
    send_window: Vec<u8>,
    pending_sends: VecDeque<PendingSend>,
    send_closed: bool,
    // Connect, listen, disconnect.
    pending_connect: Option<Arc<Waiter<()>>>,
    pending_connections: VecDeque<PendingConnection>,
    pending_accepts: Vec<Arc<Waiter<()>>>,
    disconnect_pending: bool,
    disconnect_flags: u32,
    disconnect_timeout: i64,
    pending_disconnects: Vec<Arc<Waiter<()>>>,
}

impl FcbState {
    fn new() -> FcbState {
        FcbState {
            state: SocketState::Created,
            datagram: false,
            datagrams: VecDeque::new(),
            pending_recvfroms: VecDeque::new(),
            pending_sendtos: VecDeque::new(),
            address_file: None,
            user_address_handle: None,
            connection: None,
            local: None,
            peer: None,
            in_flight: [None, None, None, None, None],
            recv_window: vec![0; WINDOW_SIZE],
            spare_receive: Vec::new(),
            recv_content: 0,
            recv_used: 0,
            tdi_receive_closed: false,
            last_receive_status: NtStatus::SUCCESS,
            pending_recvs: VecDeque::new(),
            send_window: Vec::with_capacity(WINDOW_SIZE),
            pending_sends: VecDeque::new(),
            send_closed: false,
            pending_connect: None,
            pending_connections: VecDeque::new(),
            pending_accepts: Vec::new(),
            disconnect_pending: false,
            disconnect_flags: 0,
            disconnect_timeout: 0,
            pending_disconnects: Vec::new(),
        }
    }

    fn cant_read_more(&self) -> bool {
        self.recv_content == self.recv_used && self.tdi_receive_closed
    }
}

/// An FCB. Its memory is kept alive by `Arc`s (the socket table and the completion contexts),
/// but once `AfdCloseSocket` has "freed" it, it is **poisoned**: AFD's completion routines must
/// not find it again.
struct Fcb {
    id: SocketId,
    /// `FCB->Mutex`, taken by every AFD entry point and completion routine.
    mutex: KMutex,
    state: Mutex<FcbState>,
    /// Set right after the `IoCancelIrp` loop of `AfdCloseSocket`.
    poisoned: AtomicBool,
    /// Set when `AfdCloseSocket` returns (real AFD's `ExFreePoolWithTag(FCB)`).
    released: AtomicBool,
}

/// `SocketAcquireStateLock` … `SocketStateUnlock`.
struct FcbLock<'a> {
    fcb: &'a Fcb,
}

impl<'a> FcbLock<'a> {
    fn acquire(fcb: &'a Fcb) -> FcbLock<'a> {
        fcb.mutex.acquire(None);
        FcbLock { fcb }
    }

    /// The state. Never held across a call into the driver: a synchronous completion re-enters
    /// AFD on the same thread (the KMUTEX is recursive; this lock is not).
    fn st(&self) -> MutexGuard<'a, FcbState> {
        lock(&self.fcb.state)
    }
}

impl Drop for FcbLock<'_> {
    fn drop(&mut self) {
        self.fcb.mutex.release();
    }
}

/// The buffers and blocks an asynchronous TDI IRP points at, owned by its completion context.
enum Op {
    Receive {
        buffer: Vec<u8>,
    },
    Send {
        _buffer: Vec<u8>,
    },
    Connect {
        _call: Box<ConnectionInfo>,
        _ret: Box<ConnectionInfo>,
    },
    Listen {
        _call: Box<ConnectionInfo>,
        ret: Box<ConnectionInfo>,
    },
    Disconnect {
        _call: Box<ConnectionInfo>,
        _ret: Box<ConnectionInfo>,
        _timeout: Box<i64>,
    },
    /// `TDI_RECEIVE_DATAGRAM` into the receive window, with `FCB->AddressFrom`.
    ReceiveDatagram {
        buffer: Vec<u8>,
        from: Box<ConnectionInfo>,
    },
    SendDatagram {
        _buffer: Vec<u8>,
    },
}

impl Op {
    fn kind(&self) -> RequestKind {
        match self {
            Op::Receive { .. } | Op::ReceiveDatagram { .. } => RequestKind::Receive,
            Op::Send { .. } | Op::SendDatagram { .. } => RequestKind::Send,
            Op::Connect { .. } => RequestKind::Connect,
            Op::Listen { .. } => RequestKind::Listen,
            Op::Disconnect { .. } => RequestKind::Disconnect,
        }
    }
}

/// The context of an asynchronous TDI IRP's completion routine (the `FCB` pointer AFD passes),
/// leaked into the IRP and reclaimed by the completion routine.
struct IrpContext {
    afd: Arc<AfdInner>,
    fcb: Arc<Fcb>,
    op: Op,
    cancel: Arc<AtomicU8>,
}

/// An asynchronous IRP built and ready to send.
struct Prepared {
    irp: *mut IRP,
    device: *mut DEVICE_OBJECT,
    cancel: Arc<AtomicU8>,
}

struct AfdInner {
    kernel: KernelHandle,
    device: String,
    sockets: Mutex<HashMap<u64, Arc<Fcb>>>,
    next_id: AtomicU64,
    stats: Mutex<AfdStats>,
    violations: Mutex<Vec<String>>,
}

/// The AFD model. Dropping it panics if it recorded a violation the test did not take
/// ([`Afd::take_violations`]).
pub struct Afd {
    inner: Arc<AfdInner>,
}

/// The completion routine of every asynchronous TDI IRP.
///
/// # Safety
/// Called by the I/O manager with the IRP being completed and the context `fire` installed.
unsafe extern "system" fn tdi_completion(
    _device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: `context` is the Box leaked by `AfdInner::prepare` for this IRP; each IRP's
    // completion routine runs once (the verifier reports a second IoCompleteRequest before it
    // reaches the routine).
    let context = unsafe { Box::from_raw(context.cast::<IrpContext>()) };
    // SAFETY: the I/O manager passes the live IRP it is completing.
    let (status, information) = unsafe {
        (
            NtStatus((*irp).IoStatus.Status.Status),
            (*irp).IoStatus.Information,
        )
    };
    let afd = context.afd.clone();
    afd.completion(irp as usize, *context, status, information)
        .raw()
}

impl Afd {
    /// An AFD instance on `kernel`, opening its sockets on `\Device\Tcp`. Any IRQL.
    pub fn new(kernel: &KernelHandle) -> Afd {
        Afd::with_device(kernel, TCP_DEVICE)
    }

    /// An AFD instance whose sockets use the transport device `device` (tests use fake
    /// transports). Any IRQL.
    pub fn with_device(kernel: &KernelHandle, device: &str) -> Afd {
        Afd {
            inner: Arc::new(AfdInner {
                kernel: kernel.clone(),
                device: device.to_owned(),
                sockets: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                stats: Mutex::new(AfdStats::default()),
                violations: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The kernel this instance runs on.
    pub fn kernel(&self) -> &KernelHandle {
        &self.inner.kernel
    }

    /// The transport device its sockets (and the helper's control channels) are opened on.
    pub fn device(&self) -> &str {
        &self.inner.device
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> AfdStats {
        lock(&self.inner.stats).clone()
    }

    /// Takes the violations recorded so far (use-after-free completions, AFD assertions the
    /// driver made fail); they no longer fail the test when the `Afd` is dropped.
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.inner.violations))
    }

    /// The sockets still open.
    pub fn open_sockets(&self) -> usize {
        lock(&self.inner.sockets).len()
    }

    fn fcb(&self, socket: SocketId) -> Result<Arc<Fcb>, NtStatus> {
        lock(&self.inner.sockets)
            .get(&socket.0)
            .cloned()
            .ok_or(NtStatus::INVALID_HANDLE)
    }

    /// `AfdCreateSocket`: a new FCB in the CREATED state. No transport traffic.
    pub fn socket(&self) -> SocketId {
        self.inner.new_fcb(FcbState::new()).id
    }

    /// The socket's state.
    pub fn state(&self, socket: SocketId) -> Result<SocketState, NtStatus> {
        let fcb = self.fcb(socket)?;
        let guard = FcbLock::acquire(&fcb);
        Ok(guard.st().state)
    }

    /// Which TDI requests are in flight on the socket.
    pub fn in_flight(&self, socket: SocketId) -> Result<Vec<RequestKind>, NtStatus> {
        let fcb = self.fcb(socket)?;
        let guard = FcbLock::acquire(&fcb);
        let st = guard.st();
        Ok(RequestKind::ALL
            .into_iter()
            .filter(|k| st.in_flight[k.index()].is_some())
            .collect())
    }

    /// Bytes received and not yet read (in the receive window), and whether the receive side
    /// is closed.
    pub fn receive_window(&self, socket: SocketId) -> Result<(usize, bool), NtStatus> {
        let fcb = self.fcb(socket)?;
        let guard = FcbLock::acquire(&fcb);
        let st = guard.st();
        Ok((st.recv_content - st.recv_used, st.tdi_receive_closed))
    }

    /// Connections accepted by the transport and not yet accept()ed.
    pub fn pending_connections(&self, socket: SocketId) -> Result<usize, NtStatus> {
        let fcb = self.fcb(socket)?;
        let guard = FcbLock::acquire(&fcb);
        Ok(guard.st().pending_connections.len())
    }

    /// The local address the socket was bound with (msafd's `SharedData.LocalAddress`).
    pub fn bound_address(&self, socket: SocketId) -> Result<Option<SocketAddrV4>, NtStatus> {
        let fcb = self.fcb(socket)?;
        let guard = FcbLock::acquire(&fcb);
        Ok(guard.st().local)
    }

    /// `IoCancelIrp` on the socket's in-flight request of `kind`, as the I/O manager does for a
    /// threaded IRP whose thread exits (contract §7.4 item 7). Returns what `IoCancelIrp`
    /// returned, or `None` if no such request is in flight. AFD then treats the completion
    /// like any other (a cancelled listen is not re-armed, a cancelled receive closes the
    /// receive side).
    pub fn cancel_in_flight(
        &self,
        socket: SocketId,
        kind: RequestKind,
    ) -> Result<Option<bool>, NtStatus> {
        let fcb = self.fcb(socket)?;
        let guard = FcbLock::acquire(&fcb);
        let irp = guard.st().in_flight[kind.index()].as_ref().map(|f| f.irp);
        Ok(irp.map(|irp| self.inner.kernel.cancel_irp(irp as *mut IRP)))
    }

    /// `AfdBindSocket`: opens the address file (`TdiOpenAddressFile`) with `share`'s
    /// ShareAccess, references it, and opens msafd's handle to it. CREATED → BOUND.
    pub fn bind(
        &self,
        socket: SocketId,
        address: SocketAddrV4,
        share: ShareType,
    ) -> Result<(), NtStatus> {
        let fcb = self.fcb(socket)?;
        let guard = FcbLock::acquire(&fcb);
        let (state, datagram) = {
            let st = guard.st();
            (st.state, st.datagram)
        };
        if state != SocketState::Created {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let file = self.inner.open_address_file(address, share, datagram)?;
        let user = self.inner.open_user_handle(&file);
        {
            let mut st = guard.st();
            st.address_file = Some(Arc::new(file));
            st.user_address_handle = user;
            st.local = Some(address);
            st.state = SocketState::Bound;
        }
        if datagram {
            self.inner.warm_socket_for_bind(&fcb, &guard);
        }
        Ok(())
    }

    /// msafd's `NtClose(Socket->TdiAddressHandle)` in `WSPCloseSocket`, before the socket's own
    /// handle is closed. No IRP unless it was the last handle.
    pub fn close_user_address_handle(&self, socket: SocketId) -> Result<(), NtStatus> {
        let fcb = self.fcb(socket)?;
        let handle = {
            let guard = FcbLock::acquire(&fcb);
            guard.st().user_address_handle.take()
        };
        if let Some(handle) = handle {
            self.inner.kernel.close(handle);
        }
        Ok(())
    }

    /// `AfdStreamSocketConnect` and a blocking wait for its completion
    /// (`StreamSocketConnectComplete`): an unbound socket gets a wildcard address file first,
    /// then a new associated connection endpoint, then `TDI_CONNECT` (timeout NULL). On success
    /// the socket is CONNECTED and its first `TDI_RECEIVE` is posted.
    pub fn connect(&self, socket: SocketId, peer: SocketAddrV4) -> Result<(), NtStatus> {
        let waiter = self.start_connect(socket, peer)?;
        wait(&waiter, None)
    }

    /// The first half of [`Afd::connect`]: issues the `TDI_CONNECT` and returns the request to
    /// wait on.
    pub fn start_connect(
        &self,
        socket: SocketId,
        peer: SocketAddrV4,
    ) -> Result<Arc<Waiter<()>>, NtStatus> {
        let fcb = self.fcb(socket)?;
        let guard = FcbLock::acquire(&fcb);
        let state = guard.st().state;
        match state {
            SocketState::Created => {
                let wildcard = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
                let file = self
                    .inner
                    .open_address_file(wildcard, ShareType::Wildcard, false)?;
                let mut st = guard.st();
                st.address_file = Some(Arc::new(file));
                st.local = Some(wildcard);
                st.state = SocketState::Bound;
            }
            SocketState::Bound => {}
            SocketState::Connected | SocketState::Connecting => {
                return Err(NtStatus::INVALID_CONNECTION);
            }
            _ => return Err(NtStatus::INVALID_PARAMETER),
        }
        self.inner.warm_socket_for_connection(&guard)?;
        let waiter = Waiter::new(&self.inner.kernel);
        let mut call = ConnectionInfo::new(peer);
        let mut ret = ConnectionInfo::new(peer);
        let parameters = wire::kernel_request(0, call.as_ptr(), ret.as_ptr(), std::ptr::null_mut());
        {
            let mut st = guard.st();
            st.peer = Some(peer);
            st.state = SocketState::Connecting;
            st.pending_connect = Some(waiter.clone());
        }
        let op = Op::Connect {
            _call: call,
            _ret: ret,
        };
        self.inner.issue(
            &fcb,
            &guard,
            TDI_CONNECT,
            parameters,
            std::ptr::null_mut(),
            op,
        );
        Ok(waiter)
    }

    /// `AfdListenSocket`: a BOUND socket gets an associated endpoint and its one `TDI_LISTEN`
    /// (flags 0, null connection information with OptionsLength 4 and Options NULL).
    pub fn listen(&self, socket: SocketId) -> Result<(), NtStatus> {
        let fcb = self.fcb(socket)?;
        let guard = FcbLock::acquire(&fcb);
        if guard.st().state != SocketState::Bound {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        self.inner.warm_socket_for_connection(&guard)?;
        guard.st().state = SocketState::Listening;
        self.inner.post_listen(&fcb, &guard);
        Ok(())
    }

    /// `AfdWaitForListen` (blocking, `FUNCTION_PREACCEPT`) then `AfdAccept`: takes the first
    /// pending connection into a new CONNECTED socket and posts its first `TDI_RECEIVE`. No
    /// other TDI traffic. `timeout` bounds the wait (`None`: forever, as msafd does);
    /// `STATUS_TIMEOUT` when it expires.
    pub fn accept(
        &self,
        socket: SocketId,
        timeout: Option<Duration>,
    ) -> Result<(SocketId, Option<SocketAddrV4>), NtStatus> {
        let fcb = self.fcb(socket)?;
        loop {
            let waiter = {
                let guard = FcbLock::acquire(&fcb);
                let mut st = guard.st();
                if st.state != SocketState::Listening {
                    return Err(NtStatus::INVALID_PARAMETER);
                }
                if let Some(pending) = st.pending_connections.pop_front() {
                    let local = st.local;
                    drop(st);
                    drop(guard);
                    return Ok(self.inner.satisfy_accept(pending, local));
                }
                let waiter = Waiter::new(&self.inner.kernel);
                st.pending_accepts.push(waiter.clone());
                waiter
            };
            if !waiter
                .event
                .wait(Some(timeout.unwrap_or_else(hang_timeout)))
            {
                let guard = FcbLock::acquire(&fcb);
                guard
                    .st()
                    .pending_accepts
                    .retain(|w| !Arc::ptr_eq(w, &waiter));
                drop(guard);
                if waiter.take().is_none() {
                    if timeout.is_none() {
                        panic!(
                            "AFD model: accept() got no connection within {:?} (a dead \
                             listening socket, or the driver holds the connection)",
                            hang_timeout()
                        );
                    }
                    return Err(NtStatus::TIMEOUT);
                }
                continue;
            }
            if let Some(Err(status)) = waiter.take() {
                return Err(status);
            }
        }
    }

    /// Whether accept() would not block (select() readability of a listening socket), waiting
    /// up to `timeout` for a connection.
    pub fn wait_acceptable(&self, socket: SocketId, timeout: Duration) -> Result<bool, NtStatus> {
        let fcb = self.fcb(socket)?;
        let waiter = {
            let guard = FcbLock::acquire(&fcb);
            let mut st = guard.st();
            if st.state != SocketState::Listening {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            if !st.pending_connections.is_empty() {
                return Ok(true);
            }
            let waiter = Waiter::new(&self.inner.kernel);
            st.pending_accepts.push(waiter.clone());
            waiter
        };
        let ready = waiter.event.wait(Some(timeout));
        let guard = FcbLock::acquire(&fcb);
        let mut st = guard.st();
        st.pending_accepts.retain(|w| !Arc::ptr_eq(w, &waiter));
        Ok(ready && !st.pending_connections.is_empty())
    }

    /// `AfdConnectedSocketWriteData` (blocking): queues the data behind earlier sends, copies
    /// what fits into the 8 KiB send window (a send that fits the window waits until all of it
    /// fits; a larger one takes what fits), and returns the number of bytes copied once the
    /// transport has accepted them. `timeout` bounds the wait (`STATUS_TIMEOUT`, the send is
    /// withdrawn if no byte of it was copied yet).
    pub fn send(
        &self,
        socket: SocketId,
        data: &[u8],
        timeout: Option<Duration>,
    ) -> Result<usize, NtStatus> {
        let fcb = self.fcb(socket)?;
        let waiter = {
            let guard = FcbLock::acquire(&fcb);
            {
                let mut st = guard.st();
                match st.state {
                    SocketState::Connected => {}
                    _ => return Err(NtStatus::INVALID_CONNECTION),
                }
                if st.send_closed {
                    return Err(NtStatus::FILE_CLOSED);
                }
                if data.is_empty() {
                    return Ok(0);
                }
                let waiter = Waiter::new(&self.inner.kernel);
                st.pending_sends.push_back(PendingSend {
                    waiter: waiter.clone(),
                    data: data.to_vec(),
                    copied: None,
                    unacked: 0,
                });
                drop(st);
                self.inner.pump_sends(&fcb, &guard);
                waiter
            }
        };
        if !waiter
            .event
            .wait(Some(timeout.unwrap_or_else(hang_timeout)))
        {
            let guard = FcbLock::acquire(&fcb);
            let mut st = guard.st();
            let position = st
                .pending_sends
                .iter()
                .position(|p| Arc::ptr_eq(&p.waiter, &waiter) && p.copied.is_none());
            if let Some(position) = position {
                st.pending_sends.remove(position);
                if timeout.is_none() {
                    hang("send()");
                }
                return Err(NtStatus::TIMEOUT);
            }
            drop(st);
            drop(guard);
            return wait(&waiter, None);
        }
        wait(&waiter, None)
    }

    /// `AfdConnectedSocketReadData` (blocking): up to `max` bytes from the receive window,
    /// waiting for data. An empty vector means the peer closed gracefully; an error status is
    /// the receive's `LastReceiveStatus`. `timeout` bounds the wait (`STATUS_TIMEOUT`).
    pub fn recv(
        &self,
        socket: SocketId,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, NtStatus> {
        let fcb = self.fcb(socket)?;
        let waiter = {
            let guard = FcbLock::acquire(&fcb);
            let mut st = guard.st();
            if !matches!(st.state, SocketState::Connected) {
                return Err(NtStatus::INVALID_CONNECTION);
            }
            let waiter = Waiter::new(&self.inner.kernel);
            st.pending_recvs.push_back(PendingRecv {
                waiter: waiter.clone(),
                max,
            });
            drop(st);
            self.inner.receive_activity(&fcb, &guard);
            waiter
        };
        wait_read(&fcb, &waiter, timeout, "recv()", |st| {
            st.pending_recvs
                .retain(|p| !Arc::ptr_eq(&p.waiter, &waiter))
        })
    }

    /// `AfdDisconnect` and a blocking wait for it (msafd waits INFINITE). `timeout` is the
    /// LARGE_INTEGER AFD passes in `RequestSpecific` (0 from closesocket, −1,000,000 from
    /// shutdown).
    pub fn disconnect(
        &self,
        socket: SocketId,
        kind: DisconnectKind,
        timeout: i64,
    ) -> Result<(), NtStatus> {
        let fcb = self.fcb(socket)?;
        let waiter = {
            let guard = FcbLock::acquire(&fcb);
            let flags = match kind {
                DisconnectKind::Send => TDI_DISCONNECT_RELEASE,
                DisconnectKind::Receive | DisconnectKind::Abort => {
                    let receive = {
                        let mut st = guard.st();
                        st.tdi_receive_closed = true;
                        st.in_flight[RequestKind::Receive.index()]
                            .as_ref()
                            .map(|f| f.irp)
                    };
                    if let Some(irp) = receive {
                        self.inner.kernel.cancel_irp(irp as *mut IRP);
                    }
                    let mut st = guard.st();
                    st.recv_content = 0;
                    st.recv_used = 0;
                    st.last_receive_status = NtStatus::SUCCESS;
                    if kind == DisconnectKind::Receive {
                        return Ok(());
                    }
                    TDI_DISCONNECT_ABORT
                }
            };
            let state = guard.st().state;
            if state != SocketState::Connected {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            let (pending, in_flight) = {
                let st = guard.st();
                (
                    st.disconnect_pending,
                    st.in_flight[RequestKind::Disconnect.index()]
                        .as_ref()
                        .map(|f| f.irp),
                )
            };
            if pending {
                if let Some(irp) = in_flight {
                    self.inner.kernel.cancel_irp(irp as *mut IRP);
                    if guard.st().in_flight[RequestKind::Disconnect.index()].is_some() {
                        self.inner.violation(format!(
                            "AFD ASSERT(!FCB->DisconnectIrp.InFlightRequest) failed on socket {}: \
                             IoCancelIrp returned with the TDI_DISCONNECT still in flight",
                            fcb.id.0
                        ));
                    }
                } else {
                    for waiter in std::mem::take(&mut guard.st().pending_disconnects) {
                        waiter.complete(Err(NtStatus::CANCELLED));
                    }
                }
            }
            let waiter = Waiter::new(&self.inner.kernel);
            let ready = {
                let mut st = guard.st();
                st.disconnect_flags = flags;
                st.disconnect_timeout = timeout;
                st.disconnect_pending = true;
                st.send_closed = true;
                st.pending_disconnects.push(waiter.clone());
                (st.pending_sends.is_empty() && st.in_flight[RequestKind::Send.index()].is_none())
                    || flags & TDI_DISCONNECT_ABORT != 0
            };
            if ready {
                self.inner.do_disconnect(&fcb, &guard);
            }
            waiter
        };
        wait(&waiter, None)
    }

    /// `AfdGetSockName`: `TDI_QUERY_INFORMATION` / `TDI_QUERY_ADDRESS_INFO` on the connection
    /// object if there is one, else on the address file, into an MDL of 26 bytes (plus slack);
    /// synchronous.
    pub fn query_address(&self, socket: SocketId) -> Result<SocketAddrV4, NtStatus> {
        let fcb = self.fcb(socket)?;
        let guard = FcbLock::acquire(&fcb);
        let file = {
            let st = guard.st();
            let Some(file) = st.connection.clone().or_else(|| st.address_file.clone()) else {
                return Err(NtStatus::INVALID_PARAMETER);
            };
            file
        };
        let mut buffer = vec![0u8; wire::ADDRESS_INFO_LEN + 6];
        let mdl = self
            .inner
            .kernel
            .build_mdl(buffer.as_mut_ptr(), buffer.len(), MdlKind::Locked);
        let result = self.inner.tdi_sync(
            &file.object,
            TDI_QUERY_INFORMATION,
            wire::query_information(TDI_QUERY_ADDRESS_INFO),
            mdl,
        );
        drop(guard);
        check_status(result.status)?;
        wire::parse_address_info(&buffer).ok_or(NtStatus::INVALID_PARAMETER)
    }

    /// AFD's stored peer (`FCB->RemoteAddress`): the connect target, or the address the
    /// transport wrote into the listen's return connection information.
    pub fn peer(&self, socket: SocketId) -> Result<Option<SocketAddrV4>, NtStatus> {
        let fcb = self.fcb(socket)?;
        let guard = FcbLock::acquire(&fcb);
        let st = guard.st();
        if st.state != SocketState::Connected {
            return Err(NtStatus::INVALID_CONNECTION);
        }
        Ok(st.peer)
    }

    /// `AfdCloseSocket`, on the last close of the socket handle (msafd's disconnect and address
    /// handle close come first, see the Winsock layer):
    /// 1. mark the FCB CLOSED;
    /// 2. `IoCancelIrp` each in-flight IRP (listen, receive, send, connect, disconnect), without
    ///    waiting, and cancel the user requests still queued in AFD (`AfdCleanupSocket`);
    /// 3. **poison the FCB**: from here on, a completion routine that finds it is a late
    ///    completion. If `IoCancelIrp` had called the IRP's cancel routine, the routine returned
    ///    without completing the IRP (contract §4.0 rule 5): a **use-after-free**, reported as
    ///    a verifier violation. If `IoCancelIrp` found no cancel routine, the driver had
    ///    already taken the IRP for completion: a completion that lands before step 7 is AFD's
    ///    own race window (counted in [`AfdStats::raced_completions`]); one that lands later
    ///    touches memory real AFD has freed, and is a use-after-free;
    /// 4. DISASSOCIATE, dereference and close every never-accepted pending connection;
    /// 5. release the FCB lock;
    /// 6. DISASSOCIATE the socket's connection and dereference it, dereference the address
    ///    file, close the address file handle, **then** the connection handle;
    /// 7. free the FCB.
    pub fn close(&self, socket: SocketId) -> Result<(), NtStatus> {
        let fcb = lock(&self.inner.sockets)
            .remove(&socket.0)
            .ok_or(NtStatus::INVALID_HANDLE)?;
        let guard = FcbLock::acquire(&fcb);
        let in_flight: Vec<(usize, Arc<AtomicU8>)> = {
            let mut st = guard.st();
            st.state = SocketState::Closed;
            RequestKind::ALL
                .iter()
                .filter_map(|k| {
                    st.in_flight[k.index()]
                        .as_ref()
                        .map(|f| (f.irp, f.cancel.clone()))
                })
                .collect()
        };
        for (irp, cancel) in in_flight {
            // Record the outcome first: a synchronous completion inside IoCancelIrp must not
            // read a stale value, and a racing one must see "no routine" unless it ran.
            cancel.store(NO_CANCEL_ROUTINE, Ordering::SeqCst);
            if self.inner.kernel.cancel_irp(irp as *mut IRP) {
                cancel.store(CANCEL_RAN, Ordering::SeqCst);
            }
        }
        let (pending, connection, address, user) = {
            let mut st = guard.st();
            // AfdCleanupSocket: the user requests still queued in AFD are cancelled.
            for waiter in st.pending_accepts.drain(..) {
                waiter.complete(Err(NtStatus::CANCELLED));
            }
            for p in st.pending_recvs.drain(..) {
                p.waiter.complete(Err(NtStatus::CANCELLED));
            }
            for p in st.pending_sends.drain(..) {
                p.waiter.complete(Err(NtStatus::CANCELLED));
            }
            for p in st.pending_recvfroms.drain(..) {
                p.waiter.complete(Err(NtStatus::CANCELLED));
            }
            for p in st.pending_sendtos.drain(..) {
                p.waiter.complete(Err(NtStatus::CANCELLED));
            }
            if let Some(waiter) = st.pending_connect.take() {
                waiter.complete(Err(NtStatus::CANCELLED));
            }
            for waiter in st.pending_disconnects.drain(..) {
                waiter.complete(Err(NtStatus::CANCELLED));
            }
            (
                std::mem::take(&mut st.pending_connections),
                st.connection.take(),
                st.address_file.take(),
                st.user_address_handle.take(),
            )
        };
        fcb.poisoned.store(true, Ordering::SeqCst);
        for connection in pending {
            self.inner.disassociate(&connection.endpoint);
            let handle = connection.endpoint.handle;
            drop(connection);
            self.inner.kernel.close(handle);
        }
        drop(guard);
        let connection_handle = connection.map(|c| {
            self.inner.disassociate(&c);
            c.handle
        });
        if let Some(user) = user {
            self.inner.kernel.close(user);
        }
        if let Some(address) = address {
            let handle = address.handle;
            drop(address);
            self.inner.kernel.close(handle);
        }
        if let Some(handle) = connection_handle {
            self.inner.kernel.close(handle);
        }
        fcb.released.store(true, Ordering::SeqCst);
        lock(&self.inner.stats).sockets_closed += 1;
        Ok(())
    }
}

impl Drop for Afd {
    fn drop(&mut self) {
        let violations = lock(&self.inner.violations).clone();
        if !violations.is_empty() && !std::thread::panicking() {
            panic!("AFD model violations:\n  {}", violations.join("\n  "));
        }
    }
}

/// Maps a status msafd compares with `STATUS_SUCCESS` to a `Result`.
fn check_status(status: NtStatus) -> Result<(), NtStatus> {
    if status == NtStatus::SUCCESS {
        Ok(())
    } else {
        Err(status)
    }
}

/// How long a blocking wait may last before the model declares the driver stuck (a failure,
/// not a retry): `TCPIP_AFD_HANG_TIMEOUT` seconds, 120 by default.
fn hang_timeout() -> Duration {
    let seconds = std::env::var("TCPIP_AFD_HANG_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(seconds)
}

/// Fails the test: a blocking call got no completion within the hang timeout.
fn hang(what: &str) -> ! {
    panic!(
        "AFD model: {what} got no completion within {:?}: the driver never completed the TDI \
         request it depends on",
        hang_timeout()
    )
}

/// Waits for a user request's completion. `timeout` `None` waits "forever": up to the hang
/// timeout, after which the test fails.
#[track_caller]
/// Waits up to `timeout` for a read queued on `fcb` (recv, recvfrom); when it runs out,
/// `withdraw` takes the read off its queue, unless its result came meanwhile. With no timeout,
/// a wait past the model's hang timeout fails the test, naming `what`.
fn wait_read<T>(
    fcb: &Fcb,
    waiter: &Waiter<T>,
    timeout: Option<Duration>,
    what: &str,
    withdraw: impl FnOnce(&mut FcbState),
) -> Result<T, NtStatus> {
    if waiter
        .event
        .wait(Some(timeout.unwrap_or_else(hang_timeout)))
    {
        return wait(waiter, None);
    }
    withdraw(&mut FcbLock::acquire(fcb).st());
    if let Some(result) = waiter.take() {
        return result;
    }
    if timeout.is_none() {
        hang(what);
    }
    Err(NtStatus::TIMEOUT)
}

pub fn wait<T>(waiter: &Waiter<T>, timeout: Option<Duration>) -> Result<T, NtStatus> {
    let limit = timeout.unwrap_or_else(hang_timeout);
    if !waiter.event.wait(Some(limit)) {
        if timeout.is_some() {
            return Err(NtStatus::TIMEOUT);
        }
        hang("a blocking request");
    }
    waiter.take().expect("a signalled request has a result")
}

impl AfdInner {
    fn new_fcb(self: &Arc<Self>, state: FcbState) -> Arc<Fcb> {
        let id = SocketId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let fcb = Arc::new(Fcb {
            id,
            mutex: KMutex::new(&self.kernel),
            state: Mutex::new(state),
            poisoned: AtomicBool::new(false),
            released: AtomicBool::new(false),
        });
        lock(&self.sockets).insert(id.0, fcb.clone());
        lock(&self.stats).sockets_created += 1;
        fcb
    }

    /// Records an AFD-model violation (logged now, fails the test when the `Afd` is dropped).
    fn violation(&self, message: String) {
        eprintln!("tcpip AFD model: {message}");
        lock(&self.violations).push(message);
    }

    /// `TdiOpenDevice` on the stream device: `ZwCreateFile` + `ObReferenceObjectByHandle`.
    fn open(&self, ea: &[u8], share: u16) -> Result<TdiObject, NtStatus> {
        self.open_on(&self.device, ea, share)
    }

    /// `TdiOpenDevice` on `device`.
    fn open_on(&self, device: &str, ea: &[u8], share: u16) -> Result<TdiObject, NtStatus> {
        let handle = self.kernel.create_file(device, Some(ea), share)?;
        match self.kernel.reference_file(handle) {
            Ok(object) => Ok(TdiObject { handle, object }),
            Err(status) => {
                self.kernel.close(handle);
                Err(status)
            }
        }
    }

    /// `TdiOpenAddressFile`, on `\Device\Udp` for a datagram socket.
    fn open_address_file(
        &self,
        address: SocketAddrV4,
        share: ShareType,
        datagram: bool,
    ) -> Result<TdiObject, NtStatus> {
        let ea = wire::address_file_ea(address);
        if datagram {
            self.open_on(UDP_DEVICE, &ea, share.share_access())
        } else {
            self.open(&ea, share.share_access())
        }
    }

    /// `ObOpenObjectByPointer` of the address file for msafd: one more handle and reference,
    /// no IRP.
    fn open_user_handle(&self, file: &TdiObject) -> Option<Handle> {
        let _api = self.kernel.api();
        let mut state = self.kernel.0.objects.lock();
        let object = file.object.as_ptr() as usize;
        let record = state.objects.get_mut(&object)?;
        record.handle_count += 1;
        record.pointer_count += 1;
        Some(state.insert_handle(object))
    }

    /// A synchronous TDI request (`TdiAssociateAddressFile`, `TdiDisassociateAddressFile`,
    /// `TdiQueryInformation`): a kernel-mode internal device control IRP with an event and an
    /// IOSB, waited on only if the driver returns `STATUS_PENDING`.
    fn tdi_sync(
        &self,
        file: &ObjectRef,
        minor: u8,
        parameters: IoStackParameters,
        mdl: *mut MDL,
    ) -> IoStatus {
        lock(&self.stats).tdi_requests[usize::from(minor)] += 1;
        let irp = self.internal_irp(file, minor, parameters, mdl);
        self.kernel.call_driver_sync(file.device(), irp)
    }

    /// An `IRP_MJ_INTERNAL_DEVICE_CONTROL` IRP for TDI request `minor` on `file`, with `mdl`
    /// (if not null) as its `MdlAddress`. Threaded, as `TdiBuildInternalDeviceControlIrp`
    /// (`IoBuildDeviceIoControlRequest`) makes it: queued to the building thread, which
    /// cancels it if it ends first (the AFD model's completion routines, like AFD's, issue the
    /// next request in whatever thread runs them).
    fn internal_irp(
        &self,
        file: &ObjectRef,
        minor: u8,
        parameters: IoStackParameters,
        mdl: *mut MDL,
    ) -> *mut IRP {
        let irp = self.kernel.allocate_file_irp(
            file,
            StackLocation {
                major: IRP_MJ_INTERNAL_DEVICE_CONTROL,
                minor,
                flags: 0,
                file_object: std::ptr::null_mut(),
                parameters,
            },
        );
        if !mdl.is_null() {
            // SAFETY: a fresh IRP owned here, not sent yet.
            unsafe { self.kernel.with_irp(irp, |i| i.MdlAddress = mdl) };
        }
        self.kernel.queue_thread_irp(irp);
        irp
    }

    /// `WarmSocketForConnection`: a new connection endpoint and a synchronous
    /// `TDI_ASSOCIATE_ADDRESS` with the address file's kernel handle. The endpoint becomes
    /// `FCB->Connection`.
    fn warm_socket_for_connection(&self, guard: &FcbLock<'_>) -> Result<(), NtStatus> {
        let (address_handle, old) = {
            let mut st = guard.st();
            match st.address_file.as_ref() {
                Some(file) => (file.handle, st.connection.take()),
                None => return Err(NtStatus::INVALID_PARAMETER),
            }
        };
        if let Some(old) = old {
            // The endpoint of a failed connect (real AFD leaks it; the model closes it so the
            // driver's leak check stays meaningful).
            self.disassociate(&old);
            let handle = old.handle;
            drop(old);
            self.kernel.close(handle);
        }
        let connection = self.open(&wire::connection_file_ea(), 0)?;
        let result = self.tdi_sync(
            &connection.object,
            TDI_ASSOCIATE_ADDRESS,
            wire::associate(address_handle.as_raw()),
            std::ptr::null_mut(),
        );
        if let Err(status) = check_status(result.status) {
            let TdiObject { handle, object } = connection;
            drop(object);
            self.kernel.close(handle);
            return Err(status);
        }
        guard.st().connection = Some(Arc::new(connection));
        Ok(())
    }

    /// `TdiDisassociateAddressFile` (synchronous; AFD ignores the result).
    fn disassociate(&self, connection: &TdiObject) {
        self.tdi_sync(
            &connection.object,
            TDI_DISASSOCIATE_ADDRESS,
            wire::kernel_request(
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ),
            std::ptr::null_mut(),
        );
    }

    /// Builds an asynchronous TDI IRP on `file` like `TdiBuildInternalDeviceControlIrp` with no
    /// event and no IOSB, with AFD's completion routine (on success, error and cancel; needs
    /// PASSIVE_LEVEL) and `op`'s buffers.
    fn prepare(
        self: &Arc<Self>,
        fcb: &Arc<Fcb>,
        file: &ObjectRef,
        minor: u8,
        parameters: IoStackParameters,
        mdl: *mut MDL,
        op: Op,
    ) -> Prepared {
        let irp = self.internal_irp(file, minor, parameters, mdl);
        let cancel = Arc::new(AtomicU8::new(NOT_CANCELLED));
        let context = Box::new(IrpContext {
            afd: self.clone(),
            fcb: fcb.clone(),
            op,
            cancel: cancel.clone(),
        });
        self.kernel.set_completion_routine(
            irp,
            Some(tdi_completion),
            Box::into_raw(context).cast(),
            CompletionFlags::ALWAYS_PASSIVE,
        );
        Prepared {
            irp,
            device: file.device(),
            cancel,
        }
    }

    /// Records the IRP as the FCB's in-flight request of its kind, then sends it, ignoring what
    /// `IoCallDriver` returns (AFD's `TdiXxx` always return `STATUS_PENDING`). Called with the
    /// FCB lock held and its state unlocked.
    fn fire(&self, guard: &FcbLock<'_>, kind: RequestKind, minor: u8, prepared: Prepared) {
        {
            let mut st = guard.st();
            if st.in_flight[kind.index()].is_some() {
                self.violation(format!(
                    "AFD model bug: a second {kind:?} request on socket {}",
                    guard.fcb.id.0
                ));
            }
            st.in_flight[kind.index()] = Some(InFlight {
                irp: prepared.irp as usize,
                cancel: prepared.cancel,
            });
        }
        lock(&self.stats).tdi_requests[usize::from(minor)] += 1;
        let _ = self.kernel.call_driver(prepared.device, prepared.irp);
    }

    /// Prepares and fires a request on the FCB's connection object.
    fn issue(
        self: &Arc<Self>,
        fcb: &Arc<Fcb>,
        guard: &FcbLock<'_>,
        minor: u8,
        parameters: IoStackParameters,
        mdl: *mut MDL,
        op: Op,
    ) {
        let kind = op.kind();
        let connection = guard.st().connection.clone();
        let Some(connection) = connection else {
            self.violation(format!(
                "AFD model bug: {kind:?} on socket {} without a connection object",
                fcb.id.0
            ));
            if !mdl.is_null() {
                self.kernel.free_mdl_chain(mdl);
            }
            return;
        };
        let prepared = self.prepare(fcb, &connection.object, minor, parameters, mdl, op);
        self.fire(guard, kind, minor, prepared);
    }

    /// Posts the listening socket's `TDI_LISTEN` on its current endpoint.
    fn post_listen(self: &Arc<Self>, fcb: &Arc<Fcb>, guard: &FcbLock<'_>) {
        let mut call = ConnectionInfo::null();
        let mut ret = ConnectionInfo::null();
        let parameters = wire::kernel_request(0, call.as_ptr(), ret.as_ptr(), std::ptr::null_mut());
        let op = Op::Listen { _call: call, ret };
        self.issue(fcb, guard, TDI_LISTEN, parameters, std::ptr::null_mut(), op);
    }

    /// `RefillSocketBuffer`: one `TDI_RECEIVE` (NORMAL) into the free part of the window,
    /// unless one is in flight, the receive side is closed or the window is full.
    fn refill(self: &Arc<Self>, fcb: &Arc<Fcb>, guard: &FcbLock<'_>) {
        let (length, mut buffer) = {
            let mut st = guard.st();
            if st.in_flight[RequestKind::Receive.index()].is_some()
                || st.tdi_receive_closed
                || st.state != SocketState::Connected
            {
                return;
            }
            if st.recv_content == WINDOW_SIZE {
                if st.recv_used == 0 {
                    return;
                }
                let (used, content) = (st.recv_used, st.recv_content);
                st.recv_window.copy_within(used..content, 0);
                st.recv_content -= used;
                st.recv_used = 0;
            }
            (
                WINDOW_SIZE - st.recv_content,
                std::mem::take(&mut st.spare_receive),
            )
        };
        // Only bytes past the spare buffer's old length are zeroed.
        buffer.resize(length, 0);
        let mdl = self
            .kernel
            .build_mdl(buffer.as_mut_ptr(), length, MdlKind::Locked);
        let parameters = wire::receive(length as u32, TDI_RECEIVE_NORMAL);
        self.issue(
            fcb,
            guard,
            TDI_RECEIVE,
            parameters,
            mdl,
            Op::Receive { buffer },
        );
    }

    /// `ReceiveActivity`: satisfies queued user receives from the window (or with
    /// `LastReceiveStatus` once nothing more can be read), then refills.
    fn receive_activity(self: &Arc<Self>, fcb: &Arc<Fcb>, guard: &FcbLock<'_>) {
        {
            let mut st = guard.st();
            while let Some(max) = st.pending_recvs.front().map(|r| r.max) {
                if st.cant_read_more() {
                    let status = st.last_receive_status;
                    let request = st.pending_recvs.pop_front().expect("front exists");
                    request.waiter.complete(if status == NtStatus::SUCCESS {
                        Ok(Vec::new())
                    } else {
                        Err(status)
                    });
                    continue;
                }
                let available = st.recv_content - st.recv_used;
                if available == 0 {
                    break;
                }
                let n = available.min(max);
                let start = st.recv_used;
                let data = st.recv_window[start..start + n].to_vec();
                st.recv_used += n;
                let request = st.pending_recvs.pop_front().expect("front exists");
                request.waiter.complete(Ok(data));
            }
        }
        self.refill(fcb, guard);
    }

    /// Copies queued user sends into the send window and keeps one `TDI_SEND` in flight.
    fn pump_sends(self: &Arc<Self>, fcb: &Arc<Fcb>, guard: &FcbLock<'_>) {
        let data = {
            let mut st = guard.st();
            let st = &mut *st;
            for pending in st.pending_sends.iter_mut() {
                if pending.copied.is_some() {
                    continue;
                }
                let space = WINDOW_SIZE - st.send_window.len();
                let fits = pending.data.len() <= space;
                let blocking_wait = pending.data.len() <= WINDOW_SIZE && !fits;
                if space == 0 || blocking_wait {
                    break;
                }
                let n = pending.data.len().min(space);
                st.send_window.extend_from_slice(&pending.data[..n]);
                pending.copied = Some(n);
                pending.unacked = n;
            }
            if st.in_flight[RequestKind::Send.index()].is_some() || st.send_window.is_empty() {
                None
            } else {
                Some(st.send_window.clone())
            }
        };
        match data {
            Some(mut buffer) => {
                let mdl = self
                    .kernel
                    .build_mdl(buffer.as_mut_ptr(), buffer.len(), MdlKind::Locked);
                let parameters = wire::send(buffer.len() as u32, 0);
                self.issue(
                    fcb,
                    guard,
                    TDI_SEND,
                    parameters,
                    mdl,
                    Op::Send { _buffer: buffer },
                );
            }
            None => self.retry_disconnect(fcb, guard),
        }
    }

    /// `RetryDisconnectCompletion`: a pending RELEASE goes out once the send queue is empty
    /// and no send is in flight.
    fn retry_disconnect(self: &Arc<Self>, fcb: &Arc<Fcb>, guard: &FcbLock<'_>) {
        let ready = {
            let st = guard.st();
            st.disconnect_pending
                && st.pending_sends.is_empty()
                && st.send_window.is_empty()
                && st.in_flight[RequestKind::Send.index()].is_none()
        };
        if ready {
            self.do_disconnect(fcb, guard);
        }
    }

    /// `DoDisconnect`: one `TDI_DISCONNECT` with the pending flags and timeout.
    fn do_disconnect(self: &Arc<Self>, fcb: &Arc<Fcb>, guard: &FcbLock<'_>) {
        let (flags, timeout) = {
            let st = guard.st();
            if st.in_flight[RequestKind::Disconnect.index()].is_some() || !st.disconnect_pending {
                return;
            }
            (st.disconnect_flags, st.disconnect_timeout)
        };
        let peer = guard
            .st()
            .peer
            .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        let mut call = ConnectionInfo::new(peer);
        let mut ret = ConnectionInfo::new(peer);
        let mut timeout = Box::new(timeout);
        let parameters =
            wire::kernel_request(flags, call.as_ptr(), ret.as_ptr(), &raw mut *timeout);
        let op = Op::Disconnect {
            _call: call,
            _ret: ret,
            _timeout: timeout,
        };
        self.issue(
            fcb,
            guard,
            TDI_DISCONNECT,
            parameters,
            std::ptr::null_mut(),
            op,
        );
    }

    /// `SatisfyAccept` + `MakeSocketIntoConnection`: a new CONNECTED socket owning the
    /// accepted endpoint (no address file), with its first `TDI_RECEIVE`.
    fn satisfy_accept(
        self: &Arc<Self>,
        pending: PendingConnection,
        local: Option<SocketAddrV4>,
    ) -> (SocketId, Option<SocketAddrV4>) {
        let mut state = FcbState::new();
        state.connection = Some(pending.endpoint);
        state.peer = pending.peer;
        state.local = local;
        state.state = SocketState::Connected;
        let fcb = self.new_fcb(state);
        let guard = FcbLock::acquire(&fcb);
        self.refill(&fcb, &guard);
        drop(guard);
        (fcb.id, pending.peer)
    }

    /// Dispatches one completion: the late-completion check, then the FCB lock, then the
    /// routine of the request's kind.
    fn completion(
        self: &Arc<Self>,
        irp: usize,
        context: IrpContext,
        status: NtStatus,
        information: usize,
    ) -> NtStatus {
        lock(&self.stats).completions += 1;
        let IrpContext {
            fcb, op, cancel, ..
        } = context;
        let kind = op.kind();
        if fcb.poisoned.load(Ordering::SeqCst) {
            self.late_completion(&fcb, kind, &cancel, status);
            return NtStatus::FILE_CLOSED;
        }
        let guard = FcbLock::acquire(&fcb);
        {
            let mut st = guard.st();
            match st.in_flight[kind.index()].as_ref() {
                Some(f) if f.irp == irp => st.in_flight[kind.index()] = None,
                _ => {
                    drop(st);
                    self.violation(format!(
                        "AFD ASSERT(FCB->{kind:?}Irp.InFlightRequest == Irp) failed on socket {}: \
                         completion of IRP {irp:#x} ({status}) that is not the one in flight",
                        fcb.id.0
                    ));
                    return NtStatus::SUCCESS;
                }
            }
        }
        if guard.st().state == SocketState::Closed {
            self.closed_completion(&guard, kind);
            return NtStatus::FILE_CLOSED;
        }
        match op {
            Op::Receive { buffer } => {
                self.receive_complete(&fcb, &guard, status, information, &buffer);
                guard.st().spare_receive = buffer;
            }
            Op::Send { .. } => self.send_complete(&fcb, &guard, status, information),
            Op::Connect { .. } => self.connect_complete(&fcb, &guard, status),
            Op::Listen { ret, .. } => self.listen_complete(&fcb, &guard, status, &ret),
            Op::Disconnect { .. } => self.disconnect_complete(&fcb, &guard, status),
            Op::ReceiveDatagram { buffer, from } => {
                self.packet_recv_complete(&fcb, &guard, status, information, &buffer, &from)
            }
            Op::SendDatagram { .. } => self.packet_send_complete(&fcb, &guard, status, information),
        }
        status
    }

    /// A completion on a poisoned FCB (see [`Afd::close`]).
    fn late_completion(&self, fcb: &Fcb, kind: RequestKind, cancel: &AtomicU8, status: NtStatus) {
        let outcome = cancel.load(Ordering::SeqCst);
        let released = fcb.released.load(Ordering::SeqCst);
        if outcome == NO_CANCEL_ROUTINE && !released {
            lock(&self.stats).raced_completions += 1;
            return;
        }
        lock(&self.stats).use_after_free += 1;
        let why = match outcome {
            CANCEL_RAN => {
                "IoCancelIrp called its cancel routine, which returned without completing it"
            }
            NO_CANCEL_ROUTINE => {
                "IoCancelIrp found no cancel routine and the IRP completed only after \
                 AfdCloseSocket had freed the FCB"
            }
            _ => "it was not cancelled by AfdCloseSocket",
        };
        let message = format!(
            "AFD use-after-free (CORE-8640): TDI {kind:?} IRP of socket {} completed ({status}) \
             after AfdCloseSocket freed the FCB: {why}",
            fcb.id.0
        );
        verifier::report(
            Rule::CancelRoutineDidNotComplete,
            Site {
                location: None,
                entry: Entry::Completion,
            },
            message.clone(),
        );
        self.violation(message);
    }

    /// A completion on a CLOSED (not yet freed) FCB: flush the user requests of that kind with
    /// `STATUS_FILE_CLOSED`, as each AFD routine does.
    fn closed_completion(&self, guard: &FcbLock<'_>, kind: RequestKind) {
        let mut st = guard.st();
        match kind {
            RequestKind::Receive => {
                for p in st.pending_recvs.drain(..) {
                    p.waiter.complete(Err(NtStatus::FILE_CLOSED));
                }
                for p in st.pending_recvfroms.drain(..) {
                    p.waiter.complete(Err(NtStatus::FILE_CLOSED));
                }
                st.datagrams.clear();
            }
            RequestKind::Send => {
                for p in st.pending_sends.drain(..) {
                    p.waiter.complete(Err(NtStatus::FILE_CLOSED));
                }
                for p in st.pending_sendtos.drain(..) {
                    p.waiter.complete(Err(NtStatus::FILE_CLOSED));
                }
            }
            RequestKind::Listen => {
                for w in st.pending_accepts.drain(..) {
                    w.complete(Err(NtStatus::FILE_CLOSED));
                }
            }
            RequestKind::Connect => {
                if let Some(w) = st.pending_connect.take() {
                    w.complete(Err(NtStatus::FILE_CLOSED));
                }
            }
            RequestKind::Disconnect => {
                st.disconnect_pending = false;
                for w in st.pending_disconnects.drain(..) {
                    w.complete(Err(NtStatus::FILE_CLOSED));
                }
            }
        }
    }

    /// `ReceiveComplete` / `HandleReceiveComplete`.
    fn receive_complete(
        self: &Arc<Self>,
        fcb: &Arc<Fcb>,
        guard: &FcbLock<'_>,
        status: NtStatus,
        information: usize,
        buffer: &[u8],
    ) {
        {
            let mut st = guard.st();
            st.last_receive_status = status;
            if st.tdi_receive_closed {
                // Closed while the receive was in progress: the data is discarded.
            } else if status == NtStatus::SUCCESS {
                if information > buffer.len() {
                    self.violation(format!(
                        "AFD ASSERT(Recv.Content <= Recv.Size) failed on socket {}: TDI_RECEIVE \
                         of {} bytes completed with Information {information}",
                        fcb.id.0,
                        buffer.len()
                    ));
                    return;
                }
                let start = st.recv_content;
                st.recv_window[start..start + information].copy_from_slice(&buffer[..information]);
                st.recv_content += information;
                if information == 0 {
                    st.tdi_receive_closed = true;
                }
            } else {
                st.tdi_receive_closed = true;
            }
        }
        self.receive_activity(fcb, guard);
    }

    /// `SendComplete`.
    fn send_complete(
        self: &Arc<Self>,
        fcb: &Arc<Fcb>,
        guard: &FcbLock<'_>,
        status: NtStatus,
        information: usize,
    ) {
        {
            let mut st = guard.st();
            if !status.is_success() {
                for p in st.pending_sends.drain(..) {
                    p.waiter.complete(Err(status));
                }
                st.send_window.clear();
                drop(st);
                self.retry_disconnect(fcb, guard);
                return;
            }
            let sent = information.min(st.send_window.len());
            if information > st.send_window.len() {
                self.violation(format!(
                    "TDI_SEND of {} bytes on socket {} completed with Information \
                     {information}",
                    st.send_window.len(),
                    fcb.id.0
                ));
            }
            st.send_window.drain(..sent);
            let mut left = sent;
            while left > 0 {
                let Some(front) = st.pending_sends.front_mut() else {
                    break;
                };
                if front.unacked > left {
                    front.unacked -= left;
                    left = 0;
                } else {
                    left -= front.unacked;
                    let done = st.pending_sends.pop_front().expect("front exists");
                    done.waiter.complete(Ok(done.copied.unwrap_or(0)));
                }
            }
        }
        self.pump_sends(fcb, guard);
    }

    /// `StreamSocketConnectComplete`.
    fn connect_complete(self: &Arc<Self>, fcb: &Arc<Fcb>, guard: &FcbLock<'_>, status: NtStatus) {
        let waiter = {
            let mut st = guard.st();
            if status == NtStatus::SUCCESS {
                st.state = SocketState::Connected;
            } else {
                st.state = SocketState::Bound;
            }
            st.pending_connect.take()
        };
        if status == NtStatus::SUCCESS {
            self.refill(fcb, guard);
        }
        if let Some(waiter) = waiter {
            waiter.complete(check_status(status));
        }
    }

    /// `ListenComplete`: queue the connected endpoint with its peer, wake an accept, warm a new
    /// endpoint and post the next listen. An error leaves the listening socket dead.
    fn listen_complete(
        self: &Arc<Self>,
        fcb: &Arc<Fcb>,
        guard: &FcbLock<'_>,
        status: NtStatus,
        ret: &ConnectionInfo,
    ) {
        if status != NtStatus::SUCCESS {
            lock(&self.stats).dead_listeners += 1;
            eprintln!(
                "tcpip AFD model: TDI_LISTEN of listening socket {} completed with {status}: \
                 not re-armed, the socket is dead",
                fcb.id.0
            );
            return;
        }
        {
            let mut st = guard.st();
            let Some(endpoint) = st.connection.take() else {
                return;
            };
            st.pending_connections.push_back(PendingConnection {
                endpoint,
                peer: ret.remote(),
            });
            for waiter in st.pending_accepts.drain(..) {
                waiter.complete(Ok(()));
            }
        }
        match self.warm_socket_for_connection(guard) {
            Ok(()) => {
                self.post_listen(fcb, guard);
                lock(&self.stats).listens_rearmed += 1;
            }
            Err(status) => {
                lock(&self.stats).dead_listeners += 1;
                eprintln!(
                    "tcpip AFD model: WarmSocketForConnection failed with {status} in \
                     ListenComplete of socket {}: the listening socket is dead",
                    fcb.id.0
                );
            }
        }
    }

    /// `DisconnectComplete`.
    fn disconnect_complete(&self, _fcb: &Arc<Fcb>, guard: &FcbLock<'_>, status: NtStatus) {
        let mut st = guard.st();
        st.disconnect_pending = false;
        for waiter in st.pending_disconnects.drain(..) {
            waiter.complete(check_status(status));
        }
        if st.disconnect_flags & TDI_DISCONNECT_RELEASE == 0 {
            st.last_receive_status = NtStatus::FILE_CLOSED;
        }
    }
}
