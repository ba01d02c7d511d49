//! Datagram sockets (`SOCK_DGRAM`) in the AFD model, after `AfdPacketSocketWriteData`,
//! `AfdPacketSocketReadData`, `PacketSocketRecvComplete` and `PacketSocketSendComplete`
//! (`drivers/network/afd/afd/read.c`, `write.c`) and contract §4.1:
//!
//! - A datagram socket's address file is opened on `\Device\Udp`; it has no connection
//!   object. bind() (or the first sendto() or connect() on an unbound socket, with a wildcard
//!   address) is followed at once by `WarmSocketForBind`: one `TDI_RECEIVE_DATAGRAM` of the
//!   whole 8 KiB window, whose receive and return information are the same block
//!   (`FCB->AddressFrom`, built from the *local* address).
//! - `PacketSocketRecvComplete` stores the datagram with its sender (`FCB->DatagramList`, its
//!   bytes counted in `Recv.Content`), satisfies queued recvfrom()s, and re-posts the receive
//!   **only while `Recv.Content < Recv.Size`** and only after `STATUS_SUCCESS`: any other
//!   status, or a full store, stops AFD's receiving for good (reads do not restart it —
//!   counted in [`AfdStats::datagram_receives_stopped`](super::AfdStats)).
//! - recvfrom() takes the oldest stored datagram; one larger than the caller's buffer gives the
//!   part that fits with `STATUS_BUFFER_OVERFLOW` (Winsock's `WSAEMSGSIZE`).
//! - sendto() issues one `TDI_SEND_DATAGRAM` of the buffer, with a destination block that is
//!   freed as soon as `IoCallDriver` returns, and completes with the transport's status and
//!   byte count. (AFD keeps one `SendIrp.InFlightRequest` per socket; the model queues a second
//!   concurrent sendto() behind the first instead of overwriting it.)
//! - connect() only records the peer (`FCB->RemoteAddress`, no TDI request): it becomes the
//!   destination of send(), and, as Windows' afd.sys does, datagrams from anyone else are
//!   discarded on receive. (ReactOS's AFD does not filter.)

use super::wire::{self, ConnectionInfo};
use super::{
    Afd, AfdInner, Fcb, FcbLock, FcbState, MdlKind, Op, RequestKind, ShareType, SocketId,
    SocketState, WINDOW_SIZE, Waiter, check_status, lock, wait, wait_read,
};
use crate::nt::NtStatus;
use crate::nt::types::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

/// The TDI device of datagram sockets.
pub const UDP_DEVICE: &str = "\\Device\\Udp";

/// What recvfrom() returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedDatagram {
    pub data: Vec<u8>,
    /// The sender, as the transport wrote it into `ReturnDatagramInformation`.
    pub from: Option<SocketAddrV4>,
    /// The datagram was larger than the caller's buffer: `data` is the part that fit and AFD
    /// completed the request with `STATUS_BUFFER_OVERFLOW`.
    pub truncated: bool,
}

/// A datagram in `FCB->DatagramList`.
pub(super) struct Stored {
    data: Vec<u8>,
    from: Option<SocketAddrV4>,
}

/// A recvfrom() queued in AFD.
pub(super) struct PendingRecvFrom {
    pub(super) waiter: Arc<Waiter<ReceivedDatagram>>,
    max: usize,
}

/// A sendto() queued in AFD.
pub(super) struct PendingSendTo {
    pub(super) waiter: Arc<Waiter<usize>>,
    data: Vec<u8>,
    to: SocketAddrV4,
    /// Its `TDI_SEND_DATAGRAM` is in flight.
    issued: bool,
}

impl Afd {
    /// socket(AF_INET, SOCK_DGRAM, 0): a CREATED FCB flagged `AFD_ENDPOINT_CONNECTIONLESS`.
    pub fn datagram_socket(&self) -> SocketId {
        let mut state = FcbState::new();
        state.datagram = true;
        self.inner.new_fcb(state).id
    }

