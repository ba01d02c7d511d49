//! Requests that dispatch routines hand to the core, and the two queues around it.
//!
//! A request carries values only: the object it is for (an index from the file object), the
//! decoded parameters, and the IRP. The core validates the object when it applies the request,
//! so a request for an object that has gone away completes with an error instead of touching
//! freed state.
#![forbid(unsafe_code)]

use crate::core::address::Protocol;
use crate::core::icmp::EchoParams;
use crate::nt::NtStatus;
use crate::nt::irp::{IrpId, PendingIrp};
use crate::nt::pool;
use crate::nt::process::ProcessOwner;
use crate::nt::thread::ThreadId;
use crate::nt::types::{
    IRP_MJ_CLOSE, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_ASSOCIATE_ADDRESS, TDI_DISASSOCIATE_ADDRESS,
    TDI_QUERY_INFORMATION, TDI_SET_INFORMATION,
};
use crate::tdi::{Disconnect, QueryType, Timeout, TransportAddress};
use alloc::collections::VecDeque;
use core::net::{Ipv4Addr, SocketAddrV4};

/// What a file object refers to: the index of its entry in the core's address or connection
/// table. Entries are freed only when their file is closed, so the index of an open file never
/// refers to another object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    Address(u32),
    Connection(u32),
}

/// A decoded request.
#[derive(Debug)]
pub enum Request {
    /// IRP_MJ_CREATE with a `TransportAddress` EA, on the device of `protocol`.
    OpenAddress {
        address: TransportAddress,
        shared: bool,
        protocol: Protocol,
        /// The process opening it (the owner-PID tables report it).
        owner: ProcessOwner,
    },
    /// IRP_MJ_CREATE with a `ConnectionContext` EA.
    OpenConnection {
        context: usize,
    },
    /// IRP_MJ_CLOSE of an address or connection file.
    Close(Object),
    /// TDI_ASSOCIATE_ADDRESS: `connection` joins the address file at `address`.
    Associate {
        connection: u32,
        address: u32,
    },
    /// TDI_DISASSOCIATE_ADDRESS (the real unlink happens at CLOSE, as in ReactOS).
    Disassociate {
        connection: u32,
    },
    Connect {
        connection: u32,
        remote: SocketAddrV4,
        timeout: Timeout,
    },
    Listen {
        connection: u32,
    },
    /// TDI_SEND of `length` bytes from the IRP's MDL.
    Send {
        connection: u32,
        length: u32,
    },
    /// TDI_RECEIVE of up to `length` bytes into the IRP's MDL.
    Receive {
        connection: u32,
        length: u32,
        peek: bool,
    },
    Disconnect {
        connection: u32,
        kind: Disconnect,
    },
    /// TDI_SEND_DATAGRAM of `length` bytes from the IRP's MDL to `remote` (copied out of the
    /// client's connection information during dispatch).
    SendDatagram {
        address: u32,
        remote: SocketAddrV4,
        length: u32,
    },
    /// TDI_RECEIVE_DATAGRAM of one datagram, up to `length` bytes, into the IRP's MDL.
    ReceiveDatagram {
        address: u32,
        length: u32,
    },
    Query {
        object: Object,
        kind: QueryType,
    },
    SetNoDelay {
        connection: u32,
        enabled: bool,
    },
    /// TDI_SET_EVENT_HANDLER on an address file: the dispatch routine registered (`set`) or
    /// cleared the handler of `event` in the event hub; the core follows up (a connect
    /// handler makes the address listen).
    SetEventHandler {
        address: u32,
        event: usize,
        set: bool,
    },
    /// IOCTL_SET_IP_ADDRESS: give interface `interface` an address and mask.
    SetIpAddress {
        interface: u32,
        ip: Ipv4Addr,
        prefix: u8,
    },
    /// IOCTL_DELETE_IP_ADDRESS: remove interface `interface`'s address.
    DeleteIpAddress {
        interface: u32,
    },
    /// `AO_OPTION_IP_HDRINCL` on a raw address file.
    SetHeaderInclude {
        address: u32,
        enabled: bool,
    },
    /// IOCTL_ICMP_ECHO_REQUEST: send an echo request and wait for its reply.
    EchoRequest(EchoParams),
    /// IOCTL_QUERY_IP_HW_ADDRESS: the MAC address of `target`, into an output buffer of
    /// `room` bytes.
    ResolveNeighbor {
        target: Ipv4Addr,
        room: usize,
    },
}

