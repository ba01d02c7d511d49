//! The driver loaded in the host model with a recording adapter bound under it and
//! connections in several states, for the `ingress` target: frames are indicated as the
//! adapter's receive indications, time moves on the model's virtual clock, DPCs and work items
//! run inline on the harness's thread (`Config::inline_dpcs`), and teardown closes everything,
//! unloads the driver and checks the model's verdict. Between inputs the world is kept, the
//! parts an input changed put back as the setup made them (`reset`, `crate::session`).
//!
//! What is open when the fuzz frames arrive (the driver at [`OURS`], the peer at [`PEER`]):
//! - a listener on 0.0.0.0:[`LISTEN_PORT`] with one `TDI_LISTEN` pending;
//! - a connection the listener accepted from [`PEER`]:[`ACCEPTED_PEER_PORT`], ESTABLISHED,
//!   with a `TDI_RECEIVE` pending (its sequence numbers are followed, so that segments built
//!   for it land in the window);
//! - a connection the driver opened to [`PEER`]:[`CONNECT_PORT`], in SYN-SENT (its initial
//!   sequence number is known, so that a SYN-ACK built for it is accepted);
//! - a UDP address file on [`OURS`]:[`UDP_PORT`] with a `TDI_RECEIVE_DATAGRAM` pending;
//! - a raw IP address file for ICMP (`\Device\RawIp\1`).
//!
//! Before the connections are made, the setup warms the driver's tables and queues up
//! (`warm`), so that an input using them does not grow them past the setup's baseline.
//!
//! The verdict after teardown: the driver's unload leaves nothing behind (pool, IRPs, objects:
//! the model's leak report), the verifier recorded no violation (IRQL, locks, IRPs completed
//! twice or never...), and every request the harness sent has completed.

use crate::frames::{self, ACK, OUR_MAC, OURS, PEER, PEER_MAC, SYN, Sent};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tcpip::core::stack::Stack;
use tcpip::driver::Tcpip;
use tcpip::host::afd::wire;
use tcpip::host::{
    Clock, Config, Driver, Event, EventType, Handle, Kernel, MdlKind, StackLocation,
};
use tcpip::link::ethernet::Adapter;
use tcpip::nt::NtStatus;
use tcpip::nt::entry::{self, driver_entry};
use tcpip::nt::types::*;

mod ioctl;
mod reset;
mod warm;

pub use reset::Part;
pub use warm::Warm;

/// The files the world opens, as indices of its handles (in closing order).
pub mod file {
    pub const UDP: usize = 0;
    pub const RAW: usize = 1;
    pub const LISTENER: usize = 2;
    pub const CLIENT_ADDRESS: usize = 3;
    /// The connection endpoint of the accepted connection.
    pub const ACCEPTED: usize = 4;
    /// The endpoint with a TDI_LISTEN pending.
    pub const WAITING: usize = 5;
    /// The connection endpoint of the connection in SYN-SENT.
    pub const CLIENT: usize = 6;
    pub const COUNT: usize = 7;
}

pub const LISTEN_PORT: u16 = 80;
pub const ACCEPTED_PEER_PORT: u16 = 40_000;
pub const CONNECT_PORT: u16 = 7;
pub const UDP_PORT: u16 = 53;
/// The initial sequence number of the peer's connections to the listener (the fuzz targets'
/// SYNs; the peer's resets of the half-open ones).
pub const LISTENER_ISN: u32 = 0x3000_0000;
/// The initial sequence number of the peer's side of the accepted connection.
const ACCEPTED_ISN: u32 = 0x1000_0000;
/// The initial sequence number the peer would answer the connect with.
const CONNECT_ISN: u32 = 0x2000_0000;
/// The room of the setup's receives.
const RECEIVE_ROOM: usize = 4096;

/// Whether `FUZZ_DEBUG` is set: the frames the driver sends and the requests left at
/// teardown are printed. Read once: it is asked at every step.
fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("FUZZ_DEBUG").is_some())
}

/// An adapter that keeps what the driver transmits.
#[derive(Default)]
pub struct Recorder {
    sent: Mutex<Vec<Vec<u8>>>,
}

impl Adapter for Recorder {
    fn mac(&self) -> [u8; 6] {
        OUR_MAC
    }

    fn mtu(&self) -> usize {
        1500
    }

    fn transmit(&self, frame: &[u8]) -> bool {
        self.sent.lock().unwrap().push(frame.to_vec());
        true
    }
}

