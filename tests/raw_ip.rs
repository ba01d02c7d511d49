//! Raw IP on `\Device\RawIp\<protocol>` through TDI, as AFD uses it for `SOCK_RAW`: the
//! protocol from the file name, sends with and without `IP_HDRINCL` (set with
//! `AO_OPTION_IP_HDRINCL` through `IOCTL_TCP_SET_INFORMATION_EX`), every datagram of the
//! protocol received with its IPv4 header (an ICMP raw socket sees the echo reply to its own
//! echo request), bad names, oversized sends, cancel and close. Verifier on, leak check at
//! unload.

mod tdi_support;
mod udp_support;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr};
use std::net::{Ipv4Addr, SocketAddrV4};
use tcpip::host::afd::wire;
use tcpip::host::{Handle, stats};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tcpip::tdi::SetInformationEx;
use tdi_support::{Loaded, loaded};
use udp_support::{receive, send_to, start_receive};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn open_raw(t: &Loaded, name: &str) -> Result<Handle, NtStatus> {
    t.kernel.create_file(
        name,
        Some(&wire::address_file_ea(SocketAddrV4::new(
            Ipv4Addr::UNSPECIFIED,
            0,
        ))),
        0,
    )
}

fn set_header_include(t: &Loaded, handle: Handle, on: bool) -> NtStatus {
    let request = SetInformationEx {
        id: TDIObjectID {
            toi_entity: TDIEntityID {
                tei_entity: CL_TL_ENTITY,
                tei_instance: 0,
            },
            toi_class: INFO_CLASS_PROTOCOL,
            toi_type: INFO_TYPE_ADDRESS_OBJECT,
            toi_id: AO_OPTION_IP_HDRINCL,
        },
        buffer: &[u8::from(on), 0, 0, 0],
    };
    let mut input = vec![0u8; request.buffer_len()];
    request.emit(&mut input).expect("request");
    t.kernel
        .device_io_control(handle, IOCTL_TCP_SET_INFORMATION_EX, &input, &mut [])
        .0
}

/// A packet of `protocol` from 0.0.0.0 (the driver fills the source) to 127.0.0.1.
fn packet(protocol: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: Ipv4Addr::UNSPECIFIED,
        dst_addr: LOCALHOST,
        next_header: IpProtocol::from(protocol),
        payload_len: payload.len(),
        hop_limit: ttl,
    };
    let mut out = vec![0u8; 20 + payload.len()];
    ip.emit(
        &mut Ipv4Packet::new_unchecked(&mut out[..]),
        &ChecksumCapabilities::default(),
    );
    out[20..].copy_from_slice(payload);
    out
}

#[test]
fn raw_send_and_receive_with_the_ip_header() {
    let t = loaded();
    let reader = open_raw(&t, "\\Device\\RawIp\\253").expect("raw 253");
    let writer = open_raw(&t, "\\Device\\RawIp\\253").expect("raw 253");
    let pending = start_receive(&t.kernel, reader, 2048);
    let sent = send_to(
        &t.kernel,
        writer,
        SocketAddrV4::new(LOCALHOST, 0),
        b"hello raw",
    );
    assert_eq!((sent.status, sent.information), (NtStatus::SUCCESS, 9));
    let (status, data, peer) = pending.wait();
    assert_eq!(status.status, NtStatus::SUCCESS);
    assert_eq!(peer, Some(SocketAddrV4::new(LOCALHOST, 0)));
    let ip = Ipv4Packet::new_checked(&data[..]).expect("IPv4 header");
    assert_eq!(u8::from(ip.next_header()), 253);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (LOCALHOST, LOCALHOST));
    assert_eq!(ip.payload(), b"hello raw");
    assert_eq!(ip.hop_limit(), 128);
    // Both files get their protocol's datagrams, the sender included.
    let (status, data, _) = receive(&t.kernel, writer, 2048);
    assert_eq!(status.status, NtStatus::SUCCESS);
    assert_eq!(&data[20..], b"hello raw");
    // Another protocol's file sees nothing of it.
    let other = open_raw(&t, "\\Device\\RawIp\\254").expect("raw 254");
    let quiet = start_receive(&t.kernel, other, 2048);
    let counters = stats::raw_stats(t.driver()).unwrap();
    assert_eq!((counters.datagrams_out, counters.datagrams_in), (1, 2));
    t.close(other);
    assert_eq!(quiet.wait().0.status, NtStatus::CANCELLED);
    t.close(writer);
    t.close(reader);
    t.unload();
}

