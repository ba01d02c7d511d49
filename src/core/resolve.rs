//! `IOCTL_QUERY_IP_HW_ADDRESS`: a neighbour's MAC address, as iphlpapi's `SendARP` asks for it
//! (and ReactOS's DHCP client before it takes a lease, to find an address already in use).
//!
//! The request names a target IPv4 address (and a source, which Windows ignores). The answer:
//! - the interface's own MAC for its own address;
//! - a live entry of the ARP cache mirror ([`crate::core::neighbors`]);
//! - otherwise the core broadcasts an ARP request for the target (from the interface's address,
//!   or from 0.0.0.0 as an RFC 5227 probe while DHCP has not set one), again every
//!   [`ASK_INTERVAL`], and answers with the sender of the first ARP packet that comes from the
//!   target, whoever it was addressed to; after [`TIMEOUT`] without one, `STATUS_UNSUCCESSFUL`.
//!
//! Statuses as Windows Server 2003 gives them (ReactOS's `SendARP` API test): the unspecified
//! address, a broadcast or a loopback target, and no answer are `STATUS_UNSUCCESSFUL`; a target
//! off the interface's subnet, or no interface, `STATUS_NETWORK_UNREACHABLE`; an answer whose MAC
//! does not fit the output (6 bytes) `STATUS_INSUFFICIENT_RESOURCES`; else `STATUS_SUCCESS` with
//! 6 bytes. Everything runs under the core lock at DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use crate::core::ethernet::{self, Wire};
use crate::core::neighbors;
use crate::core::state::{Completer, Core};
use crate::nt::NtStatus;
use crate::nt::irp::{IrpId, PendingIrp};
use crate::nt::pool;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use smoltcp::phy::{Device, TxToken};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, HardwareAddress, IpCidr};

/// How long a target has to answer (Windows' 1 s).
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// How often the ARP request is repeated while waiting.
pub const ASK_INTERVAL: Duration = Duration::from_millis(250);
/// Bytes of a MAC address: the answer.
const MAC_LEN: usize = 6;
/// Bytes of an ARP request frame.
const ARP_FRAME: usize = 42;
/// How soon a request that found no transmit buffer tries again.
const BUSY_RETRY: Duration = Duration::from_millis(10);

/// One waiting request.
struct Pending {
    irp: PendingIrp,
    /// The interface whose link the target is asked on.
    interface: u32,
    target: Ipv4Addr,
    /// Bytes of the caller's output buffer.
    room: usize,
    deadline: Instant,
    /// When the last ARP request for it went out.
    asked: Option<Instant>,
    /// The target's MAC, once an ARP packet from it was seen.
    found: Option<[u8; 6]>,
}

/// The waiting requests. IRQL ≤ DISPATCH_LEVEL, under the core lock.
#[derive(Default)]
pub struct Resolutions {
    pending: Vec<Pending>,
    /// When the next ARP request is due.
    retry_at: Option<Instant>,
}

