//! The state of the NDIS model and the protocol side of its calls (see the module above).

use super::packets::{self, Descriptors};
use super::registry::{RegValue, Registry};
use crate::host::context::EntryScope;
use crate::host::irql::{self, DISPATCH_LEVEL};
use crate::host::kernel::KernelInner;
use crate::host::verifier::{self, Entry, RoutineFrame, Rule, Site};
use crate::link::ethernet::Adapter;
use crate::nt::NtStatus;
use crate::nt::types::*;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

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
    /// The answer to `OID_GEN_LINK_SPEED`, in units of 100 bit/s; `None`: not supported.
    pub link_speed: Option<u32>,
}

/// The protocol's handlers, copied from its characteristics.
#[derive(Clone, Copy)]
pub(super) struct Handlers {
    pub(super) open_complete: OPEN_ADAPTER_COMPLETE_HANDLER,
    pub(super) close_complete: CLOSE_ADAPTER_COMPLETE_HANDLER,
    pub(super) send_complete: SEND_COMPLETE_HANDLER,
    pub(super) transfer_complete: TRANSFER_DATA_COMPLETE_HANDLER,
    pub(super) request_complete: REQUEST_COMPLETE_HANDLER,
    pub(super) receive: RECEIVE_HANDLER,
    pub(super) receive_complete: RECEIVE_COMPLETE_HANDLER,
    pub(super) status: STATUS_HANDLER,
    pub(super) status_complete: RECEIVE_COMPLETE_HANDLER,
    pub(super) receive_packet: RECEIVE_PACKET_HANDLER,
    pub(super) bind: BIND_HANDLER,
    pub(super) unbind: UNBIND_HANDLER,
}

pub(super) struct Protocol {
    pub(super) handle: usize,
    pub(super) handlers: Handlers,
    pub(super) name: String,
}

pub(super) struct Miniport {
    pub(super) name: String,
    pub(super) adapter: Arc<dyn Adapter>,
    pub(super) options: MiniportOptions,
    pub(super) connected: bool,
    pub(super) open: Option<usize>,
    pub(super) filter: Option<u32>,
}

pub(super) struct Open {
    pub(super) miniport: String,
    pub(super) context: usize,
    /// Packets NDIS holds for a send or transfer of this binding.
    pub(super) outstanding: HashSet<usize>,
}

/// A completion the miniport thread delivers later.
pub(super) enum Deferred {
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
pub(super) struct Model {
    pub(super) protocol: Option<Protocol>,
    pub(super) miniports: Vec<Miniport>,
    pub(super) opens: HashMap<usize, Open>,
    pub(super) descriptors: Descriptors,
    /// Packets and buffers of indications in progress, and the packets the protocol held.
    pub(super) indicated: HashSet<usize>,
    /// Receive contexts of lookahead indications in progress → the frame.
    pub(super) contexts: HashMap<usize, Arc<Vec<u8>>>,
}

#[derive(Default)]
pub(super) struct Deferral {
    pub(super) queue: VecDeque<Deferred>,
    pub(super) shutdown: bool,
}

/// The NDIS model of one kernel.
#[derive(Default)]
pub(crate) struct NdisState {
    pub(super) model: Mutex<Model>,
    pub(crate) registry: Registry,
    pub(super) protocol_context: AtomicPtr<c_void>,
    pub(super) deferral: Mutex<Deferral>,
    pub(super) deferred: Condvar,
    pub(super) events: Mutex<()>,
    pub(super) signalled: Condvar,
    /// Whether the `nt-ndis` thread was started (at kernel start, or with
    /// `Config::inline_dpcs` at the first deferral: a thread left running at the process's
    /// exit is what LeakSanitizer would count).
    pub(crate) thread_started: AtomicBool,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Calls a protocol handler as a driver routine, at DISPATCH_LEVEL if `dispatch`.
pub(super) fn call<R>(
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
pub(super) fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

/// A counted string over `text`, valid while `text` is.
pub(super) fn counted(text: &mut [u16]) -> NDIS_STRING {
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

pub(super) fn report(rule: Rule, message: String) {
    verifier::report(rule, Site::entry(crate::host::context::entry()), message);
}

impl NdisState {
    pub(super) fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }

    pub(super) fn defer(&self, item: Deferred) {
        lock(&self.deferral).queue.push_back(item);
        self.deferred.notify_all();
        if !self.thread_started.swap(true, Ordering::AcqRel)
            && let Some(kernel) = crate::host::context::try_current()
        {
            crate::host::kernel::start_ndis_thread(&kernel);
        }
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
}
