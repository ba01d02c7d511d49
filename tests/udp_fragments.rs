//! IPv4 fragmentation and reassembly for UDP: every size from 0 to 65,507 bytes round-trips
//! over the loopback (larger than its MTU: sent as fragments, reassembled on the way in);
//! fragments from an Ethernet link are reassembled, in any order; a flood of fragments that
//! never complete stays within the reassembly bound while legitimate datagrams still get
//! through; timeouts are counted. Verifier on, leak check at unload.

mod tdi_support;
mod udp_support;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ptr::NonNull;
use std::sync::Arc;
use tcpip::core::fragment::{self, FragmentConfig};
use tcpip::driver::Tcpip;
use tcpip::host::stats;
use tcpip::link::ethernet::Adapter;
use tcpip::nt::NtStatus;
use tcpip::nt::entry;
use tcpip::nt::types::IOCTL_SET_IP_ADDRESS;
use tdi_support::{Loaded, loaded};
use udp_support::*;

const MAX: usize = 65_507;

/// Every size when `TCPIP_FULL_SUITES=1`; otherwise every size to 2,000, every 61st above,
/// and the sizes around each loopback fragment boundary and the maximum.
fn sizes() -> Vec<usize> {
    if std::env::var("TCPIP_FULL_SUITES").is_ok_and(|v| v == "1") {
        return (0..=MAX).collect();
    }
    let mut sizes: Vec<usize> = (0..2000).collect();
    sizes.extend((2000..=MAX).step_by(61));
    for boundary in [16 * 1024 - 28, 32 * 1024 - 48, 48 * 1024 - 68, MAX] {
        sizes.extend(boundary - 2..=boundary.min(MAX - 1) + 1);
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes.retain(|s| *s <= MAX);
    sizes
}

#[test]
fn every_size_to_65507_round_trips_over_the_loopback() {
    let t = loaded();
    let a = open_udp(&t, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7120), 0).unwrap();
    let b = open_udp(&t, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7121), 0).unwrap();
    let pattern: Vec<u8> = (0..MAX).map(|i| (i * 7 + i / 251) as u8).collect();
    for size in sizes() {
        let data = &pattern[..size];
        let sent = send_to(
            &t.kernel,
            a,
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7121),
            data,
        );
        assert_eq!((sent.status, sent.information), (NtStatus::SUCCESS, size));
        let (status, got, _) = receive(&t.kernel, b, MAX);
        assert_eq!(status.status, NtStatus::SUCCESS, "size {size}");
        assert!(got == data, "size {size}: {} bytes back", got.len());
    }
    let (counters, held) = stats::fragment_stats(t.driver()).unwrap();
    assert!(counters.fragmented > 0 && counters.reassembled == counters.fragmented);
    assert_eq!((counters.reassembly_failures, held), (0, 0), "{counters:?}");
    assert_eq!(udp_stats(&t).send_dropped, 0);
    t.close(a);
    t.close(b);
    t.unload();
}

const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const OURS: Ipv4Addr = Ipv4Addr::new(10, 14, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 14, 0, 1);

/// An adapter that drops what the driver sends.
struct Sink;

impl Adapter for Sink {
    fn mac(&self) -> [u8; 6] {
        OUR_MAC
    }

    fn mtu(&self) -> usize {
        1500
    }

    fn transmit(&self, _frame: &[u8]) -> bool {
        true
    }
}

fn tcpip(t: &Loaded) -> &'static Tcpip {
    let object = NonNull::new(t.driver().object()).expect("driver object");
    entry::loaded_state::<Tcpip>(object).expect("loaded")
}

/// Loads the driver with interface 1 at 10.14.0.2/24 on an Ethernet link.
fn bound() -> Loaded {
    let t = loaded();
    let control = t.kernel.create_file("\\Device\\Tcp", None, 0).unwrap();
    let input = [1u32.to_le_bytes(), OURS.octets(), [255, 255, 255, 0]].concat();
    let (status, _) =
        t.kernel
            .device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut [0u8; 12]);
    assert_eq!(status, NtStatus::SUCCESS);
    t.close(control);
    tcpip(&t)
        .stack()
        .attach_link(Arc::new(Sink), 256)
        .expect("attach");
    t
}

