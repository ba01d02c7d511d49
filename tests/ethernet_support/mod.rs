//! A recording adapter bound under the driver (as NDIS binds a miniport): the frames the driver
//! transmits are kept for the test, and frames for the driver are indicated by the test.
#![allow(dead_code)]

use crate::tdi_support::{Loaded, loaded};
use std::net::Ipv4Addr;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
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
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
        EthernetRepr,
    };
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
    let t = loaded();
    if let Some(address) = address {
        let control = t.kernel.create_file("\\Device\\Tcp", None, 0).unwrap();
        let input = [1u32.to_le_bytes(), address.octets(), [255, 255, 255, 0]].concat();
        let mut output = [0u8; 12];
        let (status, _) =
            t.kernel
                .device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut output);
        assert_eq!(status, NtStatus::SUCCESS);
        t.close(control);
    }
    let recorder = Arc::new(Recorder::default());
    tcpip(&t)
        .stack()
        .attach_link(recorder.clone(), 64)
        .expect("attach");
    (t, recorder)
}
