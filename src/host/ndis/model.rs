//! The state of the NDIS model and the protocol side of its calls (see the module above).

use super::packets::{self, Descriptors, Owner, Pool};
use super::registry::{RegValue, Registry};
use crate::host::context::EntryScope;
use crate::host::irql::{self, DISPATCH_LEVEL};
use crate::host::kernel::KernelInner;
use crate::host::verifier::{self, Entry, RoutineFrame, Rule, Site};
use crate::link::ethernet::{Adapter, HEADER_LEN};
use crate::nt::NtStatus;
use crate::nt::types::*;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How a model miniport indicates received frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Indication {
    /// `ProtocolReceivePacket`, with a packet of two buffers (header, data).
    #[default]
    Packets,
    /// `ProtocolReceive` with at most this many lookahead bytes; the protocol transfers the
    /// rest with `NdisTransferData`.
    Lookahead(usize),
}

/// How a model miniport behaves.
#[derive(Clone, Copy, Debug, Default)]
pub struct MiniportOptions {
    pub indication: Indication,
    /// Sends return `NDIS_STATUS_PENDING` and complete later.
    pub pend_sends: bool,
    /// Transfers return `NDIS_STATUS_PENDING` and complete later.
    pub pend_transfers: bool,
    /// Opens, closes and OID requests return `NDIS_STATUS_PENDING` and complete later.
    pub pend_requests: bool,
    /// The media is disconnected from the start.
    pub disconnected: bool,
}

/// The protocol's handlers, copied from its characteristics.
#[derive(Clone, Copy)]
pub(super) struct Handlers {
    open_complete: OPEN_ADAPTER_COMPLETE_HANDLER,
    close_complete: CLOSE_ADAPTER_COMPLETE_HANDLER,
    send_complete: SEND_COMPLETE_HANDLER,
    transfer_complete: TRANSFER_DATA_COMPLETE_HANDLER,
    request_complete: REQUEST_COMPLETE_HANDLER,
    receive: RECEIVE_HANDLER,
    receive_complete: RECEIVE_COMPLETE_HANDLER,
    status: STATUS_HANDLER,
    status_complete: RECEIVE_COMPLETE_HANDLER,
    receive_packet: RECEIVE_PACKET_HANDLER,
    bind: BIND_HANDLER,
    unbind: UNBIND_HANDLER,
}

struct Protocol {
    handle: usize,
    handlers: Handlers,
    name: String,
}

struct Miniport {
    name: String,
    adapter: Arc<dyn Adapter>,
    options: MiniportOptions,
    connected: bool,
    open: Option<usize>,
    filter: Option<u32>,
}

struct Open {
    miniport: String,
    context: usize,
    /// Packets NDIS holds for a send or transfer of this binding.
    outstanding: HashSet<usize>,
}

/// A completion the miniport thread delivers later.
enum Deferred {
    Open {
        context: usize,
    },
    Close {
        context: usize,
    },
    Request {
        context: usize,
        request: usize,
        status: NDIS_STATUS,
    },
    Send {
        open: usize,
        packet: usize,
    },
    Transfer {
        open: usize,
        packet: usize,
        bytes: u32,
    },
}

#[derive(Default)]
struct Model {
    protocol: Option<Protocol>,
    miniports: Vec<Miniport>,
    opens: HashMap<usize, Open>,
    descriptors: Descriptors,
    /// Packets and buffers of indications in progress, and the packets the protocol held.
    indicated: HashSet<usize>,
    /// Receive contexts of lookahead indications in progress → the frame.
    contexts: HashMap<usize, Arc<Vec<u8>>>,
}

#[derive(Default)]
struct Deferral {
    queue: VecDeque<Deferred>,
    shutdown: bool,
}

