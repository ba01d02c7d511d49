//! `IOCTL_ICMP_ECHO_REQUEST` on a `\Device\Ip` control channel, as iphlpapi's `IcmpSendEcho2`
//! sends it (`ping`): the reply to 127.0.0.1 and to the host's own address with the echoed
//! data, the timeout, an unreachable destination, short and malformed buffers, cancellation,
//! a close while the request waits, and 1 % pool failures. Verifier on, leak check at unload.

mod ethernet_support;
mod ip_helper_support;
mod tdi_support;
mod udp_support;

use ip_helper_support::{Pending, start_buffered_ioctl};
use std::net::Ipv4Addr;
use tcpip::core::icmp::IcmpStats;
use tcpip::core::icmp::reply::REPLY_LEN;
use tcpip::host::stats;
use tcpip::host::{FaultInjection, Handle, KernelHandle};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tcpip::tdi::icmp::IP_FLAG_DF;
use tdi_support::{Loaded, loaded};
use zerocopy::{FromBytes, IntoBytes};

/// The input iphlpapi builds: the request, then the data; as long as the reply buffer.
fn request(dst: Ipv4Addr, ttl: u8, timeout_ms: u32, data: &[u8], reply_size: usize) -> Vec<u8> {
    let header = ICMP_ECHO_REQUEST {
        Address: dst.octets(),
        Timeout: timeout_ms,
        DataOffset: 20,
        DataSize: data.len() as u16,
        HasOptions: u8::from(ttl != 0),
        Ttl: ttl,
        OptionsOffset: 20,
        ..ICMP_ECHO_REQUEST::default()
    };
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(data);
    if bytes.len() < reply_size {
        bytes.resize(reply_size, 0);
    }
    bytes
}

/// One echo request through `device_io_control`: the status block and the output buffer.
fn echo(
    kernel: &KernelHandle,
    handle: Handle,
    dst: Ipv4Addr,
    timeout_ms: u32,
    data: &[u8],
    room: usize,
) -> (NtStatus, usize, Vec<u8>) {
    let input = request(dst, 0, timeout_ms, data, room);
    let mut output = vec![0u8; room];
    let (status, information) =
        kernel.device_io_control(handle, IOCTL_ICMP_ECHO_REQUEST, &input, &mut output);
    (status, information, output)
}

fn reply(output: &[u8]) -> ICMP_ECHO_REPLY {
    ICMP_ECHO_REPLY::read_from_prefix(output).expect("reply").0
}

fn icmp_stats(t: &Loaded) -> IcmpStats {
    stats::icmp_stats(t.driver()).expect("loaded")
}

fn open_ip(t: &Loaded) -> Handle {
    t.kernel
        .create_file("\\Device\\Ip", None, 0)
        .expect("\\Device\\Ip control channel")
}

#[test]
fn echo_to_loopback_returns_the_data() {
    let t = loaded();
    let ip = open_ip(&t);
    let data: Vec<u8> = (0..32u8).collect();
    let room = REPLY_LEN + data.len() + 8;
    let input = request(Ipv4Addr::LOCALHOST, 0, 1000, &data, room);
    let mut output = vec![0u8; room];
    let (status, information) =
        t.kernel
            .device_io_control(ip, IOCTL_ICMP_ECHO_REQUEST, &input, &mut output);
    assert_eq!(status, NtStatus::SUCCESS);
    assert_eq!(information, REPLY_LEN + data.len());
    let answer = reply(&output);
    assert_eq!(answer.Status, IP_SUCCESS);
    assert_eq!(Ipv4Addr::from(answer.Address), Ipv4Addr::LOCALHOST);
    assert_eq!(answer.Reserved, 1, "one reply counted");
    assert_eq!(usize::from(answer.DataSize), data.len());
    assert_eq!(
        answer.Data,
        output.as_ptr() as usize + REPLY_LEN,
        "user address"
    );
    assert_eq!(&output[REPLY_LEN..REPLY_LEN + data.len()], &data[..]);
    assert_eq!(answer.Options.Ttl, 64, "smoltcp answers with TTL 64");
    assert!(answer.RoundTripTime < 1000);
    let counters = icmp_stats(&t);
    assert_eq!(counters.echo_requests_out, 1);
    assert_eq!(counters.echo_requests_in, 1);
    assert_eq!(counters.echo_replies_in, 1);
    // Every size the loopback carries, and the empty echo.
    for size in [0usize, 1, 1000, 16 * 1024 - 28] {
        let data = vec![0x5a; size];
        let (status, information, output) = echo(
            &t.kernel,
            ip,
            Ipv4Addr::LOCALHOST,
            1000,
            &data,
            REPLY_LEN + size,
        );
        assert_eq!((status, information), (NtStatus::SUCCESS, REPLY_LEN + size));
        assert_eq!(reply(&output).Status, IP_SUCCESS, "{size} bytes");
    }
    t.close(ip);
    t.unload();
}

