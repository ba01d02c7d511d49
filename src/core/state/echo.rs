//! ICMP echo requests (`IOCTL_ICMP_ECHO_REQUEST`, `ping`): each request gets a smoltcp ICMP
//! socket of its own, bound to an identifier of its own, in a set of its own; it leaves on the
//! route to its destination (the loopback answers it through smoltcp's automatic echo reply),
//! its reply is handed to that socket alone, and the request completes with the reply or at
//! its deadline with `IP_REQ_TIMED_OUT`. Runs under the core lock at DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use super::{Completer, Core};
use crate::core::counters::{Meter, Metered};
use crate::core::ethernet::Port;
use crate::core::sockets::Route;
use crate::link::ethernet::EthernetDevice;
use crate::nt::NtStatus;
use crate::nt::irp::{IrpId, PendingIrp};
use crate::nt::pool;
use crate::tdi::echo::{EchoReply, EchoRequest, IP_SUCCESS, emit_reply, emit_timeout};
use alloc::vec::Vec;
use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::icmp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet};

/// One echo request in flight.
struct Echo {
    irp: PendingIrp,
    set: SocketSet<'static>,
    handle: SocketHandle,
    ident: u16,
    route: Route,
    /// How long the request waits for its reply.
    timeout: Duration,
    /// When it left (the first pass after it was applied: requests are applied with the
    /// time of the previous pass, which may be long gone on an idle stack) and its deadline.
    sent: Option<(Instant, Instant)>,
    /// The output buffer: its length and the caller's address of it.
    output_len: usize,
    user_buffer: usize,
    /// The TTL of the reply, read off its IPv4 header on the way in.
    reply_ttl: u8,
}

/// The echo requests in flight.
#[derive(Default)]
pub struct Echoes {
    list: Vec<Echo>,
    next_ident: u16,
}

impl Echoes {
    /// The echo request a received IPv4 packet answers, if it is an echo reply to one of
    /// them (its TTL is kept for the reply); the caller then lets that request's socket read
    /// the frame. DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn reply_for(&mut self, packet: Option<&[u8]>) -> Option<usize> {
        let (ident, ttl) = packet.and_then(echo_reply_ident)?;
        let index = self.list.iter().position(|e| e.ident == ident)?;
        if let Some(echo) = self.list.get_mut(index) {
            echo.reply_ttl = ttl;
        }
        Some(index)
    }

    /// The socket set of echo request `index`, to receive its reply into.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn set_mut(&mut self, index: usize) -> Option<&mut SocketSet<'static>> {
        self.list.get_mut(index).map(|echo| &mut echo.set)
    }
}

/// Whether `packet` (IPv4) is an echo reply for identifier `ident`, and its TTL. Any IRQL.
fn echo_reply_ident(packet: &[u8]) -> Option<(u16, u8)> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.next_header() != IpProtocol::Icmp || ip.frag_offset() != 0 || ip.more_frags() {
        return None;
    }
    let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    match Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::ignored()).ok()? {
        Icmpv4Repr::EchoReply { ident, .. } => Some((ident, ip.hop_limit())),
        _ => None,
    }
}

