use super::*;
use crate::nt::NtStatus;
use alloc::sync::Arc;
use alloc::vec::Vec;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{ChecksumCapabilities, Device, Medium, RxToken as _, TxToken as _};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetRepr, HardwareAddress, Icmpv4Packet,
    Icmpv4Repr, IpAddress, IpCidr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr,
};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

const OUR_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const OUR_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
const PEER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);

/// An adapter that records what it is asked to send, and refuses it on demand.
struct Recorder {
    mac: [u8; 6],
    mtu: usize,
    sent: Mutex<Vec<Vec<u8>>>,
    refuse: AtomicBool,
}

impl Recorder {
    fn new(mtu: usize) -> Recorder {
        Recorder {
            mac: OUR_MAC,
            mtu,
            sent: Mutex::new(Vec::new()),
            refuse: AtomicBool::new(false),
        }
    }

    fn take(&self) -> Vec<Vec<u8>> {
        core::mem::take(&mut *self.sent.lock().unwrap())
    }
}

impl Adapter for Recorder {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn transmit(&self, frame: &[u8]) -> bool {
        if self.refuse.load(Ordering::Relaxed) {
            return false;
        }
        self.sent.lock().unwrap().push(frame.to_vec());
        true
    }
}

fn ethernet(dst: [u8; 6], ethertype: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: EthernetAddress(PEER_MAC),
        dst_addr: EthernetAddress(dst),
        ethertype,
    };
    let mut frame = vec![0; HEADER_LEN + payload.len()];
    let mut view = EthernetFrame::new_unchecked(&mut frame[..]);
    repr.emit(&mut view);
    view.payload_mut().copy_from_slice(payload);
    frame
}

fn arp(
    operation: ArpOperation,
    source: ([u8; 6], Ipv4Address),
    target: ([u8; 6], Ipv4Address),
) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: EthernetAddress(source.0),
        source_protocol_addr: source.1,
        target_hardware_addr: EthernetAddress(target.0),
        target_protocol_addr: target.1,
    };
    let mut packet = vec![0; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut packet[..]));
    packet
}

fn icmp_echo(request: bool, src: Ipv4Address, dst: Ipv4Address, data: &[u8]) -> Vec<u8> {
    let icmp = if request {
        Icmpv4Repr::EchoRequest {
            ident: 0x77,
            seq_no: 1,
            data,
        }
    } else {
        Icmpv4Repr::EchoReply {
            ident: 0x77,
            seq_no: 1,
            data,
        }
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let caps = ChecksumCapabilities::default();
    let mut packet = vec![0; ip.buffer_len() + icmp.buffer_len()];
    let mut view = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.emit(&mut view, &caps);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(view.payload_mut()), &caps);
    packet
}

fn recv(dev: &mut EthernetDevice<'_>) -> Option<Vec<u8>> {
    let (rx, _tx) = dev.receive(Instant::ZERO)?;
    Some(rx.consume(<[u8]>::to_vec))
}

/// The queue's buffers and the device's transmit buffer: what an allocation after
/// construction would change.
fn buffers(
    queue: &ReceiveQueue,
    dev: &EthernetDevice<'_>,
) -> ((Vec<usize>, usize, usize, usize), usize) {
    (queue.buffers(), dev.tx_address())
}

#[test]
fn capabilities_and_parameters() {
    let queue = ReceiveQueue::new(DEFAULT_MTU, 4).unwrap();
    let adapter = Recorder::new(DEFAULT_MTU);
    let dev = EthernetDevice::new(&queue, &adapter).unwrap();
    let caps = dev.capabilities();
    assert_eq!(caps.medium, Medium::Ethernet);
    assert_eq!(caps.max_transmission_unit, DEFAULT_MTU + HEADER_LEN);
    assert_eq!(caps.ip_mtu(), DEFAULT_MTU);
    assert_eq!(caps.max_burst_size, None);
    for checksum in [
        &caps.checksum.ipv4,
        &caps.checksum.tcp,
        &caps.checksum.icmpv4,
    ] {
        assert!(
            checksum.tx() && checksum.rx(),
            "smoltcp computes and verifies"
        );
    }
    assert_eq!(dev.mtu(), DEFAULT_MTU);
    assert_eq!(
        dev.hardware_address(),
        HardwareAddress::Ethernet(EthernetAddress(OUR_MAC))
    );

    let larger = Recorder::new(DEFAULT_MTU + 1);
    assert!(matches!(
        EthernetDevice::new(&queue, &larger),
        Err(NtStatus::INVALID_PARAMETER)
    ));
    let tiny = Recorder::new(MIN_MTU - 1);
    assert!(matches!(
        EthernetDevice::new(&queue, &tiny),
        Err(NtStatus::INVALID_PARAMETER)
    ));
}

