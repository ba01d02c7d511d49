//! ADDRESS_FILE: a local address and port of one protocol, and what that protocol keeps on
//! it: TCP's listener, UDP's datagram endpoint, or raw IP's endpoint.
#![forbid(unsafe_code)]

use crate::core::ports::Binding;
use crate::core::raw;
use crate::core::sockets::SocketKey;
use crate::core::udp::Endpoint;
use crate::nt::process::ProcessOwner;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};

/// The transport protocol of an address file, from the device it was opened on
/// (`\Device\Tcp`, `\Device\Udp`, `\Device\RawIp\<n>`). TCP and UDP each have their own
/// port space; raw IP has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    /// Raw IP of this IP protocol number.
    Raw(u8),
}

/// One address file. It is reference counted: its file object (until its CLOSE) and every
/// associated connection hold a reference, and it is freed (and its port released) when the
/// last one goes, whatever the close order — AFD closes the address before its connections.
pub struct Address {
    /// Opening order among address files (the information model lists them oldest first).
    pub serial: u64,
    /// The process that opened the file, and when.
    pub owner: ProcessOwner,
    pub protocol: Protocol,
    /// The port table entry this address holds (in its protocol's table): local IP and port.
    pub binding: Binding,
    /// Holders: the file object (until its CLOSE) plus each associated connection.
    pub refs: u32,
    /// Whether the address file itself is still open.
    pub file_open: bool,
    /// TCP: the listener, once a TDI_LISTEN was posted on a connection of this address.
    pub listener: Option<Listener>,
    /// UDP: the datagram endpoint (always present on a UDP address file).
    pub datagram: Option<Box<Endpoint>>,
    /// Raw IP: the raw endpoint (always present on a raw address file).
    pub raw: Option<Box<raw::Endpoint>>,
}

impl Address {
    /// The local IP (0.0.0.0 for a wildcard address file).
    pub fn ip(&self) -> Ipv4Addr {
        self.binding.ip()
    }

    /// The local port (the ephemeral one chosen for port 0).
    pub fn port(&self) -> u16 {
        self.binding.port()
    }
}

/// The transport's own accept queue for one address: smoltcp has no backlog, so the core keeps
/// one socket in LISTEN, moves it aside when a SYN turns it into a half-open connection, and
/// replaces it with a fresh one. Connections that complete while no TDI_LISTEN is pending wait
/// in `ready`; they are never reset for lack of a listen.
pub struct Listener {
    /// The socket currently in LISTEN (none if one could not be allocated yet).
    pub socket: Option<SocketKey>,
    /// Sockets in SYN-RECEIVED, oldest first.
    pub half_open: Vec<SocketKey>,
    /// Established connections not yet handed to a TDI_LISTEN, with their peers.
    pub ready: VecDeque<(SocketKey, SocketAddrV4)>,
    /// Connections (indices) whose TDI_LISTEN waits, oldest first.
    pub waiting: VecDeque<u32>,
    /// Half-open plus ready connections allowed before new SYNs are dropped.
    pub backlog: usize,
    /// Half-open connections held at once; a SYN beyond it takes the place of the oldest.
    pub half_open_limit: usize,
}

impl Listener {
    /// An empty listener with the given backlog and half-open limit.
    pub fn new(backlog: usize, half_open_limit: usize) -> Self {
        Self {
            socket: None,
            half_open: Vec::new(),
            ready: VecDeque::new(),
            waiting: VecDeque::new(),
            backlog,
            half_open_limit,
        }
    }

    /// Whether another SYN may be accepted.
    pub fn has_room(&self) -> bool {
        self.half_open.len() < self.half_open_limit
            && self.half_open.len() + self.ready.len() < self.backlog
    }
}