#[test]
fn header_include_sends_the_callers_header() {
    let t = loaded();
    let reader = open_raw(&t, "\\Device\\RawIp\\253").expect("raw 253");
    let writer = open_raw(&t, "\\Device\\RawIp\\253").expect("raw 253");
    assert_eq!(set_header_include(&t, writer, true), NtStatus::SUCCESS);
    let pending = start_receive(&t.kernel, reader, 2048);
    let own = packet(253, 7, b"built here");
    let sent = send_to(&t.kernel, writer, SocketAddrV4::new(LOCALHOST, 0), &own);
    assert_eq!(
        (sent.status, sent.information),
        (NtStatus::SUCCESS, own.len())
    );
    let (status, data, _) = pending.wait();
    assert_eq!(status.status, NtStatus::SUCCESS);
    let ip = Ipv4Packet::new_checked(&data[..]).expect("IPv4 header");
    assert_eq!(ip.hop_limit(), 7, "the caller's TTL");
    assert_eq!(ip.src_addr(), LOCALHOST, "a 0.0.0.0 source is filled in");
    assert_eq!(ip.payload(), b"built here");
    // Not an IPv4 packet: refused; and the option off again builds the header.
    let bad = send_to(&t.kernel, writer, SocketAddrV4::new(LOCALHOST, 0), b"junk");
    assert_eq!(bad.status, NtStatus::INVALID_PARAMETER);
    assert_eq!(set_header_include(&t, writer, false), NtStatus::SUCCESS);
    let pending = start_receive(&t.kernel, reader, 2048);
    send_to(&t.kernel, writer, SocketAddrV4::new(LOCALHOST, 0), b"x");
    let (_, data, _) = pending.wait();
    assert_eq!(data.len(), 21);
    // The option on a UDP file is no raw file's.
    let udp = udp_support::open_udp(&t, SocketAddrV4::new(LOCALHOST, 0), 0).unwrap();
    assert_eq!(
        set_header_include(&t, udp, true),
        NtStatus::INVALID_PARAMETER
    );
    t.close(udp);
    t.close(writer);
    t.close(reader);
    t.unload();
}

#[test]
fn an_icmp_raw_socket_sees_the_echo_reply() {
    let t = loaded();
    let icmp = open_raw(&t, "\\Device\\RawIp\\1").expect("raw ICMP");
    let request = Icmpv4Repr::EchoRequest {
        ident: 0x4242,
        seq_no: 1,
        data: b"ping",
    };
    let mut message = vec![0u8; request.buffer_len()];
    request.emit(
        &mut Icmpv4Packet::new_unchecked(&mut message[..]),
        &ChecksumCapabilities::default(),
    );
    let sent = send_to(&t.kernel, icmp, SocketAddrV4::new(LOCALHOST, 0), &message);
    assert_eq!(sent.status, NtStatus::SUCCESS);
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let (status, data, _) = receive(&t.kernel, icmp, 2048);
        assert_eq!(status.status, NtStatus::SUCCESS);
        let ip = Ipv4Packet::new_checked(&data[..]).expect("IPv4 header");
        let reply = Icmpv4Packet::new_checked(ip.payload()).expect("ICMP");
        kinds.push(reply.msg_type());
        if reply.msg_type() == Icmpv4Message::EchoReply {
            assert_eq!((reply.echo_ident(), reply.data()), (0x4242, &b"ping"[..]));
        }
    }
    assert_eq!(
        kinds,
        [Icmpv4Message::EchoRequest, Icmpv4Message::EchoReply],
        "its own request (addressed to the host), then the host's reply"
    );
    t.close(icmp);
    t.unload();
}

