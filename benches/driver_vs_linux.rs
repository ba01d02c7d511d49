//! The driver path against Linux loopback TCP, as ratios measured in one run (issue #7).
//!
//! Each workload runs on both stacks in this process: on the driver path (the blocking Winsock model →
//! AFD model → IRPs → dispatch → work queue/DPC → smoltcp core → loopback → completions) and
//! on Linux sockets over 127.0.0.1 (`std::net`). The output is a plain table, `workload |
//! driver | linux | ratio` (ratio = driver / linux; the last column says which way is
//! better), the same rows as CSV in `target/bench/driver_vs_linux.csv`, and an SVG chart with
//! both stacks side by side in `target/bench/driver_vs_linux.svg`.
//!
//! Workloads: 1 bulk throughput (one connection, 64 KiB sends); 2 echo round trip (64-byte
//! request/response, p50/p99); 3 connection rate (serial-accept echo server, N client threads
//! each connecting, sending, receiving the echo and closing); 4 scaling (10/100/1,000/10,000
//! open connections doing echo round trips: cost per op, and the driver's pool bytes per
//! connected socket, idle and at the peak under the echo load — the pool the socket ring
//! lookaside caches is left out, as it belongs to no connection); 5 the durations of the DPC
//! routines the host model ran during 1–4 (`KernelHandle::dpc_durations`, wall clock) and how
//! long each core pass held the core in processor time (`core::passes`, read with
//! `host::stats::pass_stats`; a model thread that Linux deschedules inflates the first, not
//! the second), driver only; and the share of socket ring blocks the lookaside served over
//! the whole run.
//!
//! Workloads 1–3 run in alternating rounds (driver then Linux, then Linux then driver, …; 3
//! rounds in quick mode, 5 in full): the Linux baseline swings severalfold between runs of a
//! shared machine, so each round's ratio is taken from figures measured side by side, and the
//! table gives the medians with the spread (lowest–highest) of the per-round ratios.
//!
//! Modes: quick (the default; small sizes, a few seconds; what CI runs with `--quick`) and full
//! (`--full` or `TCPIP_BENCH_FULL=1`). The benchmark reports; it asserts nothing about time. It
//! does fail if a workload fails or the driver does not unload cleanly.

use plotters::prelude::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tcpip::core::passes::PassStats;
use tcpip::host::stats;
use tcpip::host::winsock::{Socket, Winsock};
use tcpip::host::{Clock, Config, DpcDurations, Kernel, KernelHandle};
use tcpip::nt::entry::driver_entry;

/// The sizes of one mode.
struct Sizes {
    full: bool,
    /// Alternating rounds of workloads 1–3.
    rounds: usize,
    bulk_bytes: usize,
    echo_round_trips: usize,
    rate_threads: usize,
    rate_per_thread: usize,
    scaling: &'static [usize],
    scaling_ops: usize,
}

const QUICK: Sizes = Sizes {
    full: false,
    rounds: 3,
    bulk_bytes: 32 << 20,
    echo_round_trips: 2_000,
    rate_threads: 4,
    rate_per_thread: 25,
    scaling: &[10, 100],
    scaling_ops: 2_000,
};

const FULL: Sizes = Sizes {
    full: true,
    rounds: 5,
    bulk_bytes: 1 << 30,
    echo_round_trips: 20_000,
    rate_threads: 8,
    rate_per_thread: 250,
    scaling: &[10, 100, 1_000, 10_000],
    scaling_ops: 20_000,
};

const CHUNK: usize = 64 * 1024;
const ECHO: usize = 64;
const RATE_MESSAGE: usize = 32;

fn loopback(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

/// One TCP stack as the workloads see it: blocking calls; failures end the run.
trait Stack: Send + Sync + 'static {
    type Listener: Send + Sync + 'static;
    type Conn: Send + 'static;
    fn listen(&self, port: u16) -> Self::Listener;
    fn accept(&self, listener: &Self::Listener) -> Self::Conn;
    fn connect(&self, port: u16) -> Self::Conn;
    fn set_nodelay(&self, conn: &mut Self::Conn);
    fn send_all(&self, conn: &mut Self::Conn, data: &[u8]);
    /// 0 at end of stream.
    fn recv(&self, conn: &mut Self::Conn, buffer: &mut [u8]) -> usize;
    fn recv_exact(&self, conn: &mut Self::Conn, buffer: &mut [u8]) {
        let mut got = 0;
        while got < buffer.len() {
            let n = self.recv(conn, &mut buffer[got..]);
            assert!(n > 0, "stream ended early");
            got += n;
        }
    }
    fn close(&self, conn: Self::Conn);
    fn close_listener(&self, listener: Self::Listener);
    fn spawn<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T>;
}

