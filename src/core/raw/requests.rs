//! The TDI requests on raw IP address files, and the raw layer's part of the protocol pass
//! (datagrams copied to the files on the way in, queued sends out), as methods of the core.
//! Everything runs under the core lock at DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use crate::core::address::{Address, Protocol};
use crate::core::counters::metered_links;
use crate::core::ethernet::Wire;
use crate::core::inbox::{Bounds, Delivered};
use crate::core::oversize::Carried;
use crate::core::ports::Binding;
use crate::core::raw::Raw;
use crate::core::raw::endpoint::{Endpoint, PendingSend};
use crate::core::sender::Flushed;
use crate::core::slab::{Key, Slab};
use crate::core::sockets::Route;
use crate::core::state::events::offer_datagram;
use crate::core::state::{Completer, Core};
use crate::core::udp::Arrival;
use crate::core::udp::endpoint::Leg;
use crate::nt::NtStatus;
use crate::nt::irp::{IrpId, PendingIrp};
use crate::nt::pool;
use crate::nt::process::ProcessOwner;
use crate::tdi::TransportAddress;
use core::net::{Ipv4Addr, SocketAddrV4};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::Duration;
use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv4Repr};

/// The TTL of the datagrams a raw file sends without `IP_HDRINCL` (Windows' default).
const DEFAULT_TTL: u8 = 128;

/// How often a packet waiting for an Ethernet neighbour is retried.
const RETRY_INTERVAL: Duration = Duration::from_millis(10);

