//! Datagram sockets in the Winsock-style API: what msafd does above AFD for `SOCK_DGRAM`.
//!
//! - `socket_datagram` is `socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP)`: an AFD datagram socket.
//! - `sendto` on an unbound socket binds it to 0.0.0.0:0 first (with wshtcpip's
//!   `WSHNotify(BIND)`), as for connect. A destination that is the limited broadcast address
//!   needs `SO_BROADCAST` (`WSAEACCES` otherwise), as on Windows; ReactOS's msafd only records
//!   the option and its transport always allows broadcast.
//! - `recvfrom` returns the datagram and its sender; a datagram larger than the buffer fills
//!   it and fails with `WSAEMSGSIZE` (AFD's `STATUS_BUFFER_OVERFLOW`), the rest is lost.
//! - `connect` records a default destination for `send` and makes AFD drop datagrams from
//!   anyone else; `send`/`recv` on a datagram socket are `sendto(peer)`/`recvfrom`.

use super::{MsafdState, Socket, SocketInfo, Winsock, WsaError, lock, translate};
use crate::host::afd::ReceivedDatagram;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};

impl Winsock {
    /// `socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP)`.
    pub fn socket_datagram(&self) -> Result<Socket, WsaError> {
        let afd = self.afd.datagram_socket();
        Ok(self.insert(SocketInfo::new(afd, MsafdState::Created, true)))
    }

    /// `setsockopt(SOL_SOCKET, SO_BROADCAST)`.
    pub fn set_broadcast(&self, socket: Socket, on: bool) -> Result<(), WsaError> {
        self.with_info(socket, |info| info.broadcast = on)
    }

    /// `sendto()` (blocking): returns the bytes sent.
    pub fn sendto(&self, socket: Socket, data: &[u8], to: SocketAddrV4) -> Result<usize, WsaError> {
        let info = self.info(socket)?;
        let afd_socket = {
            let mut info = lock(&info);
            if !info.datagram {
                return Err(WsaError::WSAEOPNOTSUPP);
            }
            if to.ip().is_broadcast() && !info.broadcast {
                return Err(WsaError::WSAEACCES);
            }
            if info.state == MsafdState::Created {
                self.bind_locked(&mut info, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
            }
            info.afd
        };
        translate(self.afd.send_to(afd_socket, data, Some(to)))
    }

    /// `recvfrom()` (blocking): the bytes copied into `buffer` and the sender.
    pub fn recvfrom(
        &self,
        socket: Socket,
        buffer: &mut [u8],
    ) -> Result<(usize, SocketAddrV4), WsaError> {
        let (afd_socket, timeout) = {
            let info = self.info(socket)?;
            let info = lock(&info);
            if !info.datagram || info.state != MsafdState::Bound {
                return Err(WsaError::WSAEINVAL);
            }
            (info.afd, info.receive_timeout)
        };
        let ReceivedDatagram {
            data,
            from,
            truncated,
        } = translate(self.afd.recv_from(afd_socket, buffer.len(), timeout))?;
        buffer[..data.len()].copy_from_slice(&data);
        if truncated {
            return Err(WsaError::WSAEMSGSIZE);
        }
        let from = from.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        Ok((data.len(), from))
    }

    /// `connect()` on a datagram socket: binds an unbound socket to the wildcard, then AFD
    /// records the peer. No packet is sent.
    pub(super) fn connect_datagram(
        &self,
        info: &Arc<Mutex<SocketInfo>>,
        peer: SocketAddrV4,
    ) -> Result<(), WsaError> {
        let mut info = lock(info);
        if info.state == MsafdState::Created {
            self.bind_locked(&mut info, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        }
        translate(self.afd.connect_datagram(info.afd, peer))?;
        info.peer = Some(peer);
        Ok(())
    }

    /// `send()` on a connected datagram socket: `sendto(peer)`; `WSAENOTCONN` without one.
    pub(super) fn send_connected_datagram(
        &self,
        socket: Socket,
        data: &[u8],
    ) -> Result<usize, WsaError> {
        let (afd_socket, peer) = self.with_info(socket, |info| (info.afd, info.peer))?;
        if peer.is_none() {
            return Err(WsaError::WSAENOTCONN);
        }
        translate(self.afd.send_to(afd_socket, data, None))
    }
}