/// A request in flight and everything it points to, kept alive until it completes.
struct Pending {
    what: &'static str,
    event: Event,
    iosb: Box<IO_STATUS_BLOCK>,
    /// Boxed: the IRP points into them, and the vector may move.
    #[allow(clippy::vec_box)]
    _infos: Vec<Box<wire::ConnectionInfo>>,
    _buffer: Option<Box<[u8]>>,
    _timeout: Option<Box<i64>>,
}

impl Pending {
    fn status(&self) -> NtStatus {
        // SAFETY: plain integers, written by the completion before it signalled the event.
        NtStatus(unsafe { self.iosb.Status.Status })
    }
}

/// What a request points to (the MDL's buffer, connection information blocks, a timeout),
/// kept alive until it completes.
#[derive(Default)]
struct Keep {
    buffer: Option<Box<[u8]>>,
    /// Boxed: the IRP points into them, and the vector may move.
    #[allow(clippy::vec_box)]
    infos: Vec<Box<wire::ConnectionInfo>>,
    timeout: Option<Box<i64>>,
}

/// A TCP connection with the peer, as the harness follows it.
#[derive(Clone, Copy, Debug)]
pub struct Connection {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    /// The next sequence number the peer sends.
    pub peer_next: u32,
    /// The next sequence number the driver sends (what the peer acknowledges).
    pub our_next: u32,
    /// The acknowledgment number of the last segment the driver sent: where a reset from the
    /// peer lands in its window, whatever the input sent before it.
    pub acked: u32,
}

pub struct World {
    kernel: Kernel,
    driver: Option<Driver>,
    stack: &'static Stack,
    recorder: Arc<Recorder>,
    /// The interface the recorder's link is bound under.
    link: u32,
    /// TCP segments the driver sent, kept for the setup (at most 64).
    sent: Vec<Sent>,
    /// The files, indexed by [`File`], in the order they are closed (address files before
    /// their connections); `None` once closed.
    handles: Vec<Option<Handle>>,
    pending: Vec<Pending>,
    /// A control channel on `\Device\Ip`, once an IOCTL needed one.
    control: Option<Handle>,
    pub accepted: Connection,
    pub connecting: Connection,
    /// (peer port, the driver's next sequence number) of the SYN-ACKs the listener sent.
    pub half_open: Vec<(u16, u32)>,
    /// The addresses the driver's ARP requests asked for since they were last answered (at
    /// most 8; `reset` answers them).
    asked: Vec<Ipv4Addr>,
    /// What the world is kept between inputs by (`reset`).
    keep: reset::Baseline,
}

