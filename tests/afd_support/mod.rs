//! A fake TDI transport for testing the AFD model without the real driver: `\Device\FakeTcp`,
//! an in-memory "loopback" that pairs connection endpoints by port, follows the contract where
//! it is told to (cancel routines that complete before returning, completions at PASSIVE from
//! its own completion thread, a backlog of connects waiting for the next listen), and breaks it
//! where a test asks it to ([`Misbehave`]).
//!
//! Its state lives in a [`FakeTransport`] the test owns: allocations the fake makes in its
//! dispatch routines are attributed to the fake driver by the pool tracker, so the test drops
//! the transport (which frees them) before unloading the driver.
#![allow(dead_code, reason = "each test crate uses a different subset")]

use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use tcpip::host::{DISPATCH_LEVEL, Driver, KernelHandle, lower_irql, raise_irql};
use tcpip::nt::NtStatus;
use tcpip::nt::sys;
use tcpip::nt::types::*;
use tcpip::tdi::CreateRequest;

pub const FAKE_TCP: &str = "\\Device\\FakeTcp";
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// How the fake breaks the contract.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Misbehave {
    /// Cancel routines hand the IRP to the completion thread instead of completing it
    /// (contract §4.0 rule 5 broken: AFD's CORE-8640 use-after-free).
    pub deferred_cancel: bool,
    /// The completion thread completes IRPs at DISPATCH_LEVEL (§4.0 rule 3 broken).
    pub complete_at_dispatch: bool,
    /// Every TDI_LISTEN fails at once with STATUS_INSUFFICIENT_RESOURCES.
    pub fail_listens: bool,
    /// CREATE and ASSOCIATE return STATUS_PENDING and complete from the completion thread.
    pub pend_synchronous: bool,
    /// TDI_SEND accepts at most this many bytes per request (partial completion), 0 = all.
    pub send_limit: usize,
    /// IOCTL_TCP_QUERY_INFORMATION_EX fails (wshtcpip's bind notification fails).
    pub fail_entity_list: bool,
}

/// One recorded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub major: u8,
    pub minor: u8,
    /// EA bytes of a CREATE, or other request bytes worth checking.
    pub bytes: Vec<u8>,
    pub share_access: u16,
    pub flags: u32,
    pub length: u32,
    /// The TDI_DISCONNECT / TDI_CONNECT timeout: None for a NULL pointer.
    pub timeout: Option<i64>,
    pub has_event: bool,
    pub has_iosb: bool,
    pub has_completion_routine: bool,
    pub requestor_mode: i8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Control,
    Address,
    Connection,
}

struct AddressFile {
    local: SocketAddrV4,
    /// Endpoints with a pending TDI_LISTEN, oldest first.
    listens: VecDeque<usize>,
    /// Connecting endpoints waiting for a listen (the transport's own backlog).
    backlog: VecDeque<usize>,
    listening: bool,
}

#[derive(Default)]
struct Endpoint {
    address: Option<usize>,
    peer: Option<usize>,
    remote: Option<SocketAddrV4>,
    rx: VecDeque<u8>,
    fin: bool,
    reset: bool,
    receive: Option<usize>,
    listen: Option<usize>,
    connect: Option<usize>,
}

struct File {
    kind: Kind,
    address: Option<AddressFile>,
    endpoint: Option<Endpoint>,
}

/// An IRP to complete from a completion thread: (irp, status, information, already owned).
/// An IRP that is not owned yet still has its cancel routine armed: the completion thread
/// disarms it just before completing it (keeping AFD's CORE-8640 window short, §7.4 item 2),
/// and leaves it to the cancel routine if `IoCancelIrp` got there first.
type Completion = (usize, NtStatus, usize, bool);

#[derive(Default)]
struct State {
    files: HashMap<usize, File>,
    next_port: u16,
    seen: Vec<Seen>,
    misbehave: Misbehave,
    /// IRPs to complete from the completion thread: (irp, status, information).
    completions: VecDeque<Completion>,
    /// Pended synchronous requests (CREATE, ASSOCIATE), completed by a second thread: the
    /// first one runs AFD's completion routines, which wait for these (contract §4.0 rule 4).
    sync_completions: VecDeque<Completion>,
    /// Pending IRPs with a cancel routine: irp → owning file.
    pending: HashMap<usize, usize>,
    /// IRPs a deferring cancel routine kept, completed by [`Fake::release_deferred`].
    deferred: Vec<Completion>,
    /// The completion thread is completing an IRP.
    busy: bool,
    shutdown: bool,
}

/// The fake transport's state and completion thread.
pub struct FakeTransport {
    state: Mutex<State>,
    wake: Condvar,
    /// Signalled after each completion of the completion thread.
    done: Condvar,
    completed: AtomicUsize,
}

/// The loaded fake driver.
pub struct Fake {
    pub driver: Option<Driver>,
    pub transport: Arc<FakeTransport>,
    thread: Option<std::thread::JoinHandle<()>>,
    sync_thread: Option<std::thread::JoinHandle<()>>,
}

