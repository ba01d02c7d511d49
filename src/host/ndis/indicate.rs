//! Receive and status indications of the model miniports (see the module documentation).

use super::model::*;
use super::packets;
use crate::host::kernel::KernelInner;
use crate::host::verifier::Rule;
use crate::link::ethernet::HEADER_LEN;
use crate::nt::types::*;
use std::sync::Arc;

impl NdisState {
    /// The binding of miniport `name`: its handlers, context, options and open handle.
    fn binding_of(&self, name: &str) -> Option<(Handlers, usize, MiniportOptions, usize)> {
        let model = self.model();
        let handlers = model.protocol.as_ref()?.handlers;
        let miniport = model
            .miniports
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))?;
        let open = miniport.open?;
        let context = model.opens.get(&open)?.context;
        Some((handlers, context, miniport.options, open))
    }

    /// A receive indication from miniport `name` (see the module documentation).
    pub(crate) fn indicate(&self, kernel: &Arc<KernelInner>, name: &str, frame: &[u8]) -> bool {
        let Some((handlers, context, options, _open)) = self.binding_of(name) else {
            return false;
        };
        match options.indication {
            Indication::Packets => self.indicate_packet(kernel, handlers, context, frame),
            Indication::Lookahead(size) => {
                self.indicate_lookahead(kernel, handlers, context, frame, size)
            }
        }
        true
    }

    fn indicate_packet(
        &self,
        kernel: &Arc<KernelInner>,
        handlers: Handlers,
        context: usize,
        frame: &[u8],
    ) {
        let Some(receive_packet) = handlers.receive_packet else {
            return self.indicate_lookahead(kernel, handlers, context, frame, frame.len());
        };
        let mut copy = frame.to_vec().into_boxed_slice();
        let split = HEADER_LEN.min(copy.len());
        let (packet, words) = packets::new_packet(0);
        let base = copy.as_mut_ptr();
        let header = packets::new_buffer(base.cast(), split as u32);
        // SAFETY: `split` is within the copy.
        let data = packets::new_buffer(
            unsafe { base.add(split) }.cast(),
            (copy.len() - split) as u32,
        );
        // SAFETY: fresh descriptors of this model.
        unsafe {
            (*header).Next = data;
            (*packet).Private.Head = header;
            (*packet).Private.Tail = data;
            (*packet).Private.TotalLength = copy.len() as u32;
            (*packet).Private.ValidCounts = TRUE;
        }
        let live = [packet as usize, header as usize, data as usize];
        self.model().indicated.extend(live);
        let held = call(kernel, "ReceivePacket", true, || {
            // SAFETY: the protocol's handler with its context and a live packet.
            unsafe { receive_packet(context as NDIS_HANDLE, packet) }
        });
        if held != 0 {
            report(
                Rule::NdisReceiveOwnership,
                format!(
                    "ReceivePacket kept {held} reference(s) to packet {packet:p}; the model takes it back"
                ),
            );
        }
        let mut model = self.model();
        for item in live {
            model.indicated.remove(&item);
        }
        drop(model);
        copy.fill(0xDD);
        packets::free_buffer(header as usize);
        packets::free_buffer(data as usize);
        packets::free_packet(packet as usize, words);
    }

    fn indicate_lookahead(
        &self,
        kernel: &Arc<KernelInner>,
        handlers: Handlers,
        context: usize,
        frame: &[u8],
        size: usize,
    ) {
        let Some(receive) = handlers.receive else {
            return;
        };
        let copy = Arc::new(frame.to_vec());
        let split = HEADER_LEN.min(copy.len());
        let data = &copy[split..];
        let lookahead = size.min(data.len());
        let receive_context = packets::new_handle();
        self.model().contexts.insert(receive_context, copy.clone());
        call(kernel, "Receive", true, || {
            // SAFETY: the protocol's handler with its context and buffers valid for the call.
            unsafe {
                receive(
                    context as NDIS_HANDLE,
                    receive_context as NDIS_HANDLE,
                    copy.as_ptr().cast_mut().cast(),
                    split as u32,
                    data.as_ptr().cast_mut().cast(),
                    lookahead as u32,
                    data.len() as u32,
                )
            };
        });
        if let Some(complete) = handlers.receive_complete {
            call(kernel, "ReceiveComplete", true, || {
                // SAFETY: the protocol's handler with its context.
                unsafe { complete(context as NDIS_HANDLE) }
            });
        }
        self.model().contexts.remove(&receive_context);
        packets::drop_handle(receive_context);
    }

    /// A status indication from miniport `name`.
    pub(crate) fn indicate_status(&self, kernel: &Arc<KernelInner>, name: &str, status: i32) {
        {
            let mut model = self.model();
            if let Some(miniport) = model
                .miniports
                .iter_mut()
                .find(|m| m.name.eq_ignore_ascii_case(name))
            {
                match status {
                    NDIS_STATUS_MEDIA_CONNECT => miniport.connected = true,
                    NDIS_STATUS_MEDIA_DISCONNECT => miniport.connected = false,
                    _ => {}
                }
            }
        }
        let Some((handlers, context, _, _)) = self.binding_of(name) else {
            return;
        };
        if let Some(handler) = handlers.status {
            call(kernel, "Status", true, || {
                // SAFETY: the protocol's handler with its context.
                unsafe { handler(context as NDIS_HANDLE, status, std::ptr::null_mut(), 0) }
            });
        }
        if let Some(complete) = handlers.status_complete {
            call(kernel, "StatusComplete", true, || {
                // SAFETY: the protocol's handler with its context.
                unsafe { complete(context as NDIS_HANDLE) }
            });
        }
    }
}