impl Resolutions {
    /// Looks at a received frame: an ARP packet from a target someone waits for answers it.
    /// Never panics, whatever the bytes. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn observe(&mut self, frame: &[u8], interface: u32) {
        if self.pending.is_empty() {
            return;
        }
        let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
            return;
        };
        if ethernet.ethertype() != EthernetProtocol::Arp {
            return;
        }
        let Ok(packet) = ArpPacket::new_checked(ethernet.payload()) else {
            return;
        };
        let Ok(ArpRepr::EthernetIpv4 {
            source_hardware_addr,
            source_protocol_addr,
            ..
        }) = ArpRepr::parse(&packet)
        else {
            return;
        };
        if !source_hardware_addr.is_unicast() {
            return;
        }
        for pending in &mut self.pending {
            if pending.interface == interface && pending.target == source_protocol_addr {
                pending.found = Some(source_hardware_addr.0);
            }
        }
    }

    /// Unlinks the waiting request `id` (for its cancel routine). IRQL ≤ DISPATCH_LEVEL, under
    /// the core lock.
    pub fn take(&mut self, id: IrpId) -> Option<PendingIrp> {
        let index = self.pending.iter().position(|p| p.irp.id() == id)?;
        Some(self.pending.swap_remove(index).irp)
    }

    /// When a pass is next needed: the next ARP request or the earliest timeout. IRQL ≤
    /// DISPATCH_LEVEL, under the core lock.
    pub fn poll_at(&self) -> Option<Instant> {
        let deadline = self.pending.iter().map(|p| p.deadline).min();
        match (deadline, self.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Completes `irp` with `mac`, or `STATUS_INSUFFICIENT_RESOURCES` if the caller's buffer is
/// shorter than a MAC address. IRQL ≤ DISPATCH_LEVEL, under the core lock.
fn answer(mut irp: PendingIrp, room: usize, mac: [u8; 6], c: &Completer<'_>) {
    if room < MAC_LEN {
        return c.done(irp, NtStatus::INSUFFICIENT_RESOURCES, 0);
    }
    match irp.irp_mut().system_buffer(room).get_mut(..MAC_LEN) {
        Some(out) => {
            out.copy_from_slice(&mac);
            c.done(irp, NtStatus::SUCCESS, MAC_LEN);
        }
        None => c.done(irp, NtStatus::INSUFFICIENT_RESOURCES, 0),
    }
}

impl Core {
    /// IOCTL_QUERY_IP_HW_ADDRESS for `target`, into an output buffer of `room` bytes: answers
    /// at once from what is known, or waits for the target's ARP answer. DISPATCH_LEVEL, under
    /// the core lock.
    pub(in crate::core) fn resolve_neighbor(
        &mut self,
        target: Ipv4Addr,
        room: usize,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        if target.is_unspecified()
            || target.is_broadcast()
            || target.is_multicast()
            || target.is_loopback()
        {
            return c.done(irp, NtStatus::UNSUCCESSFUL, 0);
        }
        // The host's own address on any interface: that interface's MAC.
        let own = self.interfaces().find_map(|(index, slot)| {
            slot.address
                .filter(|cidr| cidr.address() == target)
                .map(|_| index)
        });
        // Else the interface whose subnet holds the target, or one with no address yet (a
        // probe from 0.0.0.0 before DHCP).
        let interface = own
            .or_else(|| self.on_link(target).map(|(index, _)| index))
            .or_else(|| {
                self.interfaces()
                    .find(|(_, slot)| slot.bound && slot.address.is_none())
                    .map(|(index, _)| index)
            });
        let Some((interface, port)) = interface.and_then(|index| {
            let port = self.slot(index)?.port.as_deref()?;
            Some((index, port))
        }) else {
            return c.done(irp, NtStatus::NETWORK_UNREACHABLE, 0);
        };
        let own_mac = match port.iface.hardware_addr() {
            HardwareAddress::Ethernet(mac) => mac.0,
            _ => return c.done(irp, NtStatus::NETWORK_UNREACHABLE, 0),
        };
        if own.is_some() {
            return answer(irp, room, own_mac, c);
        }
        if let Some(mac) = port.neighbors.lookup(target, self.now) {
            return answer(irp, room, mac, c);
        }
        if let Err(status) = pool::try_reserve(&mut self.resolutions.pending, 1) {
            return c.done(irp, status, 0);
        }
        self.resolutions.pending.push(Pending {
            irp,
            interface,
            target,
            room,
            deadline: self.now + TIMEOUT,
            asked: None,
            found: None,
        });
    }

    /// Completes the requests whose target answered (or is now in the ARP cache) and those
    /// whose time is up, and sends the ARP requests that are due. DISPATCH_LEVEL, under the
    /// core lock.
    pub(in crate::core) fn resolve_egress(
        &mut self,
        wires: &mut [Option<Wire<'_>>],
        c: &Completer<'_>,
    ) {
        let now = self.now;
        let resolutions = &mut self.resolutions;
        resolutions.retry_at = None;
        let mut index = 0;
        while let Some(pending) = resolutions.pending.get_mut(index) {
            let Some(wire) = ethernet::wire(wires, pending.interface) else {
                // The interface's adapter went.
                let done = resolutions.pending.swap_remove(index);
                c.done(done.irp, NtStatus::NETWORK_UNREACHABLE, 0);
                continue;
            };
            let own_mac = match wire.port.iface.hardware_addr() {
                HardwareAddress::Ethernet(mac) => mac.0,
                _ => [0; 6],
            };
            let source = wire
                .port
                .iface
                .ip_addrs()
                .first()
                .map_or(Ipv4Addr::UNSPECIFIED, |&IpCidr::Ipv4(cidr)| cidr.address());
            let known = pending
                .found
                .or_else(|| wire.port.neighbors.lookup(pending.target, now));
            if known.is_some() || pending.deadline <= now {
                let done = resolutions.pending.swap_remove(index);
                match known {
                    Some(mac) => answer(done.irp, done.room, mac, c),
                    None => c.done(done.irp, NtStatus::UNSUCCESSFUL, 0),
                }
                continue;
            }
            if pending.asked.is_none_or(|at| now - at >= ASK_INTERVAL)
                && let Some(token) = wire.device.transmit(now)
            {
                pending.asked = Some(now);
                token.consume(ARP_FRAME, |frame| {
                    neighbors::arp_request(frame, own_mac, source, pending.target)
                });
            }
            let next = pending
                .asked
                .map_or(now + BUSY_RETRY, |at| at + ASK_INTERVAL);
            resolutions.retry_at = Some(resolutions.retry_at.map_or(next, |r| r.min(next)));
            index += 1;
        }
    }
}
