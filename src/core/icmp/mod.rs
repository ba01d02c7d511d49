//! ICMP: the echo requests of `IOCTL_ICMP_ECHO_REQUEST` (what `ping` sends through iphlpapi's
//! `IcmpSendEcho2`), the ICMP messages the core receives, and the ICMP counters.
//!
//! smoltcp answers the echo requests addressed to the host itself (`auto-icmp-echo-reply`) and
//! sends the port unreachables for UDP datagrams to closed ports. The core looks at every ICMP
//! message before smoltcp does ([`ingress`]): an echo reply, or an error quoting an echo
//! request, that matches a pending `IOCTL_ICMP_ECHO_REQUEST` completes it; everything is
//! counted in [`IcmpStats`].
//!
//! # Echo requests
//!
//! The dispatch routine decodes the request and copies its data; the core builds the ICMP echo
//! request in an IPv4 packet with the requested TTL (identifier: one per driver, from the
//! CSPRNG; sequence: one per request), and sends it through [`Sender`] on the route's
//! link: the loopback for 127.0.0.0/8 and the host's own addresses (smoltcp's loopback
//! interface answers), the Ethernet link for the rest. The request completes at the first
//! reply (an echo reply, or an ICMP error quoting it: unreachable, time exceeded...), or at its
//! timeout with `STATUS_TIMEOUT` and `IP_REQ_TIMED_OUT`, as ReactOS's transport completes it
//! and iphlpapi expects (`NT_SUCCESS`, the status in the reply). With no link to the
//! destination it completes at once with `IP_DEST_HOST_UNREACHABLE`.
//!
//! Module layout: [`wire`] (received messages, the echo request packet), [`reply`] (the `ICMP_ECHO_REPLY` written to the caller),
//! `echo` (the requests, as `Core` methods).

mod echo;
pub mod reply;
pub mod wire;

pub use echo::{EchoParams, UdpError, ingress, ingress_reporting};

use crate::core::sender::Sender;
use crate::core::udp::endpoint::Leg;
use crate::nt::NtStatus;
use crate::nt::irp::{IrpId, PendingIrp};
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use smoltcp::time::Instant;

/// The ICMP layer's counters (what the IP helper's `GetIcmpStatistics` reports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpStats {
    /// ICMP messages received (well formed, for this host).
    pub messages_in: u64,
    /// ICMP messages received with a wrong checksum or too short.
    pub errors_in: u64,
    /// Echo requests received (smoltcp answers each).
    pub echo_requests_in: u64,
    /// Echo replies received.
    pub echo_replies_in: u64,
    /// Destination unreachables received.
    pub unreachables_in: u64,
    /// Time exceededs received.
    pub time_exceeded_in: u64,
    /// ICMP messages sent: echo requests, echo replies, unreachables.
    pub messages_out: u64,
    /// Echo requests sent (`IOCTL_ICMP_ECHO_REQUEST`).
    pub echo_requests_out: u64,
    /// Echo replies sent (by smoltcp, one per echo request received).
    pub echo_replies_out: u64,
    /// Destination (port) unreachables sent (by smoltcp, for UDP datagrams to closed ports).
    pub unreachables_out: u64,
    /// Echo requests that could not be sent (no route, no memory, a link that never took it).
    pub errors_out: u64,
}

/// A pending echo request.
struct Echo {
    irp: PendingIrp,
    dst: Ipv4Addr,
    seq: u16,
    /// The packet, until it is handed to the link.
    packet: Option<Vec<u8>>,
    leg: Leg,
    /// When the request left (the round-trip time counts from here).
    sent: Instant,
    deadline: Instant,
}

/// The ICMP layer. Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
pub struct Icmp {
    pub stats: IcmpStats,
    echoes: Vec<Echo>,
    sender: Sender,
    ident: u16,
    next_seq: u16,
    /// When a packet waiting for its link is tried again.
    retry_at: Option<Instant>,
}

impl Icmp {
    /// The layer, its echo identifier from `seed`, sending packets up to `largest` bytes.
    /// IRQL ≤ DISPATCH_LEVEL (allocates).
    pub fn new(seed: u64, largest: usize) -> Result<Self, NtStatus> {
        Ok(Self {
            stats: IcmpStats::default(),
            echoes: Vec::new(),
            sender: Sender::new(largest)?,
            ident: seed as u16,
            next_seq: (seed >> 16) as u16,
            retry_at: None,
        })
    }

    /// The counters. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn stats(&self) -> IcmpStats {
        self.stats
    }

    /// Counts the port unreachable smoltcp sends for a UDP datagram to a closed port.
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn count_port_unreachable(&mut self) {
        self.stats.unreachables_out += 1;
        self.stats.messages_out += 1;
    }

    /// Unlinks the pending echo request `id` (for its cancel routine).
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn take(&mut self, id: IrpId) -> Option<PendingIrp> {
        let index = self.echoes.iter().position(|echo| echo.irp.id() == id)?;
        Some(self.echoes.swap_remove(index).irp)
    }

    /// When ICMP next needs a pass: the earliest echo deadline, or a retry of a packet waiting
    /// for its link. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn poll_at(&self) -> Option<Instant> {
        let deadline = self.echoes.iter().map(|echo| echo.deadline).min();
        match (deadline, self.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
