//! A small blocking Winsock-style API over the AFD model: what msafd.dll and wshtcpip.dll do
//! above AFD, so that tests read like the Winsock programs users write and see the errors those
//! programs would see.
//!
//! - `socket` makes an AFD socket (no transport traffic).
//! - `bind` asks AFD for the address file with msafd's share type (port 0 → WILDCARD,
//!   SO_REUSEADDR → REUSE, else UNIQUE), then runs wshtcpip's `WSHNotify(BIND)`: a control
//!   channel, the `IOCTL_TCP_QUERY_INFORMATION_EX` ENTITY_LIST probe pair (zero-length probe, then
//!   the exact length, repeated until the sizes agree as tdilib does), close. Any failure there
//!   fails bind with `WSAEINVAL`. The last TL entity of the list becomes the socket's entity
//!   for options.
//! - `connect` on an unbound socket binds to 0.0.0.0:0 first (msafd `WSPConnect`).
//! - `setsockopt(TCP_NODELAY)` is wshtcpip's `WSHSetSocketInformation`: before bind it is queued
//!   and replayed by `WSHNotify(BIND)`; after, `IOCTL_TCP_SET_INFORMATION_EX`
//!   (INFO_CLASS_PROTOCOL / INFO_TYPE_CONNECTION / TCP_SOCKET_NODELAY) on a new control channel;
//!   a failure is `WSAEINVAL`.
//! - `closesocket` is `WSPCloseSocket`: a connected socket gets `AFD_DISCONNECT_SEND`
//!   (TDI_DISCONNECT_RELEASE, timeout 0; skipped after shutdown(SD_SEND)) or, with SO_LINGER
//!   {on, 0}, `AFD_DISCONNECT_ABORT`, waited for without limit; then msafd's address handle is
//!   closed, then the socket (`AfdCloseSocket`). The disconnect's status is closesocket's result.
//! - Errors are msafd's `TranslateNtStatusError` of the status AFD returns.
//! - Datagram sockets (`datagram.rs`): `socket(SOCK_DGRAM)`, `sendto`/`recvfrom`, `connect` as
//!   a default destination and receive filter, `SO_BROADCAST`.
//!
//! Blocking calls wait on events that AFD's completion routines signal; SO_RCVTIMEO and
//! SO_SNDTIMEO bound the waits as msafd does (`WSAETIMEDOUT`), otherwise a wait longer than the
//! model's hang timeout fails the test.
//!
//! Not reproduced: non-blocking sockets, overlapped I/O, select() on anything but "a listening
//! socket has a connection", SO_LINGER with a non-zero timeout (msafd polls with `Sleep`; here
//! it behaves like a graceful close, which AFD already orders after the queued sends).

mod datagram;

use crate::host::KernelHandle;
use crate::host::afd::wire::{self, SHARE_READ_WRITE};
use crate::host::afd::{self, Afd, AfdStats, DisconnectKind, ShareType, SocketId};
use crate::nt::NtStatus;
use crate::nt::types::*;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use crate::host::afd::WsaError;

/// A socket handle (`SOCKET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Socket(u64);

/// `shutdown()`'s `how`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// `SD_RECEIVE`.
    Receive,
    /// `SD_SEND`.
    Send,
    /// `SD_BOTH`.
    Both,
}

/// msafd's `SOCKET_STATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MsafdState {
    Created,
    Bound,
    Listening,
    Connected,
}

/// wshtcpip's `SOCKET_CONTEXT`.
#[derive(Default)]
struct WshContext {
    bound: bool,
    entity: u32,
    instance: u32,
    /// Requests made before bind, replayed by `WSHNotify(BIND)`.
    queued: Vec<Vec<u8>>,
}

/// msafd's `SOCKET_INFORMATION` / `SOCK_SHARED_INFO`.
struct SocketInfo {
    afd: SocketId,
    state: MsafdState,
    send_shutdown: bool,
    receive_shutdown: bool,
    /// SO_LINGER: `Some(l_linger)` when `l_onoff`.
    linger: Option<u16>,
    reuse_address: bool,
    receive_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
    wsh: WshContext,
    /// `SOCK_DGRAM`.
    datagram: bool,
    /// SO_BROADCAST.
    broadcast: bool,
    /// A datagram socket's connect()ed peer.
    peer: Option<SocketAddrV4>,
}