/// The NDIS model of one kernel.
#[derive(Default)]
pub(crate) struct NdisState {
    model: Mutex<Model>,
    pub(crate) registry: Registry,
    protocol_context: AtomicPtr<c_void>,
    deferral: Mutex<Deferral>,
    deferred: Condvar,
    events: Mutex<()>,
    signalled: Condvar,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Calls a protocol handler as a driver routine, at DISPATCH_LEVEL if `dispatch`.
fn call<R>(
    kernel: &Arc<KernelInner>,
    name: &'static str,
    dispatch: bool,
    f: impl FnOnce() -> R,
) -> R {
    let old = irql::current_irql();
    if dispatch && old < DISPATCH_LEVEL {
        irql::set(DISPATCH_LEVEL);
    }
    let result = {
        let _scope = EntryScope::enter(Arc::as_ptr(&kernel.pool), Entry::Ndis(name));
        let frame = RoutineFrame::begin();
        let result = f();
        frame.end(Entry::Ndis(name), 0);
        result
    };
    if dispatch {
        irql::set(old);
    }
    result
}

/// UTF-16 for an `NDIS_STRING`.
fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

/// A counted string over `text`, valid while `text` is.
fn counted(text: &mut [u16]) -> NDIS_STRING {
    NDIS_STRING {
        Length: (text.len() * 2) as u16,
        MaximumLength: (text.len() * 2) as u16,
        Buffer: text.as_mut_ptr(),
    }
}

/// The text of an `NDIS_STRING`.
///
/// # Safety
/// `string` is null or valid with its buffer.
pub(super) unsafe fn text(string: *const NDIS_STRING) -> String {
    // SAFETY: forwarded caller contract.
    let Some(string) = (unsafe { string.as_ref() }) else {
        return String::new();
    };
    if string.Buffer.is_null() {
        return String::new();
    }
    // SAFETY: `Length` bytes at `Buffer`.
    let units =
        unsafe { std::slice::from_raw_parts(string.Buffer, usize::from(string.Length / 2)) };
    String::from_utf16_lossy(units)
}

fn report(rule: Rule, message: String) {
    verifier::report(rule, Site::entry(crate::host::context::entry()), message);
}

impl NdisState {
    fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }

    fn defer(&self, item: Deferred) {
        lock(&self.deferral).queue.push_back(item);
        self.deferred.notify_all();
    }

    /// The protocol context published by the driver for its bind handler.
    pub(crate) fn protocol_context(&self) -> *mut c_void {
        self.protocol_context.load(Ordering::Acquire)
    }

    pub(crate) fn set_protocol_context(&self, context: *mut c_void) {
        self.protocol_context.store(context, Ordering::Release);
    }

    // ---- Protocol registration ---------------------------------------------------------

    /// `NdisRegisterProtocol` up to the binds: validates and records the characteristics.
    ///
    /// # Safety
    /// `chars` is valid for `length` bytes.
    pub(crate) unsafe fn register(
        &self,
        chars: *const NDIS_PROTOCOL_CHARACTERISTICS,
        length: u32,
    ) -> Result<usize, NDIS_STATUS> {
        // SAFETY: forwarded caller contract (the version byte is first).
        let major = unsafe { (*chars).MajorNdisVersion };
        if !(3..=5).contains(&major) {
            return Err(NDIS_STATUS_BAD_VERSION);
        }
        if major == 5 && (length as usize) < size_of::<NDIS_PROTOCOL_CHARACTERISTICS>() {
            return Err(NDIS_STATUS_BAD_CHARACTERISTICS);
        }
        // SAFETY: a full 5.0 block (checked above) or at least its 4.0 part.
        let chars = unsafe { &*chars };
        let mut model = self.model();
        if model.protocol.is_some() {
            return Err(NDIS_STATUS_FAILURE);
        }
        let handle = packets::new_handle();
        model.protocol = Some(Protocol {
            handle,
            // SAFETY: the name is valid for the call.
            name: unsafe { text(&chars.Name) },
            handlers: Handlers {
                open_complete: chars.OpenAdapterCompleteHandler,
                close_complete: chars.CloseAdapterCompleteHandler,
                send_complete: chars.SendCompleteHandler,
                transfer_complete: chars.TransferDataCompleteHandler,
                request_complete: chars.RequestCompleteHandler,
                receive: chars.ReceiveHandler,
                receive_complete: chars.ReceiveCompleteHandler,
                status: chars.StatusHandler,
                status_complete: chars.StatusCompleteHandler,
                receive_packet: chars.ReceivePacketHandler,
                bind: chars.BindAdapterHandler,
                unbind: chars.UnbindAdapterHandler,
            },
        });
        Ok(handle)
    }

