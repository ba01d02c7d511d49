//! Shared by the NDIS binding tests: a recording model miniport, the driver loaded over the
//! kernel's NDIS model, and the frames the tests indicate (ARP requests, ICMP echo requests).
#![allow(dead_code, reason = "each test crate uses a different subset")]

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tcpip::host::{Config, Driver, Kernel, RegValue};
use tcpip::link::ethernet::Adapter;
use tcpip::nt::entry::driver_entry;

/// The peer on the wire.
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The driver's static address in the tests that configure one.
pub const DRIVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// The device name of test adapter `n`.
pub fn adapter_name(n: u8) -> String {
    format!("\\Device\\{{00000000-0000-0000-0000-0000000000{n:02X}}}")
}

/// A miniport's wire: records every frame the driver sends.
pub struct Wire {
    mac: [u8; 6],
    sent: Mutex<Vec<Vec<u8>>>,
}

impl Wire {
    pub fn new(last: u8) -> Arc<Wire> {
        Arc::new(Wire {
            mac: [0x02, 0x54, 0x43, 0x50, 0, last],
            sent: Mutex::new(Vec::new()),
        })
    }

    pub fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    /// The frames sent so far, taken.
    pub fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.sent.lock().unwrap())
    }

    /// Waits up to 5 s for a sent frame `accept` takes; returns what it returned.
    pub fn wait_for<T>(&self, mut accept: impl FnMut(&[u8]) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let found = self.sent.lock().unwrap().iter().find_map(|f| accept(f));
            if found.is_some() {
                return found;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

impl Adapter for Wire {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> usize {
        1500
    }

    fn transmit(&self, frame: &[u8]) -> bool {
        self.sent.lock().unwrap().push(frame.to_vec());
        true
    }
}

/// Writes a static IP configuration for adapter `n` (`Interfaces\{GUID}`), as netcfgx does.
pub fn configure_static(kernel: &Kernel, n: u8, ip: Ipv4Addr) {
    let guid = adapter_name(n).rsplit('\\').next().unwrap().to_owned();
    let key = format!(
        "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\Tcpip\\Parameters\\Interfaces\\{guid}"
    );
    kernel.set_registry_value(&key, "EnableDHCP", RegValue::Dword(0));
    kernel.set_registry_value(&key, "IPAddress", RegValue::MultiSz(vec![ip.to_string()]));
    kernel.set_registry_value(
        &key,
        "SubnetMask",
        RegValue::MultiSz(vec!["255.255.255.0".into()]),
    );
    kernel.set_registry_value(
        &key,
        "DefaultGateway",
        RegValue::MultiSz(vec![PEER_IP.to_string()]),
    );
}

/// Writes `EnableDHCP` = 1 for adapter `n`.
pub fn configure_dhcp(kernel: &Kernel, n: u8) {
    let guid = adapter_name(n).rsplit('\\').next().unwrap().to_owned();
    let key = format!(
        "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\Tcpip\\Parameters\\Interfaces\\{guid}"
    );
    kernel.set_registry_value(&key, "EnableDHCP", RegValue::Dword(1));
}

/// A kernel on the real clock (the core's timers run) with the driver loaded.
pub fn kernel() -> Kernel {
    Kernel::new(Config {
        clock: tcpip::host::Clock::Real,
        ..Config::default()
    })
}

pub fn load(kernel: &Kernel) -> Driver {
    kernel.load_driver(driver_entry).expect("DriverEntry")
}

/// An ARP request from the peer for `target`.
pub fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(PEER_MAC),
        source_protocol_addr: PEER_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let ethernet = EthernetRepr {
        src_addr: EthernetAddress(PEER_MAC),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = vec![0u8; ethernet.buffer_len() + arp.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame);
    ethernet.emit(&mut eth);
    arp.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    frame
}

/// The ARP reply for `ip` in `frame`, if it is one: the MAC it gives.
pub fn arp_reply_for(frame: &[u8], ip: Ipv4Addr) -> Option<[u8; 6]> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()?;
    match arp {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr,
            source_protocol_addr,
            ..
        } if source_protocol_addr == ip => Some(source_hardware_addr.0),
        _ => None,
    }
}

/// An ICMP echo request from the peer to `target` (at `mac`) with `payload`.
pub fn echo_request(mac: [u8; 6], target: Ipv4Addr, ident: u16, payload: &[u8]) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoRequest {
        ident,
        seq_no: 1,
        data: payload,
    };
    let ip = Ipv4Repr {
        src_addr: PEER_IP,
        dst_addr: target,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let ethernet = EthernetRepr {
        src_addr: EthernetAddress(PEER_MAC),
        dst_addr: EthernetAddress(mac),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut frame = vec![0u8; ethernet.buffer_len() + ip.buffer_len() + icmp.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame);
    ethernet.emit(&mut eth);
    let caps = smoltcp::phy::ChecksumCapabilities::default();
    let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut packet, &caps);
    icmp.emit(
        &mut Icmpv4Packet::new_unchecked(packet.payload_mut()),
        &caps,
    );
    frame
}

/// The payload of the ICMP echo reply with `ident` in `frame`, if it is one.
pub fn echo_reply(frame: &[u8], ident: u16) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    match Icmpv4Repr::parse(&icmp, &smoltcp::phy::ChecksumCapabilities::default()).ok()? {
        Icmpv4Repr::EchoReply {
            ident: id, data, ..
        } if id == ident => Some(data.to_vec()),
        _ => None,
    }
}
