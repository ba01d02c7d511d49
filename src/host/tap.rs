//! A Linux TAP device as the network adapter under the Ethernet link: the host model's stand-in
//! for an NDIS miniport.
//!
//! [`TapAdapter::open`] attaches to a TAP interface through smoltcp's `TunTapInterface` (in the
//! calling thread's network namespace: see [`enter_network_namespace`]) and keeps a duplicate
//! of its file descriptor, which is `Send` where smoltcp's device is not. Frames go out by
//! [`Adapter::transmit`], one `write(2)` each: the copy out of the driver. Frames come in on a
//! reader thread ([`TapAdapter::start`]) that waits for the descriptor with `poll(2)`, reads
//! each frame into its own buffer, and calls the receive handler the way a miniport indicates
//! a frame: at DISPATCH_LEVEL, as a driver entry point
//! ([`Entry::ReceiveIndication`](super::Entry::ReceiveIndication)) of the kernel the starting
//! thread belonged to, if any, so the verifier checks it like any other routine (IRQL restored,
//! no spin lock held on return) and its allocations are the driver's. The handler is where the
//! driver copies the frame into its `ReceiveQueue` and queues its DPC.
//!
//! Every frame in and out can also be appended to a pcap file (`LINKTYPE_ETHERNET`, with
//! wall-clock timestamps) that Wireshark and tcpdump read. The capture is the driver's view:
//! each frame it transmits, and each frame indicated to it.
//!
//! The adapter counts the TCP retransmissions in each direction from the frames themselves
//! ([`RetransmissionCounter`]): the driver's in what it transmits, Linux's in what the reader
//! reads. [`TapAdapter::impair`] puts an [`Impairment`] on the wire (loss, delay, reordering,
//! in both directions, each through its own [`DelayLine`]) for kernels without netem.
//!
//! Stop the adapter ([`TapAdapter::stop`], or drop it) before the driver unloads: the reader
//! thread calls into the driver until then.

use super::context::{self, EntryScope, KernelContext, ModelScope};
use super::impair::{DelayLine, Impairment, LineStats};
use super::irql::{self, DISPATCH_LEVEL};
use super::retransmissions::RetransmissionCounter;
use super::verifier::{Entry, RoutineFrame};
use crate::link::ethernet::{Adapter, HEADER_LEN};
use smoltcp::phy::{self, Device, Medium, PcapLinkType, TunTapInterface};
use smoltcp::time::Instant;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

/// How long the reader waits for a frame before it looks at the stop flag.
const POLL_INTERVAL_MS: i32 = 20;
/// The reader's buffer: any frame a TAP can deliver, so that none is truncated on the way in
/// (the receive queue refuses oversized frames itself).
const READ_BUFFER: usize = 65536 + HEADER_LEN;

/// Counters of a [`TapAdapter`] since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames read from the TAP and indicated to the receive handler.
    pub frames_in: u64,
    pub bytes_in: u64,
    /// Frames written to the TAP.
    pub frames_out: u64,
    pub bytes_out: u64,
    /// Frames [`Adapter::transmit`] could not write (they are lost).
    pub transmit_errors: u64,
    /// Frames not captured because the pcap file could not be written.
    pub pcap_errors: u64,
    /// TCP retransmissions in the frames the driver transmitted.
    pub retransmissions_out: u64,
    /// TCP retransmissions in the frames read from the TAP (Linux's).
    pub retransmissions_in: u64,
    /// What the impairment did to the frames the driver transmitted.
    pub impaired_out: LineStats,
    /// What the impairment did to the frames read from the TAP (since the reader started).
    pub impaired_in: LineStats,
}

#[derive(Default)]
struct Counters {
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
    transmit_errors: AtomicU64,
    pcap_errors: AtomicU64,
}

/// A pcap capture file. smoltcp's own `PcapSink` for `Write` panics on an I/O error; this one
/// counts the error and stops capturing instead. (The trait stays unimported here: its blanket
/// implementation for every `Write` would make `write` ambiguous on files.)
struct PcapFile {
    out: BufWriter<File>,
    failed: bool,
}

impl phy::PcapSink for PcapFile {
    fn write(&mut self, data: &[u8]) {
        if !self.failed && Write::write_all(&mut self.out, data).is_err() {
            self.failed = true;
        }
    }