#[test]
fn round_trip_through_queue_device_and_adapter() {
    let queue = ReceiveQueue::new(DEFAULT_MTU, 3).unwrap();
    let adapter = Recorder::new(DEFAULT_MTU);
    let mut dev = EthernetDevice::new(&queue, &adapter).unwrap();
    let before = buffers(&queue, &dev);
    assert!(recv(&mut dev).is_none(), "nothing indicated yet");
    let one = ethernet(OUR_MAC, EthernetProtocol::Ipv4, &[1; 46]);
    let two = ethernet(OUR_MAC, EthernetProtocol::Arp, &[2; 28]);
    assert!(queue.indicate(&one));
    assert!(queue.indicate(&two));
    assert_eq!(dev.pending(), 2);

    // Receive with a reply, as smoltcp does when a frame calls for one.
    let (rx, tx) = dev.receive(Instant::ZERO).unwrap();
    let seen = rx.consume(|frame| {
        tx.consume(60, |buf| buf.fill(0xaa));
        frame.to_vec()
    });
    assert_eq!(seen, one);
    assert_eq!(recv(&mut dev).unwrap(), two);
    assert!(recv(&mut dev).is_none());
    dev.transmit(Instant::ZERO)
        .unwrap()
        .consume(DEFAULT_MTU + HEADER_LEN, |buf| buf.fill(0xbb));
    assert_eq!(
        adapter.take(),
        [vec![0xaa; 60], vec![0xbb; DEFAULT_MTU + HEADER_LEN]]
    );

    // Every buffer is back on the free list: the ring takes three frames again.
    for _ in 0..3 {
        assert!(queue.indicate(&one));
    }
    assert!(!queue.indicate(&one));
    while recv(&mut dev).is_some() {}
    assert_eq!(
        buffers(&queue, &dev),
        before,
        "nothing allocated after construction"
    );
    assert_eq!(
        dev.stats(),
        DeviceStats {
            delivered: 5,
            transmitted: 2,
            ..DeviceStats::default()
        }
    );
    let stats = queue.stats();
    assert_eq!((stats.received, stats.dropped_full), (5, 1));
}

#[test]
fn transmit_failures_and_oversized_requests_are_counted() {
    let queue = ReceiveQueue::new(MIN_MTU, 2).unwrap();
    let adapter = Recorder::new(MIN_MTU);
    let mut dev = EthernetDevice::new(&queue, &adapter).unwrap();
    let seen = dev
        .transmit(Instant::ZERO)
        .unwrap()
        .consume(MIN_MTU + HEADER_LEN + 1, |buf| buf.len());
    assert_eq!(seen, MIN_MTU + HEADER_LEN, "the whole buffer, not more");
    adapter.refuse.store(true, Ordering::Relaxed);
    dev.transmit(Instant::ZERO).unwrap().consume(60, |_| ());
    assert!(adapter.take().is_empty());
    let stats = dev.stats();
    assert_eq!(
        (
            stats.transmit_oversized,
            stats.transmit_failed,
            stats.transmitted
        ),
        (1, 1, 0)
    );
}

#[test]
fn the_core_peeks_and_drops_before_smoltcp() {
    let queue = ReceiveQueue::new(MIN_MTU, 4).unwrap();
    let adapter = Recorder::new(MIN_MTU);
    let frames: Vec<Vec<u8>> = (1..=3)
        .map(|tag| ethernet(OUR_MAC, EthernetProtocol::Ipv4, &[tag; 46]))
        .collect();
    for frame in &frames {
        assert!(queue.indicate(frame));
    }
    {
        let mut dev = EthernetDevice::new(&queue, &adapter).unwrap();
        assert_eq!(dev.peek_front(), Some(&frames[0][..]));
        assert_eq!(
            dev.peek_front(),
            Some(&frames[0][..]),
            "peeking twice shows the same frame"
        );
        assert_eq!((dev.pending(), queue.pending()), (3, 2));
        assert!(dev.drop_front());
        assert_eq!(dev.peek_front(), Some(&frames[1][..]));
        // Dropped with a staged frame: it goes back to the head of the queue.
    }
    assert_eq!(queue.pending(), 2);
    let mut dev = EthernetDevice::new(&queue, &adapter).unwrap();
    assert_eq!(recv(&mut dev).unwrap(), frames[1]);
    assert!(dev.drop_front(), "drop_front also takes an unstaged frame");
    assert!(!dev.drop_front());
    assert_eq!(dev.peek_front(), None);
    assert_eq!(dev.stats().discarded, 1);
    assert_eq!(queue.buffers().0.len(), 4, "every buffer is back");
}

