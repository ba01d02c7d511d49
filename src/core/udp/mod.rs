//! UDP: datagram address files on `\Device\Udp`, beside TCP in the same core.
//!
//! UDP shares with TCP the address table (a UDP address file is an [`Address`] whose
//! [`Protocol`] is UDP and which holds an [`Endpoint`]), the routing of the core (loopback for
//! the host's own addresses, an interface's Ethernet link for the rest), the links and the
//! request queues.
//! It has its own port space ([`Udp::ports`], the same rules as TCP's: ephemeral ports
//! 49152–65535 from a random start, `SO_REUSEADDR` sharing, `STATUS_ADDRESS_ALREADY_EXISTS`).
//!
//! # Receiving
//!
//! The core takes UDP datagrams off each link itself ([`wire::parse`]) and hands them to the
//! address files bound to their destination port: one (the most specific bind) for a unicast
//! datagram, every one for a broadcast. A datagram goes straight into a pending
//! TDI_RECEIVE_DATAGRAM if there is one; otherwise it waits in the endpoint's queue, which is
//! bounded in datagrams and bytes ([`UdpConfig`]). Beyond the bound it is dropped **and
//! counted** ([`UdpStats::queue_full`]): a stalled reader never grows the pool and never loses
//! datagrams silently. A unicast datagram for a port nobody has bound goes on to smoltcp, which
//! answers it with an ICMP port unreachable.
//!
//! A datagram larger than the receive's buffer is cut to the buffer and completed with
//! `STATUS_SUCCESS`: AFD's `PacketSocketRecvComplete` stops re-posting its receive after any
//! other status (contract §4.1), so `STATUS_BUFFER_OVERFLOW` would deafen the socket for good.
//! For the same reason an ICMP port unreachable is **not** reported to a connected socket's
//! next receive, as Windows does (`WSAECONNRESET`): the only way to report it through TDI is to
//! complete the pending TDI_RECEIVE_DATAGRAM with an error status, after which ReactOS's AFD
//! never posts another receive on that socket. The unreachable is counted
//! (`IcmpStats::unreachables_in`) and otherwise dropped.
//!
//! # Sending
//!
//! TDI_SEND_DATAGRAM's destination is copied in the dispatch routine (AFD frees it when
//! dispatch returns). The core checks it and the size against the link's MTU (a datagram to
//! the host itself may be larger: it leaves as loopback fragments, `fragmented`; over Ethernet
//! there is no fragmentation yet), chooses the route and the source address (`0.0.0.0` for a broadcast
//! while no address is configured, as DHCP needs), and queues the send on the endpoint. The
//! protocol pass copies queued datagrams, one at a time, into the endpoint's smoltcp UDP
//! socket, which builds the headers and the checksum, and lets it transmit on the route's
//! interface; each send completes with its length once its datagram is in smoltcp. A
//! broadcast leaves on its interface's link, or on every bound one (a limited broadcast from a
//! wildcard address file that is no DHCP client's request: see `requests`), and is also looped
//! back to the host's own sockets. A datagram the link cannot take yet (loopback full, an address still
//! being resolved) holds the endpoint's later sends back; one that cannot leave within
//! [`STUCK_LIMIT`] is dropped and counted ([`UdpStats::send_dropped`]).
//!
//! Module layout: [`wire`] (the received datagram), [`endpoint`] (one address file's queues),
//! `requests` (the TDI requests, as `Core` methods), `path` (the protocol pass: ingress and
//! egress), `fragmented` (datagrams to the host itself past the loopback's MTU).

pub mod endpoint;
mod fragmented;
mod path;
mod requests;
pub mod wire;

pub use endpoint::Endpoint;
pub use path::{Arrival, Ingress, ingress};

use crate::core::address::{Address, Protocol};
use crate::core::ports::PortTable;
use crate::core::slab::{Key, Slab};
use crate::nt::NtStatus;
use crate::nt::pool;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use foldhash::fast::FixedState;
use hashbrown::HashMap;
use smoltcp::time::{Duration, Instant};

/// How long a datagram may wait for its link (an unresolved neighbour) before it is dropped.
pub const STUCK_LIMIT: Duration = Duration::from_secs(3);

/// Bytes of IPv4 and UDP headers in front of a datagram's payload.
pub const HEADERS: usize = 28;

/// The largest UDP payload IPv4 can carry (65,535 − 20 − 8).
pub const MAX_PAYLOAD: usize = 65_507;

/// Tunables of the UDP layer.
#[derive(Clone, Copy, Debug)]
pub struct UdpConfig {
    /// Datagrams an endpoint holds while no receive is pending.
    pub queue_datagrams: usize,
    /// Payload bytes an endpoint holds while no receive is pending.
    pub queue_bytes: usize,
    /// Datagrams an endpoint's smoltcp socket holds on their way out.
    pub tx_datagrams: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            queue_datagrams: 256,
            queue_bytes: 256 * 1024,
            tx_datagrams: 4,
        }
    }
}

