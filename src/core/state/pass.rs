//! One pass of the core over its links (ingress, egress, the follow-up of sockets with events),
//! and when the next pass is due. Run under the core lock at
//! DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use super::*;

impl Core {
    /// One pass of the protocol over the sockets it concerns: those whose deadline has come
    /// and a budget of received frames from each link; then their transmissions (ACKs,
    /// timeouts) and the queued UDP sends, the follow-up of every socket with an event for its
    /// owner (connection, listener, orphan), and the transmissions that follow-up caused.
    /// Returns whether work remains (frames waiting, events raised by the last transmissions,
    /// UDP sends past their budget): the caller runs another pass or re-queues its DPC.
    pub fn poll(&mut self, now: Instant, c: &Completer<'_>) -> bool {
        self.now = now;
        // Each bound interface's port is lent to the pass with a device over its link.
        let mut ports: [Option<Box<Port>>; MAX_INTERFACES] =
            core::array::from_fn(|slot| self.slots.get_mut(slot).and_then(|s| s.port.take()));
        let links: [Option<Arc<Link>>; MAX_INTERFACES] = core::array::from_fn(|slot| {
            ports
                .get(slot)
                .and_then(Option::as_ref)
                .map(|port| port.wire.clone())
        });
        let mut wires: [Option<Wire<'_>>; MAX_INTERFACES] = Default::default();
        for ((wire, port), link) in wires.iter_mut().zip(ports.iter_mut()).zip(&links) {
            if let (Some(port), Some(link)) = (port.as_deref_mut(), link) {
                let tx = core::mem::take(&mut port.tx);
                *wire = link.device(tx).ok().map(|device| Wire { port, device });
            }
        }
        self.sockets.expire(now);
        self.sockets.lookaside_mut().trim(now);
        for wire in wires.iter_mut().flatten() {
            arp_entries::refresh(wire.port, now);
        }
        self.icmp_expire(c);
        self.fragments.expire(now);
        for _ in 0..self.config.frame_budget {
            if !self.ingress_loopback(c) {
                break;
            }
        }
        for wire in wires.iter_mut().flatten() {
            let port = &mut *wire.port;
            for _ in 0..self.config.frame_budget {
                if let Some(frame) = wire.device.peek_front() {
                    let ours = port
                        .iface
                        .ip_addrs()
                        .first()
                        .map(|&IpCidr::Ipv4(cidr)| cidr);
                    port.neighbors.observe(frame, ours, self.now);
                    self.resolutions.observe(frame, port.index);
                }
                if !self.ingress_ethernet(port, &mut wire.device, c) {
                    break;
                }
            }
        }
        self.egress(&mut wires);
        let udp_more = self.udp_egress(&mut wires, c);
        self.oversize_egress(&mut wires);
        self.icmp_egress(&mut wires, c);
        self.resolve_egress(&mut wires, c);
        self.raw_egress(&mut wires, c);
        while let Some((socket, owner)) = self.sockets.next_event() {
            match owner {
                Owner::Connection(key) => self.service(key, c),
                Owner::Listener(key) => self.maintain_listener(key, c),
                Owner::Orphan { port } => self.reap(socket, port),
            }
        }
        self.raise_retries(c);
        self.egress(&mut wires);
        let mut waiting = 0;
        for wire in wires.iter_mut().filter_map(Option::take) {
            waiting += wire.device.pending();
            wire.port.tx = wire.device.into_transmit_buffer();
        }
        drop(wires);
        for (slot, port) in self.slots.iter_mut().zip(ports) {
            slot.port = port;
        }
        self.device.pending() > 0 || waiting > 0 || self.sockets.has_events() || udp_more
    }

    /// Lets the touched sockets transmit, each on its link.
    pub(super) fn egress(&mut self, wires: &mut [Option<Wire<'_>>]) {
        let meter = Meter {
            layers: &self.counters,
            link: &self.loopback_link,
        };
        let mut loopback = Metered {
            device: &mut self.device,
            meter,
        };
        self.sockets.egress(
            (&mut self.iface, &mut loopback),
            wires,
            &self.counters,
            self.now,
        );
    }

    /// When the core next needs a pass if nothing arrives: the earliest socket deadline,
    /// UDP's retry of a datagram waiting for its neighbour, or the lookaside's next trim.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let tcp = self.sockets.next_deadline(now);
        [
            self.udp_poll_at(),
            self.icmp.poll_at(),
            self.resolutions.poll_at(),
            self.slots
                .iter()
                .filter_map(|slot| slot.port.as_ref()?.static_refresh_at)
                .min(),
            self.raw.poll_at(),
            self.fragments.poll_at(),
            self.sockets.lookaside_mut().trim_at(now),
        ]
        .into_iter()
        .fold(tcp, |earliest, next| match (earliest, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}
