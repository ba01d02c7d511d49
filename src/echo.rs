//! The tdiecho test driver (`tdiecho.sys`, `src/bin/tdiecho.rs`): a kernel TDI client of
//! `\Device\Tcp` that serves TCP echo on port [`PORT`] through the event interface only
//! (issue 18). It opens an address file on 0.0.0.0:[`PORT`], [`ENDPOINTS`] connection endpoints
//! associated with it, and registers connect, receive and disconnect handlers:
//!
//! - connect: takes a free endpoint (round robin) and accepts with a TDI_ACCEPT returned from
//!   the handler; none free → refused;
//! - receive: takes everything indicated into the connection's backlog (bounded by
//!   [`MAX_BACKLOG`]) and returns a TDI_RECEIVE for what was not indicated; while a receive
//!   is outstanding, or the backlog is full, it takes nothing and a TDI_RECEIVE is posted once
//!   that is over (the order of the bytes is kept);
//! - the backlog goes back with one TDI_SEND at a time (at most [`SEND_CHUNK`] bytes);
//! - disconnect: after the peer's release the backlog is sent, then the connection released
//!   (TDI_DISCONNECT_RELEASE); on an abort the backlog is dropped. Once none of its requests
//!   is outstanding, the endpoint is free again: the next connection is accepted onto it as
//!   it is, still associated (the transport takes a finished endpoint back, as Windows'
//!   does).
//!
//! Unload closes the address file (no events after that), aborts the open connections, waits
//! for every outstanding request (10 s at most; the state is left allocated if some never
//! completes) and closes the endpoints. The same code runs on the host model
//! (`tests/tdi_echo_driver.rs`). Debug output goes out at error level with the `tdiecho: `
//! prefix, so it shows on COM1 in ReactOS.

use crate::nt::NtStatus;
use crate::nt::entry::ClientDriver;
use crate::nt::log::{Level, print_as};
use crate::nt::pool;
use crate::nt::sync::SpinLock;
use crate::nt::tdi_client::{Kind, Request, TdiClient, TdiFile};
use crate::nt::thread;
use crate::nt::types::*;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// The TCP port served.
pub const PORT: u16 = 7400;
/// Connection endpoints, so connections served at once.
pub const ENDPOINTS: usize = 8;
/// The most bytes held for one connection before its data is left in the transport.
pub const MAX_BACKLOG: usize = 256 * 1024;
/// The most bytes one TDI_SEND or TDI_RECEIVE carries.
pub const SEND_CHUNK: usize = 64 * 1024;

macro_rules! say {
    ($level:expr, $($arg:tt)*) => {
        print_as("tdiecho", $level, format_args!($($arg)*))
    };
}

/// What a request's tag says: its kind in the low bits, the endpoint above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Accept = 0,
    Receive = 1,
    Send = 2,
    Release = 3,
    Abort = 4,
}

fn tag(op: Op, slot: usize) -> usize {
    (slot << 3) | op as usize
}

fn untag(tag: usize) -> Option<(Op, usize)> {
    let op = match tag & 7 {
        0 => Op::Accept,
        1 => Op::Receive,
        2 => Op::Send,
        3 => Op::Release,
        4 => Op::Abort,
        _ => return None,
    };
    Some((op, tag >> 3))
}

/// One endpoint's connection.
#[derive(Default)]
struct Conn {
    /// The endpoint's file (taken out only at unload).
    file: Option<TdiFile>,
    in_use: bool,
    accepting: bool,
    receiving: bool,
    sending: bool,
    /// Data was left in the transport: post a TDI_RECEIVE when possible.
    starved: bool,
    peer_released: bool,
    release_sent: bool,
    release_done: bool,
    aborted: bool,
    backlog: VecDeque<u8>,
    echoed: u64,
}

impl Conn {
    fn idle(&self) -> bool {
        !self.accepting && !self.receiving && !self.sending
    }

    fn finished(&self) -> bool {
        self.in_use && self.idle() && (self.aborted || self.release_done)
    }
}

