//! Static routes: what `route add` (iphlpapi's `CreateIpForwardEntry`) installs through
//! `IOCTL_TCP_SET_INFORMATION_EX`, kept by the core and applied to the smoltcp interface of the
//! route's interface whenever an adapter is bound there. The default route is the interface's
//! gateway; the on-link
//! subnet and loopback routes follow from the addresses and are not stored here.
#![forbid(unsafe_code)]

use crate::nt::NtStatus;
use crate::nt::pool;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use smoltcp::iface::{Interface, Route};
use smoltcp::wire::{IpAddress, IpCidr, Ipv4Cidr};

/// The most static routes (smoltcp's route table holds `iface-max-route-count` entries, the
/// default route included).
pub const MAX_ROUTES: usize = 7;

/// Whether `ip` can be a gateway: a next hop the link resolves to one station, so not
/// 0.0.0.0, 255.255.255.255 or a multicast group. smoltcp asserts that a next hop is unicast
/// (its neighbor cache and route lookup), so a route through any other address would panic
/// — a bugcheck — at the first packet sent through it. Any IRQL.
pub fn is_gateway(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
}

/// One static route: packets for `destination` go through `gateway` on `interface`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticRoute {
    pub interface: u32,
    pub destination: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub metric: u32,
}

/// The static routes, in the order they were added.
#[derive(Default)]
pub struct StaticRoutes {
    routes: Vec<StaticRoute>,
}

impl StaticRoutes {
    /// The routes. Any IRQL.
    pub fn iter(&self) -> impl Iterator<Item = &StaticRoute> {
        self.routes.iter()
    }

    /// Adds `route`, or replaces the route to the same destination. `STATUS_INVALID_PARAMETER`
    /// for a gateway that is no [`is_gateway`]; `STATUS_INSUFFICIENT_RESOURCES` when
    /// [`MAX_ROUTES`] are installed or the pool is exhausted. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn add(&mut self, route: StaticRoute) -> Result<(), NtStatus> {
        if !is_gateway(route.gateway) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let same =
            |r: &&mut StaticRoute| r.destination == route.destination && r.prefix == route.prefix;
        if let Some(existing) = self.routes.iter_mut().find(same) {
            *existing = route;
            return Ok(());
        }
        if self.routes.len() >= MAX_ROUTES {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        pool::try_push(&mut self.routes, route)
    }

    /// Removes the routes to `destination` (through `gateway`, unless it is unspecified),
    /// whatever their prefix: ReactOS's iphlpapi sends a delete with the mask
    /// 255.255.255.255 whatever the route's (`deleteIpForwardEntry`). Whether one went. Any
    /// IRQL.
    pub fn remove(&mut self, destination: Ipv4Addr, gateway: Ipv4Addr) -> bool {
        let before = self.routes.len();
        self.routes.retain(|r| {
            r.destination != destination || !(gateway.is_unspecified() || r.gateway == gateway)
        });
        self.routes.len() != before
    }

    /// Removes the routes through interface `interface` (its adapter went). Any IRQL.
    pub fn remove_interface(&mut self, interface: u32) {
        self.routes.retain(|r| r.interface != interface);
    }

    /// Replaces `iface`'s routes with the routes through interface `interface` and the default
    /// route through `gateway`. Any IRQL.
    pub fn apply(&self, iface: &mut Interface, gateway: Option<Ipv4Addr>, interface: u32) {
        iface.routes_mut().update(|table| {
            table.clear();
            for route in self.routes.iter().filter(|r| r.interface == interface) {
                let cidr = Ipv4Cidr::new(route.destination, route.prefix);
                // The table has room for MAX_ROUTES plus the default route.
                let _ = table.push(Route {
                    cidr: IpCidr::Ipv4(cidr),
                    via_router: IpAddress::Ipv4(route.gateway),
                    preferred_until: None,
                    expires_at: None,
                });
            }
            if let Some(gateway) = gateway {
                let _ = table.push(Route::new_ipv4_gateway(gateway));
            }
        });
    }
}