    fn flush(&mut self) {
        if !self.failed && Write::flush(&mut self.out).is_err() {
            self.failed = true;
        }
    }
}

/// What the adapter and its reader thread share.
struct Shared {
    /// The duplicate of the TAP descriptor, non-blocking (smoltcp opens it so).
    tap: File,
    pcap: Option<Mutex<PcapFile>>,
    stop: AtomicBool,
    counters: Counters,
    /// Why the reader thread ended early, if it did.
    failure: Mutex<Option<String>>,
    retransmissions_out: Mutex<RetransmissionCounter>,
    retransmissions_in: Mutex<RetransmissionCounter>,
}

impl Shared {
    /// Appends `frame` to the capture, if there is one.
    fn capture(&self, frame: &[u8]) {
        let Some(pcap) = &self.pcap else {
            return;
        };
        let mut pcap = lock(pcap);
        if pcap.failed {
            bump(&self.counters.pcap_errors, 1);
            return;
        }
        phy::PcapSink::packet(&mut *pcap, wall_clock(), frame);
        if pcap.failed {
            bump(&self.counters.pcap_errors, 1);
        }
    }

    fn fail(&self, why: String) {
        lock(&self.failure).get_or_insert(why);
    }

    /// One `write(2)` of `frame` to the TAP, counted.
    fn write(&self, frame: &[u8]) -> bool {
        let written = loop {
            match (&self.tap).write(frame) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => break result,
            }
        };
        if !matches!(written, Ok(n) if n == frame.len()) {
            bump(&self.counters.transmit_errors, 1);
            return false;
        }
        bump(&self.counters.frames_out, 1);
        bump(&self.counters.bytes_out, frame.len());
        true
    }
}

/// A TAP interface as an [`Adapter`]. See the module documentation.
pub struct TapAdapter {
    name: String,
    mac: [u8; 6],
    mtu: usize,
    shared: Arc<Shared>,
    reader: Mutex<Option<JoinHandle<()>>>,
    impairment: Option<Impairment>,
    /// The impaired wire towards Linux, with [`TapAdapter::impair`].
    outbound: Option<DelayLine>,
    /// The impaired wire towards the driver, while the reader runs (kept after it stops, for
    /// its counters).
    inbound: Mutex<Option<DelayLine>>,
}

impl TapAdapter {
    /// Attaches to the TAP interface `name` in the calling thread's network namespace (smoltcp
    /// creates it if it does not exist). `mac` is the adapter's own address, the driver's side
    /// of the wire; it must differ from the Linux interface's. The MTU is the interface's. With
    /// `pcap`, every frame in and out is captured to that file (created or truncated). Host
    /// threads only (PASSIVE_LEVEL).
    pub fn open(name: &str, mac: [u8; 6], pcap: Option<&Path>) -> io::Result<TapAdapter> {
        let device = TunTapInterface::new(name, Medium::Ethernet)?;
        let mtu = device
            .capabilities()
            .max_transmission_unit
            .saturating_sub(HEADER_LEN);
        // SAFETY: `device` owns this descriptor and keeps it open until it is dropped, after
        // the duplicate is made; the duplicate keeps the TAP attached on its own.
        let borrowed = unsafe { BorrowedFd::borrow_raw(device.as_raw_fd()) };
        let tap = File::from(borrowed.try_clone_to_owned()?);
        drop(device);
        let pcap = match pcap {
            Some(path) => {
                let mut file = PcapFile {
                    out: BufWriter::new(File::create(path)?),
                    failed: false,
                };
                phy::PcapSink::global_header(&mut file, PcapLinkType::Ethernet);
                phy::PcapSink::flush(&mut file);
                if file.failed {
                    return Err(io::Error::other(format!(
                        "cannot write the pcap header to {}",
                        path.display()
                    )));
                }
                Some(Mutex::new(file))
            }
            None => None,
        };
        Ok(TapAdapter {
            name: name.to_owned(),
            mac,
            mtu,
            shared: Arc::new(Shared {
                tap,
                pcap,
                stop: AtomicBool::new(false),
                counters: Counters::default(),
                failure: Mutex::new(None),
                retransmissions_out: Mutex::default(),
                retransmissions_in: Mutex::default(),
            }),
            reader: Mutex::new(None),
            impairment: None,
            outbound: None,
            inbound: Mutex::new(None),
        })
    }