struct Endpoint {
    conn: SpinLock<Conn>,
}

/// The echo server's state, from `DriverEntry` to `DriverUnload`.
pub struct Echo {
    address: SpinLock<Option<TdiFile>>,
    endpoints: Vec<Endpoint>,
    stopping: AtomicBool,
    /// Requests sent or handed to the transport and not completed yet.
    outstanding: AtomicUsize,
    /// The endpoint the next connection tries first.
    next: AtomicUsize,
    pub accepted: AtomicUsize,
    pub refused: AtomicUsize,
    pub closed: AtomicUsize,
    pub echoed: AtomicU64,
}

/// The EA of an address file on 0.0.0.0:`port` (`TdiOpenAddressFile`): `"TransportAddress"`
/// and a `TA_IP_ADDRESS`.
fn address_ea(port: u16) -> [u8; 8 + 17 + 22] {
    let mut ea = [0u8; 8 + 17 + 22];
    ea[5] = TDI_TRANSPORT_ADDRESS_EA.len() as u8;
    ea[6..8].copy_from_slice(&22u16.to_le_bytes());
    ea[8..24].copy_from_slice(TDI_TRANSPORT_ADDRESS_EA);
    // The value, a TA_IP_ADDRESS, at 25: one address of type IP, then its port.
    ea[25..29].copy_from_slice(&1i32.to_le_bytes());
    ea[29..31].copy_from_slice(&TDI_ADDRESS_LENGTH_IP.to_le_bytes());
    ea[31..33].copy_from_slice(&TDI_ADDRESS_TYPE_IP.to_le_bytes());
    ea[33..35].copy_from_slice(&port.to_be_bytes());
    ea
}

/// The EA of a connection endpoint (`TdiOpenConnectionEndpointFile`): `"ConnectionContext"`
/// and the context, pointer-sized.
fn connection_ea(context: usize) -> [u8; 8 + 18 + size_of::<usize>()] {
    let mut ea = [0u8; 8 + 18 + size_of::<usize>()];
    ea[5] = TDI_CONNECTION_CONTEXT_EA.len() as u8;
    ea[6..8].copy_from_slice(&(size_of::<usize>() as u16).to_le_bytes());
    ea[8..25].copy_from_slice(TDI_CONNECTION_CONTEXT_EA);
    ea[26..].copy_from_slice(&context.to_ne_bytes());
    ea
}

/// `a.b.c.d:port` of a `TRANSPORT_ADDRESS` holding an IP address, for the log.
struct Remote<'a>(&'a [u8]);

impl core::fmt::Display for Remote<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0.get(8..14) {
            Some(&[p0, p1, a, b, c, d]) => {
                write!(f, "{a}.{b}.{c}.{d}:{}", u16::from_be_bytes([p0, p1]))
            }
            _ => f.write_str("?"),
        }
    }
}

impl Echo {
    /// Opens the address file and the endpoints (associated with it). PASSIVE_LEVEL.
    pub fn open(port: u16, endpoints: usize) -> Result<Echo, NtStatus> {
        let address = TdiFile::open("\\Device\\Tcp", &address_ea(port))?;
        let mut list = pool::try_vec(endpoints)?;
        for slot in 0..endpoints {
            list.push(Endpoint {
                conn: SpinLock::new(Conn {
                    file: Some(open_endpoint(slot, address.handle())?),
                    ..Conn::default()
                }),
            });
        }
        Ok(Echo {
            address: SpinLock::new(Some(address)),
            endpoints: list,
            stopping: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            echoed: AtomicU64::new(0),
        })
    }

    /// Registers the connect, receive and disconnect handlers. PASSIVE_LEVEL.
    pub fn listen(&'static self) -> Result<(), NtStatus> {
        let address = self
            .address
            .lock()
            .take()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let mut result = Ok(());
        for event in [TDI_EVENT_RECEIVE, TDI_EVENT_DISCONNECT, TDI_EVENT_CONNECT] {
            result = result.and_then(|()| {
                address
                    .request_sync(Kind::event_handler(event, Some(self)))
                    .ok()
            });
        }
        *self.address.lock() = Some(address);
        result
    }

