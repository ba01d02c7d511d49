//! A slow UDP reader under a fast sender, at the TDI level (a reader that keeps one
//! TDI_RECEIVE_DATAGRAM posted, as AFD does, but takes its time between them): datagrams that
//! find no receive wait in the address file's bounded queue, and beyond its bound are dropped
//! and counted. Every datagram sent is accounted for (received + dropped = sent), the ones
//! received arrive in order, and the driver's pool stays bounded however many are sent.

mod tdi_support;
mod udp_support;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tcpip::core::udp::UdpConfig;
use tcpip::nt::NtStatus;
use tdi_support::{loaded, local};
use udp_support::*;

const PAYLOAD: usize = 1024;
/// Sends the sender keeps in flight.
const SENDS_IN_FLIGHT: usize = 16;

/// Datagrams sent: 100 MiB through a queue bounded to 256 KiB.
const TOTAL: usize = 100_000;

#[test]
fn a_slow_reader_loses_only_counted_datagrams_and_memory_stays_bounded() {
    let t = loaded();
    let sender = open_udp(&t, local(7100), 0).expect("sender");
    let reader = open_udp(&t, local(7101), 0).expect("reader");
    let total = TOTAL;
    let started = Instant::now();
    let baseline = t.kernel.pool_stats().live_bytes;
    let done = Arc::new(AtomicBool::new(false));
    let sending = {
        let kernel = (*t.kernel).clone();
        let done = done.clone();
        t.kernel.spawn("udp-flood-sender", move || {
            let mut in_flight = VecDeque::new();
            let mut data = vec![0u8; PAYLOAD];
            for seq in 0..total as u64 {
                data[..8].copy_from_slice(&seq.to_le_bytes());
                in_flight.push_back(start_send(&kernel, sender, local(7101), &data));
                if in_flight.len() == SENDS_IN_FLIGHT {
                    let sent = in_flight.pop_front().expect("in flight").wait();
                    assert_eq!(
                        (sent.status, sent.information),
                        (NtStatus::SUCCESS, PAYLOAD)
                    );
                }
            }
            for send in in_flight {
                assert_eq!(send.wait().status, NtStatus::SUCCESS);
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut received = 0u64;
    let mut last: Option<u64> = None;
    let mut peak = baseline;
    loop {
        let accounted = udp_stats(&t);
        if done.load(Ordering::Acquire)
            && accounted.datagrams_in + accounted.queue_full == total as u64
            && received == accounted.datagrams_in
        {
            break;
        }
        let (status, data, from) = receive(&t.kernel, reader, 2048);
        assert_eq!(status.status, NtStatus::SUCCESS);
        assert_eq!((data.len(), from), (PAYLOAD, Some(local(7100))));
        let seq = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        assert!(
            last.is_none_or(|last| seq > last),
            "in order: {seq} after {last:?}"
        );
        last = Some(seq);
        received += 1;
        if received.is_multiple_of(8) {
            // The slow part: the reader keeps at most one receive posted and dawdles.
            std::thread::sleep(Duration::from_millis(1));
            peak = peak.max(t.kernel.pool_stats().live_bytes);
        }
    }
    sending.join().expect("sender");
    let stats = udp_stats(&t);
    eprintln!(
        "udp flood: {total} sent, {received} received, {} dropped (queue full), peak pool \
         +{} KiB, {:?}",
        stats.queue_full,
        peak.saturating_sub(baseline) / 1024,
        started.elapsed()
    );
    assert_eq!(received + stats.queue_full, total as u64, "{stats:?}");
    assert_eq!(stats.datagrams_out, total as u64);
    assert!(
        stats.queue_full > 0,
        "the reader was slow enough to overflow the queue"
    );
    let bound = UdpConfig::default().queue_bytes;
    assert!(
        peak.saturating_sub(baseline) < bound + 1024 * 1024,
        "pool growth {} bytes past the queue bound of {bound}",
        peak - baseline
    );
    t.close(sender);
    t.close(reader);
    t.unload();
}