    /// Impairs the wire in both directions from now on (see [`Impairment`]): frames the driver
    /// transmits and frames the reader reads each go through a [`DelayLine`] of their own.
    /// Call before the adapter is shared; errors if it is already impaired or the line's
    /// thread cannot be spawned. Host threads only (PASSIVE_LEVEL).
    pub fn impair(mut self, impairment: Impairment) -> io::Result<TapAdapter> {
        if self.impairment.is_some() {
            return Err(io::Error::other("the TAP is already impaired"));
        }
        let shared = self.shared.clone();
        let line = DelayLine::start(format!("tap-{}-out", self.name), impairment, 1, || {
            move |frame: &[u8]| {
                shared.write(frame);
            }
        })?;
        self.outbound = Some(line);
        self.impairment = Some(impairment);
        Ok(self)
    }

    /// The interface's name. Any IRQL.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the reader thread, which calls `on_frame` for every frame read from the TAP, at
    /// DISPATCH_LEVEL, as a [`Entry::ReceiveIndication`] of the calling thread's kernel (if it
    /// has one); the frame is only lent for the call. `on_frame` must return at DISPATCH_LEVEL
    /// holding no spin lock, and must not wait. Errors if the reader already runs or cannot be
    /// spawned; after [`TapAdapter::stop`] it may be started again. Host threads only
    /// (PASSIVE_LEVEL).
    pub fn start<F>(&self, on_frame: F) -> io::Result<()>
    where
        F: FnMut(&[u8]) + Send + 'static,
    {
        let mut reader = lock(&self.reader);
        if reader.is_some() {
            return Err(io::Error::other("the TAP reader is already running"));
        }
        self.shared.stop.store(false, Ordering::Release);
        let kernel = context::try_current();
        let indicator = {
            let shared = self.shared.clone();
            move || {
                let context = kernel.clone().map(KernelContext::install);
                let tracker = kernel
                    .as_ref()
                    .map_or(std::ptr::null(), |k| Arc::as_ptr(&k.pool));
                let mut on_frame = on_frame;
                move |frame: &[u8]| {
                    // Owned by the sink, the thread's kernel context lives as long as it.
                    let _context = &context;
                    shared.capture(frame);
                    indicate(tracker, frame, &mut on_frame);
                }
            }
        };
        let mut inbound = lock(&self.inbound);
        let shared = self.shared.clone();
        let thread = match self.impairment {
            Some(impairment) => {
                let name = format!("tap-{}-in", self.name);
                let line = DelayLine::start(name, impairment, 2, indicator)?;
                let input = line.input();
                *inbound = Some(line);
                std::thread::Builder::new()
                    .name(format!("tap-{}", self.name))
                    .spawn(move || read_frames(&shared, |frame| input.push(frame)))
            }
            None => std::thread::Builder::new()
                .name(format!("tap-{}", self.name))
                .spawn(move || read_frames(&shared, indicator())),
        };
        *reader = Some(thread?);
        Ok(())
    }

    /// Stops the reader thread and waits for it. Returns an error if the reader had ended early
    /// (a read error: the interface went away) or panicked. Idempotent. Host threads only
    /// (PASSIVE_LEVEL), not from the receive handler.
    pub fn stop(&self) -> io::Result<()> {
        self.shared.stop.store(true, Ordering::Release);
        let thread = lock(&self.reader).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            self.shared.fail("the receive handler panicked".to_owned());
        }
        if lock(&self.inbound).as_mut().is_some_and(DelayLine::stop) {
            self.shared.fail("the receive handler panicked".to_owned());
        }
        match lock(&self.shared.failure).clone() {
            Some(why) => Err(io::Error::other(format!("TAP {}: {why}", self.name))),
            None => Ok(()),
        }
    }

    /// The counters. Any IRQL.
    pub fn stats(&self) -> TapStats {
        let c = &self.shared.counters;
        TapStats {
            frames_in: c.frames_in.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            frames_out: c.frames_out.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            transmit_errors: c.transmit_errors.load(Ordering::Relaxed),
            pcap_errors: c.pcap_errors.load(Ordering::Relaxed),
            retransmissions_out: lock(&self.shared.retransmissions_out).count(),
            retransmissions_in: lock(&self.shared.retransmissions_in).count(),
            impaired_out: self
                .outbound
                .as_ref()
                .map(DelayLine::stats)
                .unwrap_or_default(),
            impaired_in: lock(&self.inbound)
                .as_ref()
                .map(DelayLine::stats)
                .unwrap_or_default(),
        }
    }
}