    /// Ends everything (see the module's text); `true` if the state may be freed.
    /// PASSIVE_LEVEL.
    pub fn shut_down(&'static self) -> bool {
        // Closing the address file clears its handlers; the close completes once no handler
        // call is in progress.
        let address = self.address.lock().take();
        drop(address);
        self.stopping.store(true, Ordering::SeqCst);
        for (slot, endpoint) in self.endpoints.iter().enumerate() {
            let abort = {
                let mut conn = endpoint.conn.lock();
                if conn.in_use && !conn.aborted && !conn.finished() {
                    conn.aborted = true;
                    conn.backlog.clear();
                    self.begin(
                        conn.file.as_ref(),
                        Kind::Disconnect(TDI_DISCONNECT_ABORT),
                        Vec::new(),
                        Op::Abort,
                        slot,
                    )
                } else {
                    None
                }
            };
            if let Some(request) = abort {
                request.send();
            }
        }
        let mut waited_ms = 0;
        while self.outstanding.load(Ordering::SeqCst) != 0 && waited_ms < 10_000 {
            thread::sleep_micros(1000);
            waited_ms += 1;
        }
        let left = self.outstanding.load(Ordering::SeqCst);
        say!(
            Level::Notice,
            "stopped: {} accepted, {} refused, {} closed, {} bytes echoed, {} requests outstanding",
            self.accepted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
            self.echoed.load(Ordering::Relaxed),
            left
        );
        left == 0
    }

    /// Builds a request counted as outstanding (uncounted again if it cannot be built).
    /// IRQL ≤ DISPATCH_LEVEL.
    fn begin(
        &'static self,
        file: Option<&TdiFile>,
        kind: Kind,
        buffer: Vec<u8>,
        op: Op,
        slot: usize,
    ) -> Option<Request> {
        let file = file?;
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        match file.request(self, kind, buffer, tag(op, slot)) {
            Ok(request) => Some(request),
            Err(status) => {
                self.outstanding.fetch_sub(1, Ordering::SeqCst);
                say!(Level::Error, "{op:?} on connection {slot}: {status}");
                None
            }
        }
    }

    /// Posts what connection `slot` can do next: a send of its backlog, a receive of data left
    /// in the transport, the release after the peer's. IRQL ≤ DISPATCH_LEVEL, no lock held.
    fn pump(&'static self, slot: usize) {
        let Some(endpoint) = self.endpoints.get(slot) else {
            return;
        };
        let mut requests: [Option<Request>; 3] = [None, None, None];
        {
            let mut conn = endpoint.conn.lock();
            if !conn.in_use || conn.aborted || self.stopping.load(Ordering::SeqCst) {
                return;
            }
            if !conn.sending && !conn.backlog.is_empty() {
                let take = conn.backlog.len().min(SEND_CHUNK);
                if let Ok(mut chunk) = pool::try_vec::<u8>(take) {
                    chunk.extend(conn.backlog.drain(..take));
                    conn.sending = true;
                    requests[0] = self.begin(conn.file.as_ref(), Kind::Send, chunk, Op::Send, slot);
                    if requests[0].is_none() {
                        conn.sending = false;
                    }
                }
            }
            if conn.starved
                && !conn.receiving
                && conn.backlog.len() < MAX_BACKLOG
                && let Ok(room) = pool::try_zeroed(SEND_CHUNK)
            {
                conn.starved = false;
                conn.receiving = true;
                requests[1] =
                    self.begin(conn.file.as_ref(), Kind::Receive, room, Op::Receive, slot);
                if requests[1].is_none() {
                    conn.receiving = false;
                    conn.starved = true;
                }
            }
            if conn.peer_released
                && !conn.release_sent
                && !conn.sending
                && !conn.receiving
                && !conn.starved
                && conn.backlog.is_empty()
            {
                conn.release_sent = true;
                requests[2] = self.begin(
                    conn.file.as_ref(),
                    Kind::Disconnect(TDI_DISCONNECT_RELEASE),
                    Vec::new(),
                    Op::Release,
                    slot,
                );
                if requests[2].is_none() {
                    conn.aborted = true;
                }
            }
        }
        for request in requests.into_iter().flatten() {
            request.send();
        }
        self.free_if_finished(slot);
    }