impl Core {
    /// Starts an echo request: `irp`'s system buffer holds the `ICMP_ECHO_REQUEST` and its
    /// data (`input_len` bytes). Completes the IRP at once if it cannot be sent.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn start_echo(
        &mut self,
        input_len: usize,
        output_len: usize,
        user_buffer: usize,
        mut irp: PendingIrp,
        c: &Completer<'_>,
    ) {
        let input = irp.irp_mut().system_buffer(input_len);
        let request = match EchoRequest::parse(input, output_len) {
            Ok(request) => request,
            Err(status) => return c.done(irp, status, 0),
        };
        let route = self.route_to(request.destination);
        if route == Route::Ethernet && (self.ethernet.is_none() || self.configured().is_none()) {
            return c.done(irp, NtStatus::NETWORK_UNREACHABLE, 0);
        }
        let ident = self.echoes.next_ident;
        self.echoes.next_ident = ident.wrapping_add(1);
        let socket = irp
            .irp_mut()
            .system_buffer(input_len)
            .get(request.data.clone())
            .ok_or(NtStatus::INVALID_PARAMETER)
            .and_then(|data| echo_socket(ident, &request, data));
        let (set, handle) = match socket.and_then(in_own_set) {
            Ok(socket) => socket,
            Err(status) => return c.done(irp, status, 0),
        };
        let timeout = Duration::from_millis(u64::from(request.timeout_ms));
        let echo = Echo {
            irp,
            set,
            handle,
            ident,
            route,
            timeout,
            sent: None,
            output_len,
            user_buffer,
            reply_ttl: 0,
        };
        if let Err(status) = pool::try_reserve(&mut self.echoes.list, 1) {
            return c.done(echo.irp, status, 0);
        }
        self.echoes.list.push(echo);
    }

    /// Sends what the echo sockets hold, each on its route, and completes the requests that
    /// have their reply or whose deadline has passed. DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn echo_pass(
        &mut self,
        mut port: Option<&mut Port>,
        mut device: Option<&mut EthernetDevice<'_>>,
        c: &Completer<'_>,
    ) {
        let now = self.now;
        let mut index = 0;
        while let Some(echo) = self.echoes.list.get_mut(index) {
            let (sent, deadline) = *echo.sent.get_or_insert((now, now + echo.timeout));
            match (echo.route, port.as_deref_mut(), device.as_deref_mut()) {
                (Route::Loopback, _, _) => {
                    let meter = Meter {
                        layers: &self.counters,
                        link: &self.loopback_link,
                    };
                    let mut loopback = Metered {
                        device: &mut self.device,
                        meter,
                    };
                    self.iface.poll_egress(now, &mut loopback, &mut echo.set);
                }
                (Route::Ethernet, Some(port), Some(device)) => {
                    let meter = Meter {
                        layers: &self.counters,
                        link: &port.link,
                    };
                    let mut device = Metered { device, meter };
                    port.iface.poll_egress(now, &mut device, &mut echo.set);
                }
                (Route::Ethernet, ..) => {}
            }
            let replied = echo
                .set
                .get_mut::<icmp::Socket<'static>>(echo.handle)
                .can_recv();
            if !replied && now < deadline {
                index += 1;
                continue;
            }
            let Echo {
                mut irp,
                mut set,
                handle,
                output_len,
                user_buffer,
                reply_ttl,
                ..
            } = self.echoes.list.swap_remove(index);
            let out = irp.irp_mut().system_buffer(output_len);
            let (status, information) = match set.get_mut::<icmp::Socket<'static>>(handle).recv() {
                Ok((packet, IpAddress::Ipv4(from))) => {
                    let reply = EchoReply {
                        from,
                        status: IP_SUCCESS,
                        round_trip_ms: u32::try_from((now - sent).total_millis())
                            .unwrap_or(u32::MAX),
                        ttl: reply_ttl,
                    };
                    let data = packet.get(8..).unwrap_or_default();
                    (
                        NtStatus::SUCCESS,
                        emit_reply(&reply, data, user_buffer, out),
                    )
                }
                Err(_) => (NtStatus::TIMEOUT, emit_timeout(out)),
            };
            c.done(irp, status, information);
        }
    }

    /// The earliest deadline of the echo requests in flight. DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn echo_poll_at(&self) -> Option<Instant> {
        let deadlines = self.echoes.list.iter().filter_map(|echo| echo.sent);
        deadlines.map(|(_, deadline)| deadline).min()
    }

    /// Takes the echo request with IRP `id` for its cancel routine.
    /// DISPATCH_LEVEL, under the core lock.
    pub(in crate::core) fn cancel_echo(&mut self, id: IrpId) -> Option<PendingIrp> {
        let index = self
            .echoes
            .list
            .iter()
            .position(|echo| echo.irp.id() == id)?;
        Some(self.echoes.list.swap_remove(index).irp)
    }
}

/// An ICMP socket bound to `ident` holding the echo request, ready to leave. IRQL ≤ DISPATCH_LEVEL.
fn echo_socket(
    ident: u16,
    request: &EchoRequest,
    data: &[u8],
) -> Result<icmp::Socket<'static>, NtStatus> {
    let size = data.len() + 8;
    let buffer = |size| -> Result<icmp::PacketBuffer<'static>, NtStatus> {
        let mut metadata = pool::try_vec(1)?;
        metadata.push(icmp::PacketMetadata::EMPTY);
        Ok(icmp::PacketBuffer::new(metadata, pool::try_zeroed(size)?))
    };
    let mut socket = icmp::Socket::new(buffer(size)?, buffer(size)?);
    socket
        .bind(icmp::Endpoint::Ident(ident))
        .map_err(|_| NtStatus::INVALID_PARAMETER)?;
    socket.set_hop_limit(request.ttl);
    let repr = Icmpv4Repr::EchoRequest {
        ident,
        seq_no: 1,
        data,
    };
    let destination = IpAddress::Ipv4(request.destination);
    let bytes = socket
        .send(repr.buffer_len(), destination)
        .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
    let mut packet = Icmpv4Packet::new_unchecked(bytes);
    repr.emit(&mut packet, &ChecksumCapabilities::default());
    Ok(socket)
}

/// `socket` alone in a set of its own. IRQL ≤ DISPATCH_LEVEL.
fn in_own_set(
    socket: icmp::Socket<'static>,
) -> Result<(SocketSet<'static>, SocketHandle), NtStatus> {
    let mut storage: Vec<SocketStorage<'static>> = pool::try_vec(1)?;
    storage.push(SocketStorage::EMPTY);
    let mut set = SocketSet::new(storage);
    let handle = set.add(socket);
    Ok((set, handle))
}
