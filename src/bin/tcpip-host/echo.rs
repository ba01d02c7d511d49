//! The Winsock programs the driver runs: an echo server, echo clients, and the interactive
//! demo around the server.

use crate::console::{Console, Counters, size, status_line};
use crate::signals::Stop;
use crate::station::Station;
use std::io::{BufRead, Write};
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tcpip::host::tap::TapAdapter;
use tcpip::host::winsock::{Shutdown, Socket, Winsock, WsaError};

/// How often blocking calls look at the stop request.
const POLL: Duration = Duration::from_millis(250);
/// How long a send may wait for the peer to take data, and a client for its echo.
const PATIENCE: Duration = Duration::from_secs(10);

/// What the programs share.
#[derive(Clone)]
pub struct Env {
    pub console: Arc<Console>,
    pub counters: Arc<Counters>,
    pub stop: Stop,
}

/// Serves echo connections on `port` until a stop is requested or `count` connections have
/// been accepted and served.
pub fn server(station: &Station, env: &Env, port: u16, count: Option<u64>) -> Result<(), String> {
    let ws = &station.ws;
    let listener = ws.socket().map_err(|e| format!("socket: {e}"))?;
    let listening = ws
        .bind(listener, SocketAddrV4::new([0, 0, 0, 0].into(), port))
        .and_then(|()| ws.listen(listener, 200));
    if let Err(e) = listening {
        let _ = ws.closesocket(listener);
        return Err(format!("cannot listen on port {port}: {e}"));
    }
    env.console
        .log(&format!("echo server listening on port {port}"));
    let mut handlers = Vec::new();
    let mut accepted = 0;
    let mut failure = None;
    while !env.stop.requested() && count.is_none_or(|count| accepted < count) {
        match ws.select_acceptable(listener, POLL) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                failure = Some(format!("select: {e}"));
                break;
            }
        }
        let (s, peer) = match ws.accept(listener) {
            Ok(accepted) => accepted,
            Err(e) => {
                failure = Some(format!("accept: {e}"));
                break;
            }
        };
        accepted += 1;
        env.counters.opened();
        let (ws, env) = (ws.clone(), env.clone());
        let handler = station
            .kernel
            .spawn("echo", move || echo(&ws, &env, s, peer));
        handlers.push(handler);
        let (done, running) = handlers.into_iter().partition(|h| h.is_finished());
        handlers = running;
        join(done, &mut failure);
    }
    let closed = ws.closesocket(listener);
    join(handlers, &mut failure);
    match (failure, closed) {
        (Some(failure), _) => Err(failure),
        (None, Err(e)) => Err(format!("closing the listener: {e}")),
        (None, Ok(())) => Ok(()),
    }
}

/// Joins echo threads; a panic in one is a failure.
fn join(handlers: Vec<JoinHandle<()>>, failure: &mut Option<String>) {
    for handler in handlers {
        if handler.join().is_err() {
            failure.get_or_insert_with(|| "an echo thread panicked".into());
        }
    }
}

/// Echoes one connection until the peer shuts down or a stop is requested.
fn echo(ws: &Winsock, env: &Env, s: Socket, peer: SocketAddrV4) {
    let options = ws
        .set_receive_timeout(s, Some(POLL))
        .and_then(|()| ws.set_send_timeout(s, Some(PATIENCE)));
    let mut buffer = vec![0u8; 16 * 1024];
    let mut echoed = 0;
    let outcome = match options {
        Err(e) => format!("setsockopt: {e}"),
        Ok(()) => loop {
            let n = match ws.recv(s, &mut buffer) {
                Ok(0) => break "closed by the peer".to_owned(),
                Ok(n) => n,
                Err(WsaError::WSAETIMEDOUT) if !env.stop.requested() => continue,
                Err(WsaError::WSAETIMEDOUT) => break "closed at the stop".to_owned(),
                Err(e) => break format!("recv: {e}"),
            };
            Counters::add(&env.counters.received, n);
            if let Err(e) = ws.send_all(s, &buffer[..n]) {
                break format!("send: {e}");
            }
            Counters::add(&env.counters.sent, n);
            echoed += n;
        },
    };
    let closed = match ws.closesocket(s) {
        Ok(()) => String::new(),
        Err(e) => format!(", closesocket: {e}"),
    };
    env.counters.closed();
    env.console.log(&format!(
        "{peer}: {} echoed, {outcome}{closed}",
        size(echoed as u64)
    ));
}