    /// The rest of `NdisRegisterProtocol`: binds the miniports named in
    /// `Services\<Protocol>\Linkage\Bind`, or every miniport if there is no such value.
    pub(crate) fn bind_all(&self, kernel: &Arc<KernelInner>) {
        let (names, protocol) = {
            let model = self.model();
            let Some(protocol) = &model.protocol else {
                return;
            };
            let names: Vec<String> = model.miniports.iter().map(|m| m.name.clone()).collect();
            (names, protocol.name.clone())
        };
        let linkage = format!(
            "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\{protocol}\\Linkage"
        );
        let listed = self.registry.open(&linkage).and_then(|handle| {
            let value = self.registry.query(handle, "Bind").flatten();
            self.registry.close(handle);
            match value {
                Some(RegValue::MultiSz(list)) => Some(list),
                _ => None,
            }
        });
        for name in names {
            let wanted = listed
                .as_ref()
                .is_none_or(|list| list.iter().any(|n| n.eq_ignore_ascii_case(&name)));
            if wanted {
                self.bind(kernel, &name);
            }
        }
    }

    /// `NdisDeregisterProtocol`.
    pub(crate) fn deregister(&self, handle: usize) -> NDIS_STATUS {
        let mut model = self.model();
        if model.protocol.as_ref().map(|p| p.handle) != Some(handle) {
            report(
                Rule::NdisLeak,
                format!("NdisDeregisterProtocol({handle:#x}): not registered"),
            );
            return NDIS_STATUS_FAILURE;
        }
        if !model.opens.is_empty() {
            report(
                Rule::NdisCloseWithOutstanding,
                format!(
                    "NdisDeregisterProtocol with {} binding(s) open",
                    model.opens.len()
                ),
            );
        }
        model.protocol = None;
        drop(model);
        packets::drop_handle(handle);
        NDIS_STATUS_SUCCESS
    }

    // ---- Miniports (host API) ----------------------------------------------------------

    pub(crate) fn add_miniport(
        &self,
        kernel: &Arc<KernelInner>,
        name: &str,
        adapter: Arc<dyn Adapter>,
        options: MiniportOptions,
    ) -> NtStatus {
        {
            let mut model = self.model();
            if model
                .miniports
                .iter()
                .any(|m| m.name.eq_ignore_ascii_case(name))
            {
                return crate::host::STATUS_OBJECT_NAME_COLLISION;
            }
            model.miniports.push(Miniport {
                name: name.to_owned(),
                adapter,
                options,
                connected: !options.disconnected,
                open: None,
                filter: None,
            });
        }
        self.bind(kernel, name)
    }

    pub(crate) fn remove_miniport(&self, kernel: &Arc<KernelInner>, name: &str) {
        self.unbind(kernel, name);
        self.model()
            .miniports
            .retain(|m| !m.name.eq_ignore_ascii_case(name));
    }

    /// Calls the protocol's `BindAdapter` for miniport `name` at PASSIVE_LEVEL.
    fn bind(&self, kernel: &Arc<KernelInner>, name: &str) -> NtStatus {
        let Some(bind) = self.model().protocol.as_ref().and_then(|p| p.handlers.bind) else {
            return NtStatus::SUCCESS;
        };
        let guid = name.rsplit('\\').next().unwrap_or(name);
        let mut device = wide(name);
        let mut path = wide(&format!(
            "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\{guid}\\Parameters\\Tcpip"
        ));
        let mut device = counted(&mut device);
        let mut path = counted(&mut path);
        let mut status = NDIS_STATUS_FAILURE;
        call(kernel, "BindAdapter", false, || {
            // SAFETY: the protocol's bind handler with valid strings for the call.
            unsafe {
                bind(
                    &mut status,
                    std::ptr::null_mut(),
                    &mut device,
                    (&raw mut path).cast(),
                    std::ptr::null_mut(),
                )
            }
        });
        NtStatus(status)
    }