impl Core {
    /// Opens a raw address file for IP protocol `protocol` on `address` (its port is
    /// ignored). Returns the address table index. DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn bind_raw_address(
        &mut self,
        address: TransportAddress,
        protocol: u8,
        owner: ProcessOwner,
    ) -> Result<u32, NtStatus> {
        pool::try_reserve(&mut self.raw.files, 1)?;
        let endpoint = pool::try_box(Endpoint::new(protocol))?;
        let serial = self.take_serial();
        let key = self.addresses.try_insert(Address {
            protocol: Protocol::Raw(protocol),
            binding: Binding::portless(address.ip),
            refs: 1,
            file_open: true,
            listener: None,
            datagram: None,
            raw: Some(endpoint),
            serial,
            owner,
        })?;
        self.raw.files.push(key);
        Ok(key.index)
    }

    /// Forgets a raw address file when its last reference goes.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn unbind_raw_address(&mut self, key: Key) {
        self.raw.files.retain(|k| *k != key);
        self.raw.sending.retain(|k| *k != key);
    }

    /// IRP_MJ_CLOSE of a raw address file: its pending requests complete with
    /// `STATUS_CANCELLED`. DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn close_raw(&mut self, key: Key, c: &Completer<'_>) {
        // The file is already marked closed here: reach its endpoint directly.
        let endpoint = self
            .addresses
            .get_mut(key)
            .and_then(|a| a.raw.as_deref_mut());
        if let Some(endpoint) = endpoint {
            for irp in endpoint.drain_irps() {
                c.done(irp, NtStatus::CANCELLED, 0);
            }
        }
    }

    /// Sets `IP_HDRINCL` (`AO_OPTION_IP_HDRINCL`) on raw address file `address`: whether the
    /// data of its sends includes the IPv4 header. `STATUS_INVALID_PARAMETER` for a file that
    /// is not raw IP. DISPATCH_LEVEL, under the core lock.
    pub fn set_header_include(&mut self, address: u32, enabled: bool) -> NtStatus {
        let endpoint = self
            .addresses
            .key_at(address)
            .and_then(|key| raw_at(&mut self.addresses, key));
        match endpoint {
            Some(endpoint) => {
                endpoint.header_include = enabled;
                NtStatus::SUCCESS
            }
            None => NtStatus::INVALID_PARAMETER,
        }
    }

    /// Whether address file `address` is a raw one. DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn is_raw(&self, address: u32) -> bool {
        self.addresses
            .key_at(address)
            .and_then(|key| self.addresses.get(key))
            .is_some_and(|a| a.raw.is_some() && a.file_open)
    }

    /// TDI_RECEIVE_DATAGRAM on a raw address file. DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn receive_raw(
        &mut self,
        address: u32,
        length: u32,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let endpoint = self
            .addresses
            .key_at(address)
            .and_then(|key| raw_at(&mut self.addresses, key));
        match endpoint {
            Some(endpoint) => {
                let truncated = endpoint.inbox.receive(irp, length as usize, c);
                self.raw.stats.truncated += u64::from(truncated);
            }
            None => c.done(irp, NtStatus::INVALID_ADDRESS, 0),
        }
    }

    /// TDI_SEND_DATAGRAM on a raw address file: builds the packet (or takes the caller's,
    /// with `IP_HDRINCL`), routes it, and queues it for the next egress.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn send_raw(
        &mut self,
        address: u32,
        remote: SocketAddrV4,
        length: u32,
        irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let length = length as usize;
        let built = self.raw_packet(address, *remote.ip(), length, &irp);
        let (key, packet, leg, oversized) = match built {
            Ok(built) => built,
            Err(status) => return c.done(irp, status, 0),
        };
        if oversized {
            // Past the link's MTU: the core's fragmenting sender takes it, and the send
            // completes at once, as UDP's do.
            let dst = Ipv4Packet::new_unchecked(&packet[..]).dst_addr();
            match leg {
                Leg::Loopback if self.oversize_loopback(&packet) => {
                    self.raw.stats.datagrams_out += 1;
                }
                Leg::Ethernet(_) if self.oversize_ethernet(packet, dst, Carried::Raw) => {}
                _ => self.raw.stats.send_dropped += 1,
            }
            return c.done(irp, NtStatus::SUCCESS, length);
        }
        if let Err(status) = self.raw.mark_sending(key) {
            return c.done(irp, status, 0);
        }
        let send = PendingSend {
            irp,
            packet,
            leg,
            length,
        };
        let queued = match raw_at(&mut self.addresses, key) {
            Some(endpoint) => endpoint.queue_send(send),
            None => Err((send.irp, NtStatus::INVALID_ADDRESS)),
        };
        if let Err((irp, status)) = queued {
            c.done(irp, status, 0);
        }
    }

    /// The packet of a raw send of `length` bytes from `irp`'s buffer to `dst`, with the
    /// address file's key, the link it leaves by, and whether it is past that link's MTU
    /// (`STATUS_INVALID_BUFFER_SIZE` past the largest IPv4 packet, or past the MTU with the
    /// caller's own header asking not to fragment). DISPATCH_LEVEL, under the core lock.
    fn raw_packet(
        &self,
        address: u32,
        dst: Ipv4Addr,
        length: usize,
        irp: &PendingIrp,
    ) -> Result<(Key, alloc::vec::Vec<u8>, Leg, bool), NtStatus> {
        let key = self
            .addresses
            .key_at(address)
            .ok_or(NtStatus::INVALID_ADDRESS)?;
        let entry = self.addresses.get(key).ok_or(NtStatus::INVALID_ADDRESS)?;
        let endpoint = entry.raw.as_deref().ok_or(NtStatus::INVALID_ADDRESS)?;
        let mdl = irp.irp().mdl();
        if length > mdl.as_ref().map_or(0, |mdl| mdl.len()) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let header: usize = if endpoint.header_include { 0 } else { 20 };
        let total = header
            .checked_add(length)
            .ok_or(NtStatus::INVALID_BUFFER_SIZE)?;
        let mut packet = pool::try_zeroed(total)?;
        if let (Some(mdl), Some(data)) = (mdl, packet.get_mut(header..)) {
            mdl.read(0, data)?;
        }
        let dst = if endpoint.header_include {
            let view =
                Ipv4Packet::new_checked(&packet[..]).map_err(|_| NtStatus::INVALID_PARAMETER)?;
            view.dst_addr()
        } else {
            dst
        };
        if dst.is_unspecified() {
            return Err(NtStatus::INVALID_ADDRESS);
        }
        let source = self.source_for(entry.ip(), dst)?;
        let (leg, mtu) = match self.route_to(dst) {
            Route::Loopback => (Leg::Loopback, self.device.mtu()),
            Route::Ethernet(index) => (Leg::Ethernet(index), self.mtu_of(index).unwrap_or(0)),
        };
        let broadcast = self.broadcast_route(dst).is_some();
        if mtu == 0 && !broadcast {
            return Err(NtStatus::HOST_UNREACHABLE);
        }
        let oversized = packet.len() > mtu.min(self.raw.sender.largest());
        if packet.len() > usize::from(u16::MAX) {
            return Err(NtStatus::INVALID_BUFFER_SIZE);
        }
        let mut view = Ipv4Packet::new_unchecked(&mut packet[..]);
        if oversized && endpoint.header_include && view.dont_frag() {
            return Err(NtStatus::INVALID_BUFFER_SIZE);
        }
        if endpoint.header_include {
            if view.src_addr().is_unspecified() {
                view.set_src_addr(source);
            }
        } else {
            let ip = Ipv4Repr {
                src_addr: source,
                dst_addr: dst,
                next_header: IpProtocol::from(endpoint.protocol),
                payload_len: length,
                hop_limit: DEFAULT_TTL,
            };
            ip.emit(&mut view, &ChecksumCapabilities::default());
        }
        Ok((key, packet, leg, oversized))
    }

    /// Unlinks the pending request `id` of a raw address file (for its cancel routine).
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn cancel_raw(&mut self, id: IrpId) -> Option<PendingIrp> {
        self.addresses
            .iter_mut()
            .filter_map(|(_, address)| address.raw.as_deref_mut())
            .find_map(|endpoint| endpoint.take_irp(id))
    }

    /// Moves the queued raw sends out, one packet at a time; each completes with its length
    /// once its packet left. DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn raw_egress(
        &mut self,
        wires: &mut [Option<Wire<'_>>],
        c: &Completer<'_>,
    ) {
        let raw = &mut self.raw;
        raw.retry_at = None;
        if raw.sending.is_empty() {
            return;
        }
        metered_links!(links = self, wires);
        let addresses = &mut self.addresses;
        let mut sending = core::mem::take(&mut raw.sending);
        sending.retain(|key| {
            loop {
                match raw.sender.flush(&mut links) {
                    Flushed::Free => {}
                    Flushed::Dropped => raw.stats.send_dropped += 1,
                    Flushed::Busy(leg) => {
                        if matches!(leg, Leg::Ethernet(_)) {
                            raw.retry_at = Some(links.now + RETRY_INTERVAL);
                        }
                        return true;
                    }
                }
                let Some(send) = raw_at(addresses, *key).and_then(Endpoint::next_send) else {
                    return false;
                };
                match raw.sender.send(&send.packet, send.leg, &mut links) {
                    Ok(_) => {
                        raw.stats.datagrams_out += 1;
                        c.done(send.irp, NtStatus::SUCCESS, send.length);
                    }
                    Err(status) => c.done(send.irp, status, 0),
                }
            }
        });
        raw.sending = sending;
    }
}

