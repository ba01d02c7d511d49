//! The `nt-ndis` thread, which delivers the completions miniports pend, and the leak check.

use super::model::*;
use super::packets::Owner;
use crate::host::kernel::KernelInner;
use crate::nt::types::*;
use std::sync::Arc;
use std::time::Duration;

impl NdisState {
    /// The `nt-ndis` thread: delivers deferred completions until shutdown. Like a miniport
    /// whose interrupt completes everything the NIC finished since the last one, it waits
    /// 200 µs after the first pended request and then delivers every completion queued by
    /// then, in order. (Delivering one per 200 µs made the model a NIC of about 4,000
    /// completions a second, whose transfer slots stayed full under a bulk echo: bursts were
    /// lost whole and TCP backed off for tens of seconds.)
    pub(crate) fn run(&self, kernel: &Arc<KernelInner>) {
        loop {
            {
                let mut deferral = lock(&self.deferral);
                while deferral.queue.is_empty() {
                    if deferral.shutdown {
                        return;
                    }
                    deferral = self
                        .deferred
                        .wait(deferral)
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
            std::thread::sleep(Duration::from_micros(200));
            let batch = core::mem::take(&mut lock(&self.deferral).queue);
            for item in batch {
                self.deliver(kernel, item);
            }
        }
    }

    pub(crate) fn shutdown(&self) {
        lock(&self.deferral).shutdown = true;
        self.deferred.notify_all();
    }

    fn deliver(&self, kernel: &Arc<KernelInner>, item: Deferred) {
        let Some(handlers) = self.model().protocol.as_ref().map(|p| p.handlers) else {
            return;
        };
        match item {
            Deferred::Open { context } => {
                if let Some(handler) = handlers.open_complete {
                    // SAFETY: the protocol's handler with the context of the binding it opens.
                    call(kernel, "OpenAdapterComplete", true, || unsafe {
                        handler(
                            context as NDIS_HANDLE,
                            NDIS_STATUS_SUCCESS,
                            NDIS_STATUS_SUCCESS,
                        )
                    });
                }
            }
            Deferred::Close { context } => {
                if let Some(handler) = handlers.close_complete {
                    // SAFETY: as above, for the binding it closes.
                    call(kernel, "CloseAdapterComplete", true, || unsafe {
                        handler(context as NDIS_HANDLE, NDIS_STATUS_SUCCESS)
                    });
                }
            }
            Deferred::Request {
                context,
                request,
                status,
            } => {
                if let Some(handler) = handlers.request_complete {
                    // SAFETY: as above, with the protocol's request.
                    call(kernel, "RequestComplete", true, || unsafe {
                        handler(context as NDIS_HANDLE, request as *mut NDIS_REQUEST, status)
                    });
                }
            }
            Deferred::Send { open, packet } => {
                let Some(context) = self.take_back(open, packet) else {
                    return;
                };
                if let Some(handler) = handlers.send_complete {
                    // SAFETY: as above, with the packet the protocol sent.
                    call(kernel, "SendComplete", true, || unsafe {
                        handler(
                            context as NDIS_HANDLE,
                            packet as *mut NDIS_PACKET,
                            NDIS_STATUS_SUCCESS,
                        )
                    });
                }
            }
            Deferred::Transfer {
                open,
                packet,
                bytes,
            } => {
                let Some(context) = self.take_back(open, packet) else {
                    return;
                };
                if let Some(handler) = handlers.transfer_complete {
                    // SAFETY: as above, with the packet the protocol transferred into.
                    call(kernel, "TransferDataComplete", true, || unsafe {
                        handler(
                            context as NDIS_HANDLE,
                            packet as *mut NDIS_PACKET,
                            NDIS_STATUS_SUCCESS,
                            bytes,
                        )
                    });
                }
            }
        }
    }

    /// Gives a packet back to the protocol before its completion; the binding's context.
    fn take_back(&self, open: usize, packet: usize) -> Option<usize> {
        let mut model = self.model();
        if let Some(record) = model.descriptors.packets.get_mut(&packet) {
            record.owner = Owner::Protocol;
        }
        let open = model.opens.get_mut(&open)?;
        open.outstanding.remove(&packet);
        Some(open.context)
    }

    /// What the driver left behind, at unload.
    pub(crate) fn leaks(&self) -> Vec<String> {
        let model = self.model();
        let mut leaks = Vec::new();
        if let Some(protocol) = &model.protocol {
            leaks.push(format!(
                "NDIS protocol {:?} still registered",
                protocol.name
            ));
        }
        for open in model.opens.values() {
            leaks.push(format!("binding to {} still open", open.miniport));
        }
        for (handle, pool) in &model.descriptors.packet_pools {
            leaks.push(format!(
                "packet pool {handle:#x} not freed ({} packet(s) live)",
                pool.live.len()
            ));
        }
        for (handle, pool) in &model.descriptors.buffer_pools {
            leaks.push(format!(
                "buffer pool {handle:#x} not freed ({} buffer(s) live)",
                pool.live.len()
            ));
        }
        drop(model);
        let handles = self.registry.open_handles();
        if handles > 0 {
            leaks.push(format!("{handles} registry key handle(s) not closed"));
        }
        leaks
    }
}