    /// Calls the protocol's `UnbindAdapter` for miniport `name`, if bound, at PASSIVE_LEVEL.
    fn unbind(&self, kernel: &Arc<KernelInner>, name: &str) {
        let (unbind, context) = {
            let model = self.model();
            let open = model
                .miniports
                .iter()
                .find(|m| m.name.eq_ignore_ascii_case(name))
                .and_then(|m| m.open);
            let context = open
                .and_then(|open| model.opens.get(&open))
                .map(|o| o.context);
            let unbind = model.protocol.as_ref().and_then(|p| p.handlers.unbind);
            (unbind, context)
        };
        let (Some(unbind), Some(context)) = (unbind, context) else {
            return;
        };
        let mut status = NDIS_STATUS_FAILURE;
        call(kernel, "UnbindAdapter", false, || {
            // SAFETY: the protocol's unbind handler with its binding context.
            unsafe { unbind(&mut status, context as NDIS_HANDLE, std::ptr::null_mut()) }
        });
        if self.is_bound(name) {
            report(
                Rule::NdisLeak,
                format!(
                    "UnbindAdapter for {name} returned {status:#x} with the binding still open"
                ),
            );
        }
    }

    pub(crate) fn is_bound(&self, name: &str) -> bool {
        self.model()
            .miniports
            .iter()
            .any(|m| m.name.eq_ignore_ascii_case(name) && m.open.is_some())
    }

    pub(crate) fn packet_filter(&self, name: &str) -> Option<u32> {
        self.model()
            .miniports
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
            .and_then(|m| m.filter)
    }

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

    // ---- Bindings ----------------------------------------------------------------------

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

    // ---- Pools and descriptors ---------------------------------------------------------

    pub(crate) fn allocate_pool(&self, packets: bool, capacity: u32, reserved: u32) -> usize {
        let handle = packets::new_handle();
        let pool = Pool {
            capacity: capacity as usize,
            reserved: reserved as usize,
            live: HashSet::new(),
        };
        let mut model = self.model();
        if packets {
            model.descriptors.packet_pools.insert(handle, pool);
        } else {
            model.descriptors.buffer_pools.insert(handle, pool);
        }
        handle
    }

    pub(crate) fn free_pool(&self, packets: bool, handle: usize) {
        let mut model = self.model();
        let pools = if packets {
            &mut model.descriptors.packet_pools
        } else {
            &mut model.descriptors.buffer_pools
        };
        match pools.remove(&handle) {
            None => report(
                Rule::NdisPacketOwnership,
                format!("pool {handle:#x} freed twice or never allocated"),
            ),
            Some(pool) => {
                if !pool.live.is_empty() {
                    report(
                        Rule::NdisPoolInUse,
                        format!(
                            "pool {handle:#x} freed with {} descriptor(s) allocated",
                            pool.live.len()
                        ),
                    );
                }
                drop(model);
                packets::drop_handle(handle);
            }
        }
    }

    pub(crate) fn allocate_packet(&self, pool: usize) -> Option<*mut NDIS_PACKET> {
        let mut model = self.model();
        let entry = model.descriptors.packet_pools.get(&pool)?;
        if entry.live.len() >= entry.capacity {
            return None;
        }
        let (packet, words) = packets::new_packet(entry.reserved);
        // SAFETY: a fresh packet.
        unsafe { (*packet).Private.Pool = pool as *mut c_void };
        model.descriptors.add_packet(packet as usize, pool, words);
        Some(packet)
    }