static CONTEXT: AtomicPtr<FakeTransport> = AtomicPtr::new(std::ptr::null_mut());
static LOADED: AtomicU8 = AtomicU8::new(0);
/// Serialises the test crates' use of the one global fake (tests in a crate run in parallel).
pub static SERIAL: Mutex<()> = Mutex::new(());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn transport<'a>() -> &'a FakeTransport {
    // SAFETY: set before the driver is loaded, cleared after it is unloaded; the Arc outlives
    // every dispatch and cancel routine.
    unsafe { &*CONTEXT.load(Ordering::Acquire) }
}

unsafe extern "system" fn entry(driver: *mut DRIVER_OBJECT, _: *const UNICODE_STRING) -> NTSTATUS {
    let mut units: Vec<u16> = FAKE_TCP.encode_utf16().collect();
    let mut name = UNICODE_STRING {
        Length: (units.len() * 2) as u16,
        MaximumLength: (units.len() * 2) as u16,
        Buffer: units.as_mut_ptr(),
    };
    let mut device = std::ptr::null_mut();
    // SAFETY: a valid driver object, name and out pointer.
    let status = unsafe {
        sys::IoCreateDevice(
            driver,
            0,
            &mut name,
            FILE_DEVICE_NETWORK,
            0,
            FALSE,
            &mut device,
        )
    };
    if status != 0 {
        return status;
    }
    // SAFETY: the driver object is ours during DriverEntry.
    unsafe {
        (*device).StackSize = 1;
        (*driver).MajorFunction = [Some(dispatch); IRP_MJ_COUNT];
        (*driver).DriverUnload = Some(unload);
    }
    0
}

unsafe extern "system" fn unload(driver: *mut DRIVER_OBJECT) {
    // SAFETY: the driver's device list is valid.
    unsafe {
        while !(*driver).DeviceObject.is_null() {
            sys::IoDeleteDevice((*driver).DeviceObject);
        }
    }
}

