//! Bulk transfers between the driver and Linux's TCP over a TAP link (issue #6): one connection
//! carries a stream each way at once (full duplex), every byte checked against the sender's
//! regenerated stream; the rate of each direction is printed, not asserted.
//!
//! Sizes: the 256 MiB each way on a clean wire (about 50 s in a debug build, 5–6 MiB/s
//! each way), and 2 MiB each way on the impaired one (20 to 30 s: see below), 16 MiB with
//! `TCPIP_FULL_SUITES=1` (about 200 s).
//!
//! On the impaired wire the driver's direction is the slow one, about 0.1 MiB/s against
//! Linux's 0.5 MiB/s: in a full-duplex transfer every ACK from Linux carries data, and smoltcp
//! counts only ACKs without data as duplicates (RFC 5681), so it never fast-retransmits here;
//! each loss waits for a retransmission timeout, which smoltcp keeps at 1 s or more.
#![feature(tcp_linger)]

mod interop_support;

use interop_support::bulk::{self, Leg};
use interop_support::driver::DriverOnTap;
use interop_support::{Namespace, capture_path};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Instant;
use tcpip::host::impair::Impairment;
use tcpip::info::wire::TCPStats;
use tcpip::nt::types::CO_TL_ENTITY;
use zerocopy::FromBytes;

/// netem's spelling of the impairment.
const NETEM: &str = "loss 2% reorder 5% delay 20ms 5ms";

fn full() -> bool {
    std::env::var("TCPIP_FULL_SUITES").is_ok_and(|v| v == "1")
}

const MIB: u64 = 1 << 20;

/// Linux connects to the driver and both send `total` bytes while they receive; returns the
/// driver's (sent, received) legs after checking both sides.
fn full_duplex(namespace: &Namespace, setup: &DriverOnTap, port: u16, total: u64) -> (Leg, Leg) {
    let ws = setup.ws.clone();
    let listener = ws.socket().expect("socket");
    ws.bind(listener, SocketAddrV4::new([0, 0, 0, 0].into(), port))
        .expect("bind");
    ws.listen(listener, 1).expect("listen");
    let (driver_seed, linux_seed) = (0x0d71_7e75, 0x1105_7e75);
    let addr = SocketAddr::from((namespace.driver_ip(), port));
    let linux = namespace.spawn("linux-bulk", move || {
        bulk::linux_side(addr, total, linux_seed, driver_seed)
    });
    let (s, _) = ws.accept(listener).expect("accept");
    ws.closesocket(listener).expect("close the listener");
    let driver = bulk::driver_side(&setup.kernel, &ws, s, total, driver_seed, linux_seed);
    let linux = linux.join().expect("Linux side");
    let (linux_sent, linux_received) = linux.expect("Linux side");
    let (driver_sent, driver_received) = driver.expect("driver side");
    assert_eq!(linux_sent.bytes, total);
    assert_eq!(driver_sent.bytes, total);
    assert_eq!(driver_received.bytes, total, "Linux → driver, byte-exact");
    assert_eq!(linux_received.bytes, total, "driver → Linux, byte-exact");
    (
        Leg {
            bytes: total,
            elapsed: driver_sent.elapsed.max(linux_received.elapsed),
        },
        Leg {
            bytes: total,
            elapsed: linux_sent.elapsed.max(driver_received.elapsed),
        },
    )
}

fn report(what: &str, (out, back): (Leg, Leg)) {
    eprintln!(
        "{what}: driver → Linux {} MiB in {:.2?} ({:.1} MiB/s), Linux → driver {} MiB in \
         {:.2?} ({:.1} MiB/s)",
        out.bytes / MIB,
        out.elapsed,
        out.rate(),
        back.bytes / MIB,
        back.elapsed,
        back.rate()
    );
}

#[test]
fn full_duplex_bulk_on_a_clean_wire() {
    let total = 256 * MIB;
    let namespace = Namespace::new();
    let setup = DriverOnTap::start(&namespace, None);
    let started = Instant::now();
    let legs = full_duplex(&namespace, &setup, 7100, total);
    report("clean wire", legs);
    let stats = setup.tap_stats();
    eprintln!("clean wire: {stats:?}, {:.2?} in all", started.elapsed());
    setup.finish();
}

/// The impaired wire: netem if the kernel has it (on the TAP's Linux side, so it impairs
/// Linux → driver only), else the TAP adapter's own impairment in both directions. Either way
/// the transfer must complete byte-exact, and the wire must show retransmissions.
#[test]
fn full_duplex_bulk_on_a_lossy_reordering_slow_wire() {
    let total = if full() { 16 * MIB } else { 2 * MIB };
    let namespace = Namespace::new();
    let netem = namespace.netem(NETEM);
    let impairment = match &netem {
        Ok(()) => {
            eprintln!("impaired wire: netem `{NETEM}` on Linux's side of the TAP");
            None
        }
        Err(why) => {
            assert!(
                why.contains("qdisc kind is unknown"),
                "tc failed for another reason than a missing netem: {why}"
            );
            eprintln!(
                "impaired wire: no netem in this kernel; the TAP adapter impairs both \
                 directions (`{NETEM}`)"
            );
            Some(Impairment::lossy_wan(0x5eed))
        }
    };
    let (pcap, keep) = capture_path(&namespace, "bulk-impaired");
    let setup = DriverOnTap::start_impaired(&namespace, Some(&pcap), impairment);
    let started = Instant::now();
    let legs = full_duplex(&namespace, &setup, 7101, total);
    report("impaired wire", legs);
    let stats = setup.tap_stats();
    eprintln!("impaired wire: {stats:?}, {:.2?} in all", started.elapsed());
    assert!(
        stats.retransmissions_out + stats.retransmissions_in > 0,
        "losses must show as retransmissions: {stats:?}"
    );
    // The driver's own count (`tcpRetransSegs`, what `netstat -s` shows) is the wire's.
    let tcp = setup.query_information(CO_TL_ENTITY, 1, 1);
    let tcp = TCPStats::read_from_bytes(&tcp).expect("TCPStats");
    assert_eq!(
        u64::from(tcp.ts_retranssegs),
        stats.retransmissions_out,
        "{tcp:?}"
    );
    if impairment.is_some() {
        assert!(stats.impaired_out.dropped > 0 && stats.impaired_in.dropped > 0);
        assert!(
            stats.retransmissions_out > 0,
            "the driver retransmits what the wire lost: {stats:?}"
        );
    }
    setup.finish();
    if !keep {
        std::fs::remove_file(&pcap).expect("remove the capture");
    }
}