/// A request with its IRP, waiting in the inbound queue.
pub struct Work {
    pub request: Request,
    pub irp: PendingIrp,
}

/// The inbound queue: filled by dispatch routines (any IRQL ≤ DISPATCH_LEVEL under its spin
/// lock), drained by the core DPC under the core lock.
#[derive(Default)]
pub struct Inbound {
    items: VecDeque<Work>,
}

impl Inbound {
    /// Makes room for one more request, so that the push after it cannot fail.
    pub fn reserve(&mut self) -> Result<(), NtStatus> {
        pool::try_reserve_deque(&mut self.items, 1)
    }

    /// Appends a request; room was made by [`Inbound::reserve`].
    pub fn push(&mut self, work: Work) {
        self.items.push_back(work);
    }

    /// The oldest request.
    pub fn pop(&mut self) -> Option<Work> {
        self.items.pop_front()
    }

    /// Removes the request carrying IRP `id` (for its cancel routine).
    pub fn take(&mut self, id: IrpId) -> Option<Work> {
        let index = self.items.iter().position(|work| work.irp.id() == id)?;
        self.items.remove(index)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What to do with a finished IRP at PASSIVE_LEVEL before completing it.
#[derive(Debug, Clone, Copy)]
pub enum Finish {
    /// Nothing more.
    Plain,
    /// TDI_LISTEN and TDI_RECEIVE_DATAGRAM: write the peer (the sender of the datagram) into
    /// `ReturnConnectionInformation` / `ReturnDatagramInformation` (argument 2 of both
    /// overlays) and clear its data and option lengths.
    ReturnPeer(SocketAddrV4),
    /// The CLOSE of address file `address`: completed once no handler of the file is being
    /// called (its handlers were cleared when the close was applied).
    AfterHandlers(u32),
}

/// A finished request waiting for the completion worker.
pub struct Completion {
    pub irp: PendingIrp,
    pub status: NtStatus,
    pub information: usize,
    pub finish: Finish,
}

/// A completion in the outbound queue.
struct Ready {
    completion: Completion,
    /// The file object the IRP was sent to (0 if none).
    file: usize,
    /// A DISASSOCIATE or CLOSE: the client is done with the file, and may free what the
    /// file's other completion routines use once this one returns.
    closes: bool,
    /// A request its sender waits for (CREATE, CLOSE, an IOCTL, ASSOCIATE, DISASSOCIATE,
    /// QUERY/SET_INFORMATION) rather than one whose completion routine carries on: the only
    /// kind the dispatch fast path completes in the sender's thread.
    waited_for: bool,
}

/// A completion a run of the worker has taken and not yet finished completing: its cancel
/// routine is gone, so `IoCancelIrp` no longer sees it (contract §7.4 item 2, CORE-8640).
struct Completing {
    ticket: u64,
    file: usize,
    thread: ThreadId,
}

enum Entry {
    Ready(Ready),
    Completing(Completing),
}

/// Which completion of the outbound queue a run is finishing: handed back to
/// [`Outbound::take_ready`] once `IoCompleteRequest` has returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

/// The outbound queue: filled by the core under the core lock, drained at PASSIVE_LEVEL by the
/// completion work item. Entries keep their cancel routines armed until the worker takes them,
/// so a cancel that arrives meanwhile completes them synchronously with their result.
///
/// Every submitted IRP reserves its slot here first ([`Outbound::reserve_slot`]), so pushing a
/// completion from the DPC never allocates and never fails. A taken completion keeps its slot
/// (as a [`Completing`] mark) until its run retires it.
///
/// **Close ordering.** AFD cancels a socket's IRPs, then disassociates and closes its
/// connection and frees the socket's state without waiting for the cancelled IRPs. An IRP that
/// a run had already taken when `IoCancelIrp` came is completed late, into freed memory. So a
/// file's DISASSOCIATE or CLOSE is not completed while another thread is still completing an
/// IRP of the same file: the client's close waits until that completion routine has returned.
/// Its own thread is exempt, so a completion routine that closes its own file does not wait
/// for itself.
#[derive(Default)]
pub struct Outbound {
    items: VecDeque<Entry>,
    reserved: usize,
    ready: usize,
    next_ticket: u64,
}

impl Outbound {
    /// Reserves room for the completion of one more submitted IRP.
    pub fn reserve_slot(&mut self) -> Result<(), NtStatus> {
        let len = self.items.len();
        let needed = len + self.reserved + 1;
        if needed > self.items.capacity() {
            pool::try_reserve_deque(&mut self.items, needed - len)?;
        }
        self.reserved += 1;
        Ok(())
    }

    /// Gives back a slot whose IRP was completed another way (cancelled or failed early).
    pub fn release_slot(&mut self) {
        self.reserved = self.reserved.saturating_sub(1);
    }

    /// Queues a completion into its reserved slot.
    pub fn push(&mut self, completion: Completion) {
        self.release_slot();
        let stack = completion.irp.irp().stack();
        let file = stack.file_object().map_or(0, |file| file.id());
        let closes = stack.major() == IRP_MJ_CLOSE
            || (stack.major() == IRP_MJ_INTERNAL_DEVICE_CONTROL
                && stack.minor() == TDI_DISASSOCIATE_ADDRESS);
        let waited_for = stack.major() != IRP_MJ_INTERNAL_DEVICE_CONTROL
            || matches!(
                stack.minor(),
                TDI_ASSOCIATE_ADDRESS
                    | TDI_DISASSOCIATE_ADDRESS
                    | TDI_QUERY_INFORMATION
                    | TDI_SET_INFORMATION
            );
        self.ready += 1;
        self.items.push_back(Entry::Ready(Ready {
            completion,
            file,
            closes,
            waited_for,
        }));
    }

    /// Removes the mark of `finished` (the run's previous completion, whose `IoCompleteRequest`
    /// has returned), then takes, for `thread`, the oldest completion that can be completed
    /// now: its cancel routine removed, and not a close held back by another thread's
    /// completion on the same file; with `own_file = Some(file)`, only a waited-for one that
    /// `thread` itself sent to `file` (the dispatch fast path's). Completions a cancel routine
    /// has claimed stay queued for it. The taken completion leaves a mark until the run hands
    /// its ticket back.
    pub fn take_ready_of(
        &mut self,
        thread: ThreadId,
        finished: Option<Ticket>,
        own_file: Option<usize>,
    ) -> Option<(Completion, Ticket)> {
        if let Some(ticket) = finished {
            self.retire(ticket);
        }
        let index = (0..self.items.len()).find(|&i| {
            let wanted = match (own_file, self.items.get(i)) {
                (None, _) => true,
                (Some(file), Some(Entry::Ready(ready))) => {
                    ready.waited_for
                        && ready.file == file
                        && ready.completion.irp.dispatcher() == thread
                }
                (Some(_), _) => false,
            };
            wanted && self.can_take(i)
        })?;
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        let entry = self.items.get_mut(index)?;
        let file = match entry {
            Entry::Ready(ready) => ready.file,
            Entry::Completing(_) => return None,
        };
        let mark = Entry::Completing(Completing {
            ticket,
            file,
            thread,
        });
        let Entry::Ready(ready) = core::mem::replace(entry, mark) else {
            return None;
        };
        self.ready = self.ready.saturating_sub(1);
        Some((ready.completion, Ticket(ticket)))
    }

    /// Whether entry `index` is a completion [`Outbound::take_ready`] may take (disarming it).
    fn can_take(&mut self, index: usize) -> bool {
        let Some(Entry::Ready(ready)) = self.items.get(index) else {
            return false;
        };
        if ready.closes {
            let (file, dispatcher) = (ready.file, ready.completion.irp.dispatcher());
            let held = self.items.iter().any(|entry| {
                matches!(entry, Entry::Completing(mark)
                    if mark.file == file && mark.thread != dispatcher)
            });
            if held {
                return false;
            }
        }
        match self.items.get_mut(index) {
            Some(Entry::Ready(ready)) => ready.completion.irp.disarm(),
            _ => false,
        }
    }

    /// Removes the mark of a completion whose `IoCompleteRequest` has returned.
    fn retire(&mut self, ticket: Ticket) {
        let index = self
            .items
            .iter()
            .position(|entry| matches!(entry, Entry::Completing(mark) if mark.ticket == ticket.0));
        if let Some(index) = index {
            self.items.remove(index);
        }
    }

    /// Removes the completion carrying IRP `id` (for its cancel routine).
    pub fn take(&mut self, id: IrpId) -> Option<Completion> {
        let index = self.items.iter().position(
            |entry| matches!(entry, Entry::Ready(ready) if ready.completion.irp.id() == id),
        )?;
        match self.items.remove(index) {
            Some(Entry::Ready(ready)) => {
                self.ready = self.ready.saturating_sub(1);
                Some(ready.completion)
            }
            _ => None,
        }
    }

    /// Whether completions wait for the worker.
    pub fn has_ready(&self) -> bool {
        self.ready != 0
    }
}
