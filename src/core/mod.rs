//! The one smoltcp core behind one spin lock, the queues and DPC around it, and the pure
//! building blocks it is made of. See ARCHITECTURE.md, "The core".
//!
//! - [`stack`]: the core behind its lock, the inbound/outbound queues, the DPC, timer and
//!   completion work item, cancellation, the dispatch fast path; [`claim`]: which of the DPC
//!   and a dispatching thread runs the core.
//! - [`state`]: the core itself — requests applied, smoltcp polled, listeners and connections
//!   followed up.
//! - [`udp`]: UDP address files (datagram queues, sends, the UDP counters), beside TCP's
//!   state in [`state`].
//! - [`icmp`]: ICMP echo requests (`IOCTL_ICMP_ECHO_REQUEST`), received ICMP messages and
//!   the ICMP counters.
//! - [`raw`]: raw IP address files on `\Device\RawIp\<n>` (`IP_HDRINCL`, every datagram
//!   of their protocol with its header). [`inbox`]: the receive side UDP and raw share;
//!   [`sender`]: packets the core builds, out through a smoltcp raw socket.
//! - [`work`]: requests and the two queues. [`connection`], [`address`]: the TDI objects'
//!   protocol state. [`transfer`]: data between socket rings and MDLs. [`info`]: query answers.
//!   [`counters`]: per-layer counters and the metered device; [`routes`]: static routes;
//!   [`neighbors`]: the mirror of smoltcp's ARP cache; [`retransmit`]: retransmissions seen.
//! - [`sockets`]: one smoltcp set per socket, touched sockets and events; [`demux`]: 4-tuple
//!   → socket; [`timers`]: socket deadlines; [`lookaside`]: the free lists of socket ring
//!   blocks. [`slab`]: generation-checked tables. [`ports`]:
//!   the port table. [`segment`]: frame classification before smoltcp. [`random`]: the
//!   CSPRNG.

pub mod address;
pub mod arp_entries;
pub mod claim;
pub mod connection;
pub mod counters;
pub mod demux;
pub mod endpoint;
pub mod ethernet;
pub mod events;
pub mod fragment;
pub mod icmp;
pub mod inbox;
pub mod info;
pub mod ingress;
pub mod isn;
pub mod lookaside;
pub mod neighbors;
pub mod oversize;
pub mod passes;
pub mod ports;
pub mod random;
pub mod raw;
pub mod resolve;
pub mod retransmit;
pub mod routes;
pub mod segment;
pub mod sender;
pub mod slab;
pub mod sockets;
pub mod stack;
pub mod state;
pub mod timers;
pub mod transfer;
pub mod udp;
pub mod work;