#[test]
fn names_sizes_cancel_and_close() {
    let t = loaded();
    for bad in [
        "\\Device\\RawIp\\256",
        "\\Device\\RawIp\\x1",
        "\\Device\\RawIp\\1234",
    ] {
        assert_eq!(
            open_raw(&t, bad).err(),
            Some(NtStatus::INVALID_PARAMETER),
            "{bad}"
        );
    }
    for good in ["\\Device\\RawIp", "\\Device\\RawIp\\0", "\\Device\\Ip"] {
        let handle = open_raw(&t, good).expect(good);
        t.close(handle);
    }
    let raw = open_raw(&t, "\\Device\\RawIp\\253").unwrap();
    let big = vec![0u8; 64 * 1024];
    let sent = send_to(&t.kernel, raw, SocketAddrV4::new(LOCALHOST, 0), &big);
    assert_eq!(sent.status, NtStatus::INVALID_BUFFER_SIZE);
    let off_link = send_to(
        &t.kernel,
        raw,
        SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 0),
        b"x",
    );
    assert_eq!(off_link.status, NtStatus::NETWORK_UNREACHABLE);
    let pending = start_receive(&t.kernel, raw, 100);
    t.kernel.cancel_irp(pending.request.irp);
    assert_eq!(pending.wait().0.status, NtStatus::CANCELLED);
    let pending = start_receive(&t.kernel, raw, 100);
    t.close(raw);
    assert_eq!(pending.wait().0.status, NtStatus::CANCELLED);
    t.unload();
}

#[test]
fn a_raw_datagram_past_the_mtu_leaves_in_fragments() {
    let t = loaded();
    let reader = open_raw(&t, "\\Device\\RawIp\\253").expect("raw 253");
    let writer = open_raw(&t, "\\Device\\RawIp\\253").expect("raw 253");
    // Past the loopback's 16 KiB MTU: fragments on the way out, one datagram on the way in.
    let payload: Vec<u8> = (0..30_000u32).map(|i| (i % 253) as u8).collect();
    let pending = start_receive(&t.kernel, reader, 65_536);
    let sent = send_to(&t.kernel, writer, SocketAddrV4::new(LOCALHOST, 0), &payload);
    assert_eq!(
        (sent.status, sent.information),
        (NtStatus::SUCCESS, payload.len())
    );
    let (status, data, _) = pending.wait();
    assert_eq!(status.status, NtStatus::SUCCESS);
    let ip = Ipv4Packet::new_checked(&data[..]).expect("IPv4 header");
    assert_eq!(ip.payload(), &payload[..]);
    let (fragments, held) = stats::fragment_stats(t.driver()).unwrap();
    assert_eq!(
        (fragments.fragmented, fragments.reassembled, held),
        (1, 1, 0)
    );
    assert_eq!(stats::raw_stats(t.driver()).unwrap().datagrams_out, 1);
    // The caller's own header asking not to fragment: refused, nothing sent.
    assert_eq!(set_header_include(&t, writer, true), NtStatus::SUCCESS);
    let mut own = packet(253, 64, &payload);
    Ipv4Packet::new_unchecked(&mut own[..]).set_dont_frag(true);
    let refused = send_to(&t.kernel, writer, SocketAddrV4::new(LOCALHOST, 0), &own);
    assert_eq!(refused.status, NtStatus::INVALID_BUFFER_SIZE);
    assert_eq!(stats::fragment_stats(t.driver()).unwrap().0.fragmented, 1);
    t.close(writer);
    t.close(reader);
    t.unload();
}