impl Fake {
    /// Loads the fake transport on `kernel` and starts its completion thread.
    pub fn load(kernel: &KernelHandle, misbehave: Misbehave) -> Fake {
        assert_eq!(
            LOADED.swap(1, Ordering::AcqRel),
            0,
            "one fake at a time (use SERIAL)"
        );
        let transport = Arc::new(FakeTransport {
            state: Mutex::new(State {
                next_port: 50000,
                misbehave,
                ..State::default()
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
            completed: AtomicUsize::new(0),
        });
        CONTEXT.store(Arc::as_ptr(&transport).cast_mut(), Ordering::Release);
        let driver = kernel.load_driver(entry).expect("load the fake transport");
        let worker = transport.clone();
        let thread = kernel.spawn("fake-tcp-completion", move || {
            worker.completion_thread(false)
        });
        let worker = transport.clone();
        let sync_thread = kernel.spawn("fake-tcp-sync", move || worker.completion_thread(true));
        Fake {
            driver: Some(driver),
            transport,
            thread: Some(thread),
            sync_thread: Some(sync_thread),
        }
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.transport.state).seen.clone()
    }

    /// Completes the IRPs a deferring cancel routine kept, and waits until they are done.
    pub fn release_deferred(&self) {
        {
            let mut st = lock(&self.transport.state);
            let deferred = std::mem::take(&mut st.deferred);
            st.completions.extend(deferred);
        }
        self.transport.wake.notify_all();
        self.wait_idle();
    }

    /// Waits until the completion thread has nothing left to complete (10 s at most).
    pub fn wait_idle(&self) {
        let st = lock(&self.transport.state);
        let (_st, result) = self
            .transport
            .done
            .wait_timeout_while(st, std::time::Duration::from_secs(10), |st| {
                !st.completions.is_empty() || st.busy
            })
            .unwrap_or_else(|e| e.into_inner());
        assert!(!result.timed_out(), "the fake's completion thread is stuck");
    }

    /// Stops the completion thread, frees the fake's state and unloads it; returns whether the
    /// unload was clean.
    pub fn unload(mut self) -> tcpip::host::UnloadReport {
        self.stop()
    }

    fn stop(&mut self) -> tcpip::host::UnloadReport {
        self.release_deferred();
        lock(&self.transport.state).shutdown = true;
        self.transport.wake.notify_all();
        for thread in [self.thread.take(), self.sync_thread.take()]
            .into_iter()
            .flatten()
        {
            thread.join().expect("completion thread");
        }
        // Free everything the dispatch routines allocated before the leak check.
        *lock(&self.transport.state) = State::default();
        let report = self.driver.take().map(Driver::unload).unwrap_or_default();
        CONTEXT.store(std::ptr::null_mut(), Ordering::Release);
        LOADED.store(0, Ordering::Release);
        report
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if self.driver.is_some() {
            self.stop();
        }
    }
}

/// Completes an IRP now.
///
/// # Safety
/// The caller owns `irp`.
unsafe fn complete(irp: *mut IRP, status: NtStatus, information: usize) {
    // SAFETY: forwarded caller contract.
    unsafe {
        (*irp).IoStatus.Status.Status = status.raw();
        (*irp).IoStatus.Information = information;
        sys::IofCompleteRequest(irp, IO_NO_INCREMENT);
    }
}

/// `IoSetCancelRoutine`.
///
/// # Safety
/// `irp` is live.
unsafe fn set_cancel(irp: *mut IRP, routine: PDRIVER_CANCEL) -> PDRIVER_CANCEL {
    // SAFETY: CancelRoutine is pointer-sized and exchanged atomically by everyone.
    let old = unsafe {
        AtomicPtr::<c_void>::from_ptr((&raw mut (*irp).CancelRoutine).cast()).swap(
            routine.map_or(std::ptr::null_mut(), |r| r as *mut c_void),
            Ordering::AcqRel,
        )
    };
    // SAFETY: the old value was a PDRIVER_CANCEL.
    unsafe { std::mem::transmute::<*mut c_void, PDRIVER_CANCEL>(old) }
}

/// The current stack location.
///
/// # Safety
/// `irp` is live and in this driver.
unsafe fn stack<'a>(irp: *mut IRP) -> &'a mut IO_STACK_LOCATION {
    // SAFETY: forwarded caller contract.
    unsafe { &mut *(*irp).Tail.Overlay.CurrentStackLocation }
}

/// The buffer of the IRP's MDL, mapped.
///
/// # Safety
/// `irp` is live with an MDL over a live buffer.
unsafe fn mdl_buffer<'a>(irp: *mut IRP) -> &'a mut [u8] {
    // SAFETY: forwarded caller contract.
    unsafe {
        let mdl = (*irp).MdlAddress;
        if mdl.is_null() {
            return &mut [];
        }
        let va = sys::MmMapLockedPagesSpecifyCache(
            mdl,
            KERNEL_MODE,
            MM_CACHED,
            std::ptr::null_mut(),
            0,
            NORMAL_PAGE_PRIORITY,
        );
        std::slice::from_raw_parts_mut(va.cast::<u8>(), (*mdl).ByteCount as usize)
    }
}

unsafe extern "system" fn cancel_routine(_device: *mut DEVICE_OBJECT, irp: *mut IRP) {
    // SAFETY: called by IoCancelIrp with the cancel spin lock held.
    unsafe { sys::IoReleaseCancelSpinLock((*irp).CancelIrql) };
    let transport = transport();
    let deferred = {
        let mut st = lock(&transport.state);
        let Some(file) = st.pending.remove(&(irp as usize)) else {
            return;
        };
        st.completions.retain(|c| c.0 != irp as usize);
        if let Some(endpoint) = st.files.get_mut(&file).and_then(|f| f.endpoint.as_mut()) {
            for slot in [
                &mut endpoint.receive,
                &mut endpoint.listen,
                &mut endpoint.connect,
            ] {
                if *slot == Some(irp as usize) {
                    *slot = None;
                }
            }
        }
        let listener_files: Vec<usize> = st.files.keys().copied().collect();
        for key in listener_files {
            if let Some(address) = st.files.get_mut(&key).and_then(|f| f.address.as_mut()) {
                address.listens.retain(|&e| e != file);
            }
        }
        if st.misbehave.deferred_cancel {
            st.deferred
                .push((irp as usize, NtStatus::CANCELLED, 0, true));
            true
        } else {
            false
        }
    };
    if !deferred {
        // SAFETY: dequeued under the lock; the cancel routine owns the IRP now.
        unsafe { complete(irp, NtStatus::CANCELLED, 0) };
    }
}

impl FakeTransport {
    /// Pends `irp` with a cancel routine, remembered as belonging to `file`.
    ///
    /// # Safety
    /// `irp` is live and owned by the dispatch routine calling this.
    unsafe fn pend(&self, st: &mut State, irp: *mut IRP, file: usize) {
        // SAFETY: forwarded caller contract.
        unsafe {
            stack(irp).Control |= SL_PENDING_RETURNED;
            set_cancel(irp, Some(cancel_routine));
        }
        st.pending.insert(irp as usize, file);
    }

    /// Takes a pending IRP back from its cancel routine; false if `IoCancelIrp` owns it (then
    /// it stays in `pending` for the cancel routine to find).
    fn claim(&self, st: &mut State, irp: usize) -> bool {
        // SAFETY: the IRP is pending in this driver (it is in `pending`) until completed.
        let owned = unsafe { set_cancel(irp as *mut IRP, None) }.is_some();
        if owned {
            st.pending.remove(&irp);
        }
        owned
    }

    /// Queues a pending IRP's completion for the completion thread, cancel routine still armed.
    fn queue_completion(&self, st: &mut State, irp: usize, status: NtStatus, information: usize) {
        st.completions.push_back((irp, status, information, false));
        self.wake.notify_all();
    }