/// The Ethernet frames of a UDP datagram from the peer to `port`, fragmented at 1,500 bytes
/// with identification `ident`.
fn fragments(port: u16, ident: u16, payload: &[u8]) -> Vec<Vec<u8>> {
    let udp = UdpRepr {
        src_port: 4000,
        dst_port: port,
    };
    let ip = Ipv4Repr {
        src_addr: PEER,
        dst_addr: OURS,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    let caps = ChecksumCapabilities::default();
    let mut packet = vec![0u8; ip.buffer_len() + ip.payload_len];
    let mut view = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.emit(&mut view, &caps);
    udp.emit(
        &mut UdpPacket::new_unchecked(view.payload_mut()),
        &IpAddress::Ipv4(PEER),
        &IpAddress::Ipv4(OURS),
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &caps,
    );
    let mut frames = Vec::new();
    fragment::split(&packet, 1500, ident, |len, write| {
        let ethernet = EthernetRepr {
            src_addr: EthernetAddress(PEER_MAC),
            dst_addr: EthernetAddress(OUR_MAC),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut frame = vec![0u8; ethernet.buffer_len() + len];
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        ethernet.emit(&mut eth);
        write(eth.payload_mut());
        frames.push(frame);
        true
    })
    .expect("split");
    frames
}

#[test]
fn fragments_from_the_link_are_reassembled_in_any_order() {
    let t = bound();
    let stack = tcpip(&t).stack();
    let socket = open_udp(&t, SocketAddrV4::new(OURS, 9000), 0).unwrap();
    let payload: Vec<u8> = (0..8192u32).map(|i| (i % 253) as u8).collect();
    let mut frames = fragments(9000, 77, &payload);
    assert_eq!(frames.len(), 6);
    frames.reverse();
    frames.swap(1, 3);
    for frame in &frames {
        assert!(stack.indicate_receive(1, frame));
    }
    let (status, data, from) = receive(&t.kernel, socket, 65536);
    assert_eq!(status.status, NtStatus::SUCCESS);
    assert_eq!(
        (data.len(), from),
        (8192, Some(SocketAddrV4::new(PEER, 4000)))
    );
    assert!(data == payload);
    t.close(socket);
    t.unload();
}

#[test]
fn a_fragment_flood_stays_within_the_bound_and_datagrams_still_get_through() {
    let t = bound();
    let stack = tcpip(&t).stack();
    let socket = open_udp(&t, SocketAddrV4::new(OURS, 9001), 0).unwrap();
    let bound = FragmentConfig::default().bytes;
    let payload: Vec<u8> = (0..30_000u32).map(|i| (i % 241) as u8).collect();
    let mut delivered = 0;
    for round in 0..40u16 {
        // 50 datagrams that never complete: every fragment but the last.
        for flood in 0..50u16 {
            let frames = fragments(9001, 10_000 + round * 50 + flood, &payload);
            for frame in &frames[..frames.len() - 1] {
                while !stack.indicate_receive(1, frame) {
                    std::thread::yield_now();
                }
            }
            let (_, held) = stats::fragment_stats(t.driver()).unwrap();
            assert!(
                held <= bound,
                "reassembly holds {held} bytes, bound {bound}"
            );
        }
        // Then one legitimate datagram, whole.
        for frame in fragments(9001, round, &payload[..20_000]) {
            while !stack.indicate_receive(1, &frame) {
                std::thread::yield_now();
            }
        }
        let (status, data, _) = receive(&t.kernel, socket, 65536);
        assert_eq!(status.status, NtStatus::SUCCESS);
        assert!(data == payload[..20_000], "round {round}");
        delivered += 1;
    }
    let (counters, held) = stats::fragment_stats(t.driver()).unwrap();
    eprintln!("fragment flood: {counters:?}, {held} bytes held");
    assert_eq!(delivered, 40);
    assert!(counters.reassembly_failures >= 40 * 50 - 16);
    t.close(socket);
    t.unload();
}

#[test]
fn fragments_and_raw_ip_with_one_percent_allocation_failures() {
    let t = loaded();
    let a = open_udp(&t, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7130), 0).unwrap();
    let b = open_udp(&t, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7131), 0).unwrap();
    let raw = t
        .kernel
        .create_file(
            "\\Device\\RawIp\\253",
            Some(&tcpip::host::afd::wire::address_file_ea(SocketAddrV4::new(
                Ipv4Addr::UNSPECIFIED,
                0,
            ))),
            0,
        )
        .unwrap();
    t.kernel
        .set_fault_injection(tcpip::host::FaultInjection::Random {
            seed: 0x1313,
            percent: 1,
        });
    let pattern: Vec<u8> = (0..MAX).map(|i| (i * 13) as u8).collect();
    let (mut delivered, mut failed) = (0, 0);
    for round in 0..200usize {
        let size = 1000 + (round * 4093) % (MAX - 1000);
        let (file, to) = if round % 4 == 3 {
            (raw, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        } else {
            (b, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7131))
        };
        let size = if file == raw { size % 8000 } else { size };
        let pending = start_receive(&t.kernel, file, MAX + 20);
        let sender = if file == raw { raw } else { a };
        let sent = send_to(&t.kernel, sender, to, &pattern[..size]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while !pending.request.is_complete() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if !pending.request.is_complete() {
            t.kernel.cancel_irp(pending.request.irp);
        }
        let (status, data, _) = pending.wait();
        match (sent.status, status.status) {
            (NtStatus::SUCCESS, NtStatus::SUCCESS) => {
                let payload = if file == raw { &data[20..] } else { &data[..] };
                assert!(payload == &pattern[..size], "round {round}");
                delivered += 1;
            }
            (
                NtStatus::SUCCESS | NtStatus::INSUFFICIENT_RESOURCES,
                NtStatus::SUCCESS | NtStatus::CANCELLED | NtStatus::INSUFFICIENT_RESOURCES,
            ) => failed += 1,
            other => panic!("round {round}: unexpected {other:?}"),
        }
        // The raw file also hears its own datagram: take it so it does not pile up.
        if file == raw && sent.status == NtStatus::SUCCESS {
            let extra = start_receive(&t.kernel, raw, MAX);
            std::thread::sleep(std::time::Duration::from_millis(2));
            if !extra.request.is_complete() {
                t.kernel.cancel_irp(extra.request.irp);
            }
            let _ = extra.wait();
        }
    }
    t.kernel
        .set_fault_injection(tcpip::host::FaultInjection::None);
    eprintln!("fragments/raw 1% failures: {delivered} delivered, {failed} clean failures");
    assert!(delivered > 150, "most datagrams get through at 1% failures");
    for handle in [a, b, raw] {
        t.close(handle);
    }
    t.unload();
}
