//! Raw IP: datagram address files on `\Device\RawIp\<protocol>` (what AFD opens for
//! `SOCK_RAW`), beside UDP in the same core.
//!
//! A raw address file serves one IP protocol, the number in its file name (`\Device\RawIp\1`
//! for ICMP; no number, or an address file on `\Device\Ip`, is `IPPROTO_RAW`, 255). It shares
//! the address table, the routing and source-address choice and the queues with TCP and UDP;
//! it has no port space.
//!
//! # Receiving
//!
//! Every IPv4 datagram for the host (one of its addresses, or a broadcast) whose protocol is
//! the file's is copied to it, **with its IPv4 header**, as Windows' raw IPv4 sockets receive
//! them; the sender's address comes back in `ReturnDatagramInformation` with port 0. The
//! datagram still goes on to the host's own protocols (an ICMP echo request is still
//! answered), except for protocols the host does not implement, which a raw file takes (smoltcp
//! would otherwise answer them with an ICMP protocol unreachable). Pending receives and the
//! bounded queue are [`crate::core::inbox::Inbox`]'s: dropped datagrams are counted.
//!
//! # Sending
//!
//! TDI_SEND_DATAGRAM builds an IPv4 header (the protocol, TTL 128, the source address of the
//! route) in front of the caller's data; with `IP_HDRINCL` ([`Core::set_header_include`],
//! `AO_OPTION_IP_HDRINCL`) the caller's data is the whole packet, header included, and a
//! source of 0.0.0.0 is filled in. Packets leave through [`crate::core::sender::Sender`], one at
//! a time, each send completing with its length once its packet is on its link. A packet larger
//! than the route's MTU is `STATUS_INVALID_BUFFER_SIZE` (no fragmentation yet).
//!
//! Module layout: [`endpoint`] (one address file), `requests` (the TDI requests and the
//! protocol pass, as `Core` methods).

pub mod endpoint;
mod requests;

pub use endpoint::Endpoint;
pub use requests::ingress;

use crate::core::sender::Sender;
use crate::core::slab::Key;
use crate::nt::NtStatus;
use crate::nt::pool;
use alloc::vec::Vec;
use smoltcp::time::Instant;

/// `IPPROTO_RAW`: the protocol of raw address files opened without a number.
pub const IPPROTO_RAW: u8 = 255;

/// Tunables of the raw layer.
#[derive(Clone, Copy, Debug)]
pub struct RawConfig {
    /// Datagrams an address file holds while no receive is pending.
    pub queue_datagrams: usize,
    /// Bytes an address file holds while no receive is pending.
    pub queue_bytes: usize,
}

impl Default for RawConfig {
    /// The defaults. Any IRQL.
    fn default() -> Self {
        Self {
            queue_datagrams: 64,
            queue_bytes: 128 * 1024,
        }
    }
}

/// The raw layer's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawStats {
    /// Datagrams delivered to a raw address file (one per file).
    pub datagrams_in: u64,
    /// Datagrams handed to a link.
    pub datagrams_out: u64,
    /// Datagrams dropped because an address file's queue was full (or no memory was left).
    pub queue_full: u64,
    /// Datagrams cut to the receive's buffer.
    pub truncated: u64,
    /// Outgoing datagrams dropped because their link could not take them in time.
    pub send_dropped: u64,
}

/// The raw layer: its address files, the sender its packets leave through, its counters.
/// Any IRQL ≤ DISPATCH_LEVEL, under the core lock.
pub struct Raw {
    pub stats: RawStats,
    pub config: RawConfig,
    /// The raw address files (keys into the core's address table).
    files: Vec<Key>,
    /// Address files with sends waiting.
    sending: Vec<Key>,
    sender: Sender,
    /// When a packet waiting for an Ethernet neighbour is tried again.
    retry_at: Option<Instant>,
}

impl Raw {
    /// An empty layer sending packets of up to `largest` bytes. IRQL ≤ DISPATCH_LEVEL
    /// (allocates).
    pub fn new(config: RawConfig, largest: usize) -> Result<Self, NtStatus> {
        Ok(Self {
            stats: RawStats::default(),
            config,
            files: Vec::new(),
            sending: Vec::new(),
            sender: Sender::new(largest)?,
            retry_at: None,
        })
    }

    /// The counters. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn stats(&self) -> RawStats {
        self.stats
    }

    /// When the raw layer next needs a pass. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn poll_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Lists address file `key` for the next egress. IRQL ≤ DISPATCH_LEVEL, under the core
    /// lock.
    fn mark_sending(&mut self, key: Key) -> Result<(), NtStatus> {
        if self.sending.contains(&key) {
            return Ok(());
        }
        pool::try_push(&mut self.sending, key)
    }
}