impl SocketInfo {
    /// A socket in state `state` on AFD socket `afd`, with default options.
    fn new(afd: SocketId, state: MsafdState, datagram: bool) -> SocketInfo {
        SocketInfo {
            afd,
            state,
            send_shutdown: false,
            receive_shutdown: false,
            linger: None,
            reuse_address: false,
            receive_timeout: None,
            send_timeout: None,
            wsh: WshContext::default(),
            datagram,
            broadcast: false,
            peer: None,
        }
    }
}

/// The Winsock API over one AFD instance. Share it between threads with `Arc`.
pub struct Winsock {
    afd: Afd,
    sockets: Mutex<HashMap<u64, Arc<Mutex<SocketInfo>>>>,
    next: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Maps an AFD status to the caller's error (`STATUS_SUCCESS` only is success, as in msafd).
fn check(status: NtStatus) -> Result<(), WsaError> {
    afd::check(status)
}

fn translate<T>(result: Result<T, NtStatus>) -> Result<T, WsaError> {
    result.map_err(|status| match afd::translate_nt_status(status) {
        Some(error) => error,
        None => WsaError::WSAENETDOWN,
    })
}

impl Winsock {
    /// Winsock over a new AFD instance on `\Device\Tcp` (`WSAStartup`).
    pub fn new(kernel: &KernelHandle) -> Winsock {
        Winsock::over(Afd::new(kernel))
    }

    /// Winsock over an existing AFD instance.
    pub fn over(afd: Afd) -> Winsock {
        Winsock {
            afd,
            sockets: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0x100),
        }
    }

    /// The AFD model underneath (stats, in-flight requests, violations).
    pub fn afd(&self) -> &Afd {
        &self.afd
    }

    /// The AFD model's counters.
    pub fn stats(&self) -> AfdStats {
        self.afd.stats()
    }

    /// The AFD socket behind a handle (for tests that look at AFD state).
    pub fn afd_socket(&self, socket: Socket) -> Result<SocketId, WsaError> {
        self.with_info(socket, |info| info.afd)
    }

    /// Sockets not closed yet.
    pub fn open_sockets(&self) -> usize {
        lock(&self.sockets).len()
    }

    fn info(&self, socket: Socket) -> Result<Arc<Mutex<SocketInfo>>, WsaError> {
        lock(&self.sockets)
            .get(&socket.0)
            .cloned()
            .ok_or(WsaError::WSAENOTSOCK)
    }

    fn with_info<R>(
        &self,
        socket: Socket,
        f: impl FnOnce(&mut SocketInfo) -> R,
    ) -> Result<R, WsaError> {
        let info = self.info(socket)?;
        let mut info = lock(&info);
        Ok(f(&mut info))
    }

    fn insert(&self, info: SocketInfo) -> Socket {
        let id = self.next.fetch_add(4, Ordering::Relaxed);
        lock(&self.sockets).insert(id, Arc::new(Mutex::new(info)));
        Socket(id)
    }

    /// `socket(AF_INET, SOCK_STREAM, IPPROTO_TCP)`.
    pub fn socket(&self) -> Result<Socket, WsaError> {
        let afd = self.afd.socket();
        Ok(self.insert(SocketInfo::new(afd, MsafdState::Created, false)))
    }

    /// `bind()`.
    pub fn bind(&self, socket: Socket, address: SocketAddrV4) -> Result<(), WsaError> {
        let info = self.info(socket)?;
        let mut info = lock(&info);
        self.bind_locked(&mut info, address)
    }

    fn bind_locked(&self, info: &mut SocketInfo, address: SocketAddrV4) -> Result<(), WsaError> {
        if info.state != MsafdState::Created {
            return Err(WsaError::WSAEINVAL);
        }
        let share = if address.port() == 0 {
            ShareType::Wildcard
        } else if info.reuse_address {
            ShareType::Reuse
        } else {
            ShareType::Unique
        };
        translate(self.afd.bind(info.afd, address, share))?;
        info.state = MsafdState::Bound;
        self.wsh_notify_bind(&mut info.wsh)
    }

