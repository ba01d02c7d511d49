//! The echo workloads of issue #5, shared by the `echo_*` suites: Winsock programs (through the
//! AFD model) against the real driver on loopback, with the verifier on and the leak check at
//! unload.
//!
//! Sizes: CI runs reduced sizes; `TCPIP_FULL_SUITES=1` runs the sizes the issue names (64
//! client threads × 50 connections, 1,000-connection bursts, 64 MiB bulk, 1,000 × 64 KiB).
//! Each suite prints its run time.
#![allow(dead_code, reason = "each suite uses a different subset")]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use tcpip::host::winsock::{Shutdown, Socket, Winsock, WsaError};
use tcpip::host::{Clock, Config, Driver, FaultInjection, Kernel};
use tcpip::nt::entry::driver_entry;

/// Whether to run the full sizes (`TCPIP_FULL_SUITES=1`).
pub fn full() -> bool {
    std::env::var("TCPIP_FULL_SUITES").is_ok_and(|v| v == "1")
}

/// `full` when running the full suites, `reduced` otherwise.
pub fn size(full_size: usize, reduced: usize) -> usize {
    if full() { full_size } else { reduced }
}

pub fn loopback(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

/// A kernel (real clock), the driver, and Winsock over AFD.
pub struct Env {
    pub kernel: Kernel,
    driver: Option<Driver>,
    pub ws: Arc<Winsock>,
    started: Instant,
    name: String,
}

impl Env {
    /// Starts a kernel with `processors` processors and `fault` injection, loads the driver.
    pub fn start(name: &str, processors: usize, fault: FaultInjection) -> Env {
        Env::start_in(
            name,
            Config {
                processors,
                ..Config::default()
            },
            fault,
        )
    }

    /// Starts a kernel as `config` says (on the real clock), loads the driver.
    pub fn start_in(name: &str, config: Config, fault: FaultInjection) -> Env {
        let kernel = Kernel::new(Config {
            clock: Clock::Real,
            ..config
        });
        let driver = kernel.load_driver(driver_entry).expect("DriverEntry");
        // Failures start once the driver is loaded: the suites test its I/O paths.
        kernel.set_fault_injection(fault);
        let ws = Arc::new(Winsock::new(&kernel));
        Env {
            kernel,
            driver: Some(driver),
            ws,
            started: Instant::now(),
            name: name.to_owned(),
        }
    }

    /// The loaded driver.
    pub fn driver(&self) -> &Driver {
        self.driver.as_ref().expect("loaded")
    }

    /// Checks that every socket was closed and no completion hit a freed FCB, unloads the
    /// driver (leak check) and tears the kernel down (verifier verdict).
    pub fn finish(mut self) {
        assert_eq!(self.ws.open_sockets(), 0, "every socket closed");
        let stats = self.ws.stats();
        assert_eq!(stats.use_after_free, 0, "{stats:?}");
        eprintln!(
            "{}: {:?} ({} sockets, {} raced completions, {} dead listeners)",
            self.name,
            self.started.elapsed(),
            stats.sockets_created,
            stats.raced_completions,
            stats.dead_listeners
        );
        self.kernel.set_fault_injection(FaultInjection::None);
        let ws = std::mem::replace(&mut self.ws, Arc::new(Winsock::new(&self.kernel)));
        let ws = Arc::try_unwrap(ws).unwrap_or_else(|_| panic!("Winsock still shared"));
        drop(ws);
        let report = self.driver.take().expect("loaded").unload();
        assert!(report.is_clean(), "{report}");
    }
}

#[path = "../fnv_support/mod.rs"]
mod fnv_support;
pub use fnv_support::Fnv;

/// A seeded xorshift generator (deterministic data, sizes and schedules).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// The 32-byte message of client `thread`, connection `index`.
pub fn message(thread: usize, index: usize) -> [u8; 32] {
    let mut m = [0u8; 32];
    let text = format!("client {thread:04} connection {index:04}");
    m[..text.len()].copy_from_slice(text.as_bytes());
    m
}

/// Suite 1: a server that accepts one connection at a time, echoes its first message and
/// closes it, against `threads` client threads making `per_thread` connections each. Every
/// echo must be byte-exact; no connect, send or receive may fail.
pub fn serial_echo(env: &Env, port: u16, threads: usize, per_thread: usize) {
    let ws = &env.ws;
    let listener = ws.socket().unwrap();
    ws.bind(listener, loopback(port)).unwrap();
    ws.listen(listener, 200).unwrap();
    let total = threads * per_thread;
    let server = {
        let ws = ws.clone();
        env.kernel.spawn("echo-server", move || {
            for _ in 0..total {
                let (s, _peer) = ws.accept(listener).expect("accept");
                let mut m = [0u8; 32];
                assert!(ws.recv_exact(s, &mut m).expect("server recv"), "message");
                ws.send_all(s, &m).expect("server echo");
                ws.closesocket(s).expect("server close");
            }
        })
    };
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let ws = ws.clone();
            env.kernel.spawn("echo-client", move || {
                for i in 0..per_thread {
                    let s = ws.socket().unwrap();
                    ws.connect(s, loopback(port))
                        .unwrap_or_else(|e| panic!("client {t} connection {i}: connect: {e}"));
                    let m = message(t, i);
                    ws.send_all(s, &m).expect("client send");
                    let mut echo = [0u8; 32];
                    assert!(ws.recv_exact(s, &mut echo).expect("client recv"), "echo");
                    assert_eq!(echo, m, "byte-exact echo");
                    let mut rest = [0u8; 1];
                    assert_eq!(ws.recv(s, &mut rest).expect("FIN"), 0, "server shut down");
                    ws.closesocket(s).expect("client close");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    server.join().expect("server thread");
    ws.closesocket(listener).unwrap();
}

/// Suite 2: `n` connects issued at once (a barrier) against one listener that accepts slowly
/// (one connection fully served before the next accept). All are accepted and echo; none is
/// refused or reset.
pub fn burst_accept(env: &Env, port: u16, n: usize) {
    let ws = &env.ws;
    let listener = ws.socket().unwrap();
    ws.bind(listener, loopback(port)).unwrap();
    ws.listen(listener, 5).unwrap();
    let barrier = Arc::new(Barrier::new(n));
    let clients: Vec<_> = (0..n)
        .map(|t| {
            let ws = ws.clone();
            let barrier = barrier.clone();
            env.kernel.spawn("burst-client", move || {
                let s = ws.socket().unwrap();
                barrier.wait();
                ws.connect(s, loopback(port))
                    .unwrap_or_else(|e| panic!("burst client {t}: connect: {e}"));
                let m = message(t, 0);
                ws.send_all(s, &m).expect("send");
                let mut echo = [0u8; 32];
                assert!(ws.recv_exact(s, &mut echo).expect("recv"));
                assert_eq!(echo, m);
                ws.closesocket(s).expect("close");
            })
        })
        .collect();
    for _ in 0..n {
        let (s, _) = ws.accept(listener).expect("accept");
        let mut m = [0u8; 32];
        assert!(ws.recv_exact(s, &mut m).expect("server recv"));
        ws.send_all(s, &m).expect("echo");
        let mut rest = [0u8; 1];
        assert_eq!(ws.recv(s, &mut rest).expect("client FIN"), 0);
        ws.closesocket(s).expect("server close");
    }
    for c in clients {
        c.join().expect("burst client");
    }
    ws.closesocket(listener).unwrap();
}

/// The ReactOS VM's burst scenario (vm/guest `sc_burst`, `server.c`): `n` client threads
/// connect at once and send their message; an accept thread, started late (once every client
/// has sent), accepts every connection, hands each to a worker thread of its own and ends once
/// every worker has received its message. A worker receives the message, echoes it,
/// half-closes, reads to the client's FIN (once the accept thread has ended, so that every
/// connection is still open then), closes the socket and ends. Every client must get its full
/// echo, then the end of stream, and no server call may fail.
///
/// The AFD model's TDI IRPs are threaded: a thread that ends takes the TDI requests it built
/// and that are still pending with it (IoCancelThreadIo), as on NT, including those that AFD's
/// completion routines built while running in that thread. The accept thread builds each
/// connection's first `TDI_RECEIVE` (`AfdAccept`), which the message already waiting satisfies
/// at once. If the driver completed it in the accept thread, AFD's receive completion would
/// post the next `TDI_RECEIVE` there, and the accept thread, ending while the workers still
/// serve, would cancel it (the worker's read of the end of stream fails with WSA error 995). So
/// the driver must complete AFD's asynchronous requests (sends, receives) in no application
/// thread.
pub fn burst_thread_per_connection(env: &Env, port: u16, n: usize) {
    let ws = &env.ws;
    let listener = ws.socket().unwrap();
    ws.bind(listener, loopback(port)).unwrap();
    ws.listen(listener, 200).unwrap();
    let barrier = Arc::new(Barrier::new(n));
    let sent = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let accept_ended = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..n)
        .map(|t| {
            let ws = ws.clone();
            let barrier = barrier.clone();
            let sent = sent.clone();
            env.kernel.spawn("burst-client", move || {
                let s = ws.socket().unwrap();
                barrier.wait();
                let result = (|| {
                    ws.connect(s, loopback(port))
                        .map_err(|e| format!("connect: {e}"))?;
                    let m = message(t, 0);
                    let sent_all = ws.send_all(s, &m).map_err(|e| format!("send: {e}"));
                    sent.fetch_add(1, Ordering::SeqCst);
                    sent_all?;
                    let mut echo = [0u8; 32];
                    match ws.recv_exact(s, &mut echo) {
                        Ok(true) if echo == m => {}
                        Ok(true) => return Err(format!("echo {echo:?} of {m:?}")),
                        Ok(false) => return Err("end of stream before the echo".to_owned()),
                        Err(e) => return Err(format!("recv: {e}")),
                    }
                    match ws.recv(s, &mut [0u8; 1]) {
                        Ok(0) => Ok(()),
                        Ok(_) => Err("data after the echo".to_owned()),
                        Err(e) => Err(format!("recv FIN: {e}")),
                    }
                })();
                // Closed on failure too, so that the worker's read of the end of stream ends.
                ws.closesocket(s).expect("close");
                if let Err(e) = result {
                    panic!("burst client {t}: {e}");
                }
            })
        })
        .collect();
    let acceptor = {
        let ws = ws.clone();
        let kernel = env.kernel.handle();
        let accept_ended = accept_ended.clone();
        let received = received.clone();
        env.kernel.spawn("burst-accept", move || {
            // The VM's listener starts accepting 2 s late: every message has arrived by then.
            while sent.load(Ordering::SeqCst) < n {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(200));
            // Every connection is accepted before the first worker starts: each accept meets
            // an idle driver, as the VM's late listener mostly does.
            let accepted: Vec<Socket> = (0..n)
                .map(|_| ws.accept(listener).expect("accept").0)
                .collect();
            let workers = accepted
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    let (ws, received) = (ws.clone(), received.clone());
                    let accept_ended = accept_ended.clone();
                    kernel.spawn("burst-worker", move || {
                        serve_one(&ws, s, i, &received, &accept_ended)
                    })
                })
                .collect::<Vec<_>>();
            // The first TDI_RECEIVEs, built here, are complete before the thread ends.
            while received.load(Ordering::SeqCst) < n {
                std::thread::sleep(Duration::from_millis(1));
            }
            workers
        })
    };
    let workers = acceptor.join().expect("accept thread");
    accept_ended.store(true, Ordering::SeqCst);
    let failed: Vec<String> = clients
        .into_iter()
        .chain(workers)
        .filter_map(|thread| thread.join().err())
        .map(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "a thread panicked".to_owned())
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} threads failed:\n  {}",
        failed.len(),
        2 * n,
        failed.join("\n  ")
    );
    ws.closesocket(listener).unwrap();
}

