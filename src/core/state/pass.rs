//! One pass of the core over its links (ingress, egress, the follow-up of sockets with events),
//! the Ethernet link's attachment, and when the next pass is due. Run under the core lock at
//! DISPATCH_LEVEL.
#![forbid(unsafe_code)]

use super::*;

impl Core {
    /// One pass of the protocol over the sockets it concerns: those whose deadline has come
    /// and a budget of received frames from each link; then their transmissions (ACKs,
    /// timeouts) and the queued UDP sends, the follow-up of every socket with an event for its
    /// owner (connection, listener, orphan), and the transmissions that follow-up caused.
    /// `link` is the bound Ethernet link, if any. Returns whether work remains (frames waiting,
    /// events raised by the last transmissions, UDP sends past their budget): the caller runs
    /// another pass or re-queues its DPC.
    pub fn poll(&mut self, now: Instant, c: &Completer<'_>, link: Option<&Link>) -> bool {
        self.now = now;
        let mut port = self.ethernet.take();
        let mut device = match (link, port.as_mut()) {
            (Some(link), Some(port)) => link.device(core::mem::take(&mut port.tx)).ok(),
            _ => None,
        };
        self.sockets.expire(now);
        if let Some(port) = port.as_mut() {
            arp_entries::refresh(port, now);
        }
        self.icmp_expire(c);
        self.fragments.expire(now);
        for _ in 0..self.config.frame_budget {
            if !self.ingress_loopback(c) {
                break;
            }
        }
        if let (Some(port), Some(device)) = (port.as_mut(), device.as_mut()) {
            for _ in 0..self.config.frame_budget {
                if let Some(frame) = device.peek_front() {
                    let ours = port
                        .iface
                        .ip_addrs()
                        .first()
                        .map(|&IpCidr::Ipv4(cidr)| cidr);
                    port.neighbors.observe(frame, ours, self.now);
                    self.resolutions.observe(frame);
                }
                if !self.ingress_ethernet(port, device, c) {
                    break;
                }
            }
        }
        self.egress(port.as_deref_mut(), device.as_mut());
        let udp_more = self.udp_egress(port.as_deref_mut(), device.as_mut(), c);
        self.oversize_egress(port.as_deref_mut(), device.as_mut());
        self.icmp_egress(port.as_deref_mut(), device.as_mut(), c);
        self.resolve_egress(port.as_deref_mut(), device.as_mut(), c);
        self.raw_egress(port.as_deref_mut(), device.as_mut(), c);
        while let Some((socket, owner)) = self.sockets.next_event() {
            match owner {
                Owner::Connection(key) => self.service(key, c),
                Owner::Listener(key) => self.maintain_listener(key, c),
                Owner::Orphan { port } => self.reap(socket, port),
            }
        }
        self.raise_retries(c);
        self.egress(port.as_deref_mut(), device.as_mut());
        let waiting = device.as_ref().map_or(0, EthernetDevice::pending);
        if let (Some(port), Some(device)) = (port.as_mut(), device) {
            port.tx = device.into_transmit_buffer();
        }
        self.ethernet = port;
        self.device.pending() > 0 || waiting > 0 || self.sockets.has_events() || udp_more
    }

    /// Lets the touched sockets transmit, each on its link.
    pub(super) fn egress(
        &mut self,
        port: Option<&mut Port>,
        device: Option<&mut EthernetDevice<'_>>,
    ) {
        let mut ethernet = port.zip(device).map(|(port, device)| {
            let meter = Meter {
                layers: &self.counters,
                link: &port.link,
            };
            (&mut port.iface, Metered { device, meter })
        });
        let ethernet = ethernet
            .as_mut()
            .map(|(iface, device)| (&mut **iface, device));
        let meter = Meter {
            layers: &self.counters,
            link: &self.loopback_link,
        };
        let mut loopback = Metered {
            device: &mut self.device,
            meter,
        };
        self.sockets
            .egress((&mut self.iface, &mut loopback), ethernet, self.now);
    }

    /// Binds an Ethernet link under interface 1: a smoltcp interface on it with the
    /// configured address and the default gateway. PASSIVE_LEVEL (allocates).
    pub fn attach_link(&mut self, link: &Link) -> Result<(), NtStatus> {
        let seed = self.random.next_u64();
        let configured = self.configured();
        let mut port = pool::try_box(Port::new(
            link,
            seed,
            self.now,
            configured.as_slice(),
            self.gateway,
        )?)?;
        self.routes.apply(&mut port.iface, self.gateway);
        self.ethernet = Some(port);
        Ok(())
    }

    /// Unbinds the Ethernet link; its connections can no longer transmit.
    pub fn detach_link(&mut self) {
        self.ethernet = None;
    }

    /// Sets the default gateway (reached over the Ethernet link).
    pub fn set_gateway(&mut self, gateway: Option<Ipv4Addr>) {
        self.gateway = gateway;
        if let Some(port) = self.ethernet.as_mut() {
            self.routes.apply(&mut port.iface, gateway);
        }
    }

    /// When the core next needs a pass if nothing arrives: the earliest socket deadline, or
    /// UDP's retry of a datagram waiting for its neighbour.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let tcp = self.sockets.next_deadline(now);
        [
            self.udp_poll_at(),
            self.icmp.poll_at(),
            self.resolutions.poll_at(),
            self.ethernet
                .as_ref()
                .and_then(|port| port.static_refresh_at),
            self.raw.poll_at(),
            self.fragments.poll_at(),
        ]
        .into_iter()
        .fold(tcp, |earliest, next| match (earliest, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}