    /// sendto(`to`), or send() on a connected datagram socket (`to` `None`): binds an unbound
    /// socket to the wildcard first (sendto only), then one `TDI_SEND_DATAGRAM`; returns the
    /// bytes the transport reports sent.
    pub fn send_to(
        &self,
        socket: SocketId,
        data: &[u8],
        to: Option<SocketAddrV4>,
    ) -> Result<usize, NtStatus> {
        let fcb = self.fcb(socket)?;
        let waiter = {
            let guard = FcbLock::acquire(&fcb);
            let (state, datagram, peer) = {
                let st = guard.st();
                (st.state, st.datagram, st.peer)
            };
            if !datagram {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            let to = match (to, state) {
                (Some(to), SocketState::Created) => {
                    self.inner.bind_wildcard(&fcb, &guard)?;
                    to
                }
                (Some(to), SocketState::Bound) => to,
                (None, SocketState::Bound) => peer.ok_or(NtStatus::INVALID_PARAMETER)?,
                _ => return Err(NtStatus::INVALID_PARAMETER),
            };
            let waiter = Waiter::new(&self.inner.kernel);
            guard.st().pending_sendtos.push_back(PendingSendTo {
                waiter: waiter.clone(),
                data: data.to_vec(),
                to,
                issued: false,
            });
            self.inner.pump_sendtos(&fcb, &guard);
            waiter
        };
        wait(&waiter, None)
    }

    /// recvfrom() (blocking): the oldest stored datagram, cut to `max` bytes, or the next one
    /// to arrive. `timeout` bounds the wait (`STATUS_TIMEOUT`).
    pub fn recv_from(
        &self,
        socket: SocketId,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<ReceivedDatagram, NtStatus> {
        let fcb = self.fcb(socket)?;
        let waiter = {
            let guard = FcbLock::acquire(&fcb);
            let mut st = guard.st();
            if !st.datagram || st.state != SocketState::Bound {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            if let Some(stored) = st.datagrams.pop_front() {
                st.recv_content -= stored.data.len();
                return Ok(satisfy(stored, max));
            }
            if st.tdi_receive_closed {
                return Err(NtStatus::FILE_CLOSED);
            }
            let waiter = Waiter::new(&self.inner.kernel);
            st.pending_recvfroms.push_back(PendingRecvFrom {
                waiter: waiter.clone(),
                max,
            });
            waiter
        };
        wait_read(&fcb, &waiter, timeout, "recvfrom()", |st| {
            st.pending_recvfroms
                .retain(|p| !Arc::ptr_eq(&p.waiter, &waiter))
        })
    }

    /// connect() on a datagram socket: records the peer (`FCB->RemoteAddress`), binding an
    /// unbound socket to the wildcard first. No TDI request.
    pub fn connect_datagram(&self, socket: SocketId, peer: SocketAddrV4) -> Result<(), NtStatus> {
        let fcb = self.fcb(socket)?;
        let guard = FcbLock::acquire(&fcb);
        let (state, datagram) = {
            let st = guard.st();
            (st.state, st.datagram)
        };
        match (datagram, state) {
            (true, SocketState::Created) => self.inner.bind_wildcard(&fcb, &guard)?,
            (true, SocketState::Bound) => {}
            _ => return Err(NtStatus::INVALID_PARAMETER),
        }
        guard.st().peer = Some(peer);
        Ok(())
    }

    /// The datagrams AFD holds for the socket (`FCB->DatagramList`): count and bytes.
    pub fn stored_datagrams(&self, socket: SocketId) -> Result<(usize, usize), NtStatus> {
        let fcb = self.fcb(socket)?;
        let guard = FcbLock::acquire(&fcb);
        let st = guard.st();
        Ok((st.datagrams.len(), st.recv_content))
    }
}

/// `SatisfyPacketRecvRequest`: the datagram cut to `max`, truncation flagged.
fn satisfy(stored: Stored, max: usize) -> ReceivedDatagram {
    let truncated = stored.data.len() > max;
    let mut data = stored.data;
    data.truncate(max);
    ReceivedDatagram {
        data,
        from: stored.from,
        truncated,
    }
}

impl AfdInner {
    /// A CREATED datagram socket gets a wildcard address file (`AFD_SHARE_WILDCARD`) and its
    /// first receive.
    fn bind_wildcard(
        self: &Arc<Self>,
        fcb: &Arc<Fcb>,
        guard: &FcbLock<'_>,
    ) -> Result<(), NtStatus> {
        let wildcard = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        let file = self.open_address_file(wildcard, ShareType::Wildcard, true)?;
        {
            let mut st = guard.st();
            st.address_file = Some(Arc::new(file));
            st.local = Some(wildcard);
            st.state = SocketState::Bound;
        }
        self.warm_socket_for_bind(fcb, guard);
        Ok(())
    }

    /// `WarmSocketForBind` for a datagram socket: its one `TDI_RECEIVE_DATAGRAM`.
    pub(super) fn warm_socket_for_bind(self: &Arc<Self>, fcb: &Arc<Fcb>, guard: &FcbLock<'_>) {
        self.post_receive_datagram(fcb, guard);
    }

    /// One `TDI_RECEIVE_DATAGRAM` of the whole window on the address file, flags 0, with
    /// `FCB->AddressFrom` (the local address) as both receive and return information.
    fn post_receive_datagram(self: &Arc<Self>, fcb: &Arc<Fcb>, guard: &FcbLock<'_>) {
        let (file, local) = {
            let st = guard.st();
            if st.in_flight[RequestKind::Receive.index()].is_some() || st.tdi_receive_closed {
                return;
            }
            match st.address_file.clone() {
                Some(file) => (file, st.local),
                None => return,
            }
        };
        let mut buffer = vec![0u8; WINDOW_SIZE];
        let mdl = self
            .kernel
            .build_mdl(buffer.as_mut_ptr(), WINDOW_SIZE, MdlKind::Locked);
        let unspecified = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        let mut from = ConnectionInfo::new(local.unwrap_or(unspecified));
        let info = from.as_ptr();
        let parameters = wire::receive_datagram(WINDOW_SIZE as u32, info, info, 0);
        let op = Op::ReceiveDatagram { buffer, from };
        let prepared = self.prepare(fcb, &file.object, TDI_RECEIVE_DATAGRAM, parameters, mdl, op);
        self.fire(guard, RequestKind::Receive, TDI_RECEIVE_DATAGRAM, prepared);
    }

    /// Issues the oldest queued sendto() unless a `TDI_SEND_DATAGRAM` is in flight. The
    /// destination block is freed once `IoCallDriver` has returned, as AFD frees it.
    pub(super) fn pump_sendtos(self: &Arc<Self>, fcb: &Arc<Fcb>, guard: &FcbLock<'_>) {
        let (file, mut buffer, to) = {
            let mut st = guard.st();
            if st.in_flight[RequestKind::Send.index()].is_some() {
                return;
            }
            let Some(file) = st.address_file.clone() else {
                return;
            };
            let Some(front) = st.pending_sendtos.front_mut() else {
                return;
            };
            front.issued = true;
            (file, front.data.clone(), front.to)
        };
        let mdl = if buffer.is_empty() {
            std::ptr::null_mut()
        } else {
            self.kernel
                .build_mdl(buffer.as_mut_ptr(), buffer.len(), MdlKind::Locked)
        };
        let mut destination = ConnectionInfo::new(to);
        let parameters = wire::send_datagram(buffer.len() as u32, destination.as_ptr());
        let op = Op::SendDatagram { _buffer: buffer };
        let prepared = self.prepare(fcb, &file.object, TDI_SEND_DATAGRAM, parameters, mdl, op);
        self.fire(guard, RequestKind::Send, TDI_SEND_DATAGRAM, prepared);
        drop(destination);
    }

    /// `PacketSocketSendComplete`: the oldest sendto() completes with the transport's result.
    pub(super) fn packet_send_complete(
        self: &Arc<Self>,
        fcb: &Arc<Fcb>,
        guard: &FcbLock<'_>,
        status: NtStatus,
        information: usize,
    ) {
        let done = {
            let mut st = guard.st();
            match st.pending_sendtos.front() {
                Some(front) if front.issued => st.pending_sendtos.pop_front(),
                _ => None,
            }
        };
        match done {
            Some(done) => done
                .waiter
                .complete(check_status(status).map(|()| information)),
            None => self.violation(format!(
                "AFD ASSERT(!IsListEmpty(&FCB->PendingIrpList[FUNCTION_SEND])) failed on socket \
                 {}: TDI_SEND_DATAGRAM completed ({status}) with no sendto() waiting",
                fcb.id.0
            )),
        }
        self.pump_sendtos(fcb, guard);
    }

    /// `PacketSocketRecvComplete`.
    pub(super) fn packet_recv_complete(
        self: &Arc<Self>,
        fcb: &Arc<Fcb>,
        guard: &FcbLock<'_>,
        status: NtStatus,
        information: usize,
        buffer: &[u8],
        from: &ConnectionInfo,
    ) {
        if status != NtStatus::SUCCESS {
            lock(&self.stats).datagram_receives_stopped += 1;
            eprintln!(
                "tcpip AFD model: TDI_RECEIVE_DATAGRAM of socket {} completed with {status}: \
                 AFD does not post it again, the socket is deaf",
                fcb.id.0
            );
            return;
        }
        if guard.st().tdi_receive_closed {
            return;
        }
        let Some(data) = buffer.get(..information) else {
            self.violation(format!(
                "TDI_RECEIVE_DATAGRAM of {} bytes on socket {} completed with Information \
                 {information}",
                buffer.len(),
                fcb.id.0
            ));
            return;
        };
        let sender = from.remote();
        let mut st = guard.st();
        let wanted = st.peer.is_none() || st.peer == sender;
        if wanted {
            st.recv_content += data.len();
            st.datagrams.push_back(Stored {
                data: data.to_vec(),
                from: sender,
            });
        }
        while !st.datagrams.is_empty() && !st.pending_recvfroms.is_empty() {
            let (Some(stored), Some(request)) =
                (st.datagrams.pop_front(), st.pending_recvfroms.pop_front())
            else {
                break;
            };
            st.recv_content -= stored.data.len();
            request.waiter.complete(Ok(satisfy(stored, request.max)));
        }
        let room = st.recv_content < WINDOW_SIZE;
        drop(st);
        if room {
            self.post_receive_datagram(fcb, guard);
        } else {
            lock(&self.stats).datagram_receives_stopped += 1;
        }
    }
}