/// The raw endpoint of address file `key`, if it is an open raw file.
/// DISPATCH_LEVEL, under the core lock.
fn raw_at(addresses: &mut Slab<Address>, key: Key) -> Option<&mut Endpoint> {
    addresses
        .get_mut(key)
        .filter(|a| a.file_open)
        .and_then(|a| a.raw.as_deref_mut())
}

/// Copies a received IPv4 packet for the host (`packet`, arrived as `arrival` says) to every
/// raw address file of its protocol. Returns whether the packet is done with: some file took
/// it and the host has no protocol of its own for it. DISPATCH_LEVEL, under the core lock.
pub fn ingress(
    raw: &mut Raw,
    addresses: &mut Slab<Address>,
    packet: &[u8],
    arrival: &Arrival,
    c: &Completer<'_>,
) -> bool {
    if raw.files.is_empty() {
        return false;
    }
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return false;
    };
    let dst = ip.dst_addr();
    if ip.version() != 4
        || (arrival.checksums && !ip.verify_checksum())
        || !(arrival.is_own(dst) || arrival.is_broadcast(dst))
    {
        return false;
    }
    let protocol = u8::from(ip.next_header());
    let from = SocketAddrV4::new(ip.src_addr(), 0);
    let bounds = Bounds {
        datagrams: raw.config.queue_datagrams,
        bytes: raw.config.queue_bytes,
    };
    let length = usize::from(ip.total_len()).min(packet.len());
    let whole = packet.get(..length).unwrap_or(packet);
    let mut taken = false;
    for key in &raw.files {
        let Some(endpoint) = raw_at(addresses, *key) else {
            continue;
        };
        if endpoint.protocol != protocol {
            continue;
        }
        taken = true;
        if !endpoint.inbox.has_receives()
            && let Some(raised) = offer_datagram(c, key.index, from, whole, false)
        {
            if raised {
                raw.stats.datagrams_in += 1;
            } else {
                raw.stats.queue_full += 1;
            }
            continue;
        }
        match endpoint.inbox.deliver(from, whole, bounds, c) {
            Delivered::Received { truncated } => {
                raw.stats.datagrams_in += 1;
                raw.stats.truncated += u64::from(truncated);
            }
            Delivered::Queued => raw.stats.datagrams_in += 1,
            Delivered::Dropped => raw.stats.queue_full += 1,
        }
    }
    taken
        && !matches!(
            ip.next_header(),
            IpProtocol::Icmp | IpProtocol::Udp | IpProtocol::Tcp
        )
}