/// The driver path: Winsock over the AFD model over the loaded driver.
struct Driver {
    ws: Winsock,
    kernel: KernelHandle,
}

impl Stack for Driver {
    type Listener = Socket;
    type Conn = Socket;

    fn listen(&self, port: u16) -> Socket {
        let s = self.ws.socket().expect("socket");
        self.ws.bind(s, loopback(port)).expect("bind");
        self.ws.listen(s, 200).expect("listen");
        s
    }
    fn accept(&self, listener: &Socket) -> Socket {
        self.ws.accept(*listener).expect("accept").0
    }
    fn connect(&self, port: u16) -> Socket {
        let s = self.ws.socket().expect("socket");
        self.ws.connect(s, loopback(port)).expect("connect");
        s
    }
    fn set_nodelay(&self, conn: &mut Socket) {
        self.ws.set_nodelay(*conn, true).expect("TCP_NODELAY");
    }
    fn send_all(&self, conn: &mut Socket, data: &[u8]) {
        self.ws.send_all(*conn, data).expect("send");
    }
    fn recv(&self, conn: &mut Socket, buffer: &mut [u8]) -> usize {
        self.ws.recv(*conn, buffer).expect("recv")
    }
    fn close(&self, conn: Socket) {
        self.ws.closesocket(conn).expect("closesocket");
    }
    fn close_listener(&self, listener: Socket) {
        self.ws.closesocket(listener).expect("closesocket");
    }
    fn spawn<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        self.kernel.spawn(name, f)
    }
}

/// Linux TCP over 127.0.0.1.
struct Linux;

impl Stack for Linux {
    type Listener = TcpListener;
    type Conn = TcpStream;

    fn listen(&self, port: u16) -> TcpListener {
        TcpListener::bind(loopback(port)).expect("bind")
    }
    fn accept(&self, listener: &TcpListener) -> TcpStream {
        listener.accept().expect("accept").0
    }
    fn connect(&self, port: u16) -> TcpStream {
        TcpStream::connect(loopback(port)).expect("connect")
    }
    fn set_nodelay(&self, conn: &mut TcpStream) {
        conn.set_nodelay(true).expect("TCP_NODELAY");
    }
    fn send_all(&self, conn: &mut TcpStream, data: &[u8]) {
        conn.write_all(data).expect("send");
    }
    fn recv(&self, conn: &mut TcpStream, buffer: &mut [u8]) -> usize {
        conn.read(buffer).expect("recv")
    }
    fn close(&self, conn: TcpStream) {
        drop(conn);
    }
    fn close_listener(&self, listener: TcpListener) {
        drop(listener);
    }
    fn spawn<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(f)
            .expect("spawn")
    }
}

/// Workload 1: bytes per second from one client to a server that reads and discards.
fn bulk<S: Stack>(stack: &Arc<S>, port: u16, total: usize) -> f64 {
    let listener = Arc::new(stack.listen(port));
    let server = {
        let (stack, listener) = (stack.clone(), listener.clone());
        stack.clone().spawn("bulk-server", move || {
            let mut s = stack.accept(&listener);
            let mut buffer = vec![0u8; CHUNK];
            let mut got = 0;
            while got < total {
                let n = stack.recv(&mut s, &mut buffer);
                assert!(n > 0, "bulk ended early at {got} of {total}");
                got += n;
            }
            stack.close(s);
        })
    };
    let mut client = stack.connect(port);
    let chunk: Vec<u8> = (0..CHUNK).map(|i| i as u8).collect();
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        let len = CHUNK.min(total - sent);
        stack.send_all(&mut client, &chunk[..len]);
        sent += len;
    }
    server.join().expect("bulk server");
    let elapsed = started.elapsed();
    stack.close(client);
    close_shared_listener(stack, listener);
    total as f64 / elapsed.as_secs_f64()
}

