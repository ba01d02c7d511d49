//! UDP datagrams larger than their link's MTU allows: the whole IPv4 packet is built here and
//! handed to the core's fragmenting sender ([`crate::core::oversize`]). The send completes with
//! its length at once, as UDP's sends do; a datagram that cannot leave is counted in
//! `UdpStats::send_dropped`. Runs under the core lock at DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use crate::core::oversize::Carried;
use crate::core::state::{Completer, Core};
use crate::nt::NtStatus;
use crate::nt::irp::PendingIrp;
use crate::nt::pool;
use core::net::{Ipv4Addr, SocketAddrV4};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};

/// The TTL of the datagrams the host sends itself.
const TTL: u8 = 64;

impl Core {
    /// Sends `length` bytes of `irp`'s buffer from `local` (the address file's port, source
    /// `source`) to `remote` on the loopback as fragments, and completes the send with its
    /// length. A loopback without room for every fragment drops the datagram (counted in
    /// `UdpStats::send_dropped`; the send still completes, as UDP's sends do).
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn send_fragmented(
        &mut self,
        local: u16,
        source: Ipv4Addr,
        remote: SocketAddrV4,
        length: usize,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let packet = match build(local, source, remote, length, &irp) {
            Ok(packet) => packet,
            Err(status) => return c.done(irp, status, 0),
        };
        if self.oversize_loopback(&packet) {
            self.udp.stats.datagrams_out += 1;
        } else {
            self.udp.stats.send_dropped += 1;
        }
        c.done(irp, NtStatus::SUCCESS, length);
    }

    /// Queues a UDP datagram larger than the Ethernet MTU for the core's fragmenting sender
    /// (`core::oversize`), and completes the send with its length. DISPATCH_LEVEL, under the
    /// core lock.
    pub(in crate::core) fn send_large_ethernet(
        &mut self,
        local: u16,
        source: Ipv4Addr,
        remote: SocketAddrV4,
        length: usize,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let packet = match build(local, source, remote, length, &irp) {
            Ok(packet) => packet,
            Err(status) => return c.done(irp, status, 0),
        };
        if !self.oversize_ethernet(packet, *remote.ip(), Carried::Udp) {
            self.udp.stats.send_dropped += 1;
        }
        c.done(irp, NtStatus::SUCCESS, length);
    }
}

/// The whole IPv4 packet of a UDP datagram of `length` bytes from `irp`'s buffer, checksum
/// included. IRQL ≤ DISPATCH_LEVEL.
fn build(
    local: u16,
    source: Ipv4Addr,
    remote: SocketAddrV4,
    length: usize,
    irp: &PendingIrp,
) -> Result<alloc::vec::Vec<u8>, NtStatus> {
    let udp = UdpRepr {
        src_port: local,
        dst_port: remote.port(),
    };
    let ip = Ipv4Repr {
        src_addr: source,
        dst_addr: *remote.ip(),
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + length,
        hop_limit: TTL,
    };
    let mut packet = pool::try_zeroed(ip.buffer_len() + ip.payload_len)?;
    let caps = ChecksumCapabilities::default();
    let mut view = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.emit(&mut view, &caps);
    let mut copied = Ok(0);
    udp.emit(
        &mut UdpPacket::new_unchecked(view.payload_mut()),
        &IpAddress::Ipv4(source),
        &IpAddress::Ipv4(*remote.ip()),
        length,
        |buffer| {
            copied = match irp.irp().mdl() {
                Some(mdl) => mdl.read(0, buffer),
                None => Ok(0),
            }
        },
        &caps,
    );
    copied?;
    Ok(packet)
}
