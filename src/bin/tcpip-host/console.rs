//! What the program prints on stderr: log lines, and the status line once a second (redrawn in
//! place on a terminal, one line each time otherwise).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tcpip::host::tap::{TapAdapter, TapStats};

/// Connection and payload counters of the Winsock program.
#[derive(Default)]
pub struct Counters {
    pub open: AtomicU64,
    pub total: AtomicU64,
    pub received: AtomicU64,
    pub sent: AtomicU64,
}

impl Counters {
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, bytes: usize) {
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Payload bytes (received, sent) through Winsock.
    pub fn payload(&self) -> (u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
        )
    }
}

/// stderr, shared by the log lines and the status line.
pub struct Console {
    terminal: bool,
    /// Whether the status line is on screen (to be cleared before a log line).
    status_shown: Mutex<bool>,
}

impl Console {
    pub fn new() -> Console {
        Console {
            terminal: std::io::stderr().is_terminal(),
            status_shown: Mutex::new(false),
        }
    }

    /// Prints one log line.
    pub fn log(&self, line: &str) {
        let mut shown = self.status_shown.lock().unwrap_or_else(|e| e.into_inner());
        let clear = if std::mem::take(&mut *shown) {
            "\r\x1b[K"
        } else {
            ""
        };
        let _ = writeln!(std::io::stderr(), "{clear}tcpip-host: {line}");
    }

    fn status(&self, line: &str) {
        let mut shown = self.status_shown.lock().unwrap_or_else(|e| e.into_inner());
        let mut stderr = std::io::stderr();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[K{line}");
            *shown = true;
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
    }

    /// Clears the status line, if it is on screen.
    pub fn finish(&self) {
        let mut shown = self.status_shown.lock().unwrap_or_else(|e| e.into_inner());
        if std::mem::take(&mut *shown) {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

/// The status line: connections (open/total), link bytes and frames each way, and the TCP
/// retransmissions seen on the wire (the driver's, then Linux's).
pub fn status_line(counters: &Counters, tap: &TapStats) -> String {
    format!(
        "connections {}/{} | in {} ({} frames) | out {} ({} frames) | retransmissions {}/{}",
        counters.open.load(Ordering::Relaxed),
        counters.total.load(Ordering::Relaxed),
        size(tap.bytes_in),
        tap.frames_in,
        size(tap.bytes_out),
        tap.frames_out,
        tap.retransmissions_out,
        tap.retransmissions_in,
    )
}

/// `bytes` in B, KiB, MiB or GiB.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The thread that prints the status line every second until stopped.
pub struct StatusLine {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl StatusLine {
    pub fn start(
        console: Arc<Console>,
        counters: Arc<Counters>,
        tap: Arc<TapAdapter>,
    ) -> std::io::Result<StatusLine> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("status".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Duration::from_secs(1))
                {
                    console.status(&status_line(&counters, &tap.stats()));
                }
                console.finish();
            })?;
        Ok(StatusLine { stop, thread })
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
