//! The Ethernet link against Linux, without the driver (issue #6): a smoltcp `Interface` over
//! `EthernetDevice` + `TapAdapter` in a namespace of its own, polled on the test thread at
//! DISPATCH_LEVEL the way the core DPC will poll it, answers Linux's ARP and ping, serves
//! Linux's echo clients, moves bulk data both ways, sees Linux's RST, and captures it all to a
//! pcap file. This proves the device, the receive queue, the TAP adapter and the namespace
//! plumbing end to end; the driver's own interop tests build on the same support module.
#![feature(tcp_linger)]

mod interop_support;

use interop_support::Namespace;
use interop_support::peers::{self, Transfer};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{IpAddress, IpCidr};
use std::net::{SocketAddr, SocketAddrV4, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tcpip::host::tap::TapAdapter;
use tcpip::host::{Config as KernelConfig, DISPATCH_LEVEL, Kernel, current_irql};
use tcpip::host::{lower_irql, raise_irql};
use tcpip::link::ethernet::{Adapter, DEFAULT_FRAMES, EthernetDevice, ReceiveQueue};

/// How long one scenario may take before the test fails.
const LIMIT: Duration = Duration::from_secs(30);

/// The TAP adapter with its reader indicating into a receive queue and waking the test
/// thread, which stands in for the core DPC.
struct Link {
    tap: TapAdapter,
    queue: Arc<ReceiveQueue>,
}

impl Link {
    fn open(namespace: &Namespace, pcap: Option<&std::path::Path>) -> Link {
        let tap = namespace.open_tap(pcap);
        assert_eq!(tap.mtu(), 1500, "the TAP's MTU");
        let queue = Arc::new(ReceiveQueue::new(tap.mtu(), DEFAULT_FRAMES).unwrap());
        let indicated = queue.clone();
        let poller = std::thread::current();
        tap.start(move |frame| {
            indicated.indicate(frame);
            poller.unpark();
        })
        .expect("start the TAP reader");
        Link { tap, queue }
    }

    /// Stops the reader and checks that it ended cleanly.
    fn stop(&self) {
        self.tap.stop().expect("the TAP reader ended cleanly");
    }
}

/// smoltcp at the driver's address on the link.
struct Station<'a> {
    iface: Interface,
    dev: EthernetDevice<'a>,
    sockets: SocketSet<'static>,
    started: Instant,
}

impl<'a> Station<'a> {
    fn new(namespace: &Namespace, link: &'a Link) -> Station<'a> {
        let mut dev = EthernetDevice::new(&link.queue, &link.tap).unwrap();
        let mut config = Config::new(dev.hardware_address());
        config.random_seed = u64::from(std::process::id());
        let started = Instant::now();
        let mut iface = Interface::new(config, &mut dev, SmolInstant::ZERO);
        iface.update_ip_addrs(|addrs| {
            let ip = IpAddress::Ipv4(namespace.driver_ip());
            addrs.push(IpCidr::new(ip, 24)).unwrap();
        });
        Station {
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            started,
        }
    }

    fn now(&self) -> SmolInstant {
        SmolInstant::from_micros(i64::try_from(self.started.elapsed().as_micros()).unwrap())
    }

    fn add_socket(&mut self, buffer: usize) -> SocketHandle {
        self.sockets.add(tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; buffer]),
            tcp::SocketBuffer::new(vec![0; buffer]),
        ))
    }

    fn socket(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut(handle)
    }

    /// One pass at DISPATCH_LEVEL, as the core DPC runs it.
    fn poll(&mut self) {
        let now = self.now();
        let old = raise_irql(DISPATCH_LEVEL);
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        lower_irql(old);
    }

    /// Polls, then runs `app` (at PASSIVE_LEVEL) until it returns `true`; between passes the
    /// thread sleeps until the TAP reader indicates a frame or smoltcp's next deadline (at most
    /// 10 ms). Fails the test after [`LIMIT`].
    fn run_until(&mut self, what: &str, mut app: impl FnMut(&mut Station<'a>) -> bool) {
        let deadline = Instant::now() + LIMIT;
        loop {
            self.poll();
            if app(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no progress in {LIMIT:?}"
            );
            let now = self.now();
            let delay = self
                .iface
                .poll_delay(now, &self.sockets)
                .map_or(Duration::from_millis(10), |d| {
                    Duration::from_micros(d.total_micros())
                });
            std::thread::park_timeout(delay.min(Duration::from_millis(10)));
        }
    }
}

/// Moves what `handle` received to its transmit buffer, as far as there is room; closes it once
/// the peer has closed and everything was echoed.
fn echo(socket: &mut tcp::Socket<'static>) {
    let mut chunk = [0u8; 4096];
    while socket.can_recv() && socket.can_send() {
        let room = (socket.send_capacity() - socket.send_queue()).min(chunk.len());
        let n = socket.recv_slice(&mut chunk[..room]).unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(socket.send_slice(&chunk[..n]).unwrap(), n);
    }
    if socket.state() == tcp::State::CloseWait && socket.recv_queue() == 0 {
        socket.close();
    }
}