/// `threads` threads each make `count` echo round trips of `message` to `peer`, printing each
/// echo on stdout. Fails unless every echo came back whole.
pub fn clients(
    station: &Station,
    env: &Env,
    peer: SocketAddrV4,
    message: &str,
    threads: usize,
    count: usize,
) -> Result<(), String> {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (ws, env, message) = (station.ws.clone(), env.clone(), message.to_owned());
            station.kernel.spawn("echo-client", move || {
                let mut good = 0;
                for _ in 0..count {
                    if env.stop.requested() {
                        break;
                    }
                    env.counters.opened();
                    let result = round_trip(&ws, &env, peer, message.as_bytes());
                    env.counters.closed();
                    match result {
                        Ok(()) => good += 1,
                        Err(e) => env.console.log(&format!("echo to {peer}: {e}")),
                    }
                }
                good
            })
        })
        .collect();
    let good: usize = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let total = threads * count;
    env.console
        .log(&format!("{good} of {total} echoes came back whole"));
    if good == total {
        Ok(())
    } else {
        Err(format!("{} echo(es) failed", total - good))
    }
}

/// Connects, sends `message`, shuts down the sending side, reads the echo to the end, checks
/// it, prints it, closes.
fn round_trip(ws: &Winsock, env: &Env, peer: SocketAddrV4, message: &[u8]) -> Result<(), String> {
    let s = ws.socket().map_err(|e| format!("socket: {e}"))?;
    let result = (|| {
        ws.set_receive_timeout(s, Some(PATIENCE))
            .and_then(|()| ws.set_send_timeout(s, Some(PATIENCE)))
            .map_err(|e| format!("setsockopt: {e}"))?;
        ws.connect(s, peer).map_err(|e| format!("connect: {e}"))?;
        Counters::add(&env.counters.sent, message.len());
        ws.send_all(s, message).map_err(|e| format!("send: {e}"))?;
        ws.shutdown(s, Shutdown::Send)
            .map_err(|e| format!("shutdown: {e}"))?;
        let mut echo = Vec::with_capacity(message.len());
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = ws.recv(s, &mut buffer).map_err(|e| format!("recv: {e}"))?;
            if n == 0 {
                break;
            }
            Counters::add(&env.counters.received, n);
            echo.extend_from_slice(&buffer[..n]);
        }
        if echo != message {
            return Err(format!(
                "the echo differs: sent {} bytes, got {} back",
                message.len(),
                echo.len()
            ));
        }
        let mut stdout = std::io::stdout().lock();
        let newline: &[u8] = if echo.ends_with(b"\n") { b"" } else { b"\n" };
        stdout
            .write_all(&echo)
            .and_then(|()| stdout.write_all(newline))
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("stdout: {e}"))
    })();
    let closed = ws.closesocket(s).map_err(|e| format!("closesocket: {e}"));
    result.and(closed)
}

/// The echo server on `port` with a command line on stdin: `status` prints the counters,
/// `quit` or the end of the input stops.
pub fn demo(station: &Station, env: &Env, port: u16) -> Result<(), String> {
    let commands = {
        let (env, tap) = (env.clone(), station.tap.clone());
        std::thread::Builder::new()
            .name("commands".into())
            .spawn(move || read_commands(&env, &tap))
            .map_err(|e| format!("cannot start the command reader: {e}"))?
    };
    env.console
        .log("demo: type `status` for the counters, `quit` to stop");
    let served = server(station, env, port, None);
    // The command reader stays blocked on stdin until the input ends; it holds nothing of the
    // driver's, so the program does not wait for it.
    drop(commands);
    served
}

fn read_commands(env: &Env, tap: &TapAdapter) {
    let mut lines = std::io::stdin().lock().lines();
    while !env.stop.requested() {
        let Some(Ok(line)) = lines.next() else {
            break;
        };
        match line.trim() {
            "" => {}
            "status" | "s" => {
                let stats = tap.stats();
                env.console.log(&status_line(&env.counters, &stats));
                let (received, sent) = env.counters.payload();
                env.console.log(&format!(
                    "payload in {} out {}; {stats:?}",
                    size(received),
                    size(sent)
                ));
            }
            "quit" | "q" | "exit" => break,
            other => env
                .console
                .log(&format!("unknown command `{other}`: `status` or `quit`")),
        }
    }
    env.stop.request();
}