/// The UDP layer's counters (what the IP helper's `GetUdpStatistics` reports: in = delivered,
/// in errors = `queue_full` + `checksum_errors`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams delivered to an address file (into a receive or its queue).
    pub datagrams_in: u64,
    /// Datagrams handed to a link.
    pub datagrams_out: u64,
    /// Datagrams for a port no address file has bound.
    pub no_port: u64,
    /// Datagrams dropped because the address file's queue was full (or no memory was left
    /// to queue them).
    pub queue_full: u64,
    /// Datagrams dropped for a wrong IPv4 header or UDP checksum.
    pub checksum_errors: u64,
    /// Datagrams received bigger than the receive that took them, cut to its buffer.
    pub truncated: u64,
    /// Outgoing datagrams dropped because their link could not take them in time.
    pub send_dropped: u64,
}

/// The UDP layer: its port table, counters, and the address files by port. Any IRQL
/// ≤ DISPATCH_LEVEL, under the core lock.
pub struct Udp {
    pub ports: PortTable,
    pub stats: UdpStats,
    pub config: UdpConfig,
    /// Address files (keys into the core's address table) bound to each port.
    by_port: HashMap<u16, Vec<Key>, FixedState>,
    /// Address files with sends to move or a datagram waiting for its link.
    sending: Vec<Key>,
    /// When a datagram waiting for an Ethernet neighbour is tried again.
    retry_at: Option<Instant>,
}

impl Udp {
    /// An empty layer; `seed` starts the ephemeral search and keys the port index. Allocates
    /// nothing. Any IRQL.
    pub fn new(config: UdpConfig, seed: u64) -> Self {
        Self {
            ports: PortTable::new(seed),
            stats: UdpStats::default(),
            config,
            by_port: HashMap::with_hasher(FixedState::with_seed(seed.rotate_left(17))),
            sending: Vec::new(),
            retry_at: None,
        }
    }

    /// Files address file `key` under `port`. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn index(&mut self, port: u16, key: Key) -> Result<(), NtStatus> {
        pool::note_call_site();
        self.by_port
            .try_reserve(1)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        let keys = self.by_port.entry(port).or_default();
        pool::try_push(keys, key)
    }

    /// Removes address file `key` from `port`'s list. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn unindex(&mut self, port: u16, key: Key) {
        if let Some(keys) = self.by_port.get_mut(&port) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.by_port.remove(&port);
            }
        }
    }

    /// The address files a datagram to `ip`:`port` is for: every one bound to the port for a
    /// broadcast, else the one bound to `ip` itself, or failing that a wildcard one (the
    /// first bound, for ports shared with `SO_REUSEADDR`). Writes them to `out` and returns
    /// how many; `out` bounds the fan-out of one broadcast.
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn receivers(
        &self,
        addresses: &Slab<Address>,
        ip: Ipv4Addr,
        port: u16,
        broadcast: bool,
        out: &mut [Key],
    ) -> usize {
        let Some(keys) = self.by_port.get(&port) else {
            return 0;
        };
        let bound = |key: &Key| {
            addresses
                .get(*key)
                .filter(|a| a.protocol == Protocol::Udp && a.file_open)
                .map(Address::ip)
        };
        if broadcast {
            let mut count = 0;
            for (slot, key) in out
                .iter_mut()
                .zip(keys.iter().filter(|k| bound(k).is_some()))
            {
                *slot = *key;
                count += 1;
            }
            return count;
        }
        let exact = keys.iter().find(|k| bound(k) == Some(ip));
        let wildcard = || {
            keys.iter()
                .find(|k| bound(k) == Some(Ipv4Addr::UNSPECIFIED))
        };
        match (exact.or_else(wildcard), out.first_mut()) {
            (Some(key), Some(slot)) => {
                *slot = *key;
                1
            }
            _ => 0,
        }
    }

    /// Lists address file `key` for the next egress (room was reserved by
    /// [`Udp::reserve_sending`]). IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn mark_sending(&mut self, key: Key) {
        if !self.sending.contains(&key) && self.sending.len() < self.sending.capacity() {
            self.sending.push(key);
        }
    }

    /// Makes room to list one more address file for egress.
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn reserve_sending(&mut self) -> Result<(), NtStatus> {
        if self.sending.len() < self.sending.capacity() {
            return Ok(());
        }
        let more = self.sending.capacity().max(4);
        pool::try_reserve(&mut self.sending, more)
    }

    /// Whether sends wait for a pass. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn has_sends(&self) -> bool {
        !self.sending.is_empty()
    }

    /// The counters. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn stats(&self) -> UdpStats {
        self.stats
    }
}

/// Receivers one broadcast datagram is copied to at most.
const BROADCAST_FANOUT: usize = 32;