/// The VM server's `serve_one` for connection `i`: receive one message (counted in
/// `received`), echo it, half-close, read to the end of stream (once `accept_ended`), close.
fn serve_one(ws: &Winsock, s: Socket, i: usize, received: &AtomicUsize, accept_ended: &AtomicBool) {
    let result = (|| {
        let mut m = [0u8; 32];
        let message = ws.recv_exact(s, &mut m);
        received.fetch_add(1, Ordering::SeqCst);
        match message {
            Ok(true) => {}
            Ok(false) => return Err("end of stream before the message".to_owned()),
            Err(e) => return Err(format!("recv: {e}")),
        }
        ws.send_all(s, &m).map_err(|e| format!("send: {e}"))?;
        ws.shutdown(s, Shutdown::Send)
            .map_err(|e| format!("shutdown: {e}"))?;
        while !accept_ended.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut rest = [0u8; 32];
        while ws.recv(s, &mut rest).map_err(|e| format!("drain: {e}"))? > 0 {}
        Ok(())
    })();
    // Closed on failure too, so that the client sees the end of stream.
    ws.closesocket(s).expect("worker close");
    if let Err(e) = result {
        panic!("worker {i}: {e}");
    }
}

/// An echo server thread for one accepted connection: echoes until FIN, then closes.
fn echo_connection(ws: &Winsock, s: Socket, chunk: usize) {
    let mut buf = vec![0u8; chunk];
    loop {
        let n = ws.recv(s, &mut buf).expect("echo recv");
        if n == 0 {
            break;
        }
        ws.send_all(s, &buf[..n]).expect("echo send");
    }
    ws.closesocket(s).expect("echo close");
}