    pub(crate) fn free_packet(&self, packet: *mut NDIS_PACKET) {
        let mut model = self.model();
        match model
            .descriptors
            .packets
            .get(&(packet as usize))
            .map(|p| p.owner)
        {
            None => report(
                Rule::NdisPacketOwnership,
                format!("NdisFreePacket({packet:p}): freed twice or not a packet"),
            ),
            Some(Owner::Ndis) => report(
                Rule::NdisPacketOwnership,
                format!("NdisFreePacket({packet:p}) while NDIS owns it for a send or transfer"),
            ),
            Some(Owner::Protocol) => {
                model.descriptors.remove_packet(packet as usize);
            }
        }
    }

    pub(crate) fn allocate_buffer(
        &self,
        pool: usize,
        address: *mut c_void,
        length: u32,
    ) -> Option<*mut NDIS_BUFFER> {
        let mut model = self.model();
        let entry = model.descriptors.buffer_pools.get(&pool)?;
        if entry.live.len() >= entry.capacity {
            return None;
        }
        let buffer = packets::new_buffer(address, length);
        model.descriptors.add_buffer(buffer as usize, pool);
        Some(buffer)
    }

    pub(crate) fn free_buffer(&self, buffer: *mut NDIS_BUFFER) {
        if !self.model().descriptors.remove_buffer(buffer as usize) {
            report(
                Rule::NdisPacketOwnership,
                format!("NdisFreeBuffer({buffer:p}): freed twice or not a buffer"),
            );
        }
    }

    /// Whether `buffer` may be read: a live buffer of a pool, or of an indication in progress.
    pub(crate) fn buffer_is_live(&self, buffer: *mut NDIS_BUFFER) -> bool {
        let model = self.model();
        let key = buffer as usize;
        let live = model.descriptors.buffers.contains_key(&key) || model.indicated.contains(&key);
        if !live {
            report(
                Rule::NdisReceiveOwnership,
                format!("buffer {buffer:p} used after its indication returned, or never allocated"),
            );
        }
        live
    }

    // ---- Events ------------------------------------------------------------------------

    /// `NdisSetEvent`/`NdisResetEvent`.
    ///
    /// # Safety
    /// `event` is a valid `NDIS_EVENT`.
    pub(crate) unsafe fn signal(&self, event: *mut NDIS_EVENT, state: i32) {
        let _guard = lock(&self.events);
        // SAFETY: forwarded caller contract; writes are serialised by `events`.
        unsafe { (*event).Event.Header.SignalState = state };
        self.signalled.notify_all();
    }

    /// `NdisWaitEvent`: true once signalled, false after `milliseconds` (0: forever).
    ///
    /// # Safety
    /// `event` is a valid `NDIS_EVENT`.
    pub(crate) unsafe fn wait(&self, event: *mut NDIS_EVENT, milliseconds: u32) -> bool {
        let deadline = (milliseconds > 0)
            .then(|| std::time::Instant::now() + Duration::from_millis(u64::from(milliseconds)));
        let mut guard = lock(&self.events);
        loop {
            // SAFETY: forwarded caller contract; read under `events`.
            if unsafe { (*event).Event.Header.SignalState } != 0 {
                return true;
            }
            let wait = match deadline {
                Some(deadline) => {
                    match deadline.checked_duration_since(std::time::Instant::now()) {
                        Some(left) => left,
                        None => return false,
                    }
                }
                None => Duration::from_millis(50),
            };
            guard = self
                .signalled
                .wait_timeout(guard, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    // ---- The miniport thread -----------------------------------------------------------

    /// The `nt-ndis` thread: delivers deferred completions until shutdown.
    pub(crate) fn run(&self, kernel: &Arc<KernelInner>) {
        loop {
            let item = {
                let mut deferral = lock(&self.deferral);
                loop {
                    if let Some(item) = deferral.queue.pop_front() {
                        break item;
                    }
                    if deferral.shutdown {
                        return;
                    }
                    deferral = self
                        .deferred
                        .wait(deferral)
                        .unwrap_or_else(|e| e.into_inner());
                }
            };
            std::thread::sleep(Duration::from_micros(200));
            self.deliver(kernel, item);
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