    /// wshtcpip's `WSHNotify(WSH_NOTIFY_BIND)`.
    fn wsh_notify_bind(&self, wsh: &mut WshContext) -> Result<(), WsaError> {
        let kernel = self.afd.kernel();
        let channel = kernel
            .create_file(self.afd.device(), None, SHARE_READ_WRITE)
            .map_err(|_| WsaError::WSAEINVAL)?;
        let entities = entity_list(kernel, channel);
        kernel.close(channel);
        let entities = entities.map_err(|_| WsaError::WSAEINVAL)?;
        for (entity, instance) in entities {
            if matches!(entity, CO_TL_ENTITY | CL_TL_ENTITY | ER_ENTITY) {
                wsh.entity = entity;
                wsh.instance = instance;
            }
        }
        wsh.bound = true;
        for mut request in std::mem::take(&mut wsh.queued) {
            request[0..4].copy_from_slice(&wsh.entity.to_le_bytes());
            request[4..8].copy_from_slice(&wsh.instance.to_le_bytes());
            // wshtcpip ignores the result of replayed requests.
            let _ = send_request(kernel, self.afd.device(), &request);
        }
        Ok(())
    }

    /// `listen()`. The backlog is not passed to the transport (AFD ignores it).
    pub fn listen(&self, socket: Socket, _backlog: i32) -> Result<(), WsaError> {
        let info = self.info(socket)?;
        let mut info = lock(&info);
        if info.state == MsafdState::Listening {
            return Ok(());
        }
        translate(self.afd.listen(info.afd))?;
        info.state = MsafdState::Listening;
        Ok(())
    }

    /// `accept()`: blocks until a connection is queued; returns the new socket and the peer.
    pub fn accept(&self, socket: Socket) -> Result<(Socket, SocketAddrV4), WsaError> {
        let listener = self.info(socket)?;
        let afd_socket = {
            let info = lock(&listener);
            if info.state != MsafdState::Listening {
                return Err(WsaError::WSAEINVAL);
            }
            info.afd
        };
        let (accepted, peer) = translate(self.afd.accept(afd_socket, None))?;
        let mut info = SocketInfo::new(accepted, MsafdState::Connected, false);
        info.wsh.bound = true;
        let socket = self.insert(info);
        Ok((
            socket,
            peer.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        ))
    }

    /// select() for readability of a listening socket: whether accept() would not block,
    /// waiting up to `timeout`.
    pub fn select_acceptable(&self, socket: Socket, timeout: Duration) -> Result<bool, WsaError> {
        let afd_socket = self.with_info(socket, |info| info.afd)?;
        translate(self.afd.wait_acceptable(afd_socket, timeout))
    }

