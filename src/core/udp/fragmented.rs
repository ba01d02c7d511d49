//! UDP datagrams larger than the loopback's MTU allows, sent to the host itself as IPv4
//! fragments ([`crate::core::fragment::split`]) written straight into the loopback device, and
//! reassembled on the way in. Runs under the core lock at DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use crate::core::fragment;
use crate::core::state::{Completer, Core};
use crate::core::udp::HEADERS;
use crate::nt::NtStatus;
use crate::nt::irp::PendingIrp;
use crate::nt::pool;
use core::net::{Ipv4Addr, SocketAddrV4};
use smoltcp::phy::{ChecksumCapabilities, Device, TxToken};
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
        let packet = build(local, source, remote, length, &irp);
        let packet = match packet {
            Ok(packet) => packet,
            Err(status) => return c.done(irp, status, 0),
        };
        let mtu = self.device.mtu();
        let pieces = packet.len().div_ceil(mtu.saturating_sub(HEADERS).max(8));
        let room = self
            .device
            .frames()
            .saturating_sub(self.device.pending() + 1);
        let ident = self.fragments.next_ident();
        let now = self.now;
        let device = &mut self.device;
        let sent = room > pieces
            && fragment::split(&packet, mtu, ident, |len, write| {
                match device.transmit(now) {
                    Some(token) => {
                        token.consume(len, |buffer| write(buffer));
                        true
                    }
                    None => false,
                }
            })
            .inspect(|count| self.fragments.stats.fragments_out += *count as u64)
            .is_ok();
        if sent {
            self.fragments.stats.fragmented += 1;
            self.udp.stats.datagrams_out += 1;
        } else {
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
