//! A recording adapter bound under the driver (as NDIS binds a miniport): the frames the driver
//! transmits are kept for the test, and frames for the driver are indicated by the test.
#![allow(dead_code)]

use crate::tdi_support::{Loaded, loaded};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber,
};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tcpip::driver::Tcpip;
use tcpip::link::ethernet::Adapter;
use tcpip::nt::NtStatus;
use tcpip::nt::entry;
use tcpip::nt::types::IOCTL_SET_IP_ADDRESS;

pub const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const OURS: Ipv4Addr = Ipv4Addr::new(10, 13, 0, 2);
pub const PEER: Ipv4Addr = Ipv4Addr::new(10, 13, 0, 1);

/// An adapter that records what the driver transmits (copies made in the driver's DPC, which
/// the pool tracker attributes to the driver: they must be gone before the unload's leak check).
#[derive(Default)]
pub struct Recorder {
    pub sent: Mutex<Vec<Vec<u8>>>,
}

impl Recorder {
    /// Frees every recorded frame and the list itself (allocated in the driver's DPC, so
    /// counted against the driver by the leak check at unload).
    pub fn forget(&self) {
        drop(std::mem::take(&mut *self.sent.lock().unwrap()));
    }
}

impl Adapter for Recorder {
    fn mac(&self) -> [u8; 6] {
        OUR_MAC
    }

    fn mtu(&self) -> usize {
        1500
    }

    fn transmit(&self, frame: &[u8]) -> bool {
        self.sent.lock().unwrap().push(frame.to_vec());
        true
    }
}

/// An ARP reply from `ip` at `mac`, to `to` at [`OUR_MAC`].
pub fn arp_reply(ip: Ipv4Addr, mac: [u8; 6], to: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress(OUR_MAC),
        target_protocol_addr: to,
    };
    let ethernet = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress(OUR_MAC),
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = vec![0; ethernet.buffer_len() + arp.buffer_len()];
    let mut view = EthernetFrame::new_unchecked(&mut frame[..]);
    ethernet.emit(&mut view);
    arp.emit(&mut ArpPacket::new_unchecked(view.payload_mut()));
    frame
}

/// The driver's state.
pub fn tcpip(t: &Loaded) -> &'static Tcpip {
    let object = NonNull::new(t.driver().object()).expect("driver object");
    entry::loaded_state::<Tcpip>(object).expect("loaded")
}

/// Loads the driver, gives interface 1 [`OURS`]/24 and binds a recorder under it.
pub fn bound() -> (Loaded, Arc<Recorder>) {
    bound_with(Some(OURS))
}

/// Loads the driver, gives interface 1 `address`/24 (none: as DHCP leaves it before its lease)
/// and binds a recorder under it.
pub fn bound_with(address: Option<Ipv4Addr>) -> (Loaded, Arc<Recorder>) {
    bind(loaded(), address)
}

/// Binds a second recording adapter, which becomes interface 2.
pub fn bind_second(t: &Loaded) -> Arc<Recorder> {
    let second = Arc::new(Recorder::default());
    let index = tcpip(t)
        .stack()
        .attach_link(second.clone(), 64)
        .expect("attach");
    assert_eq!(index, 2, "the second adapter is interface 2");
    second
}

/// [`bound`] in a kernel whose clock moves only when the test advances it.
pub fn bound_virtual() -> (Loaded, Arc<Recorder>) {
    bind(Loaded::new(tcpip::host::Clock::Virtual), Some(OURS))
}

/// Gives interface `index` `address`/24 (`IOCTL_SET_IP_ADDRESS`, as `AddIPAddress`).
pub fn set_address(t: &Loaded, index: u32, address: Ipv4Addr) {
    let control = t.kernel.create_file("\\Device\\Tcp", None, 0).unwrap();
    let input = [index.to_le_bytes(), address.octets(), [255, 255, 255, 0]].concat();
    let (status, _) =
        t.kernel
            .device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut [0u8; 12]);
    assert_eq!(status, NtStatus::SUCCESS, "IOCTL_SET_IP_ADDRESS {index}");
    t.close(control);
}

fn bind(t: Loaded, address: Option<Ipv4Addr>) -> (Loaded, Arc<Recorder>) {
    if let Some(address) = address {
        set_address(&t, 1, address);
    }
    let recorder = Arc::new(Recorder::default());
    tcpip(&t)
        .stack()
        .attach_link(recorder.clone(), 64)
        .expect("attach");
    (t, recorder)
}

