//! Linux-side peers on `std::net`, to run on threads inside a [`Namespace`](super::Namespace):
//! an echo server, echo clients, a bulk sender and receiver that hash what they move, and a
//! closer that resets its connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// How long a peer waits on a socket before it gives up: a stalled transfer fails the test
/// rather than hanging it.
pub const TIMEOUT: Duration = Duration::from_secs(20);

#[path = "../fnv_support/mod.rs"]
mod fnv_support;
pub use fnv_support::Fnv;

/// `len` deterministic pseudo-random bytes from `seed` (xorshift).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The FNV-1a hash of `data`.
pub fn hash(data: &[u8]) -> u64 {
    let mut fnv = Fnv::default();
    fnv.update(data);
    fnv.value()
}

/// What a bulk transfer moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub bytes: u64,
    pub hash: u64,
}

fn with_timeouts(stream: TcpStream) -> io::Result<TcpStream> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// Connects to `addr` with the peers' timeouts.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    with_timeouts(TcpStream::connect_timeout(&addr, TIMEOUT)?)
}

/// Serves `connections` connections from `listener`, one thread each, echoing every byte
/// until the client shuts its side down; returns the bytes echoed.
pub fn echo_server(listener: TcpListener, connections: usize) -> io::Result<u64> {
    let mut threads = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (stream, _) = listener.accept()?;
        let stream = with_timeouts(stream)?;
        threads.push(std::thread::spawn(move || echo(stream)));
    }
    let mut total = 0;
    for thread in threads {
        total += thread.join().expect("echo thread")?;
    }
    Ok(total)
}

fn echo(mut stream: TcpStream) -> io::Result<u64> {
    let mut buffer = [0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            stream.shutdown(Shutdown::Write)?;
            return Ok(total);
        }
        stream.write_all(&buffer[..n])?;
        total += n as u64;
    }
}

/// `threads` client threads, each making `connections` connections to the echo server at
/// `addr` one after the other: each sends `message_len` bytes, reads them back, checks them,
/// and closes gracefully. Returns the number of round trips that checked out.
pub fn echo_clients(
    addr: SocketAddr,
    threads: usize,
    connections: usize,
    message_len: usize,
) -> io::Result<usize> {
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            std::thread::spawn(move || -> io::Result<usize> {
                for index in 0..connections {
                    let seed = (thread * connections + index) as u64 + 1;
                    echo_once(addr, &pattern(seed, message_len))?;
                }
                Ok(connections)
            })
        })
        .collect();
    let mut total = 0;
    for handle in handles {
        total += handle.join().expect("echo client thread")?;
    }
    Ok(total)
}

/// One echo round trip of `message` over a new connection, then a graceful close.
pub fn echo_once(addr: SocketAddr, message: &[u8]) -> io::Result<()> {
    let mut stream = connect(addr)?;
    let writer = {
        let mut stream = stream.try_clone()?;
        let message = message.to_vec();
        std::thread::spawn(move || -> io::Result<()> {
            stream.write_all(&message)?;
            stream.shutdown(Shutdown::Write)
        })
    };
    let mut echoed = Vec::with_capacity(message.len());
    stream.read_to_end(&mut echoed)?;
    writer.join().expect("echo writer")?;
    if echoed != message {
        return Err(io::Error::other(format!(
            "echo mismatch: sent {} bytes, got {} back",
            message.len(),
            echoed.len()
        )));
    }
    Ok(())
}

/// Connects to `addr`, sends `data`, shuts down its side and waits for the peer to close;
/// returns what it sent.
pub fn bulk_send(addr: SocketAddr, data: &[u8]) -> io::Result<Transfer> {
    let mut stream = connect(addr)?;
    stream.write_all(data)?;
    stream.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    Ok(Transfer {
        bytes: data.len() as u64,
        hash: hash(data),
    })
}

/// Accepts one connection and reads it to the end; returns what it received.
pub fn bulk_receive(listener: &TcpListener) -> io::Result<Transfer> {
    let (stream, _) = listener.accept()?;
    let mut stream = with_timeouts(stream)?;
    let mut fnv = Fnv::default();
    let mut bytes = 0u64;
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        fnv.update(&buffer[..n]);
        bytes += n as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    Ok(Transfer {
        bytes,
        hash: fnv.value(),
    })
}

/// Closes `stream` with SO_LINGER 0: Linux sends a RST instead of a FIN and discards anything
/// unsent.
pub fn reset_close(stream: TcpStream) -> io::Result<()> {
    stream.set_linger(Some(Duration::ZERO))?;
    drop(stream);
    Ok(())
}