fn linux(namespace: &Namespace, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(namespace.linux_ip(), port))
}

fn driver(namespace: &Namespace, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(namespace.driver_ip(), port))
}

/// Binds a listener inside the namespace.
fn listen(namespace: &Namespace, port: u16) -> TcpListener {
    let addr = linux(namespace, port);
    namespace.run(move || TcpListener::bind(addr).expect("bind in the namespace"))
}

/// Reads a pcap file: the link type and every record's captured bytes.
fn read_pcap(path: &std::path::Path) -> (u32, Vec<Vec<u8>>) {
    let bytes = std::fs::read(path).expect("the pcap file");
    assert!(bytes.len() >= 24, "a global header");
    let word = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(word(0), 0xa1b2_c3d4, "pcap magic");
    assert_eq!(&bytes[4..8], &[2, 0, 4, 0][..], "version 2.4");
    let mut frames = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let (captured, original) = (word(at + 8) as usize, word(at + 12) as usize);
        assert!(
            captured <= original && at + 16 + captured <= bytes.len(),
            "record at {at}"
        );
        frames.push(bytes[at + 16..at + 16 + captured].to_vec());
        at += 16 + captured;
    }
    (word(20), frames)
}

#[test]
fn answers_arp_and_ping_and_captures_them() {
    let namespace = Namespace::new();
    let (pcap, keep) = interop_support::capture_path(&namespace, "arp_and_ping");
    let link = Link::open(&namespace, Some(&pcap));
    let mut station = Station::new(&namespace, &link);

    let ping = namespace.ping(namespace.driver_ip(), 3);
    station.run_until("ping", |_| ping.is_finished());
    let output = ping.join().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "ping failed: {text}");
    assert!(text.contains("3 received"), "{text}");

    let neighbours = namespace.ip(&["neigh", "show", "dev", namespace.tap()]);
    let mac = namespace.driver_mac().map(|b| format!("{b:02x}")).join(":");
    assert!(
        neighbours.contains(&format!("{} lladdr {mac}", namespace.driver_ip())),
        "Linux learnt our MAC by ARP: {neighbours}"
    );

    link.stop();
    let stats = link.tap.stats();
    let (link_type, frames) = read_pcap(&pcap);
    if !keep {
        std::fs::remove_file(&pcap).unwrap();
    }
    assert_eq!(link_type, 1, "LINKTYPE_ETHERNET");
    assert_eq!(frames.len() as u64, stats.frames_in + stats.frames_out);
    assert!(stats.frames_in >= 4 && stats.frames_out >= 4, "{stats:?}");
    let ethertype = |frame: &Vec<u8>| u16::from_be_bytes([frame[12], frame[13]]);
    assert!(
        frames.iter().any(|f| ethertype(f) == 0x0806),
        "an ARP frame"
    );
    let echo_replies = frames
        .iter()
        .filter(|f| ethertype(f) == 0x0800 && f[23] == 1 && f[34] == 0)
        .count();
    assert_eq!(echo_replies, 3, "three ICMP echo replies captured");
    assert_eq!(station.dev.stats().transmit_failed, 0);
    assert_eq!(stats.transmit_errors + stats.pcap_errors, 0);
}

#[test]
fn serves_linux_echo_clients() {
    let (threads, connections, message) = (4, 5, 3000);
    let namespace = Namespace::new();
    let link = Link::open(&namespace, None);
    let mut station = Station::new(&namespace, &link);
    // More listening sockets than clients: one that is still closing must not leave a SYN
    // without a taker (smoltcp would answer it with a RST).
    let servers: Vec<SocketHandle> = (0..3 * threads)
        .map(|_| station.add_socket(16 * 1024))
        .collect();
    for &handle in &servers {
        station.socket(handle).listen(7).unwrap();
    }
    let addr = driver(&namespace, 7);
    let clients = namespace.spawn("echo-clients", move || {
        peers::echo_clients(addr, threads, connections, message)
    });
    // Connections served to the end: each leaves its socket CLOSED, to listen again.
    let mut served = 0;
    station.run_until("echo", |station| {
        for &handle in &servers {
            let socket = station.socket(handle);
            match socket.state() {
                tcp::State::Closed => {
                    served += 1;
                    socket.listen(7).unwrap();
                }
                _ => echo(socket),
            }
        }
        clients.is_finished()
    });
    let round_trips = clients.join().unwrap().expect("every echo checked out");
    assert_eq!(round_trips, threads * connections);
    // The last connections may still wait for their final ACK.
    assert!(
        served + servers.len() >= round_trips,
        "{served} connections served"
    );
    assert!(served > 0);
    link.stop();
    assert_eq!(station.dev.stats().transmit_failed, 0);
}