#[test]
fn echo_past_the_loopback_mtu_leaves_and_returns_in_fragments() {
    let t = loaded();
    let ip = open_ip(&t);
    // The loopback's MTU is 16 KiB: 40000 bytes of data go as three fragments each way.
    let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let room = REPLY_LEN + data.len();
    let (status, information, output) = echo(&t.kernel, ip, Ipv4Addr::LOCALHOST, 2000, &data, room);
    assert_eq!((status, information), (NtStatus::SUCCESS, room));
    let answer = reply(&output);
    assert_eq!(answer.Status, IP_SUCCESS);
    assert_eq!(usize::from(answer.DataSize), data.len());
    assert_eq!(&output[REPLY_LEN..], &data[..]);
    let (fragments, held) = stats::fragment_stats(t.driver()).expect("loaded");
    assert_eq!(
        (fragments.fragmented, fragments.reassembled),
        (2, 2),
        "request and reply"
    );
    assert_eq!(held, 0);
    let counters = icmp_stats(&t);
    assert_eq!(
        (
            counters.echo_requests_out,
            counters.echo_requests_in,
            counters.echo_replies_in
        ),
        (1, 1, 1)
    );
    // More data than `IcmpSendEcho` takes (65,500 bytes): refused before anything is sent.
    let data = vec![0u8; 65_508];
    let (status, _, _) = echo(
        &t.kernel,
        ip,
        Ipv4Addr::LOCALHOST,
        500,
        &data,
        REPLY_LEN + 8,
    );
    assert_eq!(status, NtStatus::INVALID_PARAMETER);
    t.close(ip);
    t.unload();
}

#[test]
fn dont_fragment_and_type_of_service_are_honoured() {
    use smoltcp::wire::Ipv4Packet;
    let t = loaded();
    let ip = open_ip(&t);
    // `ping -f -v 0xb8`: the options as iphlpapi puts them in the request.
    let options = |data: &[u8], room: usize| {
        let mut input = request(Ipv4Addr::LOCALHOST, 0, 1000, data, room);
        let header = ICMP_ECHO_REQUEST {
            Address: Ipv4Addr::LOCALHOST.octets(),
            Timeout: 1000,
            DataOffset: 20,
            DataSize: data.len() as u16,
            HasOptions: 1,
            Ttl: 32,
            Tos: 0xb8,
            Flags: IP_FLAG_DF,
            OptionsOffset: 20,
            ..ICMP_ECHO_REQUEST::default()
        };
        input[..size_of::<ICMP_ECHO_REQUEST>()].copy_from_slice(header.as_bytes());
        input
    };
    // Past the loopback's 16 KiB MTU with don't-fragment: too big, nothing sent.
    let data = vec![1u8; 20_000];
    let input = options(&data, REPLY_LEN + data.len());
    let mut output = vec![0u8; REPLY_LEN + data.len()];
    let (status, _) = t
        .kernel
        .device_io_control(ip, IOCTL_ICMP_ECHO_REQUEST, &input, &mut output);
    assert_eq!(
        (status, reply(&output).Status),
        (NtStatus::SUCCESS, IP_PACKET_TOO_BIG)
    );
    assert_eq!(icmp_stats(&t).echo_requests_out, 0);
    // Within the MTU: the request carries DF, the TOS and the TTL (a raw ICMP file sees it).
    let raw = t
        .kernel
        .create_file(
            "\\Device\\RawIp\\1",
            Some(&tcpip::host::afd::wire::address_file_ea(
                std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            )),
            0,
        )
        .expect("raw ICMP");
    let watching = udp_support::start_receive(&t.kernel, raw, 2048);
    let input = options(b"flags", REPLY_LEN + 5);
    let mut output = vec![0u8; REPLY_LEN + 5];
    let (status, _) = t
        .kernel
        .device_io_control(ip, IOCTL_ICMP_ECHO_REQUEST, &input, &mut output);
    assert_eq!(
        (status, reply(&output).Status),
        (NtStatus::SUCCESS, IP_SUCCESS)
    );
    let (seen, packet, _) = watching.wait();
    assert_eq!(seen.status, NtStatus::SUCCESS);
    let packet = Ipv4Packet::new_checked(&packet[..]).expect("IPv4");
    assert!(packet.dont_frag());
    assert_eq!(
        ((packet.dscp() << 2) | packet.ecn(), packet.hop_limit()),
        (0xb8, 32)
    );
    assert!(packet.verify_checksum());
    t.close(raw);
    t.close(ip);
    t.unload();
}

