//! Moving data between smoltcp's socket buffers and the MDLs of pending TDI_SEND and
//! TDI_RECEIVE requests.
//!
//! Data stays in smoltcp's receive ring until a TDI_RECEIVE takes it, so the window smoltcp
//! advertises is exactly the room left: a slow reader throttles its sender instead of growing
//! kernel memory (ReactOS's lwIP glue acknowledges everything at once and queues without
//! limit). A receive completes as soon as one byte is there; a send completes as soon as its
//! bytes are in the send ring, with the count accepted (AFD sends the rest again).
#![forbid(unsafe_code)]

use crate::core::connection::{CloseReason, Connection, Receive};
use crate::core::state::Completer;
use crate::nt::NtStatus;
use smoltcp::socket::tcp;

/// Completes pending receives from the receive ring, then with 0 bytes once the peer's FIN is
/// reached, or with the connection's error once it died. DISPATCH_LEVEL.
pub fn receive(entry: &mut Connection, socket: &mut tcp::Socket<'static>, c: &Completer<'_>) {
    let graceful = entry.fin_received || entry.closed == Some(CloseReason::Fin);
    while !entry.receives.is_empty() {
        let ended = if socket.can_recv() {
            None
        } else if graceful {
            // Graceful close: success with 0 bytes, for this and every later receive.
            Some(NtStatus::SUCCESS)
        } else if let Some(reason) = entry.closed {
            Some(reason.error_status())
        } else {
            break;
        };
        let Some(receive) = entry.receives.pop_front() else {
            break;
        };
        match ended {
            Some(status) => c.done(receive.irp, status, 0),
            None => match copy_to_receive(&receive, socket) {
                Ok(copied) => c.done(receive.irp, NtStatus::SUCCESS, copied),
                Err(status) => c.done(receive.irp, status, 0),
            },
        }
    }
}

fn copy_to_receive(
    receive: &Receive,
    socket: &mut tcp::Socket<'static>,
) -> Result<usize, NtStatus> {
    let mdl = receive.irp.irp().mdl().ok_or(NtStatus::INVALID_PARAMETER)?;
    let room = mdl.len().min(receive.length as usize);
    if receive.peek {
        let data = socket
            .peek(room)
            .map_err(|_| NtStatus::INVALID_CONNECTION)?;
        return mdl.write(data);
    }
    let mut copied = 0;
    while copied < room && socket.can_recv() {
        let step = socket.recv(|ring| {
            let take = ring.len().min(room - copied);
            let written = ring
                .get(..take)
                .map_or(0, |bytes| mdl.write_at(copied, bytes).unwrap_or(0));
            (written, written)
        });
        match step {
            Ok(0) | Err(_) => break,
            Ok(n) => copied += n,
        }
    }
    Ok(copied)
}

/// Copies pending sends into the send ring and completes each with the bytes accepted.
/// DISPATCH_LEVEL.
pub fn send(entry: &mut Connection, socket: &mut tcp::Socket<'static>, c: &Completer<'_>) {
    while let Some(front) = entry.sends.front() {
        if !socket.may_send() {
            let status = entry
                .closed
                .map_or(NtStatus::INVALID_CONNECTION, CloseReason::error_status);
            if let Some(send) = entry.sends.pop_front() {
                c.done(send.irp, status, 0);
            }
            continue;
        }
        if !socket.can_send() {
            break;
        }
        let Some(mdl) = front.irp.irp().mdl() else {
            if let Some(send) = entry.sends.pop_front() {
                c.done(send.irp, NtStatus::INVALID_PARAMETER, 0);
            }
            continue;
        };
        let total = mdl.len().min(front.length as usize);
        let mut copied = 0;
        while copied < total && socket.can_send() {
            let step = socket.send(|ring| {
                let take = ring.len().min(total - copied);
                let read = ring
                    .get_mut(..take)
                    .map_or(0, |bytes| mdl.read(copied, bytes).unwrap_or(0));
                (read, read)
            });
            match step {
                Ok(0) | Err(_) => break,
                Ok(n) => copied += n,
            }
        }
        if copied == 0 && total > 0 {
            break;
        }
        if let Some(send) = entry.sends.pop_front() {
            c.done(send.irp, NtStatus::SUCCESS, copied);
        }
    }
}
