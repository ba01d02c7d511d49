//! The TCP port table smoltcp lacks: who holds which local port, binding conflicts, and the
//! ephemeral port allocator.
//!
//! # Holders
//!
//! A port is held by *binders* and by *sockets*:
//! - a binder is an address file (`TdiOpenAddress`), recorded with its IP (`0.0.0.0` is the
//!   wildcard) and whether it allows sharing (`shared`: the create's ShareAccess ≠ 0, i.e.
//!   `SO_REUSEADDR`). [`PortTable::bind`] adds one and returns its [`Binding`];
//!   [`PortTable::unbind`] removes it.
//! - a socket reference is taken by the core for every smoltcp socket bound to the port
//!   ([`PortTable::acquire`]) and dropped when the core removes the socket from the
//!   `SocketSet` ([`PortTable::release`]), which may be long after the address file closed: a
//!   connection in TIME-WAIT keeps its port.
//!
//! A port is *in use* while it has any holder.
//!
//! # Binding rules
//!
//! - An explicit port conflicts with the binders already on it whose IP overlaps (equal IPs, or
//!   either one the wildcard: `0.0.0.0` overlaps every IP, two different specific IPs never
//!   overlap), unless both the existing binder and the new one are `shared`. A conflict is
//!   `STATUS_ADDRESS_ALREADY_EXISTS`.
//! - Socket references alone do not make an explicit bind fail: as on Windows, connections in
//!   TIME-WAIT do not stop a server from binding its port again. (The core must still refuse a
//!   connect whose 4-tuple matches a socket that is still alive: smoltcp cannot demultiplex two
//!   sockets with one 4-tuple.)
//! - Port 0 asks for an ephemeral port. The allocator owns 49152–65535 (RFC 6335's dynamic
//!   range, and Windows' default since Vista), starts at a point derived from the seed given to
//!   [`PortTable::new`] (from the driver's CSPRNG), and hands out the next port that is not in
//!   use at all — no binder of any IP and no socket reference, so ports held by TIME-WAIT
//!   sockets are skipped. The search resumes after the last port handed out and wraps around
//!   the range. When every port of the range is in use the bind fails with
//!   `STATUS_ADDRESS_ALREADY_EXISTS`. Explicit binds may use ports of the range; the allocator
//!   skips them like any other port in use.
//!
//! Whether the IP is one of the interface's addresses is the caller's check, not the table's.
//!
//! # Representation and cost
//!
//! A two-level table: 256 pages of 256 ports, a page allocated (fallibly) when one of its
//! ports gets its first holder and freed when its last holder goes. A port's binders are a
//! small vector (binders of one IP and sharing mode are counted, not repeated). `bind` of an
//! explicit port, `unbind`, `acquire`, `release`, `is_in_use` and `holders` are O(1) (a page is
//! checked for emptiness, 256 slots, when a port frees up); an ephemeral bind scans at most the
//! 16 384 ports of the range. Memory: the page directory (256 vectors) once anything is bound,
//! plus 256 slots per touched page (8 KiB on x64, 4 KiB on x86).
#![forbid(unsafe_code)]

use crate::nt::NtStatus;
use crate::nt::pool::{try_push, try_vec};
use ::core::net::Ipv4Addr;
use alloc::vec::Vec;

/// The first port of the ephemeral range.
pub const EPHEMERAL_FIRST: u16 = 49152;
/// The last port of the ephemeral range.
pub const EPHEMERAL_LAST: u16 = 65535;
/// The number of ports in the ephemeral range.
const EPHEMERAL_COUNT: u32 = (EPHEMERAL_LAST - EPHEMERAL_FIRST) as u32 + 1;

const PAGE_PORTS: usize = 256;
const PAGES: usize = 256;

/// One address file's hold on a port, as [`PortTable::bind`] granted it; give it back to
/// [`PortTable::unbind`] when the address file closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Binding {
    ip: Ipv4Addr,
    port: u16,
    shared: bool,
}

impl Binding {
    /// The binding of an address file of a protocol without ports (raw IP): `ip`, port 0, in
    /// no port table. Any IRQL.
    pub fn portless(ip: Ipv4Addr) -> Binding {
        Binding {
            ip,
            port: 0,
            shared: true,
        }
    }