#[test]
fn echo_to_the_configured_address_is_answered_by_the_host() {
    let t = loaded();
    let ip = open_ip(&t);
    let own = Ipv4Addr::new(10, 13, 0, 2);
    let input = [1u32.to_le_bytes(), own.octets(), [255, 255, 255, 0]].concat();
    let (status, _) = t
        .kernel
        .device_io_control(ip, IOCTL_SET_IP_ADDRESS, &input, &mut [0u8; 12]);
    assert_eq!(status, NtStatus::SUCCESS);
    let (status, _, output) = echo(&t.kernel, ip, own, 1000, b"own", REPLY_LEN + 3);
    assert_eq!(status, NtStatus::SUCCESS);
    let answer = reply(&output);
    assert_eq!(
        (answer.Status, Ipv4Addr::from(answer.Address)),
        (IP_SUCCESS, own)
    );
    t.close(ip);
    t.unload();
}

#[test]
fn unreachable_and_silent_destinations() {
    let t = loaded();
    let ip = open_ip(&t);
    // No link leads off the host: an answer at once, counted as one reply.
    let (status, information, output) =
        echo(&t.kernel, ip, Ipv4Addr::new(192, 0, 2, 7), 5000, b"x", 64);
    assert_eq!((status, information), (NtStatus::SUCCESS, REPLY_LEN));
    let answer = reply(&output);
    assert_eq!(answer.Status, IP_DEST_HOST_UNREACHABLE);
    assert_eq!(answer.Reserved, 1);
    // 127.0.0.2 is on the loopback route but smoltcp owns only 127.0.0.1: nobody answers,
    // and the request times out as iphlpapi expects (NT_SUCCESS, the status in the reply).
    let (status, information, output) =
        echo(&t.kernel, ip, Ipv4Addr::new(127, 0, 0, 2), 100, b"x", 64);
    assert_eq!((status, information), (NtStatus::TIMEOUT, REPLY_LEN));
    let answer = reply(&output);
    assert_eq!((answer.Status, answer.Reserved), (IP_REQ_TIMED_OUT, 0));
    t.close(ip);
    t.unload();
}

#[test]
fn short_and_malformed_buffers_get_clear_statuses() {
    let t = loaded();
    let ip = open_ip(&t);
    let good = request(Ipv4Addr::LOCALHOST, 0, 1000, b"abcd", 64);
    let mut short = vec![0u8; REPLY_LEN - 1];
    let (status, _) = t
        .kernel
        .device_io_control(ip, IOCTL_ICMP_ECHO_REQUEST, &good, &mut short);
    assert_eq!(status, NtStatus::BUFFER_TOO_SMALL);
    let mut output = vec![0u8; 64];
    for len in [0, 1, 19] {
        let (status, _) =
            t.kernel
                .device_io_control(ip, IOCTL_ICMP_ECHO_REQUEST, &good[..len], &mut output);
        assert_eq!(status, NtStatus::INVALID_PARAMETER, "{len} bytes of input");
    }
    let mut past = good.clone();
    past[10..12].copy_from_slice(&200u16.to_le_bytes()); // DataSize past the input
    let (status, _) = t
        .kernel
        .device_io_control(ip, IOCTL_ICMP_ECHO_REQUEST, &past, &mut output);
    assert_eq!(status, NtStatus::INVALID_PARAMETER);
    // Room for the reply but not all its data: the data is cut to the buffer.
    let data = [7u8; 32];
    let (status, information, output) = echo(
        &t.kernel,
        ip,
        Ipv4Addr::LOCALHOST,
        1000,
        &data,
        REPLY_LEN + 4,
    );
    assert_eq!((status, information), (NtStatus::SUCCESS, REPLY_LEN + 4));
    assert_eq!(reply(&output).DataSize, 4);
    t.close(ip);
    t.unload();
}