    fn completion_thread(&self, synchronous: bool) {
        loop {
            let next = {
                let mut st = lock(&self.state);
                loop {
                    let next = if synchronous {
                        st.sync_completions.pop_front()
                    } else {
                        st.completions.pop_front()
                    };
                    if let Some(next) = next {
                        // Claim under the lock: a cancel routine completes (and frees) the
                        // IRP only under this lock, so the IRP is live here.
                        if !next.3 && !self.claim(&mut st, next.0) {
                            continue;
                        }
                        st.busy |= !synchronous;
                        break Some((next, st.misbehave.complete_at_dispatch));
                    }
                    if st.shutdown {
                        break None;
                    }
                    st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            };
            let Some(((irp, status, information, _), at_dispatch)) = next else {
                return;
            };
            let irp = irp as *mut IRP;
            let old = at_dispatch.then(|| raise_irql(DISPATCH_LEVEL));
            // SAFETY: dequeued with the cancel routine disarmed (or by a deferring cancel
            // routine): this thread owns the IRP.
            unsafe { complete(irp, status, information) };
            if let Some(old) = old {
                lower_irql(old);
            }
            self.completed.fetch_add(1, Ordering::AcqRel);
            if !synchronous {
                lock(&self.state).busy = false;
            }
            self.done.notify_all();
        }
    }

    fn record(&self, st: &mut State, irp: *mut IRP, seen: impl FnOnce(&mut Seen)) {
        // SAFETY: a live IRP in this driver.
        let (major, minor, has_event, has_iosb, has_routine, mode) = unsafe {
            let s = stack(irp);
            (
                s.MajorFunction,
                s.MinorFunction,
                !(*irp).UserEvent.is_null(),
                !(*irp).UserIosb.is_null(),
                s.CompletionRoutine.is_some(),
                (*irp).RequestorMode,
            )
        };
        let mut entry = Seen {
            major,
            minor,
            bytes: Vec::new(),
            share_access: 0,
            flags: 0,
            length: 0,
            timeout: None,
            has_event,
            has_iosb,
            has_completion_routine: has_routine,
            requestor_mode: mode,
        };
        seen(&mut entry);
        st.seen.push(entry);
    }
}

unsafe extern "system" fn dispatch(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let transport = transport();
    // SAFETY: a live IRP owned by this dispatch routine.
    let (major, minor, file) = unsafe {
        let s = stack(irp);
        (s.MajorFunction, s.MinorFunction, s.FileObject as usize)
    };
    // SAFETY: as above, for every arm.
    unsafe {
        match major {
            IRP_MJ_CREATE => create(transport, irp, file),
            IRP_MJ_CLEANUP => {
                complete(irp, NtStatus::SUCCESS, 0);
                0
            }
            IRP_MJ_CLOSE => {
                {
                    let mut st = lock(&transport.state);
                    let kind = st.files.get(&file).map(|f| f.kind);
                    transport.record(&mut st, irp, |s| {
                        s.bytes = format!("{kind:?}").into_bytes();
                    });
                }
                close(transport, file);
                complete(irp, NtStatus::SUCCESS, 0);
                0
            }
            IRP_MJ_DEVICE_CONTROL => device_control(transport, irp),
            IRP_MJ_INTERNAL_DEVICE_CONTROL => tdi(transport, irp, minor, file),
            _ => {
                complete(irp, NtStatus::INVALID_DEVICE_REQUEST, 0);
                NtStatus::INVALID_DEVICE_REQUEST.raw()
            }
        }
    }
}

/// Finishes a synchronous request: at once, or (with `pend_synchronous`) from the completion
/// thread.
unsafe fn finish_sync(transport: &FakeTransport, irp: *mut IRP, status: NtStatus) -> NTSTATUS {
    let mut st = lock(&transport.state);
    if st.misbehave.pend_synchronous {
        // SAFETY: a live IRP owned by the dispatch routine.
        unsafe { stack(irp).Control |= SL_PENDING_RETURNED };
        st.sync_completions
            .push_back((irp as usize, status, 0, true));
        drop(st);
        transport.wake.notify_all();
        return NtStatus::PENDING.raw();
    }
    drop(st);
    // SAFETY: as above.
    unsafe { complete(irp, status, 0) };
    status.raw()
}

unsafe fn create(transport: &FakeTransport, irp: *mut IRP, file: usize) -> NTSTATUS {
    // SAFETY: a live CREATE IRP.
    let (ea, share) = unsafe {
        let s = stack(irp);
        let create = s.Parameters.Create;
        let ea = (*irp).AssociatedIrp.SystemBuffer;
        let ea = if ea.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(ea.cast::<u8>(), create.EaLength as usize).to_vec()
        };
        (ea, create.ShareAccess)
    };
    let request = match CreateRequest::parse(&ea) {
        Ok(r) => r,
        Err(status) => {
            // SAFETY: forwarded.
            unsafe { complete(irp, status, 0) };
            return status.raw();
        }
    };
    let status = {
        let mut st = lock(&transport.state);
        transport.record(&mut st, irp, |s| {
            s.bytes = ea.clone();
            s.share_access = share;
        });
        match request {
            CreateRequest::ControlChannel => {
                st.files.insert(
                    file,
                    File {
                        kind: Kind::Control,
                        address: None,
                        endpoint: None,
                    },
                );
                NtStatus::SUCCESS
            }
            CreateRequest::AddressFile(address) => {
                let mut port = address.port;
                let in_use = port != 0
                    && st
                        .files
                        .values()
                        .any(|f| f.address.as_ref().is_some_and(|a| a.local.port() == port));
                if in_use && share == 0 {
                    NtStatus::ADDRESS_ALREADY_EXISTS
                } else {
                    if port == 0 {
                        port = st.next_port;
                        st.next_port += 1;
                    }
                    let ip = if address.ip.is_unspecified() {
                        Ipv4Addr::UNSPECIFIED
                    } else {
                        address.ip
                    };
                    st.files.insert(
                        file,
                        File {
                            kind: Kind::Address,
                            address: Some(AddressFile {
                                local: SocketAddrV4::new(ip, port),
                                listens: VecDeque::new(),
                                backlog: VecDeque::new(),
                                listening: false,
                            }),
                            endpoint: None,
                        },
                    );
                    NtStatus::SUCCESS
                }
            }
            CreateRequest::ConnectionEndpoint { .. } => {
                st.files.insert(
                    file,
                    File {
                        kind: Kind::Connection,
                        address: None,
                        endpoint: Some(Endpoint::default()),
                    },
                );
                NtStatus::SUCCESS
            }
        }
    };
    // SAFETY: forwarded.
    unsafe { finish_sync(transport, irp, status) }
}

/// IRP_MJ_CLOSE: flush the file's pending IRPs with STATUS_CANCELLED, tell the peer.
fn close(transport: &FakeTransport, file: usize) {
    let mut st = lock(&transport.state);
    let Some(removed) = st.files.remove(&file) else {
        return;
    };
    if let Some(endpoint) = removed.endpoint {
        for irp in [endpoint.receive, endpoint.listen, endpoint.connect]
            .into_iter()
            .flatten()
        {
            transport.queue_completion(&mut st, irp, NtStatus::CANCELLED, 0);
        }
        for f in st.files.values_mut() {
            if let Some(a) = f.address.as_mut() {
                a.listens.retain(|&e| e != file);
                a.backlog.retain(|&e| e != file);
            }
        }
        if let Some(peer) = endpoint.peer {
            let unread = !endpoint.rx.is_empty();
            fin_or_reset(transport, &mut st, peer, unread);
        }
    }
}

/// Delivers FIN (or RST) to `peer` and completes its pending receive if there is nothing left
/// to read.
fn fin_or_reset(transport: &FakeTransport, st: &mut State, peer: usize, reset: bool) {
    let Some(endpoint) = st.files.get_mut(&peer).and_then(|f| f.endpoint.as_mut()) else {
        return;
    };
    if reset {
        endpoint.reset = true;
        endpoint.rx.clear();
    } else {
        endpoint.fin = true;
    }
    endpoint.peer = None;
    if endpoint.rx.is_empty()
        && let Some(receive) = endpoint.receive.take()
    {
        let status = if reset {
            NtStatus::FILE_CLOSED
        } else {
            NtStatus::SUCCESS
        };
        transport.queue_completion(st, receive, status, 0);
    }
}

unsafe fn device_control(transport: &FakeTransport, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: a live device-control IRP.
    let (code, out_len) = unsafe {
        let p = stack(irp).Parameters.DeviceIoControl;
        (p.IoControlCode, p.OutputBufferLength as usize)
    };
    {
        let mut st = lock(&transport.state);
        transport.record(&mut st, irp, |s| {
            s.flags = code;
            s.length = out_len as u32;
        });
    }
    let fail = lock(&transport.state).misbehave.fail_entity_list;
    match code {
        IOCTL_TCP_QUERY_INFORMATION_EX if fail => {
            // SAFETY: a live IRP.
            unsafe { complete(irp, NtStatus::INVALID_PARAMETER, 0) };
            NtStatus::INVALID_PARAMETER.raw()
        }
        IOCTL_TCP_QUERY_INFORMATION_EX => {
            // Entity list: loopback's IF/AT/NL plus one CO_TL entity per address file.
            let mut answer = Vec::new();
            for (entity, instance) in [(IF_ENTITY, 0u32), (AT_ENTITY, 0), (CL_NL_ENTITY, 0)] {
                answer.extend_from_slice(&entity.to_le_bytes());
                answer.extend_from_slice(&instance.to_le_bytes());
            }
            let addresses = lock(&transport.state)
                .files
                .values()
                .filter(|f| f.kind == Kind::Address)
                .count() as u32;
            for instance in 0..addresses {
                answer.extend_from_slice(&CO_TL_ENTITY.to_le_bytes());
                answer.extend_from_slice(&instance.to_le_bytes());
            }
            // SAFETY: METHOD_NEITHER: UserBuffer is the caller's output of out_len bytes.
            unsafe {
                if out_len >= answer.len() {
                    std::ptr::copy_nonoverlapping(
                        answer.as_ptr(),
                        (*irp).UserBuffer.cast::<u8>(),
                        answer.len(),
                    );
                }
                complete(irp, NtStatus::SUCCESS, answer.len());
            }
            0
        }
        IOCTL_TCP_SET_INFORMATION_EX => {
            // SAFETY: a live IRP.
            unsafe { complete(irp, NtStatus::SUCCESS, 0) };
            0
        }
        _ => {
            // SAFETY: a live IRP.
            unsafe { complete(irp, NtStatus::INVALID_DEVICE_REQUEST, 0) };
            NtStatus::INVALID_DEVICE_REQUEST.raw()
        }
    }
}

/// The remote address of a TDI_CONNECTION_INFORMATION.
///
/// # Safety
/// `info` is null or a valid block.
unsafe fn remote_of(info: *mut TDI_CONNECTION_INFORMATION) -> Option<SocketAddrV4> {
    if info.is_null() {
        return None;
    }
    // SAFETY: forwarded caller contract; RemoteAddress holds RemoteAddressLength bytes.
    unsafe {
        let bytes = std::slice::from_raw_parts(
            (*info).RemoteAddress.cast::<u8>(),
            (*info).RemoteAddressLength as usize,
        );
        tcpip::tdi::TransportAddress::parse(bytes)
            .ok()
            .map(|a| SocketAddrV4::new(a.ip, a.port))
    }
}

/// Writes `address` into a TDI_CONNECTION_INFORMATION's RemoteAddress.
///
/// # Safety
/// `info` is a valid block with a 22-byte RemoteAddress.
unsafe fn write_remote(info: *mut TDI_CONNECTION_INFORMATION, address: SocketAddrV4) {
    let bytes =
        tcpip::tdi::TransportAddress::new(*address.ip(), address.port()).emit_ta_ip_address();
    // SAFETY: forwarded caller contract.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), (*info).RemoteAddress.cast::<u8>(), 22);
    }
}