#[test]
fn a_device_per_pass_reuses_one_transmit_buffer() {
    let queue = ReceiveQueue::new(MIN_MTU, 2).unwrap();
    let adapter = Recorder::new(MIN_MTU);
    let short = vec![0; MIN_MTU + HEADER_LEN - 1];
    assert!(matches!(
        EthernetDevice::with_transmit_buffer(&queue, &adapter, short),
        Err(NtStatus::INVALID_PARAMETER)
    ));
    assert!(matches!(
        transmit_buffer(MAX_MTU + 1),
        Err(NtStatus::INVALID_PARAMETER)
    ));
    let mut tx = transmit_buffer(MIN_MTU).unwrap();
    let address = tx.as_ptr();
    let frame = ethernet(OUR_MAC, EthernetProtocol::Ipv4, &[5; 46]);
    assert!(queue.indicate(&frame));
    for pass in 0..3 {
        let mut dev = EthernetDevice::with_transmit_buffer(&queue, &adapter, tx).unwrap();
        if pass < 2 {
            // Staged, then left for the next pass.
            assert_eq!(dev.peek_front(), Some(&frame[..]));
        } else {
            assert_eq!(recv(&mut dev).unwrap(), frame);
        }
        dev.transmit(Instant::ZERO)
            .unwrap()
            .consume(60, |buf| buf.fill(pass));
        tx = dev.into_transmit_buffer();
        assert_eq!(tx.as_ptr(), address, "the same buffer every pass");
    }
    assert_eq!(queue.pending(), 0);
    assert_eq!(adapter.take(), [vec![0; 60], vec![1; 60], vec![2; 60]]);
}

#[test]
fn ipv4_packet_finds_the_payload_of_ipv4_frames_only() {
    let packet = icmp_echo(true, PEER_IP, OUR_IP, b"ping");
    let frame = ethernet(OUR_MAC, EthernetProtocol::Ipv4, &packet);
    assert_eq!(ipv4_packet(&frame), Some(&packet[..]));
    let arp_frame = ethernet(OUR_MAC, EthernetProtocol::Arp, &[0; 28]);
    assert_eq!(ipv4_packet(&arp_frame), None);
    assert_eq!(ipv4_packet(&frame[..HEADER_LEN - 1]), None);
    assert_eq!(ipv4_packet(&frame[..HEADER_LEN]), Some(&[][..]));
}

/// An interface at [`OUR_IP`] over a device on `queue` and `adapter`.
fn interface(dev: &mut EthernetDevice<'_>) -> Interface {
    let mut config = Config::new(dev.hardware_address());
    config.random_seed = 0x5eed;
    let mut iface = Interface::new(config, dev, Instant::ZERO);
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(IpAddress::Ipv4(OUR_IP), 24))
            .unwrap();
    });
    iface
}