#[test]
fn moves_bulk_data_both_ways() {
    let len = 1 << 20;
    let namespace = Namespace::new();
    let link = Link::open(&namespace, None);
    let mut station = Station::new(&namespace, &link);

    // smoltcp → Linux.
    let data = peers::pattern(7, len);
    let listener = listen(&namespace, 9000);
    let receiver = namespace.spawn("bulk-receiver", move || peers::bulk_receive(&listener));
    let client = station.add_socket(64 * 1024);
    let remote = (namespace.linux_ip(), 9000);
    let context = station.iface.context();
    station
        .sockets
        .get_mut::<tcp::Socket>(client)
        .connect(context, remote, 49152)
        .unwrap();
    let mut sent = 0;
    station.run_until("bulk to Linux", |station| {
        let socket = station.socket(client);
        if socket.can_send() && sent < data.len() {
            sent += socket.send_slice(&data[sent..]).unwrap();
            if sent == data.len() {
                socket.close();
            }
        }
        receiver.is_finished()
    });
    let received = receiver.join().unwrap().expect("the bulk receiver");
    let expected = Transfer {
        bytes: len as u64,
        hash: peers::hash(&data),
    };
    assert_eq!(received, expected);

    // Linux → smoltcp.
    let server = station.add_socket(64 * 1024);
    station.socket(server).listen(9001).unwrap();
    let addr = driver(&namespace, 9001);
    let data = peers::pattern(8, len);
    let sender = namespace.spawn("bulk-sender", move || peers::bulk_send(addr, &data));
    let mut hash = peers::Fnv::default();
    let mut bytes = 0u64;
    station.run_until("bulk from Linux", |station| {
        let socket = station.socket(server);
        while socket.can_recv() {
            socket
                .recv(|chunk| {
                    hash.update(chunk);
                    bytes += chunk.len() as u64;
                    (chunk.len(), ())
                })
                .unwrap();
        }
        if socket.state() == tcp::State::CloseWait {
            socket.close();
        }
        sender.is_finished()
    });
    let sent = sender.join().unwrap().expect("the bulk sender");
    assert_eq!(
        Transfer {
            bytes,
            hash: hash.value()
        },
        sent
    );
    link.stop();
    let queue = link.queue.stats();
    eprintln!(
        "bulk: receive queue {queue:?}, device {:?}",
        station.dev.stats()
    );
    assert_eq!(station.dev.stats().transmit_failed, 0);
}

#[test]
fn sees_a_linux_reset() {
    let namespace = Namespace::new();
    let link = Link::open(&namespace, None);
    let mut station = Station::new(&namespace, &link);
    let server = station.add_socket(16 * 1024);
    station.socket(server).listen(8000).unwrap();
    let addr = driver(&namespace, 8000);
    let closer = namespace.spawn("closer", move || -> std::io::Result<()> {
        let mut stream = peers::connect(addr)?;
        std::io::Write::write_all(&mut stream, b"unread")?;
        peers::reset_close(stream)
    });
    // The handshake, the data and the RST may all arrive within one pass, so the socket may
    // go from LISTEN to CLOSED between two looks. Only a RST closes it: after a FIN it would
    // wait in CLOSE-WAIT for a close that never comes.
    station.run_until("reset", |station| {
        station.socket(server).state() == tcp::State::Closed && closer.is_finished()
    });
    closer.join().unwrap().expect("the closer");
    link.stop();
}

#[test]
fn indications_are_driver_routines_at_dispatch_level() {
    let namespace = Namespace::new();
    let kernel = Kernel::new(KernelConfig::default());
    let tap = namespace.open_tap(None);
    let frames = Arc::new(AtomicUsize::new(0));
    let irql = Arc::new(AtomicU8::new(u8::MAX));
    let (seen, level) = (frames.clone(), irql.clone());
    // Started from the kernel's thread: the reader belongs to that kernel.
    tap.start(move |_frame| {
        level.store(current_irql(), Ordering::Relaxed);
        // Attributed to the driver, like any allocation in a driver routine.
        drop(Vec::<u8>::with_capacity(64));
        seen.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    let before = kernel.pool_stats().allocations;
    // Nobody answers: Linux's ARP requests are the frames.
    let ping = namespace.ping(namespace.driver_ip(), 1);
    let deadline = Instant::now() + LIMIT;
    while frames.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no frame from Linux");
        std::thread::sleep(Duration::from_millis(5));
    }
    tap.stop().expect("the TAP reader ended cleanly");
    assert_eq!(irql.load(Ordering::Relaxed), DISPATCH_LEVEL);
    assert!(kernel.pool_stats().allocations > before);
    assert!(kernel.take_violations().is_empty());
    let _ = ping.join();
}
