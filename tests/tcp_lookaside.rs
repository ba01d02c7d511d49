//! The socket ring lookaside (`core::lookaside`): a closed socket's receive and send blocks
//! serve the next socket instead of fresh zeroed pool, a size class keeps at most
//! `CoreConfig::lookaside_depth` blocks (the rest go back to the pool), a connect the pool
//! has no block for fails with `STATUS_INSUFFICIENT_RESOURCES` and takes nothing, an idle
//! lookaside and the last socket's close give the blocks back, and unload frees them (the
//! leak check of `Loaded::unload`).

mod tdi_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};
use tcpip::core::lookaside::LookasideStats;
use tcpip::core::state::CoreConfig;
use tcpip::host::{Clock, Config, Handle};
use tcpip::nt::NtStatus;
use tcpip::nt::types::TDI_DISCONNECT_ABORT;
use tdi_support::*;

/// The default full-sized ring block (receive and send rings are the same size).
const BLOCK: usize = 64 * 1024;

fn stats(t: &Loaded) -> LookasideStats {
    tcpip::host::stats::lookaside_stats(t.driver()).expect("loaded")
}

fn live_bytes(t: &Loaded) -> usize {
    t.kernel.pool_stats().live_bytes
}

/// Waits (real time, at most 10 s) until `done` holds of the lookaside's counters.
fn wait_for(t: &Loaded, what: &str, done: impl Fn(&LookasideStats) -> bool) -> LookasideStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = stats(t);
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: {now:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A listening server address on `port` (its LISTEN socket keeps a socket alive, so the
/// lookaside is not flushed for want of sockets).
fn listener(t: &Loaded, port: u16) -> Handle {
    t.open_address(local(port), 0).expect("server address")
}

/// One more connection to `server` (listening on `port`): (server endpoint, client address,
/// client endpoint), established.
fn connect_one(t: &Loaded, server: Handle, port: u16) -> (Handle, Handle, Handle) {
    let accepted = t.open_connection().expect("server endpoint");
    assert_eq!(t.associate(accepted, server), NtStatus::SUCCESS);
    let listening = start_listen(t, accepted);
    let client_address = t.open_address(any(0), 0).expect("client address");
    let client = t.open_connection().expect("client endpoint");
    assert_eq!(t.associate(client, client_address), NtStatus::SUCCESS);
    assert_eq!(
        start_connect(t, client, local(port)).wait().status,
        NtStatus::SUCCESS
    );
    assert_eq!(listening.wait().status, NtStatus::SUCCESS);
    (accepted, client_address, client)
}

/// Resets a connection and closes its files: both sockets go at once (no TIME-WAIT).
fn abort(t: &Loaded, (accepted, client_address, client): (Handle, Handle, Handle)) {
    assert_eq!(
        disconnect(t, client, TDI_DISCONNECT_ABORT).status,
        NtStatus::SUCCESS
    );
    for handle in [client_address, client, accepted] {
        t.close(handle);
    }
}

#[test]
fn a_closed_connections_ring_blocks_serve_the_next_connection() {
    let t = loaded();
    let server = listener(&t, 7300);
    let first = connect_one(&t, server, 7300);
    abort(&t, first);
    // The client's and the accepted socket's rings (the listener keeps its LISTEN socket).
    let before = wait_for(&t, "both sockets' blocks cached", |s| s.cached_blocks >= 4);
    let pool = live_bytes(&t);

    let second = connect_one(&t, server, 7300);
    // The client's socket and the listener's fresh LISTEN socket took cached blocks.
    let after = stats(&t);
    assert!(
        after.hits >= before.hits + 4,
        "blocks reused: {before:?} → {after:?}"
    );
    assert_eq!(after.misses, before.misses, "no fresh block: {after:?}");
    let grown = live_bytes(&t).saturating_sub(pool);
    assert!(
        grown < BLOCK,
        "{grown} bytes of pool for a connection whose rings were cached"
    );
    abort(&t, second);
    t.close(server);
    t.unload();
}

#[test]
fn closing_more_sockets_than_the_depth_caches_the_depth_and_frees_the_rest() {
    let depth = CoreConfig::default().lookaside_depth;
    let t = loaded();
    let empty = live_bytes(&t);
    let server = listener(&t, 7301);
    // The first connection also makes the listener (and its LISTEN socket).
    let mut open = vec![connect_one(&t, server, 7301)];
    let pool = live_bytes(&t);
    // Enough connections for four blocks each to pass the depth twice over.
    let count = depth / 2 + 1;
    for _ in 1..count {
        open.push(connect_one(&t, server, 7301));
    }
    let start = stats(&t);
    for connection in open {
        abort(&t, connection);
    }
    let returned = 4 * count;
    let done = wait_for(&t, "every closed socket's blocks returned", |s| {
        s.freed + s.cached_blocks as u64 >= start.freed + returned as u64
    });
    assert_eq!(done.cached_blocks, depth, "{done:?}");
    assert_eq!(done.cached_bytes, depth * BLOCK);
    // The rest went back to the pool: what is left above the one-connection mark is the cache
    // and the core's bookkeeping (slot and list capacity kept, under 4 KiB a socket).
    let sockets = 2 * count + 1;
    let held = live_bytes(&t).saturating_sub(pool);
    let bound = depth * BLOCK + sockets * 4096;
    assert!(held <= bound, "{held} bytes held, bound {bound}");

    // The last socket goes with the listener: the lookaside is flushed.
    t.close(server);
    let flushed = wait_for(&t, "flushed with the last socket", |s| s.cached_blocks == 0);
    assert_eq!(flushed.cached_bytes, 0);
    let left = live_bytes(&t).saturating_sub(empty);
    assert!(
        left <= sockets * 4096,
        "{left} bytes left with no socket: {flushed:?}"
    );
    t.unload();
}

#[test]
fn a_connect_with_no_pool_for_its_rings_fails_takes_nothing_and_cached_blocks_still_serve() {
    // Pools of four sizes a quarter of a connection's rings apart: the connect that finds no
    // room fails on its receive block with some, on its send block (the receive block taken)
    // with others.
    let mut failed_on = Vec::new();
    for step in 0..4 {
        failed_on.push(no_room_for_rings((4 << 20) + step * BLOCK / 2));
    }
    assert!(
        failed_on.contains(&Ring::Receive) && failed_on.contains(&Ring::Send),
        "{failed_on:?}"
    );
}

/// Which ring's block a connect could not get.
#[derive(Debug, PartialEq)]
enum Ring {
    Receive,
    Send,
}

/// With a non-paged pool of `limit` bytes, connects to a silent address (127.0.0.2 answers
/// nothing, so each socket stays in SYN-SENT on the virtual clock) until one finds no room for
/// a ring block: it fails with `STATUS_INSUFFICIENT_RESOURCES` and leaves the pool as it found
/// it. Then an attempt given up leaves its blocks to the lookaside, and the failed endpoint
/// connects with them although the pool is still full.
fn no_room_for_rings(limit: usize) -> Ring {
    let t = Loaded::with_config(Config {
        clock: Clock::Virtual,
        nonpaged_pool_limit: Some(limit),
        ..Config::default()
    });
    let silent = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 80);
    let mut pending = Vec::new();
    let (failed, ring) = loop {
        assert!(pending.len() < 64, "the pool never ran out");
        let address = t.open_address(any(0), 0).expect("client address");
        let connection = t.open_connection().expect("client endpoint");
        assert_eq!(t.associate(connection, address), NtStatus::SUCCESS);
        let pool = t.kernel.pool_stats();
        let before = stats(&t);
        let connecting = start_connect(&t, connection, silent);
        // Served by the DPC if the fast path declined it: wait until the core is done.
        t.kernel.wait_quiescent();
        if !connecting.is_complete() {
            pending.push((address, connection, connecting));
            continue;
        }
        assert_eq!(
            connecting.wait().status,
            NtStatus::INSUFFICIENT_RESOURCES,
            "the connect that found no room for its rings"
        );
        let after = stats(&t);
        assert_eq!(
            after.failures,
            before.failures + 1,
            "a ring block: {after:?}"
        );
        let now = t.kernel.pool_stats();
        assert_eq!(
            (now.live_blocks, now.live_bytes),
            (pool.live_blocks, pool.live_bytes),
            "the failed connect took nothing from the pool: {after:?}"
        );
        assert!(now.limit_failures > pool.limit_failures, "{now:?}");
        let ring = if after.misses > before.misses {
            Ring::Send
        } else {
            Ring::Receive
        };
        break ((address, connection), ring);
    };

    let (address, connection, connecting) = pending.pop().expect("one connect before");
    t.close(connection);
    assert_eq!(connecting.wait().status, NtStatus::CANCELLED);
    t.close(address);
    let cached = wait_for(&t, "the abandoned socket's blocks", |s| {
        s.cached_blocks == 2
    });
    let (address, connection) = failed;
    let connecting = start_connect(&t, connection, silent);
    t.kernel.wait_quiescent();
    assert!(
        !connecting.is_complete(),
        "connecting with the cached blocks"
    );
    let now = stats(&t);
    assert_eq!(now.hits, cached.hits + 2, "{now:?}");
    assert_eq!(now.cached_blocks, 0);

    t.close(connection);
    assert_eq!(connecting.wait().status, NtStatus::CANCELLED);
    t.close(address);
    for (address, connection, connecting) in pending {
        t.close(connection);
        assert_eq!(connecting.wait().status, NtStatus::CANCELLED);
        t.close(address);
    }
    t.unload();
    ring
}

#[test]
fn an_idle_lookaside_gives_its_blocks_back_to_the_pool() {
    let idle = CoreConfig::default().lookaside_idle;
    let t = Loaded::new(Clock::Virtual);
    let server = listener(&t, 7302);
    let connection = connect_one(&t, server, 7302);
    abort(&t, connection);
    let cached = wait_for(&t, "blocks cached", |s| s.cached_blocks >= 4);
    let pool = live_bytes(&t);
    // Nothing takes or returns a block for two trim intervals (the first one starts when the
    // blocks are cached): the listener is still open, but its class is freed.
    t.kernel
        .advance(Duration::from_micros(2 * idle.total_micros() + 1_000_000));
    let trimmed = wait_for(&t, "trimmed when idle", |s| s.cached_blocks == 0);
    assert_eq!(trimmed.freed, cached.freed + cached.cached_blocks as u64);
    let now = live_bytes(&t);
    assert!(
        now <= pool - cached.cached_bytes,
        "the trimmed blocks went back to the pool: {now} bytes, {pool} before"
    );
    t.close(server);
    t.unload();
}

#[test]
fn unload_frees_the_blocks_the_lookaside_holds_and_those_sockets_still_hold() {
    let t = loaded();
    let server = listener(&t, 7303);
    let reset = connect_one(&t, server, 7303);
    let (accepted, client_address, client) = connect_one(&t, server, 7303);
    abort(&t, reset);
    wait_for(&t, "blocks cached", |s| s.cached_blocks >= 4);
    // The other connection is closed gracefully: its sockets stay (TIME-WAIT) with their
    // blocks lent, so the lookaside is not flushed for want of sockets.
    for handle in [client_address, client, accepted, server] {
        t.close(handle);
    }
    let held = stats(&t);
    assert!(held.cached_blocks >= 4, "{held:?}");
    // Unload drops the core with blocks cached and blocks lent: its leak check must find
    // neither.
    t.unload();
}