    /// The IP bound (`0.0.0.0`: every local address). Any IRQL.
    pub fn ip(self) -> Ipv4Addr {
        self.ip
    }

    /// The port bound: the explicit port asked for, or the ephemeral port chosen. Any IRQL.
    pub fn port(self) -> u16 {
        self.port
    }

    /// Whether the binding allows sharing the port with other shared binders. Any IRQL.
    pub fn shared(self) -> bool {
        self.shared
    }
}

/// Binders of one port with the same IP and sharing mode.
#[derive(Clone, Copy)]
struct Binder {
    ip: Ipv4Addr,
    shared: bool,
    count: u32,
}

#[derive(Default)]
struct Slot {
    sockets: u32,
    binders: Vec<Binder>,
}

impl Slot {
    fn is_free(&self) -> bool {
        self.sockets == 0 && self.binders.is_empty()
    }

    fn holders(&self) -> u32 {
        self.binders
            .iter()
            .fold(self.sockets, |n, b| n.saturating_add(b.count))
    }

    fn conflicts(&self, ip: Ipv4Addr, shared: bool) -> bool {
        self.binders.iter().any(|b| {
            let overlap = b.ip == ip || b.ip.is_unspecified() || ip.is_unspecified();
            overlap && !(b.shared && shared)
        })
    }
}

/// The TCP port table. See the module documentation for the rules.
pub struct PortTable {
    /// `PAGES` pages once anything was held; an unallocated (empty) page has no holders.
    pages: Vec<Vec<Slot>>,
    /// Where the next ephemeral search starts, as an offset into the range.
    next: u32,
}

fn split(port: u16) -> (usize, usize) {
    (usize::from(port >> 8), usize::from(port & 0xff))
}

fn ephemeral_port(offset: u32) -> u16 {
    let offset = offset % EPHEMERAL_COUNT;
    EPHEMERAL_FIRST.saturating_add(u16::try_from(offset).unwrap_or(0))
}

impl PortTable {
    /// An empty table whose ephemeral search starts at `seed` modulo the range size (pass a
    /// CSPRNG output: see `core::random`). Allocates nothing. Any IRQL.
    pub fn new(seed: u64) -> PortTable {
        PortTable {
            pages: Vec::new(),
            next: u32::try_from(seed % u64::from(EPHEMERAL_COUNT)).unwrap_or(0),
        }
    }

    /// Adds a binder for `ip`:`port`; `port` 0 picks an ephemeral port. Returns the binding,
    /// whose [`Binding::port`] is the port actually bound.
    ///
    /// Errors: `STATUS_ADDRESS_ALREADY_EXISTS` for a conflicting explicit port or an exhausted
    /// ephemeral range; `STATUS_INSUFFICIENT_RESOURCES` if the table cannot grow (the table is
    /// then unchanged). Any IRQL ≤ DISPATCH_LEVEL.
    pub fn bind(&mut self, ip: Ipv4Addr, port: u16, shared: bool) -> Result<Binding, NtStatus> {
        let ephemeral = port == 0;
        let port = if ephemeral {
            self.find_ephemeral()
                .ok_or(NtStatus::ADDRESS_ALREADY_EXISTS)?
        } else {
            if self.slot(port).is_some_and(|s| s.conflicts(ip, shared)) {
                return Err(NtStatus::ADDRESS_ALREADY_EXISTS);
            }
            port
        };
        if let Err(status) = self.add_binder(ip, port, shared) {
            self.trim(port);
            return Err(status);
        }
        if ephemeral {
            self.next = (u32::from(port.saturating_sub(EPHEMERAL_FIRST)) + 1) % EPHEMERAL_COUNT;
        }
        Ok(Binding { ip, port, shared })
    }

