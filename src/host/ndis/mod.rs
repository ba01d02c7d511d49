//! A model of NDIS 5 for the protocol side of the driver, with the verifier's NDIS rules.
//!
//! The model is the NDIS wrapper between the driver (a protocol) and *model miniports*:
//! anything that implements [`Adapter`] is the wire of a miniport (the TAP adapter, or a test's
//! recording adapter), added with [`KernelHandle::ndis_add_miniport`] under a device name
//! (`\Device\{GUID}`) and with [`MiniportOptions`] that choose how it behaves. The model keeps
//! NDIS's rules:
//!
//! - `NdisRegisterProtocol` calls `BindAdapter` for every miniport already present, inside
//!   the call, as ReactOS does; a miniport added later is bound when it arrives; removing one
//!   calls `UnbindAdapter`. Bind and unbind run at PASSIVE_LEVEL as driver routines.
//! - Receive indications run at DISPATCH_LEVEL: `ReceivePacket` with a packet of two buffers
//!   (header, data) over a copy of the frame, or `Receive` with the header and a lookahead
//!   (everything, or only the first bytes for a lookahead-only miniport), after which the
//!   protocol must call `NdisTransferData` *during* the indication. When the indication
//!   returns, the frame copy is poisoned and its packet, buffers and receive context die:
//!   using them later is a violation.
//! - Sends, transfers, OID requests, opens and closes complete at once or, if the miniport
//!   pends them, later from the model's miniport thread (`nt-ndis`) at DISPATCH_LEVEL.
//! - Packet and buffer descriptors are real allocations of the DDK layouts (`NDIS_PACKET`,
//!   MDLs), tracked by owner: the protocol, or NDIS while a send or transfer is outstanding.
//!
//! The verifier rules are the `Ndis*` [`Rule`]s; pools, bindings and the registration still
//! present when the driver unloads are reported as [`Rule::NdisLeak`].

mod deferred;
mod indicate;
mod model;
mod packets;
mod pools;
mod registry;
mod requests;
pub mod sys;

pub(crate) use model::NdisState;
pub use model::{Indication, MiniportOptions};
pub use registry::RegValue;

use super::kernel::KernelHandle;
use crate::link::ethernet::Adapter;
use crate::nt::NtStatus;
use std::sync::Arc;

impl KernelHandle {
    /// Adds a miniport named `name` (`\Device\{GUID}`) whose wire is `adapter`; if the protocol
    /// is registered, NDIS binds it now (`BindAdapter` on this thread) and returns the bind's
    /// status. PASSIVE_LEVEL.
    pub fn ndis_add_miniport(
        &self,
        name: &str,
        adapter: Arc<dyn Adapter>,
        options: MiniportOptions,
    ) -> NtStatus {
        let _api = self.api();
        self.0.ndis.add_miniport(&self.0, name, adapter, options)
    }

    /// Removes miniport `name`, unbinding the protocol from it first (`UnbindAdapter` on this
    /// thread). PASSIVE_LEVEL.
    pub fn ndis_remove_miniport(&self, name: &str) {
        let _api = self.api();
        self.0.ndis.remove_miniport(&self.0, name);
    }

    /// Indicates `frame` as received by miniport `name`, in the way its options say.
    /// `false` if no protocol is bound to it. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn ndis_indicate(&self, name: &str, frame: &[u8]) -> bool {
        let _api = self.api();
        self.0.ndis.indicate(&self.0, name, frame)
    }

    /// Indicates a status (`NDIS_STATUS_MEDIA_CONNECT`, `..._DISCONNECT`) from miniport
    /// `name`, and records the media state it implies. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn ndis_indicate_status(&self, name: &str, status: i32) {
        let _api = self.api();
        self.0.ndis.indicate_status(&self.0, name, status);
    }

    /// Whether the protocol has an open binding to miniport `name`. Any IRQL.
    pub fn ndis_is_bound(&self, name: &str) -> bool {
        self.0.ndis.is_bound(name)
    }

    /// The packet filter the protocol set on miniport `name` (`OID_GEN_CURRENT_PACKET_FILTER`).
    /// Any IRQL.
    pub fn ndis_packet_filter(&self, name: &str) -> Option<u32> {
        self.0.ndis.packet_filter(name)
    }

    /// Sets registry value `name` of key `path` (`\Registry\Machine\...`, case-insensitive),
    /// creating the key. Any IRQL.
    pub fn set_registry_value(&self, path: &str, name: &str, value: RegValue) {
        self.0.ndis.registry.set(path, name, value);
    }
}