/// Suite 3: one connection streams `total` bytes through an echo server in 1–64 KiB chunks
/// while a second thread reads the echo (full duplex); both directions are checked by hash.
pub fn bulk(env: &Env, port: u16, total: usize, seed: u64) {
    let ws = &env.ws;
    let listener = ws.socket().unwrap();
    ws.bind(listener, loopback(port)).unwrap();
    ws.listen(listener, 1).unwrap();
    let server = {
        let ws = ws.clone();
        env.kernel.spawn("bulk-server", move || {
            let (s, _) = ws.accept(listener).expect("accept");
            echo_connection(&ws, s, 64 * 1024);
        })
    };
    let client = ws.socket().unwrap();
    ws.connect(client, loopback(port)).expect("connect");
    stream_and_check(env, client, total, seed);
    ws.closesocket(client).expect("close");
    server.join().expect("server");
    ws.closesocket(listener).unwrap();
}

/// Streams `total` bytes in random 1–64 KiB sends on the connected `client` while a second
/// thread reads the echo (full duplex), and checks both directions by hash.
pub fn stream_and_check(env: &Env, client: Socket, total: usize, seed: u64) {
    let ws = &env.ws;
    // The sender runs on a thread of its own and the caller's thread reads. The sender stays
    // until the echo is all read: AFD's TDI requests are threaded IRPs, cancelled when the
    // thread that built them ends (as on ReactOS), and the socket lives on after this.
    let (read_all, wait_read_all) = std::sync::mpsc::channel::<()>();
    let sender = {
        let ws = ws.clone();
        env.kernel.spawn("bulk-sender", move || {
            let mut rng = Rng::new(seed);
            let mut sent_hash = Fnv::default();
            let mut chunk = vec![0u8; 64 * 1024];
            let mut sent = 0;
            while sent < total {
                let len = (1 + rng.below(64 * 1024) as usize).min(total - sent);
                rng.fill(&mut chunk[..len]);
                sent_hash.update(&chunk[..len]);
                ws.send_all(client, &chunk[..len]).expect("bulk send");
                sent += len;
            }
            let _ = wait_read_all.recv();
            sent_hash.value()
        })
    };
    let mut hash = Fnv::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < total {
        let n = ws.recv(client, &mut buf).expect("bulk recv");
        assert!(n > 0, "echo ended early at {got} of {total}");
        hash.update(&buf[..n]);
        got += n;
    }
    let _ = read_all.send(());
    let sent = sender.join().expect("sender");
    assert_eq!(hash.value(), sent, "the echo hashes like what was sent");
}

