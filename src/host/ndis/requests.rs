//! What the protocol asks of a binding: `NdisOpenAdapter`, `NdisCloseAdapter`, `NdisRequest`,
//! `NdisSend` and `NdisTransferData`.

use super::model::*;
use super::packets::{self, Owner};
use crate::host::verifier::Rule;
use crate::link::ethernet::HEADER_LEN;
use crate::nt::types::*;
use std::collections::HashSet;

impl NdisState {
    /// `NdisOpenAdapter`: `(status, binding handle, selected medium index)`.
    pub(crate) fn open_adapter(
        &self,
        protocol: usize,
        context: usize,
        name: &str,
        media: &[NDIS_MEDIUM],
    ) -> (NDIS_STATUS, usize, u32) {
        let mut model = self.model();
        if model.protocol.as_ref().map(|p| p.handle) != Some(protocol) {
            return (NDIS_STATUS_FAILURE, 0, 0);
        }
        let Some(selected) = media.iter().position(|&m| m == NDIS_MEDIUM_802_3) else {
            return (NDIS_STATUS_UNSUPPORTED_MEDIA, 0, 0);
        };
        let Some(miniport) = model
            .miniports
            .iter_mut()
            .find(|m| m.name.eq_ignore_ascii_case(name))
        else {
            return (NDIS_STATUS_ADAPTER_NOT_FOUND, 0, 0);
        };
        if miniport.open.is_some() {
            return (NDIS_STATUS_FAILURE, 0, 0);
        }
        let handle = packets::new_handle();
        miniport.open = Some(handle);
        let pend = miniport.options.pend_requests;
        let miniport = miniport.name.clone();
        model.opens.insert(
            handle,
            Open {
                miniport,
                context,
                outstanding: HashSet::new(),
            },
        );
        drop(model);
        if pend {
            self.defer(Deferred::Open { context });
            return (NDIS_STATUS_PENDING, handle, selected as u32);
        }
        (NDIS_STATUS_SUCCESS, handle, selected as u32)
    }

    /// `NdisCloseAdapter`.
    pub(crate) fn close_adapter(&self, handle: usize) -> NDIS_STATUS {
        let mut model = self.model();
        let Some(open) = model.opens.remove(&handle) else {
            report(
                Rule::NdisPacketOwnership,
                format!("NdisCloseAdapter({handle:#x}): not an open binding"),
            );
            return NDIS_STATUS_FAILURE;
        };
        if !open.outstanding.is_empty() {
            report(
                Rule::NdisCloseWithOutstanding,
                format!(
                    "NdisCloseAdapter on {} with {} send(s)/transfer(s) outstanding",
                    open.miniport,
                    open.outstanding.len()
                ),
            );
        }
        let mut pend = false;
        if let Some(miniport) = model.miniports.iter_mut().find(|m| m.open == Some(handle)) {
            miniport.open = None;
            pend = miniport.options.pend_requests;
        }
        drop(model);
        packets::drop_handle(handle);
        if pend {
            self.defer(Deferred::Close {
                context: open.context,
            });
            return NDIS_STATUS_PENDING;
        }
        NDIS_STATUS_SUCCESS
    }