    /// Makes endpoint `slot` available again once its connection is over and none of its
    /// requests is outstanding. IRQL ≤ DISPATCH_LEVEL.
    fn free_if_finished(&'static self, slot: usize) {
        let Some(endpoint) = self.endpoints.get(slot) else {
            return;
        };
        let mut conn = endpoint.conn.lock();
        if conn.finished() {
            let echoed = conn.echoed;
            let aborted = conn.aborted;
            *conn = Conn {
                file: conn.file.take(),
                ..Conn::default()
            };
            drop(conn);
            self.closed.fetch_add(1, Ordering::Relaxed);
            say!(
                Level::Notice,
                "connection {slot} closed ({}), {echoed} bytes echoed",
                if aborted { "aborted" } else { "released" }
            );
        }
    }
}

impl TdiClient for Echo {
    fn connect(&'static self, remote: &[u8]) -> Option<(usize, Request)> {
        if self.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let count = self.endpoints.len();
        if count == 0 {
            return None;
        }
        let first = self.next.load(Ordering::Relaxed);
        for step in 0..count {
            let slot = (first + step) % count;
            let Some(endpoint) = self.endpoints.get(slot) else {
                continue;
            };
            let mut conn = endpoint.conn.lock();
            if conn.in_use {
                continue;
            }
            if conn.file.is_none() {
                continue;
            }
            let file = conn.file.take();
            *conn = Conn {
                file,
                in_use: true,
                accepting: true,
                ..Conn::default()
            };
            let Some(request) = self.begin(
                conn.file.as_ref(),
                Kind::Accept,
                Vec::new(),
                Op::Accept,
                slot,
            ) else {
                conn.in_use = false;
                conn.accepting = false;
                break;
            };
            drop(conn);
            self.next.store((slot + 1) % count, Ordering::Relaxed);
            say!(
                Level::Notice,
                "accepting {} on connection {slot}",
                Remote(remote)
            );
            return Some((slot + 1, request));
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        say!(Level::Error, "refused {}: no free endpoint", Remote(remote));
        None
    }

    fn receive(
        &'static self,
        connection: usize,
        _flags: u32,
        data: &[u8],
        available: usize,
    ) -> (usize, Option<Request>) {
        let slot = connection.wrapping_sub(1);
        let Some(endpoint) = self.endpoints.get(slot) else {
            return (0, None);
        };
        let (taken, request) = {
            let mut conn = endpoint.conn.lock();
            if !conn.in_use || conn.aborted || self.stopping.load(Ordering::SeqCst) {
                // Nothing will echo it: take it so the transport does not hold it.
                return (data.len(), None);
            }
            let fits = conn.backlog.len() + data.len() <= MAX_BACKLOG;
            if conn.receiving
                || !fits
                || pool::try_reserve_deque(&mut conn.backlog, data.len()).is_err()
            {
                conn.starved = true;
                (0, None)
            } else {
                conn.backlog.extend(data.iter().copied());
                let rest = available.saturating_sub(data.len());
                let mut request = None;
                if rest > 0 {
                    match pool::try_zeroed(rest.min(SEND_CHUNK)) {
                        Ok(room) => {
                            conn.receiving = true;
                            request = self.begin(
                                conn.file.as_ref(),
                                Kind::Receive,
                                room,
                                Op::Receive,
                                slot,
                            );
                            if request.is_none() {
                                conn.receiving = false;
                                conn.starved = true;
                            }
                        }
                        Err(_) => conn.starved = true,
                    }
                }
                (data.len(), request)
            }
        };
        self.pump(slot);
        (taken, request)
    }

    fn disconnect(&'static self, connection: usize, flags: u32) {
        let slot = connection.wrapping_sub(1);
        let Some(endpoint) = self.endpoints.get(slot) else {
            return;
        };
        {
            let mut conn = endpoint.conn.lock();
            if !conn.in_use {
                return;
            }
            if flags & TDI_DISCONNECT_RELEASE != 0 {
                conn.peer_released = true;
            } else {
                conn.aborted = true;
                conn.backlog.clear();
            }
        }
        self.pump(slot);
        self.free_if_finished(slot);
    }

    fn completed(&'static self, tag: usize, status: NtStatus, information: usize, buffer: Vec<u8>) {
        if let Some((op, slot)) = untag(tag)
            && let Some(endpoint) = self.endpoints.get(slot)
        {
            {
                let mut conn = endpoint.conn.lock();
                match op {
                    Op::Accept => {
                        conn.accepting = false;
                        if status.is_success() {
                            self.accepted.fetch_add(1, Ordering::Relaxed);
                        } else {
                            say!(Level::Error, "accept on connection {slot}: {status}");
                            conn.aborted = true;
                        }
                    }
                    Op::Receive => {
                        conn.receiving = false;
                        let data = buffer.get(..information).unwrap_or_default();
                        if !status.is_success() {
                            conn.aborted = true;
                        } else if !conn.aborted
                            && pool::try_reserve_deque(&mut conn.backlog, data.len()).is_ok()
                        {
                            conn.backlog.extend(data.iter().copied());
                            // More may be waiting: keep reading until a receive comes back
                            // empty-handed or the backlog is full.
                            if !data.is_empty() {
                                conn.starved = true;
                            }
                        } else {
                            conn.aborted = true;
                        }
                    }
                    Op::Send => {
                        conn.sending = false;
                        if status.is_success() {
                            let sent = information.min(buffer.len());
                            conn.echoed += sent as u64;
                            self.echoed.fetch_add(sent as u64, Ordering::Relaxed);
                            let rest = buffer.get(sent..).unwrap_or_default();
                            if !rest.is_empty() {
                                if pool::try_reserve_deque(&mut conn.backlog, rest.len()).is_ok() {
                                    for &byte in rest.iter().rev() {
                                        conn.backlog.push_front(byte);
                                    }
                                } else {
                                    conn.aborted = true;
                                }
                            }
                        } else {
                            conn.aborted = true;
                            conn.backlog.clear();
                        }
                    }
                    Op::Release => conn.release_done = true,
                    Op::Abort => conn.aborted = true,
                }
            }
            self.pump(slot);
            self.free_if_finished(slot);
        }
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Opens connection endpoint `slot` (context `slot + 1`) and associates it with the address
/// file whose handle is `address`.
/// PASSIVE_LEVEL.
fn open_endpoint(slot: usize, address: usize) -> Result<TdiFile, NtStatus> {
    let file = TdiFile::open("\\Device\\Tcp", &connection_ea(slot + 1))?;
    file.request_sync(Kind::Associate(address)).ok()?;
    Ok(file)
}

/// The tdiecho image's driver: an [`Echo`] on [`PORT`] with [`ENDPOINTS`] endpoints.
pub struct EchoDriver(Echo);

impl EchoDriver {
    /// The server.
    pub fn echo(&self) -> &Echo {
        &self.0
    }
}

impl ClientDriver for EchoDriver {
    const DEVICE: &'static str = "\\Device\\TdiEcho";

    fn init() -> Result<Self, NtStatus> {
        Echo::open(PORT, ENDPOINTS)
            .map(EchoDriver)
            .inspect_err(|status| {
                say!(
                    Level::Error,
                    "cannot open \\Device\\Tcp port {PORT}: {status}"
                );
            })
    }

    fn start(&'static self) -> Result<(), NtStatus> {
        self.0.listen().inspect_err(|status| {
            say!(Level::Error, "cannot set the event handlers: {status}");
        })?;
        say!(
            Level::Notice,
            "started: echo on port {PORT}, {ENDPOINTS} endpoints"
        );
        Ok(())
    }

    fn stop(&'static self) -> bool {
        self.0.shut_down()
    }
}