    /// `connect()` (blocking). An unbound socket is bound to 0.0.0.0:0 first.
    pub fn connect(&self, socket: Socket, peer: SocketAddrV4) -> Result<(), WsaError> {
        let info = self.info(socket)?;
        if lock(&info).datagram {
            return self.connect_datagram(&info, peer);
        }
        let afd_socket = {
            let mut info = lock(&info);
            match info.state {
                MsafdState::Created => {
                    self.bind_locked(&mut info, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
                }
                MsafdState::Bound => {}
                MsafdState::Connected => return Err(WsaError::WSAEISCONN),
                MsafdState::Listening => return Err(WsaError::WSAEINVAL),
            }
            info.afd
        };
        translate(self.afd.connect(afd_socket, peer))?;
        lock(&info).state = MsafdState::Connected;
        Ok(())
    }

    /// `send()` (blocking): returns the bytes AFD took, which may be fewer than `data.len()`
    /// for a send larger than AFD's 8 KiB window.
    pub fn send(&self, socket: Socket, data: &[u8]) -> Result<usize, WsaError> {
        let (afd_socket, timeout) = {
            let info = self.info(socket)?;
            let info = lock(&info);
            if info.datagram {
                drop(info);
                return self.send_connected_datagram(socket, data);
            }
            if info.send_shutdown {
                return Err(WsaError::WSAESHUTDOWN);
            }
            (info.afd, info.send_timeout)
        };
        translate(self.afd.send(afd_socket, data, timeout))
    }

    /// Sends all of `data`, calling `send()` as often as needed (what Winsock programs do).
    pub fn send_all(&self, socket: Socket, mut data: &[u8]) -> Result<(), WsaError> {
        while !data.is_empty() {
            let n = self.send(socket, data)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// `recv()` (blocking): 0 when the peer closed gracefully.
    pub fn recv(&self, socket: Socket, buffer: &mut [u8]) -> Result<usize, WsaError> {
        let (afd_socket, timeout) = {
            let info = self.info(socket)?;
            let info = lock(&info);
            if info.datagram {
                drop(info);
                return self.recvfrom(socket, buffer).map(|(n, _)| n);
            }
            (info.afd, info.receive_timeout)
        };
        let data = translate(self.afd.recv(afd_socket, buffer.len(), timeout))?;
        buffer[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    /// Receives exactly `buffer.len()` bytes; `Ok(false)` if the peer closed first.
    pub fn recv_exact(&self, socket: Socket, buffer: &mut [u8]) -> Result<bool, WsaError> {
        let mut filled = 0;
        while filled < buffer.len() {
            let n = self.recv(socket, &mut buffer[filled..])?;
            if n == 0 {
                return Ok(false);
            }
            filled += n;
        }
        Ok(true)
    }

    /// `shutdown()` (`WSPShutdown`: `IOCTL_AFD_DISCONNECT` with a timeout of −1,000,000).
    pub fn shutdown(&self, socket: Socket, how: Shutdown) -> Result<(), WsaError> {
        let info = self.info(socket)?;
        let afd_socket = lock(&info).afd;
        let kind = match how {
            Shutdown::Receive => DisconnectKind::Receive,
            Shutdown::Send => DisconnectKind::Send,
            Shutdown::Both => DisconnectKind::Abort,
        };
        translate(self.afd.disconnect(afd_socket, kind, -1_000_000))?;
        let mut info = lock(&info);
        if matches!(how, Shutdown::Send | Shutdown::Both) {
            info.send_shutdown = true;
        }
        if matches!(how, Shutdown::Receive | Shutdown::Both) {
            info.receive_shutdown = true;
        }
        Ok(())
    }

    /// `closesocket()` (`WSPCloseSocket`, then AFD's close). The socket handle is gone even
    /// when an error is returned (the disconnect's status).
    pub fn closesocket(&self, socket: Socket) -> Result<(), WsaError> {
        let info = lock(&self.sockets)
            .remove(&socket.0)
            .ok_or(WsaError::WSAENOTSOCK)?;
        let info = lock(&info);
        let mut status = NtStatus::SUCCESS;
        if info.state == MsafdState::Connected {
            let abort = info.linger == Some(0);
            let needed = if abort {
                !info.receive_shutdown
            } else {
                !info.send_shutdown
            };
            if needed {
                let kind = if abort {
                    DisconnectKind::Abort
                } else {
                    DisconnectKind::Send
                };
                if let Err(error) = self.afd.disconnect(info.afd, kind, 0) {
                    status = error;
                }
            }
        }
        // NtClose(TdiAddressHandle), then NtClose(socket) → AfdCloseSocket.
        let _ = self.afd.close_user_address_handle(info.afd);
        let _ = self.afd.close(info.afd);
        check(status)
    }

    /// `getsockname()`: the transport's answer to `TDI_QUERY_ADDRESS_INFO`.
    pub fn getsockname(&self, socket: Socket) -> Result<SocketAddrV4, WsaError> {
        let info = self.info(socket)?;
        let info = lock(&info);
        if info.state == MsafdState::Created {
            return Err(WsaError::WSAEINVAL);
        }
        translate(self.afd.query_address(info.afd))
    }

    /// `getpeername()`: AFD's stored peer.
    pub fn getpeername(&self, socket: Socket) -> Result<SocketAddrV4, WsaError> {
        let info = self.info(socket)?;
        let info = lock(&info);
        if info.datagram {
            return info.peer.ok_or(WsaError::WSAENOTCONN);
        }
        if info.state != MsafdState::Connected {
            return Err(WsaError::WSAENOTCONN);
        }
        translate(self.afd.peer(info.afd))?.ok_or(WsaError::WSAENOTCONN)
    }

    /// `setsockopt(IPPROTO_TCP, TCP_NODELAY)` through wshtcpip (a `BOOL`, 4 bytes).
    pub fn set_nodelay(&self, socket: Socket, on: bool) -> Result<(), WsaError> {
        let info = self.info(socket)?;
        let mut info = lock(&info);
        let value = u32::from(on).to_le_bytes();
        let request = wire::set_information_ex(
            info.wsh.entity,
            info.wsh.instance,
            INFO_CLASS_PROTOCOL,
            INFO_TYPE_CONNECTION,
            TCP_SOCKET_NODELAY,
            &value,
        );
        if !info.wsh.bound {
            info.wsh.queued.push(request);
            return Ok(());
        }
        send_request(self.afd.kernel(), self.afd.device(), &request)
    }

    /// `setsockopt(SOL_SOCKET, SO_LINGER)`: `Some(seconds)` turns lingering on.
    pub fn set_linger(&self, socket: Socket, linger: Option<u16>) -> Result<(), WsaError> {
        self.with_info(socket, |info| info.linger = linger)
    }

    /// `setsockopt(SOL_SOCKET, SO_REUSEADDR)` (before bind).
    pub fn set_reuse_address(&self, socket: Socket, on: bool) -> Result<(), WsaError> {
        self.with_info(socket, |info| info.reuse_address = on)
    }

    /// `setsockopt(SOL_SOCKET, SO_RCVTIMEO)`.
    pub fn set_receive_timeout(
        &self,
        socket: Socket,
        timeout: Option<Duration>,
    ) -> Result<(), WsaError> {
        self.with_info(socket, |info| info.receive_timeout = timeout)
    }

    /// `setsockopt(SOL_SOCKET, SO_SNDTIMEO)`.
    pub fn set_send_timeout(
        &self,
        socket: Socket,
        timeout: Option<Duration>,
    ) -> Result<(), WsaError> {
        self.with_info(socket, |info| info.send_timeout = timeout)
    }
}

/// tdilib's `tdiGetEntityIDSet` on a control channel: the ENTITY_LIST probe (output length 0)
/// and the fetch with exactly the size the probe returned, repeated until the fetch returns
/// that size. tdilib loops without limit; the model gives up after 16 rounds (a failure).
pub fn entity_list(
    kernel: &KernelHandle,
    channel: crate::host::Handle,
) -> Result<Vec<(u32, u32)>, NtStatus> {
    let input = wire::query_information_ex(
        GENERIC_ENTITY,
        0,
        INFO_CLASS_GENERIC,
        INFO_TYPE_PROVIDER,
        ENTITY_LIST_ID,
    );
    for _ in 0..16 {
        let (status, needed) =
            kernel.device_io_control(channel, IOCTL_TCP_QUERY_INFORMATION_EX, &input, &mut []);
        if status != NtStatus::SUCCESS {
            return Err(status);
        }
        let mut out = vec![0u8; needed];
        let (status, got) =
            kernel.device_io_control(channel, IOCTL_TCP_QUERY_INFORMATION_EX, &input, &mut out);
        if status != NtStatus::SUCCESS {
            return Err(status);
        }
        if got == needed {
            return Ok(out
                .chunks_exact(8)
                .map(|e| {
                    (
                        u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
                        u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
                    )
                })
                .collect());
        }
    }
    Err(NtStatus::UNSUCCESSFUL)
}

/// wshtcpip's `SendRequest`: a new control channel, one `IOCTL_TCP_SET_INFORMATION_EX`, close.
/// Any failure is `WSAEINVAL`.
fn send_request(kernel: &KernelHandle, device: &str, request: &[u8]) -> Result<(), WsaError> {
    let channel = kernel
        .create_file(device, None, SHARE_READ_WRITE)
        .map_err(|_| WsaError::WSAEINVAL)?;
    let (status, _) =
        kernel.device_io_control(channel, IOCTL_TCP_SET_INFORMATION_EX, request, &mut []);
    kernel.close(channel);
    if status.is_success() {
        Ok(())
    } else {
        Err(WsaError::WSAEINVAL)
    }
}