/// A TCP segment from `src` to `dst` in an Ethernet frame from [`PEER_MAC`], checksums set.
pub fn segment(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|ack| TcpSeqNumber(ack as i32)),
        window_len: 65535,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    let ip = Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let ethernet = EthernetRepr {
        src_addr: EthernetAddress(PEER_MAC),
        dst_addr: EthernetAddress(OUR_MAC),
        ethertype: EthernetProtocol::Ipv4,
    };
    let checksums = ChecksumCapabilities::default();
    let mut frame = vec![0; ethernet.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
    let mut view = EthernetFrame::new_unchecked(&mut frame[..]);
    ethernet.emit(&mut view);
    let mut packet = Ipv4Packet::new_unchecked(view.payload_mut());
    ip.emit(&mut packet, &checksums);
    tcp.emit(
        &mut TcpPacket::new_unchecked(packet.payload_mut()),
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        &checksums,
    );
    frame
}

/// Hands `frame` to the driver as the adapter's receive indication, waiting while its queue is
/// full.
pub fn indicate(t: &Loaded, frame: &[u8]) {
    indicate_on(t, 1, frame);
}

/// [`indicate`] on the adapter of interface `index`.
pub fn indicate_on(t: &Loaded, index: u32, frame: &[u8]) {
    while !tcpip(t).stack().indicate_receive(index, frame) {
        std::thread::yield_now();
    }
}

/// The ARP requests the driver sent so far, as (sender IP, target IP).
pub fn arp_requests(recorder: &Recorder) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let sent = recorder.sent.lock().unwrap();
    sent.iter()
        .filter_map(|frame| {
            let ethernet = EthernetFrame::new_checked(&frame[..]).ok()?;
            if ethernet.ethertype() != EthernetProtocol::Arp || !ethernet.dst_addr().is_broadcast()
            {
                return None;
            }
            match ArpRepr::parse(&ArpPacket::new_checked(ethernet.payload()).ok()?).ok()? {
                ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Request,
                    source_hardware_addr,
                    source_protocol_addr,
                    target_protocol_addr,
                    ..
                } if source_hardware_addr.0 == OUR_MAC => {
                    Some((source_protocol_addr, target_protocol_addr))
                }
                _ => None,
            }
        })
        .collect()
}

/// A segment the driver sent to `to`: (flags SYN, ACK, RST; its sequence number).
pub fn sent_to(recorder: &Recorder, to: SocketAddrV4) -> Vec<(bool, bool, bool, u32)> {
    let sent = recorder.sent.lock().unwrap();
    sent.iter()
        .filter_map(|frame| {
            let ethernet = EthernetFrame::new_checked(&frame[..]).ok()?;
            let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            (ip.dst_addr() == *to.ip() && tcp.dst_port() == to.port())
                .then(|| (tcp.syn(), tcp.ack(), tcp.rst(), tcp.seq_number().0 as u32))
        })
        .collect()
}

/// Waits up to 10 s for the driver's SYN-ACK to `client` and returns its sequence number.
pub fn syn_ack(recorder: &Recorder, client: SocketAddrV4) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = sent_to(recorder, client)
            .into_iter()
            .find(|&(syn, ack, rst, _)| syn && ack && !rst);
        if let Some((_, _, _, seq)) = found {
            return seq;
        }
        assert!(Instant::now() < deadline, "no SYN-ACK to {client}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Plays a client's three-way handshake from `client` (initial sequence number `isn`) to
/// `server` on the driver; returns the driver's next sequence number.
pub fn handshake(
    t: &Loaded,
    recorder: &Recorder,
    client: SocketAddrV4,
    server: SocketAddrV4,
    isn: u32,
) -> u32 {
    indicate(t, &segment(client, server, TcpControl::Syn, isn, None, &[]));
    let ours = syn_ack(recorder, client).wrapping_add(1);
    let ack = segment(
        client,
        server,
        TcpControl::None,
        isn.wrapping_add(1),
        Some(ours),
        &[],
    );
    indicate(t, &ack);
    ours
}

/// Ends a test whose listening `address` never gave `endpoint`'s TDI_LISTEN a connection:
/// closing the address cancels the listen; then the endpoint closes, the recorded frames go,
/// and the driver unloads clean.
pub fn close_unused_listener(
    t: Loaded,
    recorder: &Recorder,
    address: tcpip::host::Handle,
    endpoint: tcpip::host::Handle,
    listen: crate::tdi_support::PendingRequest,
) {
    assert!(!listen.is_complete());
    t.close(address);
    assert_eq!(listen.wait().status, NtStatus::CANCELLED);
    t.close(endpoint);
    recorder.forget();
    t.unload();
}
