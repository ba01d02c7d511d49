//! Safe abstractions over NDIS 5.0 for a connectionless protocol driver.
//!
//! - [`protocol`]: registration of the characteristics and the raw handler trampolines, which
//!   turn NDIS's context pointers back into the driver's [`Protocol`](protocol::Protocol) and
//!   binding types.
//! - [`open`]: a binding to an adapter ([`Open`](open::Open)): `NdisOpenAdapter`, OID requests
//!   and `NdisCloseAdapter`, each waiting for its completion handler when NDIS pends it.
//! - [`packet`]: packet and buffer pools, and [`Slot`](packet::Slot)s (a packet descriptor over
//!   a non-paged block of its own) that carry a frame to `NdisSend` or from `NdisTransferData`.
//! - [`receive`]: what a receive indication lends the protocol, read by copying out of it.
//! - [`event`] wraps `NDIS_EVENT`, and [`registry`] reads values under
//!   `\Registry\Machine\...`.
//!
//! Handlers' IRQLs follow NDIS: bind, unbind and PnP at PASSIVE_LEVEL; receive, send and
//! transfer completions and status indications at DISPATCH_LEVEL; open, close and request
//! completions at IRQL ≤ DISPATCH_LEVEL.

pub mod event;
pub mod open;
pub mod packet;
pub mod protocol;
pub mod receive;
pub mod registry;

use crate::nt::NtStatus;
use crate::nt::types::NDIS_STATUS_RESOURCES;

/// `NDIS_STATUS` values are NTSTATUS values.
pub type NdisStatus = NtStatus;

/// The status a failed allocation becomes. Any IRQL.
pub const RESOURCES: NdisStatus = NtStatus(NDIS_STATUS_RESOURCES);