    /// Removes the binder `binding` stands for. Returns `false` (and changes nothing) if there
    /// is no such binder: the binding was already given back. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn unbind(&mut self, binding: Binding) -> bool {
        let Some(slot) = self.slot_mut(binding.port) else {
            return false;
        };
        let Some(binder) = slot
            .binders
            .iter_mut()
            .find(|b| b.ip == binding.ip && b.shared == binding.shared)
        else {
            return false;
        };
        binder.count = binder.count.saturating_sub(1);
        slot.binders.retain(|b| b.count > 0);
        self.trim(binding.port);
        true
    }

    /// Takes a socket reference on `port`: it stays in use (for the ephemeral allocator) until
    /// the matching [`PortTable::release`], whatever happens to its binders.
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` for port 0; `STATUS_INSUFFICIENT_RESOURCES` if the
    /// table cannot grow or the port already has 2³²−1 references. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn acquire(&mut self, port: u16) -> Result<(), NtStatus> {
        if port == 0 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let result = self.slot_alloc(port).and_then(|slot| {
            slot.sockets = slot
                .sockets
                .checked_add(1)
                .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
            Ok(())
        });
        if result.is_err() {
            self.trim(port);
        }
        result
    }

    /// Drops a socket reference taken by [`PortTable::acquire`]. Returns `false` (and changes
    /// nothing) if `port` has no socket reference. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn release(&mut self, port: u16) -> bool {
        let Some(slot) = self.slot_mut(port) else {
            return false;
        };
        if slot.sockets == 0 {
            return false;
        }
        slot.sockets -= 1;
        self.trim(port);
        true
    }

    /// Whether `port` has any holder (binder or socket reference). Any IRQL.
    pub fn is_in_use(&self, port: u16) -> bool {
        self.slot(port).is_some_and(|s| !s.is_free())
    }

    /// The number of references on `port`: binders plus socket references. Any IRQL.
    pub fn holders(&self, port: u16) -> u32 {
        self.slot(port).map_or(0, Slot::holders)
    }

    fn slot(&self, port: u16) -> Option<&Slot> {
        let (page, index) = split(port);
        self.pages.get(page)?.get(index)
    }

    fn slot_mut(&mut self, port: u16) -> Option<&mut Slot> {
        let (page, index) = split(port);
        self.pages.get_mut(page)?.get_mut(index)
    }

    /// The slot of `port`, allocating the directory and its page as needed.
    fn slot_alloc(&mut self, port: u16) -> Result<&mut Slot, NtStatus> {
        if self.pages.is_empty() {
            let mut pages = try_vec(PAGES)?;
            pages.resize_with(PAGES, Vec::new);
            self.pages = pages;
        }
        let (page, index) = split(port);
        let slots = self
            .pages
            .get_mut(page)
            .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        if slots.is_empty() {
            let mut page = try_vec(PAGE_PORTS)?;
            page.resize_with(PAGE_PORTS, Slot::default);
            *slots = page;
        }
        slots.get_mut(index).ok_or(NtStatus::INSUFFICIENT_RESOURCES)
    }

    fn add_binder(&mut self, ip: Ipv4Addr, port: u16, shared: bool) -> Result<(), NtStatus> {
        let slot = self.slot_alloc(port)?;
        if let Some(binder) = slot
            .binders
            .iter_mut()
            .find(|b| b.ip == ip && b.shared == shared)
        {
            binder.count = binder
                .count
                .checked_add(1)
                .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
            return Ok(());
        }
        try_push(
            &mut slot.binders,
            Binder {
                ip,
                shared,
                count: 1,
            },
        )
    }

    /// Frees what `port`'s slot and page no longer need.
    fn trim(&mut self, port: u16) {
        let (page, index) = split(port);
        let Some(slots) = self.pages.get_mut(page) else {
            return;
        };
        if let Some(slot) = slots.get_mut(index)
            && slot.binders.is_empty()
        {
            slot.binders = Vec::new();
        }
        if slots.iter().all(Slot::is_free) {
            *slots = Vec::new();
        }
    }

    fn find_ephemeral(&self) -> Option<u16> {
        (0..EPHEMERAL_COUNT)
            .map(|i| ephemeral_port(self.next + i))
            .find(|&port| !self.is_in_use(port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
    const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const ALREADY: Result<Binding, NtStatus> = Err(NtStatus::ADDRESS_ALREADY_EXISTS);

    fn allocated_pages(table: &PortTable) -> usize {
        table.pages.iter().filter(|p| !p.is_empty()).count()
    }

    #[test]
    fn conflict_matrix() {
        let ips = [ANY, A, B];
        for first_ip in ips {
            for first_shared in [false, true] {
                for second_ip in ips {
                    for second_shared in [false, true] {
                        let mut table = PortTable::new(0);
                        let first = table.bind(first_ip, 80, first_shared).unwrap();
                        let overlap = first_ip == second_ip
                            || first_ip.is_unspecified()
                            || second_ip.is_unspecified();
                        let conflict = overlap && !(first_shared && second_shared);
                        let second = table.bind(second_ip, 80, second_shared);
                        let case = (first_ip, first_shared, second_ip, second_shared);
                        if conflict {
                            assert_eq!(second, ALREADY, "{case:?}");
                            assert_eq!(table.holders(80), 1, "{case:?}");
                        } else {
                            let second = second.unwrap();
                            assert_eq!(second.port(), 80);
                            assert_eq!(second.ip(), second_ip);
                            assert_eq!(second.shared(), second_shared);
                            assert_eq!(table.holders(80), 2, "{case:?}");
                            assert!(table.unbind(second));
                        }
                        assert!(table.unbind(first));
                        assert!(!table.is_in_use(80), "{case:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn specific_ips_then_wildcard() {
        let mut table = PortTable::new(0);
        table.bind(A, 139, false).unwrap();
        table.bind(B, 139, false).unwrap();
        assert_eq!(table.bind(ANY, 139, false), ALREADY);
        assert_eq!(
            table.bind(ANY, 139, true),
            ALREADY,
            "only shared binders share"
        );
        assert_eq!(table.bind(A, 139, false), ALREADY);
        assert!(
            table.bind(ANY, 140, false).is_ok(),
            "other ports are unaffected"
        );
    }

    #[test]
    fn shared_binders_are_counted() {
        let mut table = PortTable::new(0);
        let one = table.bind(ANY, 5000, true).unwrap();
        let two = table.bind(ANY, 5000, true).unwrap();
        assert_eq!(one, two);
        assert_eq!(table.holders(5000), 2);
        assert_eq!(table.bind(A, 5000, false), ALREADY);
        assert!(table.unbind(one));
        assert_eq!(
            table.bind(A, 5000, false),
            ALREADY,
            "one shared binder remains"
        );
        assert!(table.unbind(two));
        assert!(!table.unbind(two), "a binding given back twice is refused");
        assert!(!table.is_in_use(5000));
        assert!(table.bind(A, 5000, false).is_ok());
    }

    #[test]
    fn time_wait_holds_the_port() {
        let mut table = PortTable::new(7);
        let binding = table.bind(A, 0, false).unwrap();
        let port = binding.port();
        assert_eq!(port, EPHEMERAL_FIRST + 7);
        table.acquire(port).unwrap();
        assert_eq!(table.holders(port), 2);
        // The address file closes; its connection lingers in TIME-WAIT.
        assert!(table.unbind(binding));
        assert!(table.is_in_use(port));
        assert_eq!(table.holders(port), 1);
        // The allocator skips it even after coming all the way around the range.
        table.next = u32::from(port - EPHEMERAL_FIRST);
        let next = table.bind(A, 0, false).unwrap();
        assert_eq!(next.port(), port + 1);
        // An explicit bind of the port is allowed (see the module documentation).
        let explicit = table.bind(A, port, false).unwrap();
        assert!(table.unbind(explicit));
        // The socket goes away: the port is free again.
        assert!(table.release(port));
        assert!(!table.release(port), "no reference left");
        assert!(!table.is_in_use(port));
        table.next = u32::from(port - EPHEMERAL_FIRST);
        assert_eq!(table.bind(A, 0, false).unwrap().port(), port);
    }

    #[test]
    fn ephemeral_start_depends_on_the_seed() {
        let first = |seed| PortTable::new(seed).bind(ANY, 0, false).unwrap().port();
        let a = first(0x0123_4567_89ab_cdef);
        let b = first(0xfedc_ba98_7654_3210);
        assert_ne!(a, b);
        assert_eq!(
            a,
            EPHEMERAL_FIRST + (0x0123_4567_89ab_cdef_u64 % 16384) as u16
        );
        assert_eq!(
            b,
            EPHEMERAL_FIRST + (0xfedc_ba98_7654_3210_u64 % 16384) as u16
        );
        assert_eq!(first(0), EPHEMERAL_FIRST);
        assert_eq!(first(16384), EPHEMERAL_FIRST);
        assert_eq!(first(u64::MAX), EPHEMERAL_LAST);
    }

    #[test]
    fn ephemeral_ports_are_sequential_and_wrap() {
        let mut table = PortTable::new(16382);
        let ports: Vec<u16> = (0..4)
            .map(|_| table.bind(ANY, 0, false).unwrap().port())
            .collect();
        assert_eq!(ports, [65534, 65535, 49152, 49153]);
    }

    #[test]
    fn ephemeral_skips_explicitly_bound_ports() {
        let mut table = PortTable::new(0);
        table.bind(B, 49152, false).unwrap();
        table.bind(B, 49153, true).unwrap();
        table.acquire(49154).unwrap();
        assert_eq!(table.bind(A, 0, false).unwrap().port(), 49155);
    }

    #[test]
    fn ephemeral_exhaustion() {
        let mut table = PortTable::new(12345);
        let bindings: Vec<Binding> = (0..16384)
            .map(|_| table.bind(ANY, 0, false).unwrap())
            .collect();
        let mut ports: Vec<u16> = bindings.iter().map(|b| b.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 16384, "every port of the range, once");
        assert_eq!(table.bind(ANY, 0, false), ALREADY);
        assert_eq!(table.bind(A, 0, true), ALREADY);
        assert!(
            table.bind(A, 80, false).is_ok(),
            "explicit ports below the range still bind"
        );
        let freed = bindings[100];
        assert!(table.unbind(freed));
        assert_eq!(table.bind(A, 0, false).unwrap().port(), freed.port());
        assert_eq!(table.bind(A, 0, false), ALREADY);
    }

    #[test]
    fn release_frees_memory() {
        let mut table = PortTable::new(0);
        assert_eq!(allocated_pages(&table), 0);
        let a = table.bind(A, 80, false).unwrap();
        let b = table.bind(A, 0, false).unwrap();
        table.acquire(443).unwrap();
        assert_eq!(allocated_pages(&table), 3);
        assert!(table.unbind(a));
        assert_eq!(allocated_pages(&table), 2, "port 443 shares page 1");
        assert!(table.release(443));
        assert_eq!(allocated_pages(&table), 1);
        assert!(table.unbind(b));
        assert_eq!(allocated_pages(&table), 0);
        for port in [80, 443, b.port()] {
            assert!(!table.is_in_use(port));
            assert_eq!(table.holders(port), 0);
        }
    }

    #[test]
    fn refusals_change_nothing() {
        let mut table = PortTable::new(0);
        assert_eq!(table.acquire(0), Err(NtStatus::INVALID_PARAMETER));
        assert!(!table.release(0));
        assert!(!table.release(1234));
        assert!(!table.is_in_use(0));
        let binding = table.bind(A, 1234, false).unwrap();
        assert!(!table.release(1234), "a binder is not a socket reference");
        let other = PortTable::new(0).bind(B, 1234, false).unwrap();
        assert!(
            !table.unbind(other),
            "a binding from elsewhere does not match"
        );
        assert_eq!(table.holders(1234), 1);
        assert!(table.unbind(binding));
        assert_eq!(allocated_pages(&table), 0);
    }

    #[test]
    fn reference_overflow_is_refused() {
        let mut table = PortTable::new(0);
        table.acquire(9).unwrap();
        table.slot_mut(9).unwrap().sockets = u32::MAX;
        assert_eq!(table.acquire(9), Err(NtStatus::INSUFFICIENT_RESOURCES));
        assert_eq!(table.holders(9), u32::MAX);
        let shared = table.bind(A, 9, true).unwrap();
        table.slot_mut(9).unwrap().binders[0].count = u32::MAX;
        assert_eq!(
            table.bind(A, 9, true),
            Err(NtStatus::INSUFFICIENT_RESOURCES)
        );
        assert_eq!(table.holders(9), u32::MAX, "saturates");
        assert!(table.unbind(shared));
    }

    /// A straightforward model of the rules in the module documentation.
    #[derive(Default)]
    struct Model {
        binders: Vec<Binding>,
        sockets: HashMap<u16, u32>,
        next: u32,
    }

    impl Model {
        fn in_use(&self, port: u16) -> bool {
            self.binders.iter().any(|b| b.port == port)
                || self.sockets.get(&port).is_some_and(|&n| n > 0)
        }

        fn bind(&mut self, ip: Ipv4Addr, port: u16, shared: bool) -> Result<Binding, NtStatus> {
            let port = if port == 0 {
                let offset = (0..EPHEMERAL_COUNT)
                    .map(|i| (self.next + i) % EPHEMERAL_COUNT)
                    .find(|&o| !self.in_use(EPHEMERAL_FIRST + o as u16))
                    .ok_or(NtStatus::ADDRESS_ALREADY_EXISTS)?;
                self.next = (offset + 1) % EPHEMERAL_COUNT;
                EPHEMERAL_FIRST + offset as u16
            } else {
                let conflict = self.binders.iter().any(|b| {
                    b.port == port
                        && (b.ip == ip || b.ip.is_unspecified() || ip.is_unspecified())
                        && !(b.shared && shared)
                });
                if conflict {
                    return Err(NtStatus::ADDRESS_ALREADY_EXISTS);
                }
                port
            };
            let binding = Binding { ip, port, shared };
            self.binders.push(binding);
            Ok(binding)
        }

        fn unbind(&mut self, binding: Binding) -> bool {
            let found = self.binders.iter().position(|b| *b == binding);
            found.map(|i| self.binders.remove(i)).is_some()
        }

        fn holders(&self, port: u16) -> u32 {
            self.binders.iter().filter(|b| b.port == port).count() as u32
                + self.sockets.get(&port).copied().unwrap_or(0)
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Bind(usize, u16, bool),
        Unbind(usize),
        Acquire(u16),
        Release(u16),
    }

    const IPS: [Ipv4Addr; 3] = [ANY, A, B];
    /// A few explicit ports, two of them inside the ephemeral range where the allocator starts.
    const PORTS: [u16; 5] = [0, 80, 81, EPHEMERAL_FIRST + 3, EPHEMERAL_FIRST + 4];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..IPS.len(), proptest::sample::select(&PORTS[..]), any::<bool>())
                .prop_map(|(ip, port, shared)| Op::Bind(ip, port, shared)),
            2 => any::<usize>().prop_map(Op::Unbind),
            1 => proptest::sample::select(&PORTS[1..]).prop_map(Op::Acquire),
            1 => proptest::sample::select(&PORTS[..]).prop_map(Op::Release),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn matches_the_model(seed in 0..8u64, ops in proptest::collection::vec(op(), 0..120)) {
            let mut table = PortTable::new(seed);
            let mut model = Model { next: seed as u32, ..Model::default() };
            let mut granted: Vec<Binding> = Vec::new();
            for op in ops {
                match op {
                    Op::Bind(ip, port, shared) => {
                        let got = table.bind(IPS[ip], port, shared);
                        prop_assert_eq!(got, model.bind(IPS[ip], port, shared));
                        if let Ok(binding) = got {
                            granted.push(binding);
                        }
                    }
                    Op::Unbind(i) => {
                        if !granted.is_empty() {
                            let binding = granted[i % granted.len()];
                            prop_assert_eq!(table.unbind(binding), model.unbind(binding));
                        }
                    }
                    Op::Acquire(port) => {
                        table.acquire(port).unwrap();
                        *model.sockets.entry(port).or_default() += 1;
                    }
                    Op::Release(port) => {
                        let held = model.sockets.get(&port).is_some_and(|&n| n > 0);
                        prop_assert_eq!(table.release(port), held);
                        if held {
                            *model.sockets.get_mut(&port).unwrap() -= 1;
                        }
                    }
                }
                for port in PORTS.iter().copied().chain(EPHEMERAL_FIRST..EPHEMERAL_FIRST + 16) {
                    prop_assert_eq!(table.is_in_use(port), model.in_use(port), "port {}", port);
                    prop_assert_eq!(table.holders(port), model.holders(port), "port {}", port);
                }
            }
            for binding in granted {
                table.unbind(binding);
                model.unbind(binding);
            }
            for (port, n) in model.sockets {
                for _ in 0..n {
                    prop_assert!(table.release(port));
                }
            }
            prop_assert_eq!(allocated_pages(&table), 0, "everything given back frees every page");
        }
    }
}