unsafe fn tdi(transport: &FakeTransport, irp: *mut IRP, minor: u8, file: usize) -> NTSTATUS {
    // SAFETY: the Parameters of a live IRP.
    let (request, raw, associate_handle) = unsafe {
        let p = &stack(irp).Parameters;
        (
            std::ptr::read((p as *const IoStackParameters).cast::<TDI_REQUEST_KERNEL>()),
            std::ptr::read((p as *const IoStackParameters).cast::<[u32; 2]>()),
            std::ptr::read((p as *const IoStackParameters).cast::<TDI_REQUEST_KERNEL_ASSOCIATE>())
                .AddressHandle,
        )
    };
    let mut st = lock(&transport.state);
    transport.record(&mut st, irp, |s| match minor {
        TDI_SEND | TDI_RECEIVE => {
            s.length = raw[0];
            s.flags = raw[1];
        }
        TDI_CONNECT | TDI_LISTEN | TDI_DISCONNECT => {
            s.flags = request.RequestFlags;
            s.timeout = (!request.RequestSpecific.is_null())
                // SAFETY: a PLARGE_INTEGER from the client.
                .then(|| unsafe { *(request.RequestSpecific as *const i64) });
            // SAFETY: valid blocks from the client.
            if let Some(remote) = unsafe { remote_of(request.RequestConnectionInformation) } {
                s.bytes = remote.to_string().into_bytes();
            }
            if !request.RequestConnectionInformation.is_null() {
                // SAFETY: as above.
                s.length = unsafe { (*request.RequestConnectionInformation).OptionsLength } as u32;
            }
        }
        _ => {}
    });
    let result = match minor {
        TDI_ASSOCIATE_ADDRESS => {
            let handle = associate_handle;
            let mut object = std::ptr::null_mut();
            // SAFETY: resolving the client's kernel handle in dispatch context.
            let status = NtStatus(unsafe {
                sys::ObReferenceObjectByHandle(
                    handle as HANDLE,
                    0,
                    sys::io_file_object_type(),
                    KERNEL_MODE,
                    &mut object,
                    std::ptr::null_mut(),
                )
            });
            if status.is_success() {
                // SAFETY: the reference just taken.
                unsafe { sys::ObfDereferenceObject(object) };
                let address = object as usize;
                let is_address = st
                    .files
                    .get(&address)
                    .is_some_and(|f| f.kind == Kind::Address);
                match st.files.get_mut(&file).and_then(|f| f.endpoint.as_mut()) {
                    Some(endpoint) if is_address => {
                        endpoint.address = Some(address);
                        drop(st);
                        // SAFETY: forwarded.
                        return unsafe { finish_sync(transport, irp, NtStatus::SUCCESS) };
                    }
                    _ => Err(NtStatus::INVALID_PARAMETER),
                }
            } else {
                Err(status)
            }
        }
        TDI_DISASSOCIATE_ADDRESS => Ok(0),
        TDI_QUERY_INFORMATION => {
            let local = st
                .files
                .get(&file)
                .and_then(|f| match (&f.address, &f.endpoint) {
                    (Some(a), _) => Some(a.local),
                    (_, Some(e)) => e
                        .address
                        .and_then(|a| st.files.get(&a))
                        .and_then(|f| f.address.as_ref())
                        .map(|a| a.local),
                    _ => None,
                });
            match local {
                Some(local) => {
                    let info = tcpip::tdi::TransportAddress::new(*local.ip(), local.port())
                        .emit_address_info(1);
                    // SAFETY: the client's MDL.
                    let out = unsafe { mdl_buffer(irp) };
                    if out.len() < info.len() {
                        Err(NtStatus::BUFFER_TOO_SMALL)
                    } else {
                        out[..info.len()].copy_from_slice(&info);
                        Ok(info.len())
                    }
                }
                None => Err(NtStatus::INVALID_PARAMETER),
            }
        }
        TDI_LISTEN => {
            if st.misbehave.fail_listens {
                Err(NtStatus::INSUFFICIENT_RESOURCES)
            } else {
                // SAFETY: pends a live IRP owned here.
                unsafe { listen(transport, &mut st, irp, file, &request) }
            }
        }
        TDI_CONNECT => {
            // SAFETY: as above.
            unsafe { connect(transport, &mut st, irp, file, &request) }
        }
        TDI_SEND => {
            // SAFETY: the client's MDL.
            let data = unsafe { mdl_buffer(irp) }.to_vec();
            let limit = st.misbehave.send_limit;
            let n = if limit == 0 {
                data.len()
            } else {
                data.len().min(limit)
            };
            let peer = st
                .files
                .get(&file)
                .and_then(|f| f.endpoint.as_ref())
                .and_then(|e| e.peer);
            match peer {
                None => Err(NtStatus::FILE_CLOSED),
                Some(peer) => {
                    deliver(transport, &mut st, peer, &data[..n]);
                    Ok(n)
                }
            }
        }
        TDI_RECEIVE => {
            let endpoint = st.files.get_mut(&file).and_then(|f| f.endpoint.as_mut());
            match endpoint {
                None => Err(NtStatus::INVALID_CONNECTION),
                Some(e) if !e.rx.is_empty() => {
                    // SAFETY: the client's MDL.
                    let out = unsafe { mdl_buffer(irp) };
                    let n = out.len().min(e.rx.len());
                    for (slot, byte) in out.iter_mut().zip(e.rx.drain(..n)) {
                        *slot = byte;
                    }
                    Ok(n)
                }
                Some(e) if e.reset => Err(NtStatus::FILE_CLOSED),
                Some(e) if e.fin => Ok(0),
                Some(e) => {
                    e.receive = Some(irp as usize);
                    // SAFETY: pends a live IRP owned here.
                    unsafe { transport.pend(&mut st, irp, file) };
                    return NtStatus::PENDING.raw();
                }
            }
        }
        TDI_DISCONNECT => {
            let peer = st
                .files
                .get_mut(&file)
                .and_then(|f| f.endpoint.as_mut())
                .and_then(|e| e.peer.take());
            if let Some(peer) = peer {
                fin_or_reset(
                    transport,
                    &mut st,
                    peer,
                    request.RequestFlags & TDI_DISCONNECT_ABORT != 0,
                );
            }
            Ok(0)
        }
        _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
    };
    drop(st);
    let (status, information) = match result {
        Ok(n) => (NtStatus::SUCCESS, n),
        Err(status) => (status, 0),
    };
    if status == NtStatus::PENDING {
        return status.raw();
    }
    // SAFETY: a live IRP owned here.
    unsafe { complete(irp, status, information) };
    status.raw()
}

