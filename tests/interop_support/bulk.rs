//! Full-duplex bulk transfers between the driver and Linux: each side sends its own
//! deterministic byte stream ([`Stream`]) while it receives the other's, and checks every byte
//! it receives against the stream regenerated from the sender's seed ([`Checker`]), so a
//! transfer is byte-exact or fails at the first wrong offset.

use super::peers::TIMEOUT;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tcpip::host::winsock::{self, Socket, Winsock};

/// The size of each send and receive.
pub const CHUNK: usize = 64 * 1024;

/// A deterministic stream of pseudo-random bytes (xorshift64, little-endian words).
pub struct Stream {
    state: u64,
    word: [u8; 8],
    /// Bytes of `word` already handed out.
    used: usize,
}

impl Stream {
    pub fn new(seed: u64) -> Stream {
        Stream {
            state: seed.max(1),
            word: [0; 8],
            used: 8,
        }
    }

    fn next_word(&mut self) -> [u8; 8] {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state.to_le_bytes()
    }

    /// Writes the stream's next `out.len()` bytes into `out`.
    pub fn fill(&mut self, out: &mut [u8]) {
        let take = out.len().min(8 - self.used);
        out[..take].copy_from_slice(&self.word[self.used..self.used + take]);
        self.used += take;
        let mut words = out[take..].chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next_word());
        }
        let rest = words.into_remainder();
        if !rest.is_empty() {
            self.word = self.next_word();
            self.used = rest.len();
            rest.copy_from_slice(&self.word[..rest.len()]);
        }
    }
}

/// Checks received bytes against the stream of the sender's seed.
pub struct Checker {
    stream: Stream,
    expected: Vec<u8>,
    offset: u64,
}

impl Checker {
    pub fn new(seed: u64) -> Checker {
        Checker {
            stream: Stream::new(seed),
            expected: vec![0; CHUNK],
            offset: 0,
        }
    }

    /// Checks the next received bytes; the error names the first wrong offset.
    pub fn check(&mut self, received: &[u8]) -> Result<(), String> {
        for piece in received.chunks(CHUNK) {
            let expected = &mut self.expected[..piece.len()];
            self.stream.fill(expected);
            if piece != expected {
                let at = piece.iter().zip(expected.iter()).position(|(a, b)| a != b);
                return Err(format!(
                    "byte {} differs from what was sent",
                    self.offset + at.unwrap_or(0) as u64
                ));
            }
            self.offset += piece.len() as u64;
        }
        Ok(())
    }

    /// The bytes checked so far.
    pub fn bytes(&self) -> u64 {
        self.offset
    }
}

/// What one direction of a transfer took.
#[derive(Clone, Copy, Debug)]
pub struct Leg {
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Leg {
    /// MiB/s.
    pub fn rate(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / self.elapsed.as_secs_f64()
    }
}

/// The Linux side: connects to `addr`, sends `total` bytes of stream `send_seed` while it reads
/// the driver's stream `receive_seed` to the end; returns (sent, received). Runs inside the
/// namespace.
pub fn linux_side(
    addr: SocketAddr,
    total: u64,
    send_seed: u64,
    receive_seed: u64,
) -> Result<(Leg, Leg), String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let sender = std::thread::spawn(move || -> Result<Leg, String> {
        let bytes = send_stream("Linux", total, send_seed, |chunk| writer.write_all(chunk))?;
        writer
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("Linux shutdown: {e}"))?;
        Ok(Leg {
            bytes,
            elapsed: started.elapsed(),
        })
    });
    let bytes = receive_stream("driver → Linux", receive_seed, |buffer| {
        stream.read(buffer)
    })?;
    let received = Leg {
        bytes,
        elapsed: started.elapsed(),
    };
    let sent = sender.join().map_err(|_| "Linux sender panicked")??;
    Ok((sent, received))
}

/// The driver side, on connected socket `s`: sends `total` bytes of stream `send_seed` from
/// a thread of the driver's kernel while this thread reads Linux's stream `receive_seed` to the
/// end, then closes; returns (sent, received).
pub fn driver_side(
    kernel: &tcpip::host::KernelHandle,
    ws: &Arc<Winsock>,
    s: Socket,
    total: u64,
    send_seed: u64,
    receive_seed: u64,
) -> Result<(Leg, Leg), String> {
    let started = Instant::now();
    let timeout = Some(TIMEOUT);
    let options = ws
        .set_receive_timeout(s, timeout)
        .and_then(|()| ws.set_send_timeout(s, timeout));
    options.map_err(|e| e.to_string())?;
    let sender = {
        let ws = ws.clone();
        kernel.spawn("driver-bulk-sender", move || -> Result<Leg, String> {
            let bytes = send_stream("driver", total, send_seed, |chunk| ws.send_all(s, chunk))?;
            ws.shutdown(s, winsock::Shutdown::Send)
                .map_err(|e| format!("driver shutdown: {e}"))?;
            Ok(Leg {
                bytes,
                elapsed: started.elapsed(),
            })
        })
    };
    let received = receive_stream("Linux → driver", receive_seed, |buffer| {
        ws.recv(s, buffer)
    })
    .map(|bytes| Leg {
        bytes,
        elapsed: started.elapsed(),
    });
    let sent = sender
        .join()
        .map_err(|_| "driver sender panicked".to_owned());
    let closed = ws.closesocket(s).map_err(|e| format!("driver close: {e}"));
    let (received, sent) = (received?, sent??);
    closed?;
    Ok((sent, received))
}

/// Sends `total` bytes of stream `seed` through `send`, a chunk at a time; returns the bytes
/// sent. The error names `sender` and the offset of the send that failed.
fn send_stream<E: std::fmt::Display>(
    sender: &str,
    total: u64,
    seed: u64,
    mut send: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, String> {
    let mut source = Stream::new(seed);
    let mut chunk = vec![0u8; CHUNK];
    let mut sent = 0;
    while sent < total {
        let len = (total - sent).min(CHUNK as u64) as usize;
        source.fill(&mut chunk[..len]);
        send(&chunk[..len]).map_err(|e| format!("{sender} send at {sent}: {e}"))?;
        sent += len as u64;
    }
    Ok(sent)
}

/// Receives through `recv` until it returns 0 (the end of the stream), checking every byte
/// against stream `seed`; returns the bytes received. The error names `direction` and the
/// offset.
fn receive_stream<E: std::fmt::Display>(
    direction: &str,
    seed: u64,
    mut recv: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Result<u64, String> {
    let mut checker = Checker::new(seed);
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = recv(&mut buffer)
            .map_err(|e| format!("{direction}: recv at {}: {e}", checker.bytes()))?;
        if n == 0 {
            return Ok(checker.bytes());
        }
        checker
            .check(&buffer[..n])
            .map_err(|e| format!("{direction}: {e}"))?;
    }
}