/// Sends an echo request (METHOD_BUFFERED, one system buffer) without waiting.
fn start_echo(kernel: &KernelHandle, handle: Handle, dst: Ipv4Addr, timeout_ms: u32) -> Pending {
    let room = 64;
    let buffer = request(dst, 0, timeout_ms, b"wait", room);
    start_buffered_ioctl(kernel, handle, IOCTL_ICMP_ECHO_REQUEST, buffer, room)
}

#[test]
fn a_pending_echo_is_cancellable_and_outlives_its_handle() {
    let t = loaded();
    let ip = open_ip(&t);
    let silent = Ipv4Addr::new(127, 0, 0, 9);
    let pending = start_echo(&t.kernel, ip, silent, 60_000);
    assert_eq!(pending.returned, NtStatus::PENDING);
    t.kernel.cancel_irp(pending.irp);
    assert_eq!(pending.wait().status, NtStatus::CANCELLED);
    // Closing the handle leaves the request to its timeout (ReactOS's transport has no
    // cleanup either); it completes, and nothing leaks.
    let pending = start_echo(&t.kernel, ip, silent, 300);
    t.close(ip);
    let done = pending.wait();
    assert_eq!(
        (done.status, done.information),
        (NtStatus::TIMEOUT, REPLY_LEN)
    );
    t.unload();
}