fn close_shared_listener<S: Stack>(stack: &Arc<S>, listener: Arc<S::Listener>) {
    let listener = Arc::try_unwrap(listener).unwrap_or_else(|_| panic!("listener still shared"));
    stack.close_listener(listener);
}

/// An echo server for one connection: echoes `ECHO`-byte messages until the peer closes.
fn echo_server<S: Stack>(stack: &S, mut s: S::Conn) {
    let mut m = [0u8; ECHO];
    loop {
        let mut got = 0;
        while got < ECHO {
            let n = stack.recv(&mut s, &mut m[got..]);
            if n == 0 {
                stack.close(s);
                return;
            }
            got += n;
        }
        stack.send_all(&mut s, &m);
    }
}

/// Workload 2: round-trip times of 64-byte request/response on one connection (TCP_NODELAY
/// on both ends, on both stacks).
fn echo<S: Stack>(stack: &Arc<S>, port: u16, round_trips: usize) -> Vec<Duration> {
    let listener = Arc::new(stack.listen(port));
    let server = {
        let (stack, listener) = (stack.clone(), listener.clone());
        stack.clone().spawn("echo-server", move || {
            let mut s = stack.accept(&listener);
            stack.set_nodelay(&mut s);
            echo_server(&*stack, s);
        })
    };
    let mut client = stack.connect(port);
    stack.set_nodelay(&mut client);
    let request = [0x5au8; ECHO];
    let mut response = [0u8; ECHO];
    // Warm-up.
    for _ in 0..round_trips / 10 {
        stack.send_all(&mut client, &request);
        stack.recv_exact(&mut client, &mut response);
    }
    let mut times = Vec::with_capacity(round_trips);
    for _ in 0..round_trips {
        let started = Instant::now();
        stack.send_all(&mut client, &request);
        stack.recv_exact(&mut client, &mut response);
        times.push(started.elapsed());
    }
    assert_eq!(response, request);
    stack.close(client);
    server.join().expect("echo server");
    close_shared_listener(stack, listener);
    times.sort_unstable();
    times
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Workload 3: connections per second, `threads` clients × `per_thread` connections against
/// a server that accepts, echoes one message and closes, one connection at a time.
fn connection_rate<S: Stack>(stack: &Arc<S>, port: u16, threads: usize, per_thread: usize) -> f64 {
    let listener = Arc::new(stack.listen(port));
    let total = threads * per_thread;
    let started = Instant::now();
    let server = {
        let (stack, listener) = (stack.clone(), listener.clone());
        stack.clone().spawn("rate-server", move || {
            for _ in 0..total {
                let mut s = stack.accept(&listener);
                let mut m = [0u8; RATE_MESSAGE];
                stack.recv_exact(&mut s, &mut m);
                stack.send_all(&mut s, &m);
                stack.close(s);
            }
        })
    };
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let stack = stack.clone();
            stack.clone().spawn("rate-client", move || {
                for i in 0..per_thread {
                    let mut s = stack.connect(port);
                    let m = [(t * 31 + i) as u8; RATE_MESSAGE];
                    stack.send_all(&mut s, &m);
                    let mut echo = [0u8; RATE_MESSAGE];
                    stack.recv_exact(&mut s, &mut echo);
                    assert_eq!(echo, m);
                    let mut rest = [0u8; 1];
                    assert_eq!(stack.recv(&mut s, &mut rest), 0, "server closed");
                    stack.close(s);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("rate client");
    }
    server.join().expect("rate server");
    let elapsed = started.elapsed();
    close_shared_listener(stack, listener);
    total as f64 / elapsed.as_secs_f64()
}

/// Workload 4: `n` connections held open; two threads each take half of them and do 64-byte
/// echo round trips on them in turn (client send, server receive and echo, client receive)
/// until `ops` round trips are done. Returns the cost per op; `idle` is run once every
/// connection is established and idle, and `loaded` every millisecond while the round trips
/// run (for the pool measurements).
fn scaling<S: Stack>(
    stack: &Arc<S>,
    port: u16,
    n: usize,
    ops: usize,
    idle: impl FnOnce(),
    mut loaded: impl FnMut(),
) -> Duration {
    let listener = Arc::new(stack.listen(port));
    // Threads that used a driver socket stay until the sockets are closed: AFD's TDI requests
    // are threaded IRPs, cancelled when the thread that built them ends (as on ReactOS).
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let wait_done = Arc::new(std::sync::Mutex::new(wait_done));
    let stay = {
        let wait_done = wait_done.clone();
        move || {
            let _ = wait_done.lock().map(|w| w.recv());
        }
    };
    let (accepted, wait_accepted) = std::sync::mpsc::channel();
    let acceptor = {
        let (stack, listener, stay) = (stack.clone(), listener.clone(), stay.clone());
        stack.clone().spawn("scaling-acceptor", move || {
            let servers = (0..n)
                .map(|_| {
                    let mut s = stack.accept(&listener);
                    stack.set_nodelay(&mut s);
                    s
                })
                .collect::<Vec<_>>();
            let _ = accepted.send(servers);
            stay();
        })
    };
    let clients: Vec<_> = (0..n)
        .map(|_| {
            let mut s = stack.connect(port);
            stack.set_nodelay(&mut s);
            s
        })
        .collect();
    let servers = wait_accepted.recv().expect("acceptor");
    idle();
    // Accept order is connect order: the connects were serial.
    let mut pairs: Vec<Vec<(S::Conn, S::Conn)>> = vec![Vec::new(), Vec::new()];
    for (i, pair) in clients.into_iter().zip(servers).enumerate() {
        pairs[i % 2].push(pair);
    }
    let rounds = ops.div_ceil(n).max(1);
    let started = Instant::now();
    let (finished, wait_finished) = std::sync::mpsc::channel();
    let workers: Vec<_> = pairs
        .into_iter()
        .map(|mut mine| {
            let (stack, stay, finished) = (stack.clone(), stay.clone(), finished.clone());
            stack.clone().spawn("scaling-worker", move || {
                let request = [0xa5u8; ECHO];
                let mut buffer = [0u8; ECHO];
                for _ in 0..rounds {
                    for (client, server) in &mut mine {
                        stack.send_all(client, &request);
                        stack.recv_exact(server, &mut buffer);
                        stack.send_all(server, &buffer);
                        stack.recv_exact(client, &mut buffer);
                    }
                }
                let _ = finished.send(mine);
                stay();
            })
        })
        .collect();
    let mut worked = Vec::new();
    while worked.len() < workers.len() {
        match wait_finished.recv_timeout(Duration::from_millis(1)) {
            Ok(mine) => worked.push(mine),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => loaded(),
            Err(error) => panic!("scaling worker: {error}"),
        }
    }
    let per_op = started.elapsed() / u32::try_from(rounds * n).expect("op count");
    for (client, server) in worked.into_iter().flatten() {
        stack.close(client);
        stack.close(server);
    }
    // Every socket closed: the threads may end (each takes one "done").
    for _ in 0..=workers.len() {
        let _ = done.send(());
    }
    for worker in workers {
        worker.join().expect("scaling worker");
    }
    acceptor.join().expect("acceptor");
    close_shared_listener(stack, listener);
    per_op
}

/// Which way a figure is better.
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
    None,
}

struct Row {
    workload: String,
    unit: &'static str,
    driver: f64,
    linux: Option<f64>,
    better: Better,
    target: &'static str,
    /// Per-round ratios of an alternating workload (empty for the others).
    ratios: Vec<f64>,
}

impl Row {
    /// A figure of the driver alone (no Linux counterpart).
    fn driver_only(
        workload: String,
        unit: &'static str,
        driver: f64,
        better: Better,
        target: &'static str,
    ) -> Row {
        Row {
            workload,
            unit,
            driver,
            linux: None,
            better,
            target,
            ratios: Vec::new(),
        }
    }

    /// The median of the per-round ratios, or driver / linux.
    fn ratio(&self) -> Option<f64> {
        if !self.ratios.is_empty() {
            return Some(median(&self.ratios));
        }
        self.linux.filter(|&l| l > 0.0).map(|l| self.driver / l)
    }

    /// The lowest and highest per-round ratio.
    fn spread(&self) -> Option<(f64, f64)> {
        let low = self.ratios.iter().copied().reduce(f64::min)?;
        let high = self.ratios.iter().copied().reduce(f64::max)?;
        Some((low, high))
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 if empty.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Runs `rounds` rounds of one workload on both stacks, alternating which goes first, and
/// returns each round's (driver, linux) figures. `run(round, on_driver)` measures one stack.
fn alternate(rounds: usize, mut run: impl FnMut(usize, bool) -> f64) -> Vec<(f64, f64)> {
    (0..rounds)
        .map(|round| {
            if round % 2 == 0 {
                let d = run(round, true);
                (d, run(round, false))
            } else {
                let l = run(round, false);
                (run(round, true), l)
            }
        })
        .collect()
}

/// A row from alternating rounds: the medians of both figures and the per-round ratios.
fn alternating_row(
    workload: String,
    unit: &'static str,
    rounds: &[(f64, f64)],
    better: Better,
    target: &'static str,
) -> Row {
    let drivers: Vec<f64> = rounds.iter().map(|r| r.0).collect();
    let linuxes: Vec<f64> = rounds.iter().map(|r| r.1).collect();
    Row {
        workload,
        unit,
        driver: median(&drivers),
        linux: Some(median(&linuxes)),
        better,
        target,
        ratios: rounds
            .iter()
            .filter(|r| r.1 > 0.0)
            .map(|r| r.0 / r.1)
            .collect(),
    }
}

/// The port of `base`'s workload in `round` on the driver (on Linux 10,000 above).
fn round_port(base: u16, round: usize, on_driver: bool) -> u16 {
    base + 1000 * round as u16 + if on_driver { 0 } else { 10_000 }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The open-file limit (soft) of this process, from /proc/self/limits.
/// Raises this process's descriptor limit to `wanted` if it is lower (Linux's side of the
/// scaling workload holds two descriptors per connection); as root the hard limit may be
/// raised too. Failure leaves the limit as it was (the Linux size is then skipped).
fn raise_fd_limit(wanted: usize) {
    let wanted = wanted as libc::rlim_t;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a live rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < wanted {
            limit.rlim_cur = wanted;
            limit.rlim_max = limit.rlim_max.max(wanted);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn fd_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Starts the DPC and core-pass measurements of a workload over.
fn start_measuring(kernel: &Kernel, driver: &tcpip::host::Driver) {
    kernel.reset_dpc_durations();
    let _ = stats::pass_stats(driver, true);
}

/// The DPC durations (wall clock of the model's DPC calls) and the driver's core passes
/// (processor time, `core::passes`) since [`start_measuring`].
fn measured(kernel: &Kernel, driver: &tcpip::host::Driver) -> (DpcDurations, PassStats) {
    let passes = stats::pass_stats(driver, false).expect("the driver is loaded");
    (kernel.dpc_durations(), passes)
}

/// Adds the core pass rows for one workload: how long a pass held the core in processor
/// time, which a descheduled model thread cannot inflate (the DPC rows' wall clock can).
fn pass_rows(rows: &mut Vec<Row>, workload: &str, passes: &PassStats) {
    let micros = |nanos: u64| nanos as f64 / 1000.0;
    for (name, value, target) in [
        ("p50 (bound)", micros(passes.percentile_nanos(500)), ""),
        ("p99 (bound)", micros(passes.percentile_nanos(990)), ""),
        ("max", micros(passes.longest_nanos), "<= 100 us"),
    ] {
        rows.push(Row {
            workload: format!("5 core pass CPU time {name} during {workload}"),
            unit: "us",
            driver: value,
            linux: None,
            better: Better::Lower,
            target,
            ratios: Vec::new(),
        });
    }
    rows.push(Row::driver_only(
        format!("5 core passes over 100 us, {workload}"),
        "passes",
        passes.over_budget as f64,
        Better::Lower,
        "",
    ));
}

/// Adds the DPC rows for one workload: p50/p99/max of the routine calls, and DPC calls per op.
fn dpc_rows(rows: &mut Vec<Row>, workload: &str, dpc: &DpcDurations, ops: usize) {
    for (name, value) in [
        ("p50", dpc.percentile(0.5)),
        ("p99", dpc.percentile(0.99)),
        ("max", dpc.max),
    ] {
        rows.push(Row::driver_only(
            format!("5 DPC {name} during {workload}"),
            "us",
            us(value),
            Better::Lower,
            if name == "max" { "<= 100 us" } else { "" },
        ));
    }
    rows.push(Row::driver_only(
        format!("5 DPC calls per op, {workload}"),
        "calls",
        dpc.count as f64 / ops.max(1) as f64,
        Better::None,
        "",
    ));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--full")
        || std::env::var("TCPIP_BENCH_FULL").is_ok_and(|v| v == "1");
    let sizes = if full { FULL } else { QUICK };
    let run_started = Instant::now();

    let kernel = Kernel::new(Config {
        processors: 2,
        workers: 2,
        clock: Clock::Real,
        // The socket memory limit is a sixteenth of this: room for the 10,000 connections
        // (20,000 sockets) of the full run's scaling test.
        physical_memory: 16 << 30,
        ..Config::default()
    });
    let driver_image = kernel.load_driver(driver_entry).expect("DriverEntry");
    let driver = Arc::new(Driver {
        ws: Winsock::new(&kernel),
        kernel: kernel.handle(),
    });
    let linux = Arc::new(Linux);
    // Linux ports well away from the driver's (they are separate stacks, but keep them
    // distinct for readability of traces). Each workload gets its own port on each stack.
    let mut rows = Vec::new();
    let mib = |bps: f64| bps / (1024.0 * 1024.0);

    // 1. Bulk.
    start_measuring(&kernel, &driver_image);
    let rounds = alternate(sizes.rounds, |round, on_driver| {
        let port = round_port(7001, round, on_driver);
        mib(if on_driver {
            bulk(&driver, port, sizes.bulk_bytes)
        } else {
            bulk(&linux, port, sizes.bulk_bytes)
        })
    });
    let dpc = measured(&kernel, &driver_image);
    rows.push(alternating_row(
        format!("1 bulk, {} MiB in 64 KiB sends", sizes.bulk_bytes >> 20),
        "MiB/s",
        &rounds,
        Better::Higher,
        ">= 1.0x",
    ));
    let mut dpc_all = vec![("bulk", dpc, sizes.rounds * sizes.bulk_bytes / CHUNK)];

    // 2. Echo round trip: each round's p50 and p99 on both stacks.
    start_measuring(&kernel, &driver_image);
    let mut per_round = Vec::new();
    let _ = alternate(sizes.rounds, |round, on_driver| {
        let port = round_port(7002, round, on_driver);
        let times = if on_driver {
            echo(&driver, port, sizes.echo_round_trips)
        } else {
            echo(&linux, port, sizes.echo_round_trips)
        };
        per_round.push((round, on_driver, times));
        0.0
    });
    let dpc = measured(&kernel, &driver_image);
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        let figure = |round: usize, driver_side: bool| {
            per_round
                .iter()
                .find(|(r, d, _)| *r == round && *d == driver_side)
                .map_or(0.0, |(_, _, times)| us(percentile(times, q)))
        };
        let rounds: Vec<(f64, f64)> = (0..sizes.rounds)
            .map(|round| (figure(round, true), figure(round, false)))
            .collect();
        rows.push(alternating_row(
            format!("2 echo 64 B round trip {name}"),
            "us",
            &rounds,
            Better::Lower,
            "<= 1.5x",
        ));
    }
    dpc_all.push((
        "echo",
        dpc,
        sizes.rounds * (sizes.echo_round_trips + sizes.echo_round_trips / 10),
    ));

    // 3. Connection rate.
    start_measuring(&kernel, &driver_image);
    let rounds = alternate(sizes.rounds, |round, on_driver| {
        let port = round_port(7003, round, on_driver);
        if on_driver {
            connection_rate(&driver, port, sizes.rate_threads, sizes.rate_per_thread)
        } else {
            connection_rate(&linux, port, sizes.rate_threads, sizes.rate_per_thread)
        }
    });
    let dpc = measured(&kernel, &driver_image);
    rows.push(alternating_row(
        format!(
            "3 connection rate, {} threads x {}",
            sizes.rate_threads, sizes.rate_per_thread
        ),
        "conn/s",
        &rounds,
        Better::Higher,
        ">= 1.0x",
    ));
    dpc_all.push((
        "connection rate",
        dpc,
        sizes.rounds * sizes.rate_threads * sizes.rate_per_thread,
    ));

    // 4. Scaling.
    raise_fd_limit(2 * sizes.scaling.iter().max().unwrap_or(&0) + 1024);
    let fds = fd_limit();
    let mut scaling_dpc = (DpcDurations::default(), PassStats::default());
    let mut scaling_ops = 0;
    let mut first_cost = None;
    // The driver's pool, less the ring blocks its lookaside caches for later sockets.
    let connection_pool = || {
        let cached = tcpip::host::stats::lookaside_stats(&driver_image)
            .map_or(0, |stats| stats.cached_bytes);
        kernel.pool_live_bytes().saturating_sub(cached)
    };
    for (i, &n) in sizes.scaling.iter().enumerate() {
        let port = 7100 + i as u16;
        let before = connection_pool();
        let mut idle_bytes = 0;
        let mut loaded_bytes = 0;
        start_measuring(&kernel, &driver_image);
        let d = scaling(
            &driver,
            port,
            n,
            sizes.scaling_ops,
            || idle_bytes = connection_pool().saturating_sub(before),
            || loaded_bytes = loaded_bytes.max(connection_pool().saturating_sub(before)),
        );
        scaling_dpc = measured(&kernel, &driver_image);
        scaling_ops = n * sizes.scaling_ops.div_ceil(n).max(1);
        // Linux needs two descriptors per connection.
        let l = if fds.is_none_or(|limit| 2 * n + 64 <= limit) {
            Some(us(scaling(
                &linux,
                port + 10_000,
                n,
                sizes.scaling_ops,
                || {},
                || {},
            )))
        } else {
            eprintln!("linux scaling at {n}: skipped, needs {} fds", 2 * n + 64);
            None
        };
        let cost = us(d);
        let first = *first_cost.get_or_insert(cost);
        rows.push(Row {
            workload: format!("4 scaling, {n} connections: cost per echo op"),
            unit: "us",
            driver: cost,
            linux: l,
            better: Better::Lower,
            target: "",
            ratios: Vec::new(),
        });
        if n != sizes.scaling[0] {
            rows.push(Row {
                workload: format!("4 scaling, cost at {n} / cost at {}", sizes.scaling[0]),
                unit: "x",
                driver: cost / first,
                linux: None,
                better: Better::Lower,
                target: if n == *sizes.scaling.last().unwrap_or(&0) && sizes.full {
                    "<= 2x (at 10,000)"
                } else {
                    ""
                },
                ratios: Vec::new(),
            });
        }
        rows.push(Row::driver_only(
            format!("4 pool bytes per idle connected socket, {n} connections"),
            "bytes",
            idle_bytes as f64 / (2 * n) as f64,
            Better::Lower,
            "reported",
        ));
        rows.push(Row::driver_only(
            format!("4 peak pool bytes per socket under echo load, {n} connections"),
            "bytes",
            loaded_bytes as f64 / (2 * n) as f64,
            Better::Lower,
            "reported",
        ));
    }
    // The DPC figures of the scaling workload are those of its largest size.
    dpc_all.push(("scaling (largest size)", scaling_dpc, scaling_ops));
    for (name, (dpc, passes), ops) in &dpc_all {
        dpc_rows(&mut rows, name, dpc, *ops);
        pass_rows(&mut rows, name, passes);
    }
    if let Some(stats) = tcpip::host::stats::lookaside_stats(&driver_image) {
        let takes = (stats.hits + stats.misses).max(1);
        rows.push(Row {
            workload: format!(
                "6 socket ring blocks from the lookaside ({} of {})",
                stats.hits, takes
            ),
            unit: "%",
            driver: 100.0 * stats.hits as f64 / takes as f64,
            linux: None,
            better: Better::Higher,
            target: "reported",
            ratios: Vec::new(),
        });
    }

    // Teardown: every socket closed, the driver unloads without a leak.
    let open = driver.ws.open_sockets();
    let driver = Arc::try_unwrap(driver).unwrap_or_else(|_| panic!("driver stack still shared"));
    drop(driver);
    let report = driver_image.unload();
    assert_eq!(open, 0, "every driver socket closed");
    assert!(report.is_clean(), "{report}");

    print_table(&rows, &sizes, run_started.elapsed());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    write_csv(&rows, &dir.join("driver_vs_linux.csv"));
    chart(&rows, &dir.join("driver_vs_linux.svg"));
    println!(
        "wrote {} and {}",
        dir.join("driver_vs_linux.csv").display(),
        dir.join("driver_vs_linux.svg").display()
    );
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn print_table(rows: &[Row], sizes: &Sizes, elapsed: Duration) {
    println!(
        "driver_vs_linux ({} mode, {:.1} s; ratio = driver / linux)",
        if sizes.full { "full" } else { "quick" },
        elapsed.as_secs_f64()
    );
    let width = rows.iter().map(|r| r.workload.len()).max().unwrap_or(8);
    println!(
        "{:<width$} | {:>6} | {:>10} | {:>10} | {:>7} | {:>13} | {:<14} | target",
        "workload", "unit", "driver", "linux", "ratio", "ratio spread", "better"
    );
    println!("{}", "-".repeat(width + 86));
    for r in rows {
        println!(
            "{:<width$} | {:>6} | {:>10} | {:>10} | {:>7} | {:>13} | {:<14} | {}",
            r.workload,
            r.unit,
            fmt(r.driver),
            r.linux.map_or("n/a".to_owned(), fmt),
            r.ratio().map_or("n/a".to_owned(), |x| format!("{x:.2}x")),
            r.spread()
                .map_or(String::new(), |(low, high)| format!("{low:.2}-{high:.2}x")),
            match r.better {
                Better::Higher => "higher better",
                Better::Lower => "lower better",
                Better::None => "",
            },
            r.target
        );
    }
}

fn write_csv(rows: &[Row], path: &std::path::Path) {
    let mut out =
        String::from("workload,unit,driver,linux,ratio,ratio_low,ratio_high,better,target\n");
    for r in rows {
        let (low, high) = r
            .spread()
            .map_or((String::new(), String::new()), |(low, high)| {
                (low.to_string(), high.to_string())
            });
        out.push_str(&format!(
            "\"{}\",{},{},{},{},{},{},{},\"{}\"\n",
            r.workload,
            r.unit,
            r.driver,
            r.linux.map_or(String::new(), |l| l.to_string()),
            r.ratio().map_or(String::new(), |x| x.to_string()),
            low,
            high,
            match r.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
                Better::None => "",
            },
            r.target
        ));
    }
    std::fs::write(path, out).expect("write the CSV");
}

/// One panel per row that has both figures: the driver's bar and Linux's, in the row's unit.
fn chart(rows: &[Row], path: &std::path::Path) {
    let compared: Vec<&Row> = rows.iter().filter(|r| r.linux.is_some()).collect();
    let columns = 3;
    let panels = compared.len().max(1);
    let lines = panels.div_ceil(columns);
    let root = SVGBackend::new(path, (1200, 300 * lines as u32 + 40)).into_drawing_area();
    root.fill(&WHITE).expect("chart");
    let root = root
        .titled(
            "tcpip.sys driver path (blue) vs Linux loopback (red)",
            ("sans-serif", 22),
        )
        .expect("chart");
    let areas = root.split_evenly((lines, columns));
    for (row, area) in compared.iter().zip(areas.iter()) {
        let linux = row.linux.unwrap_or(0.0);
        let top = row.driver.max(linux).max(f64::MIN_POSITIVE) * 1.2;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{} ({})", row.workload, row.unit),
                ("sans-serif", 13),
            )
            .margin(8)
            .x_label_area_size(20)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.5f64..1.5f64, 0f64..top)
            .expect("chart");
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(5)
            .x_label_formatter(&|x| {
                if x.abs() < 0.01 {
                    "driver".to_owned()
                } else if (x - 1.0).abs() < 0.01 {
                    "linux".to_owned()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| fmt(*y))
            .draw()
            .expect("chart");
        chart
            .draw_series([
                Rectangle::new([(-0.3, 0.0), (0.3, row.driver)], BLUE.filled()),
                Rectangle::new([(0.7, 0.0), (1.3, linux)], RED.filled()),
            ])
            .expect("chart");
        chart
            .draw_series(
                [(-0.2, row.driver), (0.8, linux)]
                    .map(|(x, y)| Text::new(fmt(y), (x, y + top * 0.09), ("sans-serif", 12))),
            )
            .expect("chart");
    }
    root.present().expect("write the chart");
}