/// Appends data to `peer`'s receive queue and completes its pending receive.
fn deliver(transport: &FakeTransport, st: &mut State, peer: usize, data: &[u8]) {
    let Some(endpoint) = st.files.get_mut(&peer).and_then(|f| f.endpoint.as_mut()) else {
        return;
    };
    endpoint.rx.extend(data.iter().copied());
    if let Some(receive) = endpoint.receive.take() {
        // Copy now, complete from the completion thread (lost if the receive is cancelled in
        // between: the fake only loses data on sockets that are being torn down).
        // SAFETY: a pending receive's MDL stays valid until it is completed.
        let out = unsafe { mdl_buffer(receive as *mut IRP) };
        let n = out.len().min(endpoint.rx.len());
        for (slot, byte) in out.iter_mut().zip(endpoint.rx.drain(..n)) {
            *slot = byte;
        }
        transport.queue_completion(st, receive, NtStatus::SUCCESS, n);
    }
}

unsafe fn listen(
    transport: &FakeTransport,
    st: &mut State,
    irp: *mut IRP,
    file: usize,
    request: &TDI_REQUEST_KERNEL,
) -> Result<usize, NtStatus> {
    let address = st
        .files
        .get(&file)
        .and_then(|f| f.endpoint.as_ref())
        .and_then(|e| e.address)
        .ok_or(NtStatus::INVALID_CONNECTION)?;
    let waiting = {
        let a = st
            .files
            .get_mut(&address)
            .and_then(|f| f.address.as_mut())
            .ok_or(NtStatus::INVALID_CONNECTION)?;
        a.listening = true;
        a.backlog.pop_front()
    };
    if let Some(client) = waiting {
        // SAFETY: the return block of a live listen IRP.
        let peer = pair(transport, st, client, file);
        if let Some(peer) = peer {
            // SAFETY: as above.
            unsafe { write_remote(request.ReturnConnectionInformation, peer) };
        }
        return Ok(0);
    }
    if let Some(e) = st.files.get_mut(&file).and_then(|f| f.endpoint.as_mut()) {
        e.listen = Some(irp as usize);
    }
    if let Some(a) = st.files.get_mut(&address).and_then(|f| f.address.as_mut()) {
        a.listens.push_back(file);
    }
    // SAFETY: forwarded.
    unsafe { transport.pend(st, irp, file) };
    Err(NtStatus::PENDING)
}