#[test]
fn interface_answers_arp_and_ping_with_checksums() {
    let queue = ReceiveQueue::new(DEFAULT_MTU, 4).unwrap();
    let adapter = Recorder::new(DEFAULT_MTU);
    let mut dev = EthernetDevice::new(&queue, &adapter).unwrap();
    let mut iface = interface(&mut dev);
    let mut sockets = SocketSet::new(Vec::new());
    let before = buffers(&queue, &dev);

    let request = arp(ArpOperation::Request, (PEER_MAC, PEER_IP), ([0; 6], OUR_IP));
    assert!(queue.indicate(&ethernet([0xff; 6], EthernetProtocol::Arp, &request)));
    iface.poll(Instant::ZERO, &mut dev, &mut sockets);
    let reply = arp(ArpOperation::Reply, (OUR_MAC, OUR_IP), (PEER_MAC, PEER_IP));
    let mut expected = ethernet(PEER_MAC, EthernetProtocol::Arp, &reply);
    expected[6..12].copy_from_slice(&OUR_MAC);
    assert_eq!(adapter.take(), [expected], "one ARP reply, byte for byte");

    // The peer is now in the neighbour cache: a ping is answered at once.
    let ping = icmp_echo(true, PEER_IP, OUR_IP, b"abcdefgh");
    assert!(queue.indicate(&ethernet(OUR_MAC, EthernetProtocol::Ipv4, &ping)));
    iface.poll(Instant::ZERO, &mut dev, &mut sockets);
    let sent = adapter.take();
    assert_eq!(sent.len(), 1);
    let packet = ipv4_packet(&sent[0]).unwrap();
    let ip = Ipv4Packet::new_checked(packet).unwrap();
    assert!(ip.verify_checksum(), "smoltcp computed the IPv4 checksum");
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(), "and the ICMP checksum");
    let pong = icmp_echo(false, OUR_IP, PEER_IP, b"abcdefgh");
    let pong_ip = Ipv4Packet::new_checked(&pong[..]).unwrap();
    assert_eq!(icmp.into_inner(), pong_ip.payload());
    assert_eq!(&sent[0][..6], &PEER_MAC);

    // A ping with a broken checksum is verified and ignored.
    let mut bad = ping.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(queue.indicate(&ethernet(OUR_MAC, EthernetProtocol::Ipv4, &bad)));
    iface.poll(Instant::ZERO, &mut dev, &mut sockets);
    assert!(adapter.take().is_empty());
    assert_eq!(
        buffers(&queue, &dev),
        before,
        "nothing allocated after construction"
    );
    assert_eq!(dev.stats().delivered, 3);
}

/// An adapter wired to another station's receive queue: a crossover cable.
struct Cable {
    mac: [u8; 6],
    peer: Arc<ReceiveQueue>,
}

impl Adapter for Cable {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> usize {
        DEFAULT_MTU
    }

    fn transmit(&self, frame: &[u8]) -> bool {
        self.peer.indicate(frame)
    }
}

#[test]
fn tcp_over_a_crossover_cable() {
    let queues = [
        Arc::new(ReceiveQueue::new(DEFAULT_MTU, 64).unwrap()),
        Arc::new(ReceiveQueue::new(DEFAULT_MTU, 64).unwrap()),
    ];
    let server_nic = Cable {
        mac: OUR_MAC,
        peer: queues[1].clone(),
    };
    let client_nic = Cable {
        mac: PEER_MAC,
        peer: queues[0].clone(),
    };
    let mut server_dev = EthernetDevice::new(&queues[0], &server_nic).unwrap();
    let mut client_dev = EthernetDevice::new(&queues[1], &client_nic).unwrap();
    let mut server_if = interface(&mut server_dev);
    let mut client_if = Interface::new(
        Config::new(client_dev.hardware_address()),
        &mut client_dev,
        Instant::ZERO,
    );
    client_if.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(IpAddress::Ipv4(PEER_IP), 24))
            .unwrap();
    });
    let socket = || {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 64 * 1024]),
            tcp::SocketBuffer::new(vec![0; 64 * 1024]),
        )
    };
    let mut server_set = SocketSet::new(Vec::new());
    let mut client_set = SocketSet::new(Vec::new());
    let server: SocketHandle = server_set.add(socket());
    let client: SocketHandle = client_set.add(socket());
    server_set.get_mut::<tcp::Socket>(server).listen(7).unwrap();
    client_set
        .get_mut::<tcp::Socket>(client)
        .connect(client_if.context(), (OUR_IP, 7), 49152)
        .unwrap();

    let data: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    let (mut sent, mut received) = (0, Vec::new());
    let mut now = Instant::ZERO;
    while received.len() < data.len() {
        let socket = client_set.get_mut::<tcp::Socket>(client);
        if socket.can_send() {
            sent += socket.send_slice(&data[sent..]).unwrap();
        }
        let socket = server_set.get_mut::<tcp::Socket>(server);
        if socket.can_recv() {
            socket
                .recv(|chunk| {
                    received.extend_from_slice(chunk);
                    (chunk.len(), ())
                })
                .unwrap();
        }
        client_if.poll(now, &mut client_dev, &mut client_set);
        server_if.poll(now, &mut server_dev, &mut server_set);
        now += Duration::from_millis(1);
        assert!(
            now < Instant::from_secs(60),
            "stalled at {} bytes",
            received.len()
        );
    }
    assert!(received == data, "the bytes arrive intact and in order");
    for queue in &queues {
        assert_eq!(queue.stats().dropped(), 0);
    }
    let stats = client_dev.stats();
    assert_eq!(stats.transmit_failed, 0);
    assert!(stats.transmitted > 170, "{stats:?}: MSS-sized segments");
}