    /// `NdisRequest`.
    ///
    /// # Safety
    /// `request` is a valid `NDIS_REQUEST` whose buffer stays valid until it completes.
    pub(crate) unsafe fn request(&self, handle: usize, request: *mut NDIS_REQUEST) -> NDIS_STATUS {
        let mut model = self.model();
        let Some(open) = model.opens.get(&handle) else {
            return NDIS_STATUS_FAILURE;
        };
        let context = open.context;
        let miniport_name = open.miniport.clone();
        let Some(miniport) = model.miniports.iter_mut().find(|m| m.name == miniport_name) else {
            return NDIS_STATUS_FAILURE;
        };
        // SAFETY: forwarded caller contract.
        let (kind, data) = unsafe { ((*request).RequestType, (*request).DATA) };
        let mac = miniport.adapter.mac();
        let mtu = u32::try_from(miniport.adapter.mtu()).unwrap_or(u32::MAX);
        let connected = if miniport.connected { 0u32 } else { 1 };
        let answer: Option<Vec<u8>> = match (kind, data.Oid) {
            (NDIS_REQUEST_QUERY_INFORMATION, OID_802_3_CURRENT_ADDRESS) => Some(mac.to_vec()),
            (NDIS_REQUEST_QUERY_INFORMATION, OID_GEN_MAXIMUM_FRAME_SIZE) => {
                Some(mtu.to_le_bytes().to_vec())
            }
            (NDIS_REQUEST_QUERY_INFORMATION, OID_GEN_MEDIA_CONNECT_STATUS) => {
                Some(connected.to_le_bytes().to_vec())
            }
            (NDIS_REQUEST_QUERY_INFORMATION, OID_GEN_LINK_SPEED) => miniport
                .options
                .link_speed
                .map(|speed| speed.to_le_bytes().to_vec()),
            (NDIS_REQUEST_SET_INFORMATION, OID_GEN_CURRENT_PACKET_FILTER) => {
                if data.InformationBufferLength < 4 || data.InformationBuffer.is_null() {
                    None
                } else {
                    // SAFETY: the caller's buffer of at least 4 bytes.
                    let value = unsafe { data.InformationBuffer.cast::<u32>().read_unaligned() };
                    miniport.filter = Some(value);
                    Some(Vec::new())
                }
            }
            _ => None,
        };
        let pend = miniport.options.pend_requests;
        drop(model);
        let status = match answer {
            None => NDIS_STATUS_NOT_SUPPORTED,
            Some(bytes) if (data.InformationBufferLength as usize) < bytes.len() => {
                // SAFETY: forwarded caller contract.
                unsafe { (*request).DATA.BytesNeeded = bytes.len() as u32 };
                NDIS_STATUS_INVALID_LENGTH
            }
            Some(bytes) => {
                // SAFETY: the caller's buffer holds `InformationBufferLength` ≥ len bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        data.InformationBuffer.cast(),
                        bytes.len(),
                    );
                    (*request).DATA.BytesTransferred = if kind == NDIS_REQUEST_SET_INFORMATION {
                        data.InformationBufferLength
                    } else {
                        bytes.len() as u32
                    };
                }
                NDIS_STATUS_SUCCESS
            }
        };
        if pend {
            self.defer(Deferred::Request {
                context,
                request: request as usize,
                status,
            });
            return NDIS_STATUS_PENDING;
        }
        status
    }

    /// `NdisSend`.
    pub(crate) fn send(&self, handle: usize, packet: *mut NDIS_PACKET) -> NDIS_STATUS {
        let mut model = self.model();
        let key = packet as usize;
        match model.descriptors.packets.get(&key).map(|p| p.owner) {
            None => {
                report(
                    Rule::NdisPacketOwnership,
                    format!("NdisSend of {packet:p}: not a live packet"),
                );
                return NDIS_STATUS_FAILURE;
            }
            Some(Owner::Ndis) => {
                report(
                    Rule::NdisSendInFlight,
                    format!("NdisSend of {packet:p}, whose previous send is outstanding"),
                );
                return NDIS_STATUS_FAILURE;
            }
            Some(Owner::Protocol) => {}
        }
        if !self.chain_is_live(&model, packet) {
            return NDIS_STATUS_FAILURE;
        }
        let Some(open) = model.opens.get(&handle) else {
            return NDIS_STATUS_FAILURE;
        };
        let name = open.miniport.clone();
        let Some(miniport) = model.miniports.iter().find(|m| m.name == name) else {
            return NDIS_STATUS_FAILURE;
        };
        let (adapter, pend, connected) = (
            miniport.adapter.clone(),
            miniport.options.pend_sends,
            miniport.connected,
        );
        // SAFETY: a live packet whose buffers are live (checked above).
        let frame = unsafe { packets::gather(packet) };
        if pend {
            if let Some(record) = model.descriptors.packets.get_mut(&key) {
                record.owner = Owner::Ndis;
            }
            if let Some(open) = model.opens.get_mut(&handle) {
                open.outstanding.insert(key);
            }
        }
        drop(model);
        let sent = connected && adapter.transmit(&frame);
        if pend {
            self.defer(Deferred::Send {
                open: handle,
                packet: key,
            });
            return NDIS_STATUS_PENDING;
        }
        if sent {
            NDIS_STATUS_SUCCESS
        } else {
            NDIS_STATUS_FAILURE
        }
    }

    /// Whether every buffer chained to `packet` is a live buffer descriptor (reports it if
    /// not).
    fn chain_is_live(&self, model: &Model, packet: *mut NDIS_PACKET) -> bool {
        // SAFETY: a live packet of this model.
        let mut buffer = unsafe { (*packet).Private.Head };
        while !buffer.is_null() {
            if !model.descriptors.buffers.contains_key(&(buffer as usize)) {
                report(
                    Rule::NdisPacketOwnership,
                    format!("packet {packet:p} chains {buffer:p}, which is not a live buffer"),
                );
                return false;
            }
            // SAFETY: a live MDL.
            buffer = unsafe { (*buffer).Next };
        }
        true
    }

    /// `NdisTransferData`: `(status, bytes transferred)`.
    pub(crate) fn transfer(
        &self,
        handle: usize,
        receive_context: usize,
        offset: u32,
        length: u32,
        packet: *mut NDIS_PACKET,
    ) -> (NDIS_STATUS, u32) {
        let mut model = self.model();
        let Some(frame) = model.contexts.get(&receive_context).cloned() else {
            report(
                Rule::NdisReceiveOwnership,
                format!(
                    "NdisTransferData with receive context {receive_context:#x} outside its indication"
                ),
            );
            return (NDIS_STATUS_FAILURE, 0);
        };
        let key = packet as usize;
        if model.descriptors.packets.get(&key).map(|p| p.owner) != Some(Owner::Protocol) {
            report(
                Rule::NdisPacketOwnership,
                format!("NdisTransferData into {packet:p}: not the protocol's packet"),
            );
            return (NDIS_STATUS_FAILURE, 0);
        }
        if !self.chain_is_live(&model, packet) {
            return (NDIS_STATUS_FAILURE, 0);
        }
        let data = frame.get(HEADER_LEN.min(frame.len())..).unwrap_or_default();
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(length as usize).min(data.len());
        // SAFETY: a live packet with live buffers describing the protocol's memory.
        let copied = unsafe { packets::scatter(packet, &data[start..end]) } as u32;
        let pend = model
            .opens
            .get(&handle)
            .and_then(|open| model.miniports.iter().find(|m| m.name == open.miniport))
            .is_some_and(|m| m.options.pend_transfers);
        if !pend {
            return (NDIS_STATUS_SUCCESS, copied);
        }
        if let Some(record) = model.descriptors.packets.get_mut(&key) {
            record.owner = Owner::Ndis;
        }
        if let Some(open) = model.opens.get_mut(&handle) {
            open.outstanding.insert(key);
        }
        drop(model);
        self.defer(Deferred::Transfer {
            open: handle,
            packet: key,
            bytes: copied,
        });
        (NDIS_STATUS_PENDING, 0)
    }
}