/// Connects `client` (with its pending TDI_CONNECT) to `server`; returns the client's address
/// for the server's listen return information.
fn pair(
    transport: &FakeTransport,
    st: &mut State,
    client: usize,
    server: usize,
) -> Option<SocketAddrV4> {
    let local = |endpoint: usize| {
        st.files
            .get(&endpoint)
            .and_then(|f| f.endpoint.as_ref())
            .and_then(|e| e.address)
            .and_then(|a| st.files.get(&a))
            .and_then(|f| f.address.as_ref())
            .map(|a| SocketAddrV4::new(LOOPBACK, a.local.port()))
    };
    let (client_local, server_local) = (local(client), local(server));
    let connect = {
        let c = st.files.get_mut(&client)?.endpoint.as_mut()?;
        c.peer = Some(server);
        c.remote = server_local;
        c.connect.take()
    };
    {
        let s = st.files.get_mut(&server)?.endpoint.as_mut()?;
        s.peer = Some(client);
        s.remote = client_local;
    }
    if let Some(connect) = connect {
        transport.queue_completion(st, connect, NtStatus::SUCCESS, 0);
    }
    client_local
}

unsafe fn connect(
    transport: &FakeTransport,
    st: &mut State,
    irp: *mut IRP,
    file: usize,
    request: &TDI_REQUEST_KERNEL,
) -> Result<usize, NtStatus> {
    // SAFETY: the client's request block.
    let remote = unsafe { remote_of(request.RequestConnectionInformation) }
        .ok_or(NtStatus::INVALID_PARAMETER)?;
    let listener = st
        .files
        .iter()
        .find(|(_, f)| {
            f.address
                .as_ref()
                .is_some_and(|a| a.listening && a.local.port() == remote.port())
        })
        .map(|(&k, _)| k)
        .ok_or(NtStatus::REMOTE_NOT_LISTENING)?;
    if let Some(e) = st.files.get_mut(&file).and_then(|f| f.endpoint.as_mut()) {
        e.connect = Some(irp as usize);
    }
    // SAFETY: pends a live IRP owned here.
    unsafe { transport.pend(st, irp, file) };
    let server = st
        .files
        .get_mut(&listener)
        .and_then(|f| f.address.as_mut())
        .and_then(|a| a.listens.pop_front());
    match server {
        Some(server) => {
            let listen = st
                .files
                .get_mut(&server)
                .and_then(|f| f.endpoint.as_mut())
                .and_then(|e| e.listen.take());
            let peer = pair(transport, st, file, server);
            if let (Some(listen), Some(peer)) = (listen, peer) {
                // SAFETY: the listen IRP is pending here; its return block stays valid until
                // it completes.
                unsafe {
                    let stack =
                        &(*(*(listen as *mut IRP)).Tail.Overlay.CurrentStackLocation).Parameters;
                    let r = std::ptr::read(
                        (stack as *const IoStackParameters).cast::<TDI_REQUEST_KERNEL>(),
                    );
                    write_remote(r.ReturnConnectionInformation, peer);
                }
                transport.queue_completion(st, listen, NtStatus::SUCCESS, 0);
            }
        }
        None => {
            if let Some(a) = st.files.get_mut(&listener).and_then(|f| f.address.as_mut()) {
                a.backlog.push_back(file);
            }
        }
    }
    Err(NtStatus::PENDING)
}