#[test]
fn echo_with_one_percent_allocation_failures() {
    let t = loaded();
    let ip = open_ip(&t);
    t.kernel.set_fault_injection(FaultInjection::Random {
        seed: 0x1313,
        percent: 1,
    });
    let (mut replies, mut errors) = (0, 0);
    for round in 0..300u32 {
        let data = vec![round as u8; (round as usize * 37) % 2000];
        let (status, _, output) = echo(
            &t.kernel,
            ip,
            Ipv4Addr::LOCALHOST,
            1000,
            &data,
            REPLY_LEN + data.len(),
        );
        match status {
            NtStatus::SUCCESS => {
                assert_eq!(reply(&output).Status, IP_SUCCESS);
                replies += 1;
            }
            NtStatus::INSUFFICIENT_RESOURCES | NtStatus::TIMEOUT => errors += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    t.kernel.set_fault_injection(FaultInjection::None);
    eprintln!("icmp 1% failures: {replies} replies, {errors} clean errors");
    assert!(replies > 250, "most echoes get through at 1% failures");
    t.close(ip);
    t.unload();
}

mod link {
    //! The frame-level pieces of the Ethernet tests: a recording adapter and frame builders.
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::*;

    pub use crate::ethernet_support::{OUR_MAC, PEER_MAC as ROUTER_MAC, Recorder};

    /// An Ethernet frame from the router carrying `ip`.
    pub fn frame(ethertype: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
        let repr = EthernetRepr {
            src_addr: EthernetAddress(ROUTER_MAC),
            dst_addr: EthernetAddress(OUR_MAC),
            ethertype,
        };
        let mut out = vec![0u8; repr.buffer_len() + payload.len()];
        let mut view = EthernetFrame::new_unchecked(&mut out[..]);
        repr.emit(&mut view);
        view.payload_mut().copy_from_slice(payload);
        out
    }

    /// The router's ARP reply to our request for `router`.
    pub fn arp_reply(router: std::net::Ipv4Addr, ours: std::net::Ipv4Addr) -> Vec<u8> {
        crate::ethernet_support::arp_reply(router, ROUTER_MAC, ours)
    }

    /// An ICMP error of `kind`/`code` from `router` to `ours`, quoting the start of `original`.
    pub fn icmp_error(
        router: std::net::Ipv4Addr,
        ours: std::net::Ipv4Addr,
        kind: Icmpv4Message,
        code: u8,
        original: &[u8],
    ) -> Vec<u8> {
        let quote = &original[..original.len().min(28)];
        let mut icmp = vec![0u8; 8 + quote.len()];
        icmp[0] = kind.into();
        icmp[1] = code;
        icmp[8..].copy_from_slice(quote);
        Icmpv4Packet::new_unchecked(&mut icmp[..]).fill_checksum();
        let ip = Ipv4Repr {
            src_addr: router,
            dst_addr: ours,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.len(),
            hop_limit: 63,
        };
        let mut packet = vec![0u8; 20 + icmp.len()];
        ip.emit(
            &mut Ipv4Packet::new_unchecked(&mut packet[..]),
            &ChecksumCapabilities::default(),
        );
        packet[20..].copy_from_slice(&icmp);
        frame(EthernetProtocol::Ipv4, &packet)
    }
}

#[test]
fn ttl_expired_in_transit_and_unreachable_from_a_router() {
    use smoltcp::wire::{EthernetFrame, EthernetProtocol, Icmpv4Message, Ipv4Packet};
    let t = loaded();
    let ip = open_ip(&t);
    let ours = Ipv4Addr::new(10, 13, 0, 2);
    let router = Ipv4Addr::new(10, 13, 0, 1);
    let far = Ipv4Addr::new(198, 51, 100, 7);
    let input = [1u32.to_le_bytes(), ours.octets(), [255, 255, 255, 0]].concat();
    let (status, _) = t
        .kernel
        .device_io_control(ip, IOCTL_SET_IP_ADDRESS, &input, &mut [0u8; 12]);
    assert_eq!(status, NtStatus::SUCCESS);
    let recorder = std::sync::Arc::new(link::Recorder::default());
    let object = std::ptr::NonNull::new(t.driver().object()).unwrap();
    let stack = tcpip::nt::entry::loaded_state::<tcpip::driver::Tcpip>(object)
        .unwrap()
        .stack();
    stack.attach_link(recorder.clone(), 64).unwrap();
    stack.set_gateway(1, Some(router));
    let mut arp_answered = false;
    for (kind, code, expected) in [
        (Icmpv4Message::TimeExceeded, 0, IP_TTL_EXPIRED_TRANSIT),
        (Icmpv4Message::DstUnreachable, 1, IP_DEST_HOST_UNREACHABLE),
    ] {
        let pending = start_echo(&t.kernel, ip, far, 5000);
        // Wait for the echo request on the wire (after the ARP exchange with the router).
        let request = loop {
            let frames = recorder.sent.lock().unwrap().clone();
            if !arp_answered && frames.iter().any(|f| f.get(12..14) == Some(&[0x08, 0x06])) {
                assert!(stack.indicate_receive(1, &link::arp_reply(router, ours)));
                arp_answered = true;
            }
            let echo: Option<Vec<u8>> = frames.iter().rev().find_map(|f| {
                let frame = EthernetFrame::new_checked(&f[..]).ok()?;
                (frame.ethertype() == EthernetProtocol::Ipv4)
                    .then(|| frame.payload().to_vec())
                    .filter(|p| {
                        Ipv4Packet::new_checked(&p[..]).is_ok_and(|ip| ip.dst_addr() == far)
                    })
            });
            if let Some(echo) = echo {
                break echo;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        recorder.sent.lock().unwrap().clear();
        assert!(stack.indicate_receive(1, &link::icmp_error(router, ours, kind, code, &request)));
        let done = pending.wait();
        assert_eq!(done.status, NtStatus::SUCCESS);
        let answer = reply(pending.buffer());
        assert_eq!(answer.Status, expected, "{kind:?}");
        assert_eq!(Ipv4Addr::from(answer.Address), router);
        assert_eq!(answer.Reserved, 1);
    }
    let counters = icmp_stats(&t);
    assert_eq!(
        (counters.time_exceeded_in, counters.unreachables_in),
        (1, 1)
    );
    stack.detach_link(1);
    // The recorder's copies were made in the driver's DPC: gone before the leak check.
    drop(std::mem::take(&mut *recorder.sent.lock().unwrap()));
    t.close(ip);
    t.unload();
}
