//! The IP helper's view of the stack: the TDI entities and the answers to
//! `IOCTL_TCP_QUERY_INFORMATION_EX` that iphlpapi, wshtcpip and `netstat`/`route`/`arp`/
//! `ipconfig` read (contract §5.1).
//!
//! - [`adapters`]: the answer to `IOCTL_IP_INTERFACE_INFO`;
//! - [`model`]: the rows and the [`Source`](model::Source) trait the core feeds (UDP's rows and
//!   counters included; the NDIS binding's adapters next);
//! - [`entities`]: the entity list derived from the interfaces and address files;
//! - [`provider`]: `TDI_QUERY_INFORMATION` on a control channel;
//! - [`query`]: the answers, built from a `Source` under the core lock;
//! - [`set`]: set requests decoded (routes, ARP entries, socket options);
//! - [`wire`]: the `IFEntry`, `IPSNMPInfo`, ... wire structures.

pub mod adapters;
pub mod entities;
pub mod model;
pub mod provider;
pub mod query;
pub mod set;
pub mod wire;