/// Suite 4: `n` concurrent connections, each echoing `size` bytes (sent in 4 KiB pieces, each
/// read back before the next), served by one thread per connection.
/// Client `t` of the `many` suites: `size` bytes in 4 KiB messages on `s`, each echo read
/// back and checked before the next.
pub fn lockstep_echo(ws: &Winsock, s: Socket, t: usize, size: usize) {
    let mut rng = Rng::new(t as u64 + 1);
    let mut out = vec![0u8; 4096];
    let mut back = vec![0u8; 4096];
    let mut done = 0;
    while done < size {
        let len = 4096.min(size - done);
        rng.fill(&mut out[..len]);
        ws.send_all(s, &out[..len]).expect("send");
        assert!(ws.recv_exact(s, &mut back[..len]).expect("recv"));
        assert_eq!(back[..len], out[..len], "client {t} at {done}");
        done += len;
    }
}

pub fn many(env: &Env, port: u16, n: usize, size: usize) {
    let ws = &env.ws;
    let listener = ws.socket().unwrap();
    ws.bind(listener, loopback(port)).unwrap();
    ws.listen(listener, 200).unwrap();
    let acceptor = {
        let ws = ws.clone();
        let kernel = env.kernel.handle();
        env.kernel.spawn("many-acceptor", move || {
            let handlers: Vec<_> = (0..n)
                .map(|_| {
                    let (s, _) = ws.accept(listener).expect("accept");
                    let ws = ws.clone();
                    kernel.spawn("many-echo", move || echo_connection(&ws, s, 16 * 1024))
                })
                .collect();
            for h in handlers {
                h.join().expect("echo handler");
            }
        })
    };
    let barrier = Arc::new(Barrier::new(n));
    let clients: Vec<_> = (0..n)
        .map(|t| {
            let ws = ws.clone();
            let barrier = barrier.clone();
            env.kernel.spawn("many-client", move || {
                let s = ws.socket().unwrap();
                ws.connect(s, loopback(port))
                    .unwrap_or_else(|e| panic!("client {t}: connect: {e}"));
                barrier.wait();
                lockstep_echo(&ws, s, t, size);
                ws.closesocket(s).expect("close");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    acceptor.join().expect("acceptor");
    ws.closesocket(listener).unwrap();
}

/// Whether an error is one a Winsock program may see when the transport runs out of memory
/// or a connection is lost: the test accepts these in the low-resources suite, nothing else.
pub fn clean_low_resource_error(error: WsaError) -> bool {
    matches!(
        error,
        WsaError::WSAENOBUFS
            | WsaError::WSAECONNRESET
            | WsaError::WSAECONNREFUSED
            | WsaError::WSAECONNABORTED
            | WsaError::WSAETIMEDOUT
            | WsaError::WSAEADDRINUSE
            | WsaError::WSAENOTCONN
            | WsaError::WSAESHUTDOWN
            | WsaError::WSAEINVAL
            | WsaError::WSA_OPERATION_ABORTED
    )
}

/// Suite 6's version of suite 1: the same programs, but every Winsock call may fail with a
/// clean error (counted), receives time out after `timeout`, and the server stops once every
/// client is done (a dead listener must not hang it). Returns (echoes, errors).
pub fn serial_echo_tolerant(
    env: &Env,
    port: u16,
    threads: usize,
    per_thread: usize,
    timeout: Duration,
) -> (usize, usize) {
    let ws = &env.ws;
    let listener = ws.socket().unwrap();
    let errors = Arc::new(AtomicUsize::new(0));
    let echoes = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let note = |errors: &AtomicUsize, e: WsaError| {
        assert!(clean_low_resource_error(e), "unexpected Winsock error {e}");
        errors.fetch_add(1, Ordering::Relaxed);
    };
    if let Err(e) = ws
        .bind(listener, loopback(port))
        .and_then(|()| ws.listen(listener, 200))
    {
        note(&errors, e);
        let _ = ws.closesocket(listener);
        return (0, 1);
    }
    let server = {
        let ws = ws.clone();
        let errors = errors.clone();
        let finished = finished.clone();
        env.kernel.spawn("tolerant-server", move || {
            while finished.load(Ordering::Acquire) < threads {
                match ws.select_acceptable(listener, Duration::from_millis(50)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        note(&errors, e);
                        continue;
                    }
                }
                let s = match ws.accept(listener) {
                    Ok((s, _)) => s,
                    Err(e) => {
                        note(&errors, e);
                        continue;
                    }
                };
                ws.set_receive_timeout(s, Some(timeout)).unwrap();
                let mut m = [0u8; 32];
                let result = ws
                    .recv_exact(s, &mut m)
                    .and_then(|full| if full { ws.send_all(s, &m) } else { Ok(()) });
                if let Err(e) = result {
                    note(&errors, e);
                }
                if let Err(e) = ws.closesocket(s) {
                    note(&errors, e);
                }
            }
        })
    };
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let ws = ws.clone();
            let errors = errors.clone();
            let echoes = echoes.clone();
            let finished = finished.clone();
            env.kernel.spawn("tolerant-client", move || {
                for i in 0..per_thread {
                    let s = match ws.socket() {
                        Ok(s) => s,
                        Err(e) => {
                            note(&errors, e);
                            continue;
                        }
                    };
                    ws.set_receive_timeout(s, Some(timeout)).unwrap();
                    let m = message(t, i);
                    let mut echo = [0u8; 32];
                    let result = ws
                        .connect(s, loopback(port))
                        .and_then(|()| ws.send_all(s, &m))
                        .and_then(|()| ws.recv_exact(s, &mut echo));
                    match result {
                        Ok(true) => {
                            assert_eq!(echo, m, "an echo that arrives is byte-exact");
                            echoes.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => note(&errors, e),
                    }
                    if let Err(e) = ws.closesocket(s) {
                        note(&errors, e);
                    }
                }
                finished.fetch_add(1, Ordering::AcqRel);
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    server.join().expect("server thread");
    if let Err(e) = ws.closesocket(listener) {
        note(&errors, e);
    }
    (
        echoes.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    )
}
