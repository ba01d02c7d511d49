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
    /// Sends `length` bytes of `irp`'s buffer from `from` (the source address and the address
    /// file's port) to `remote` as fragments: written into the loopback device at once
    /// (`loopback`), or queued for the Ethernet link, both through the core's fragmenting
    /// sender (`core::oversize`). The send completes with its length at once, as UDP's sends
    /// do; a datagram that cannot leave is counted in `UdpStats::send_dropped`.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn send_fragmented(
        &mut self,
        from: SocketAddrV4,
        remote: SocketAddrV4,
        length: usize,
        loopback: bool,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let packet = match build(from.port(), *from.ip(), remote, length, &irp) {
            Ok(packet) => packet,
            Err(status) => return c.done(irp, status, 0),
        };
        if loopback && self.oversize_loopback(&packet) {
            self.udp.stats.datagrams_out += 1;
        } else if loopback || !self.oversize_ethernet(packet, *remote.ip(), Carried::Udp) {
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