impl Adapter for TapAdapter {
    /// Any IRQL.
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Any IRQL.
    fn mtu(&self) -> usize {
        self.mtu
    }

    /// Counts a retransmission, captures the frame, and writes it to the TAP (`write(2)`), or
    /// hands it to the impaired wire (which always takes it). IRQL ≤ DISPATCH_LEVEL.
    fn transmit(&self, frame: &[u8]) -> bool {
        // The host side's bookkeeping is the model's, not the driver's allocations.
        let _model = ModelScope::enter();
        lock(&self.shared.retransmissions_out).observe(frame);
        self.shared.capture(frame);
        match &self.outbound {
            Some(line) => {
                line.input().push(frame);
                true
            }
            None => self.shared.write(frame),
        }
    }
}

impl Drop for TapAdapter {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The reader thread's loop, until the stop flag is set or the TAP fails: hands every frame
/// to `on_frame`.
fn read_frames(shared: &Shared, mut on_frame: impl FnMut(&[u8])) {
    let mut buffer = vec![0u8; READ_BUFFER];
    while !shared.stop.load(Ordering::Acquire) {
        match wait_readable(&shared.tap, POLL_INTERVAL_MS) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => return shared.fail(format!("poll: {e}")),
        }
        loop {
            let len = match (&shared.tap).read(&mut buffer) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return shared.fail(format!("read: {e}")),
            };
            let frame = buffer.get(..len).unwrap_or_default();
            bump(&shared.counters.frames_in, 1);
            bump(&shared.counters.bytes_in, len);
            lock(&shared.retransmissions_in).observe(frame);
            on_frame(frame);
        }
    }
}

/// Calls the receive handler the way a miniport's receive path does: at DISPATCH_LEVEL, as a
/// driver routine.
fn indicate(
    tracker: *const super::pool::PoolTracker,
    frame: &[u8],
    on_frame: &mut impl FnMut(&[u8]),
) {
    let old = irql::raise_irql(DISPATCH_LEVEL);
    {
        let _scope = EntryScope::enter(tracker, Entry::ReceiveIndication);
        let routine = RoutineFrame::begin();
        on_frame(frame);
        routine.end(Entry::ReceiveIndication, 0);
    }
    irql::lower_irql(old);
}

/// Waits up to `timeout_ms` for `file` to be readable (or in error, which the next read
/// reports). `Ok(false)` on timeout or interruption.
fn wait_readable(file: &File, timeout_ms: i32) -> io::Result<bool> {
    let mut poll = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid `pollfd` for the duration of the call, on a descriptor `file` keeps
    // open.
    let ready = unsafe { libc::poll(&mut poll, 1, timeout_ms) };
    if ready < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::Interrupted => Ok(false),
            _ => Err(error),
        };
    }
    Ok(ready > 0)
}

/// Moves the calling thread into the network namespace `name` (`/run/netns/NAME`, as
/// `ip netns add` makes it). Only this thread moves (threads it spawns afterwards start in the
/// namespace too); sockets and TAP devices it opens from then on belong to the namespace, and
/// keep belonging to it wherever they are used. Host threads only (PASSIVE_LEVEL).
pub fn enter_network_namespace(name: &str) -> io::Result<()> {
    let namespace = File::open(Path::new("/run/netns").join(name))?;
    // SAFETY: `setns` only reads the descriptor, which `namespace` keeps open for the call;
    // CLONE_NEWNET moves nothing but the calling thread's network namespace.
    let result = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn bump(counter: &AtomicU64, by: usize) {
    counter.fetch_add(u64::try_from(by).unwrap_or(u64::MAX), Ordering::Relaxed);
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The wall-clock time, as pcap timestamps want it.
fn wall_clock() -> Instant {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Instant::from_micros(i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX))
}