impl World {
    /// Loads the driver and opens everything listed in the module's documentation, warming up
    /// what `warm` says the target's inputs use.
    pub fn load(warm: Warm) -> World {
        let kernel = Kernel::new(Config {
            processors: 1,
            workers: 1,
            clock: Clock::Virtual,
            inline_dpcs: true,
            debug_lines: 16,
            ..Config::default()
        });
        let driver = kernel.load_driver(driver_entry).expect("DriverEntry");
        let object = NonNull::new(driver.object()).expect("driver object");
        let stack = entry::loaded_state::<Tcpip>(object)
            .expect("loaded")
            .stack();
        let control = kernel.create_file("\\Device\\Tcp", None, 0).unwrap();
        let input = [1u32.to_le_bytes(), OURS.octets(), [255, 255, 255, 0]].concat();
        let (status, _) =
            kernel.device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut [0u8; 12]);
        assert_eq!(status, NtStatus::SUCCESS);
        assert_eq!(kernel.close(control), NtStatus::SUCCESS);
        let recorder = Arc::new(Recorder::default());
        let link = stack.attach_link(recorder.clone(), 64).expect("attach");
        let unset = Connection {
            local: SocketAddrV4::new(OURS, 0),
            remote: SocketAddrV4::new(PEER, 0),
            peer_next: 0,
            our_next: 0,
            acked: 0,
        };
        let mut world = World {
            kernel,
            driver: Some(driver),
            stack,
            recorder,
            link,
            sent: Vec::new(),
            handles: Vec::new(),
            pending: Vec::new(),
            control: None,
            accepted: unset,
            connecting: unset,
            half_open: Vec::new(),
            asked: Vec::new(),
            keep: reset::Baseline::default(),
        };
        world.open(warm);
        world.record_baseline();
        world
    }

    fn open(&mut self, warm: Warm) {
        self.learn_peer();
        let udp = self.create("\\Device\\Udp", Some(SocketAddrV4::new(OURS, UDP_PORT)));
        let raw = self.create("\\Device\\RawIp\\1", Some(SocketAddrV4::new(OURS, 0)));
        let listener = self.create(
            "\\Device\\Tcp",
            Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, LISTEN_PORT)),
        );
        let accepting = self.create("\\Device\\Tcp", None);
        let waiting = self.create("\\Device\\Tcp", None);
        let client_address = self.create_client_address();
        let client = self.create("\\Device\\Tcp", None);
        for (connection, address) in [
            (accepting, listener),
            (waiting, listener),
            (client, client_address),
        ] {
            self.associate(connection, address);
        }
        self.handles = [
            udp,
            raw,
            listener,
            client_address,
            accepting,
            waiting,
            client,
        ]
        .map(Some)
        .to_vec();

        self.warm_up(warm);
        // The warm-up asked for a neighbour, and the peer's entry aged while its timers ran out.
        self.refresh_neighbours();
        self.start_datagram_receive(udp, RECEIVE_ROOM);
        self.start_datagram_receive(raw, RECEIVE_ROOM);
        self.accept().expect("the peer's connection was accepted");
        self.listen(waiting);
        self.connect().expect("the SYN of the connect");
    }

    /// The peer makes itself known (smoltcp learns its MAC address from the request).
    fn learn_peer(&mut self) {
        self.indicate(&frames::arp(false, PEER_MAC, PEER, OURS));
    }

    /// The address file of the connection the driver opens (any address, an ephemeral port).
    fn create_client_address(&self) -> Handle {
        self.create(
            "\\Device\\Tcp",
            Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        )
    }

    /// The accepted connection: a TDI_LISTEN on the accepting endpoint, the peer's handshake,
    /// then a TDI_RECEIVE left pending on it (the last request in `pending`). `None` if the
    /// driver did not accept the connection.
    fn accept(&mut self) -> Option<()> {
        let accepting = self.handle(file::ACCEPTED)?;
        self.start_kernel_request(accepting, TDI_LISTEN, "listen (accepted)", None);
        self.handshake(self.pending.len() - 1)?;
        self.pending.pop();
        self.start_receive(accepting, RECEIVE_ROOM);
        Some(())
    }

    /// The peer's connection to the listener from [`ACCEPTED_PEER_PORT`]: its SYN, the
    /// driver's SYN-ACK, its ACK. `None` unless the TDI_LISTEN at `listen` in `pending` took
    /// it (a listen still pending stays there, for the teardown to complete).
    fn handshake(&mut self, listen: usize) -> Option<()> {
        self.sent.clear();
        let remote = SocketAddrV4::new(PEER, ACCEPTED_PEER_PORT);
        let local = SocketAddrV4::new(OURS, LISTEN_PORT);
        self.indicate_packet(
            &frames::Segment {
                src: remote,
                dst: local,
                seq: ACCEPTED_ISN,
                ack: 0,
                flags: SYN,
                window: 8192,
                options: &[2, 4, 0x05, 0xb4],
                payload: &[],
            }
            .packet(),
        );
        let syn_ack = self
            .sent_segments()
            .into_iter()
            .find(|s| s.src == local && s.dst == remote && s.flags & (SYN | ACK) == SYN | ACK)?;
        self.accepted = Connection {
            local,
            remote,
            peer_next: ACCEPTED_ISN.wrapping_add(1),
            our_next: syn_ack.seq.wrapping_add(1),
            acked: ACCEPTED_ISN.wrapping_add(1),
        };
        self.indicate_packet(
            &frames::Segment {
                src: remote,
                dst: local,
                seq: self.accepted.peer_next,
                ack: self.accepted.our_next,
                flags: ACK,
                window: 8192,
                options: &[],
                payload: &[],
            }
            .packet(),
        );
        let listen = self.pending.get(listen)?;
        (listen.event.is_signaled() && listen.status() == NtStatus::SUCCESS).then_some(())
    }

    /// A TDI_LISTEN on `waiting`, left pending (the last request in `pending`).
    fn listen(&mut self, waiting: Handle) {
        self.start_kernel_request(waiting, TDI_LISTEN, "listen (waiting)", None);
    }

    /// The connection the driver opens: a TDI_CONNECT to the peer, left pending (the last
    /// request in `pending`) after its SYN. `None` if no SYN was sent.
    fn connect(&mut self) -> Option<()> {
        let client = self.handle(file::CLIENT)?;
        self.sent.clear();
        self.start_kernel_request(
            client,
            TDI_CONNECT,
            "connect",
            Some(SocketAddrV4::new(PEER, CONNECT_PORT)),
        );
        let syn = self
            .sent_segments()
            .into_iter()
            .find(|s| s.dst == SocketAddrV4::new(PEER, CONNECT_PORT) && s.flags & SYN != 0)?;
        self.connecting = Connection {
            local: syn.src,
            remote: syn.dst,
            peer_next: CONNECT_ISN,
            our_next: syn.seq.wrapping_add(1),
            acked: CONNECT_ISN,
        };
        Some(())
    }

    /// Creates a file on `device`: an address file for `address`, else a connection endpoint.
    fn create(&self, device: &str, address: Option<SocketAddrV4>) -> Handle {
        let ea = match address {
            Some(address) => wire::address_file_ea(address),
            None => wire::connection_file_ea(),
        };
        self.kernel.create_file(device, Some(&ea), 0).expect(device)
    }

    fn associate(&mut self, connection: Handle, address: Handle) {
        let parameters = wire::associate(address.as_raw());
        let keep = Keep::default();
        self.start(
            connection,
            TDI_ASSOCIATE_ADDRESS,
            parameters,
            keep,
            "associate",
        );
        self.quiesce();
        let done = self.pending.pop().expect("associate");
        assert_eq!(done.status(), NtStatus::SUCCESS);
    }

    fn start_kernel_request(
        &mut self,
        connection: Handle,
        minor: u8,
        what: &'static str,
        remote: Option<SocketAddrV4>,
    ) {
        let mut infos = match remote {
            Some(remote) => vec![
                wire::ConnectionInfo::new(remote),
                wire::ConnectionInfo::new(remote),
            ],
            None => vec![wire::ConnectionInfo::null(), wire::ConnectionInfo::null()],
        };
        let request = infos[0].as_ptr();
        let ret = infos[1].as_ptr();
        let parameters = wire::kernel_request(0, request, ret, std::ptr::null_mut());
        let keep = Keep {
            infos,
            ..Keep::default()
        };
        self.start(connection, minor, parameters, keep, what);
        self.settle();
    }

    fn start_receive(&mut self, connection: Handle, room: usize) {
        let parameters = wire::receive(room as u32, TDI_RECEIVE_NORMAL);
        let buffer = vec![0u8; room].into_boxed_slice();
        let keep = Keep {
            buffer: Some(buffer),
            ..Keep::default()
        };
        self.start(connection, TDI_RECEIVE, parameters, keep, "receive");
        self.settle();
    }

    fn start_datagram_receive(&mut self, address: Handle, room: usize) {
        self.post_datagram_receive(address, room);
        self.settle();
    }

    /// A TDI_RECEIVE_DATAGRAM, sent without waiting for the driver to settle.
    fn post_datagram_receive(&mut self, address: Handle, room: usize) {
        let mut infos = vec![wire::ConnectionInfo::null()];
        let info = infos[0].as_ptr();
        let parameters = wire::receive_datagram(room as u32, info, info, 0);
        let buffer = vec![0u8; room].into_boxed_slice();
        let keep = Keep {
            buffer: Some(buffer),
            infos,
            ..Keep::default()
        };
        self.start(address, TDI_RECEIVE_DATAGRAM, parameters, keep, "datagram");
    }

    /// Sends a TDI request without waiting for it (TdiBuildInternalDeviceControlIrp with an
    /// event and a status block).
    fn start(
        &mut self,
        handle: Handle,
        minor: u8,
        parameters: IoStackParameters,
        keep: Keep,
        what: &'static str,
    ) {
        let Keep {
            mut buffer,
            infos,
            timeout,
        } = keep;
        let kernel = &self.kernel;
        let file = kernel.reference_file(handle).expect("file handle");
        let mut location =
            StackLocation::new(IRP_MJ_INTERNAL_DEVICE_CONTROL, minor, std::ptr::null_mut());
        location.parameters = parameters;
        let irp = kernel.allocate_file_irp(&file, location);
        let event = Event::new(kernel, EventType::Notification, false);
        let mut iosb = Box::new(IO_STATUS_BLOCK {
            Status: IoStatusUnion { Status: 0 },
            Information: 0,
        });
        let iosb_ptr: *mut IO_STATUS_BLOCK = &mut *iosb;
        let mdl = buffer
            .as_mut()
            .map(|b| kernel.build_mdl(b.as_mut_ptr(), b.len(), MdlKind::Locked));
        // SAFETY: a fresh IRP, owned by the harness until it is sent.
        unsafe {
            kernel.with_irp(irp, |i| {
                i.UserEvent = event.as_ptr();
                i.UserIosb = iosb_ptr;
                if let Some(mdl) = mdl {
                    i.MdlAddress = mdl;
                }
            })
        };
        kernel.call_driver(file.device(), irp);
        self.pending.push(Pending {
            what,
            event,
            iosb,
            _infos: infos,
            _buffer: buffer,
            _timeout: timeout,
        });
    }

    /// The handle of `file`, unless it was closed.
    fn handle(&self, file: usize) -> Option<Handle> {
        self.handles.get(file).copied().flatten()
    }

    /// A TDI_SEND of `len` bytes on connection endpoint `file`.
    pub fn send(&mut self, file: usize, len: usize) {
        let Some(handle) = self.handle(file) else {
            return;
        };
        self.change(reset::part_of(file));
        let buffer: Box<[u8]> = (0..len).map(|i| i as u8).collect();
        let parameters = wire::send(len as u32, 0);
        let keep = Keep {
            buffer: (len > 0).then_some(buffer),
            ..Keep::default()
        };
        self.start(handle, TDI_SEND, parameters, keep, "send");
        self.settle();
    }

    /// A TDI_RECEIVE of up to `room` bytes on connection endpoint `file`.
    pub fn receive(&mut self, file: usize, room: usize) {
        if let Some(handle) = self.handle(file) {
            self.change(reset::part_of(file));
            self.start_receive(handle, room.max(1));
        }
    }

    /// A TDI_DISCONNECT with `flags` and an optional timeout on connection endpoint `file`.
    pub fn disconnect(&mut self, file: usize, flags: u32, timeout: Option<i64>) {
        let Some(handle) = self.handle(file) else {
            return;
        };
        self.change(reset::part_of(file));
        let mut timeout = timeout.map(Box::new);
        let pointer = timeout
            .as_mut()
            .map_or(std::ptr::null_mut(), |t| &mut **t as *mut i64);
        let null = std::ptr::null_mut();
        let parameters = wire::kernel_request(flags, null, null, pointer);
        let keep = Keep {
            timeout,
            ..Keep::default()
        };
        self.start(handle, TDI_DISCONNECT, parameters, keep, "disconnect");
        self.settle();
    }

    /// A TDI_SEND_DATAGRAM of `len` bytes from the UDP address file to `to`.
    pub fn send_datagram(&mut self, to: SocketAddrV4, len: usize) {
        self.post_send_datagram(to, len);
        self.settle();
    }

    /// [`send_datagram`](Self::send_datagram) without waiting for the driver to settle.
    fn post_send_datagram(&mut self, to: SocketAddrV4, len: usize) {
        let Some(handle) = self.handle(file::UDP) else {
            return;
        };
        let mut infos = vec![wire::ConnectionInfo::new(to)];
        let parameters = wire::send_datagram(len as u32, infos[0].as_ptr());
        let keep = Keep {
            buffer: (len > 0).then(|| vec![0x5a; len].into_boxed_slice()),
            infos,
            ..Keep::default()
        };
        self.start(handle, TDI_SEND_DATAGRAM, parameters, keep, "send datagram");
    }

    /// Closes `file` (its pending requests complete as cancelled).
    pub fn close(&mut self, file: usize) {
        if let Some(handle) = self.handles.get_mut(file).and_then(Option::take) {
            self.change(reset::part_of(file));
            assert_eq!(self.kernel.close(handle), NtStatus::SUCCESS);
            self.settle();
        }
    }

    /// Waits until the driver has done all it can with what it was given.
    pub fn quiesce(&self) {
        self.kernel.wait_quiescent();
    }

    /// Waits as [`quiesce`](Self::quiesce) does, then looks at what the driver sent.
    fn settle(&mut self) {
        self.quiesce();
        self.follow();
    }

    /// Indicates one frame as the adapter's receive indication and lets the driver take it.
    /// A frame the receive queue refuses (empty, or past the link's frame size) is dropped.
    pub fn indicate(&mut self, frame: &[u8]) {
        self.stack.indicate_receive(self.link, frame);
        self.settle();
    }

    /// Indicates IPv4 packets from the peer one after the other, then lets the driver take them
    /// all (in as few passes as it likes). The link's receive queue holds 64 frames; it drops
    /// the rest.
    fn indicate_packets(&mut self, packets: impl IntoIterator<Item = Vec<u8>>) {
        for packet in packets {
            self.stack
                .indicate_receive(self.link, &frames::ethernet_ipv4(&packet));
        }
        self.settle();
    }

    /// [`indicate`](Self::indicate) for an IPv4 packet from the peer.
    pub fn indicate_packet(&mut self, packet: &[u8]) {
        self.indicate(&frames::ethernet_ipv4(packet));
    }

    /// Moves the virtual clock (timers fire: retransmissions, timeouts, expiry).
    pub fn advance(&mut self, by: Duration) {
        self.kernel.advance(by);
        self.follow();
    }

    /// Takes the TCP segments sent since the last look (what [`follow`](Self::follow)
    /// collected).
    fn sent_segments(&mut self) -> Vec<Sent> {
        std::mem::take(&mut self.sent)
    }

    /// Takes the frames the driver sent (allocated by its DPC, they count against the driver
    /// until freed), keeps their TCP segments for the setup, follows the sequence numbers of
    /// the two connections, and notes the ARP requests (a neighbour was missing, and smoltcp's
    /// one-a-second limit started: the neighbour caches changed).
    fn follow(&mut self) {
        let frames = std::mem::take(&mut *self.recorder.sent.lock().unwrap());
        if debug() {
            for f in &frames {
                eprintln!("sent {:02x?}", &f[..f.len().min(60)]);
            }
        }
        for ip in frames.iter().filter_map(|f| frames::arp_request_for(f)) {
            self.change(reset::Part::Neighbours);
            if !self.asked.contains(&ip) && self.asked.len() < 8 {
                self.asked.push(ip);
            }
        }
        for sent in frames.iter().filter_map(|f| frames::sent_segment(f)) {
            for connection in [&mut self.accepted, &mut self.connecting] {
                if sent.src == connection.local && sent.dst == connection.remote {
                    let syn_fin = usize::from(sent.flags & (SYN | frames::FIN) != 0);
                    let end = sent.seq.wrapping_add((sent.len + syn_fin) as u32);
                    if end.wrapping_sub(connection.our_next) as i32 > 0 {
                        connection.our_next = end;
                    }
                    if sent.flags & ACK != 0 {
                        connection.acked = sent.ack;
                    }
                }
            }
            let to_peer = sent.dst.ip() == &PEER && sent.src.port() == LISTEN_PORT;
            if to_peer && sent.flags & (SYN | ACK) == SYN | ACK {
                let port = sent.dst.port();
                self.half_open.retain(|&(p, _)| p != port);
                if self.half_open.len() < 64 {
                    self.half_open.push((port, sent.seq.wrapping_add(1)));
                }
            }
            if self.sent.len() < 64 {
                self.sent.push(sent);
            }
        }
    }

    /// Closes everything, unloads the driver and checks the model's verdict; panics (a crash
    /// for the fuzzer) on any leak, violation or request never completed.
    pub fn finish(mut self) {
        if debug() {
            for p in &self.pending {
                let done = p.event.is_signaled();
                eprintln!(
                    "{}: {}",
                    p.what,
                    if done {
                        format!("{:?}", p.status())
                    } else {
                        "pending".into()
                    }
                );
            }
        }
        let control = self.control.take();
        for handle in std::mem::take(&mut self.handles)
            .into_iter()
            .flatten()
            .chain(control)
        {
            assert_eq!(self.kernel.close(handle), NtStatus::SUCCESS);
        }
        self.quiesce();
        for pending in &self.pending {
            assert!(
                pending.event.is_signaled(),
                "{} never completed",
                pending.what
            );
        }
        drop(std::mem::take(&mut *self.recorder.sent.lock().unwrap()));
        let driver = self.driver.take().expect("loaded");
        let report = driver.unload();
        assert!(report.is_clean(), "{report}");
        let violations = self.kernel.take_violations();
        assert!(violations.is_empty(), "verifier: {violations:?}");
    }
}
