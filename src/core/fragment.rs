//! IPv4 fragmentation and reassembly in the core's own ingress and egress paths (smoltcp's
//! `proto-ipv4-fragmentation` would put fixed buffers of about 64 KiB into every `Interface`,
//! and the loopback interface is rebuilt on the stack per TCP connection).
//!
//! **Reassembly.** Fragments for the host are collected per (source, destination, protocol,
//! identification) in a buffer that grows with the fragments (never past 65,535 bytes). The
//! bytes of all reassemblies together are bounded ([`FragmentConfig::bytes`], 256 KiB by
//! default, and [`FragmentConfig::datagrams`] at once); a fragment that would pass the bound
//! first evicts the oldest reassembly, so a flood of fragments that never complete cannot
//! block legitimate datagrams for long. A reassembly not complete within
//! [`FragmentConfig::timeout`] (30 s) is dropped. Every drop is counted ([`FragmentStats`]).
//! The completed datagram goes to the raw, ICMP and UDP layers; smoltcp never sees it (so a
//! fragmented TCP segment or echo request is not answered).
//!
//! **Fragmentation.** [`split`] cuts a complete packet into fragments of at most an MTU, each
//! a multiple of 8 payload bytes but the last, with the header copied and its length, offset,
//! flags and checksum set.
#![forbid(unsafe_code)]

use crate::nt::NtStatus;
use crate::nt::pool;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::Ipv4Packet;

/// The largest IPv4 packet.
const MAX_PACKET: usize = 65_535;

/// Byte ranges one reassembly tracks at most (more holes than this: dropped).
const MAX_RANGES: usize = 32;

/// Tunables of reassembly.
#[derive(Clone, Copy, Debug)]
pub struct FragmentConfig {
    /// Bytes of all reassemblies together.
    pub bytes: usize,
    /// Reassemblies at once.
    pub datagrams: usize,
    /// How long a reassembly may take.
    pub timeout: Duration,
}

impl Default for FragmentConfig {
    /// The defaults. Any IRQL.
    fn default() -> Self {
        Self {
            bytes: 256 * 1024,
            datagrams: 16,
            timeout: Duration::from_secs(30),
        }
    }
}

/// The fragmentation counters (the IP helper's `ipsi_reasm*` and `ipsi_frag*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentStats {
    /// Fragments received for the host.
    pub fragments_in: u64,
    /// Datagrams reassembled.
    pub reassembled: u64,
    /// Reassemblies dropped: timed out, evicted for room, malformed, or no memory.
    pub reassembly_failures: u64,
    /// Datagrams sent as fragments.
    pub fragmented: u64,
    /// Fragments sent.
    pub fragments_out: u64,
}

/// What identifies the fragments of one datagram.
#[derive(Clone, Copy, Debug, Eq)]
struct Id {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
}

impl Id {
    /// The fields as one integer, compared at once (every fragment compares its identity
    /// with each reassembly's, a few times). Any IRQL.
    fn key(&self) -> u128 {
        (u128::from(self.src.to_bits()) << 64)
            | (u128::from(self.dst.to_bits()) << 32)
            | (u128::from(self.protocol) << 16)
            | u128::from(self.ident)
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

/// One datagram being reassembled.
struct Entry {
    id: Id,
    /// The first fragment's header (0 bytes until it arrives).
    header: Vec<u8>,
    /// The payload so far.
    data: Vec<u8>,
    /// Payload ranges received, sorted and merged.
    ranges: Vec<(usize, usize)>,
    /// The payload length, once the last fragment arrived.
    total: Option<usize>,
    deadline: Instant,
}

impl Entry {
    /// Bytes this reassembly holds. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn bytes(&self) -> usize {
        self.data.capacity() + self.header.capacity()
    }

    /// Records `start..end` as received. Returns `false` past [`MAX_RANGES`].
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn add_range(&mut self, start: usize, end: usize) -> bool {
        let mut merged = (start, end);
        self.ranges.retain(|&(s, e)| {
            if s <= merged.1 && merged.0 <= e {
                merged = (merged.0.min(s), merged.1.max(e));
                false
            } else {
                true
            }
        });
        if self.ranges.len() >= MAX_RANGES || pool::try_reserve(&mut self.ranges, 1).is_err() {
            return false;
        }
        let at = self.ranges.partition_point(|&(s, _)| s < merged.0);
        self.ranges.insert(at, merged);
        true
    }

    /// Whether every payload byte arrived. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn complete(&self) -> bool {
        match (self.total, self.ranges.as_slice()) {
            (Some(total), [(0, end)]) => *end == total && !self.header.is_empty(),
            (Some(0), []) => !self.header.is_empty(),
            _ => false,
        }
    }
}

/// The reassembly buffer and the fragment counters. Any IRQL ≤ DISPATCH_LEVEL, under the core
/// lock.
pub struct Fragments {
    pub stats: FragmentStats,
    config: FragmentConfig,
    entries: Vec<Entry>,
    /// The identification of the next datagram this host fragments.
    next_ident: u16,
}

impl Fragments {
    /// No reassembly yet; identifications start at `seed`. Allocates nothing. Any IRQL.
    pub fn new(config: FragmentConfig, seed: u16) -> Self {
        Self {
            stats: FragmentStats::default(),
            config,
            entries: Vec::new(),
            next_ident: seed,
        }
    }

    /// Bytes all reassemblies hold. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn held_bytes(&self) -> usize {
        self.entries.iter().map(Entry::bytes).sum()
    }

    /// The identification for the next fragmented datagram. IRQL ≤ DISPATCH_LEVEL, under the
    /// core lock.
    pub fn next_ident(&mut self) -> u16 {
        self.next_ident = self.next_ident.wrapping_add(1);
        self.next_ident
    }

    /// When the oldest reassembly times out. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn poll_at(&self) -> Option<Instant> {
        self.entries.iter().map(|e| e.deadline).min()
    }

    /// Drops the reassemblies whose time is up. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn expire(&mut self, now: Instant) {
        let before = self.entries.len();
        self.entries.retain(|e| e.deadline > now);
        self.stats.reassembly_failures += (before - self.entries.len()) as u64;
    }

    /// Takes one fragment (`packet`, an IPv4 packet with MF set or a non-zero offset, for the
    /// host). Returns the whole datagram, header included, once its last missing fragment
    /// arrived. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    pub fn reassemble(&mut self, packet: &[u8], now: Instant) -> Option<Vec<u8>> {
        let ip = Ipv4Packet::new_checked(packet).ok()?;
        self.stats.fragments_in += 1;
        let id = Id {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            protocol: u8::from(ip.next_header()),
            ident: ip.ident(),
        };
        let header_len = usize::from(ip.header_len());
        let payload = ip.payload();
        let start = usize::from(ip.frag_offset());
        let end = start + payload.len();
        let (capacity, has_header) = match self.entries.iter().find(|e| e.id == id) {
            Some(e) => (e.data.capacity(), !e.header.is_empty()),
            None => {
                self.open(id, now)?;
                (0, false)
            }
        };
        // The bound counts the first fragment's header too, kept from when it arrives.
        let header_room = if start == 0 && !has_header {
            header_len
        } else {
            0
        };
        if end + header_len > MAX_PACKET {
            self.fail(id);
            return None;
        }
        // The buffer grows to twice its size (so that a datagram in many small fragments is
        // not copied once per fragment) when that fits under the bound as it is; else to
        // exactly `end`, evicting older reassemblies if need be.
        let doubled = capacity.saturating_mul(2).min(MAX_PACKET).max(end);
        let growth = doubled.saturating_sub(capacity).saturating_add(header_room);
        let target = if end <= capacity {
            capacity
        } else if self.held_bytes().saturating_add(growth) <= self.config.bytes {
            doubled
        } else {
            end
        };
        let room = target.saturating_sub(capacity).saturating_add(header_room);
        if !self.make_room(id, room) {
            self.fail(id);
            return None;
        }
        let index = self.entries.iter().position(|e| e.id == id)?;
        let entry = self.entries.get_mut(index)?;
        let fragment = Fragment {
            packet,
            header_len,
            start,
            payload,
            more: ip.more_frags(),
        };
        if !store(entry, &fragment, target) {
            self.fail(id);
            return None;
        }
        if !entry.complete() {
            return None;
        }
        let entry = self.entries.swap_remove(index);
        let whole = assemble(&entry);
        match whole {
            Some(_) => self.stats.reassembled += 1,
            None => self.stats.reassembly_failures += 1,
        }
        whole
    }

    /// Starts a reassembly for `id`, evicting the oldest at the datagram bound.
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn open(&mut self, id: Id, now: Instant) -> Option<()> {
        if self.entries.len() >= self.config.datagrams {
            self.evict_oldest(id);
        }
        if pool::try_reserve(&mut self.entries, 1).is_err() {
            self.stats.reassembly_failures += 1;
            return None;
        }
        self.entries.push(Entry {
            id,
            header: Vec::new(),
            data: Vec::new(),
            ranges: Vec::new(),
            total: None,
            deadline: now + self.config.timeout,
        });
        Some(())
    }

    /// Makes room under the byte bound for `more` bytes of reassembly `id`, evicting the
    /// oldest other reassemblies. Returns whether there is room.
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn make_room(&mut self, id: Id, more: usize) -> bool {
        while self.held_bytes() + more > self.config.bytes {
            if !self.evict_oldest(id) {
                return false;
            }
        }
        true
    }

    /// Drops the oldest reassembly other than `keep`. Returns whether one was dropped.
    /// IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn evict_oldest(&mut self, keep: Id) -> bool {
        let oldest = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.id != keep)
            .min_by_key(|(_, e)| e.deadline)
            .map(|(i, _)| i);
        let Some(oldest) = oldest else {
            return false;
        };
        self.entries.swap_remove(oldest);
        self.stats.reassembly_failures += 1;
        true
    }

    /// Drops reassembly `id` as failed. IRQL ≤ DISPATCH_LEVEL, under the core lock.
    fn fail(&mut self, id: Id) {
        if let Some(index) = self.entries.iter().position(|e| e.id == id) {
            self.entries.swap_remove(index);
            self.stats.reassembly_failures += 1;
        }
    }
}

/// One fragment as [`store`] takes it.
struct Fragment<'a> {
    /// The whole packet, header first.
    packet: &'a [u8],
    header_len: usize,
    /// The payload's offset in the datagram.
    start: usize,
    payload: &'a [u8],
    /// MF.
    more: bool,
}

/// Copies one fragment into its reassembly, growing its buffer to `capacity` bytes if it
/// holds fewer (room was made under the bound for them). Returns `false` if it cannot be
/// stored (no memory, too many holes, a last fragment that contradicts an earlier one).
/// IRQL ≤ DISPATCH_LEVEL, under the core lock.
fn store(entry: &mut Entry, fragment: &Fragment, capacity: usize) -> bool {
    let Fragment {
        packet,
        header_len,
        start,
        payload,
        more,
    } = *fragment;
    let end = start + payload.len();
    if !more {
        if entry.total.is_some_and(|total| total != end) {
            return false;
        }
        entry.total = Some(end);
    }
    if entry.total.is_some_and(|total| end > total) {
        return false;
    }
    if start == 0 && entry.header.is_empty() {
        let Some(header) = packet.get(..header_len) else {
            return false;
        };
        pool::note_call_site();
        if entry.header.try_reserve_exact(header_len).is_err() {
            return false;
        }
        entry.header.extend_from_slice(header);
    }
    let have = entry.data.len();
    if entry.data.capacity() < capacity.max(end) {
        // Exactly: the bytes held are what the bound counts.
        pool::note_call_site();
        if entry
            .data
            .try_reserve_exact(capacity.max(end) - have)
            .is_err()
        {
            return false;
        }
    }
    if have < end {
        entry.data.resize(end, 0);
    }
    match entry.data.get_mut(start..end) {
        Some(area) => area.copy_from_slice(payload),
        None => return false,
    }
    entry.add_range(start, end)
}

/// The whole datagram of a complete reassembly: the first fragment's header with the total
/// length, no fragment fields and a fresh checksum, then the payload.
/// IRQL ≤ DISPATCH_LEVEL, under the core lock.
fn assemble(entry: &Entry) -> Option<Vec<u8>> {
    let total = entry.header.len() + entry.data.len();
    let mut whole = pool::try_vec(total).ok()?;
    whole.extend_from_slice(&entry.header);
    whole.extend_from_slice(&entry.data);
    let mut ip = Ipv4Packet::new_unchecked(&mut whole[..]);
    ip.set_total_len(u16::try_from(total).ok()?);
    ip.set_more_frags(false);
    ip.set_frag_offset(0);
    ip.fill_checksum();
    Some(whole)
}

/// Whether `packet` is a fragment (MF set or a non-zero offset). Any IRQL.
pub fn is_fragment(packet: &[u8]) -> bool {
    Ipv4Packet::new_checked(packet).is_ok_and(|ip| ip.more_frags() || ip.frag_offset() != 0)
}

/// Cuts `packet` (a complete IPv4 packet) into fragments of at most `mtu` bytes with
/// identification `ident`, handing each to `emit`, which writes it where it goes and returns
/// whether it could. Returns the number of fragments emitted, or `Err` if `mtu` leaves no
/// room for data, the packet is malformed, or `emit` refused one.
/// IRQL ≤ DISPATCH_LEVEL.
pub fn split(
    packet: &[u8],
    mtu: usize,
    ident: u16,
    mut emit: impl FnMut(usize, &mut dyn FnMut(&mut [u8])) -> bool,
) -> Result<usize, NtStatus> {
    let ip = Ipv4Packet::new_checked(packet).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let header_len = usize::from(ip.header_len());
    let header = packet
        .get(..header_len)
        .ok_or(NtStatus::INVALID_PARAMETER)?;
    let payload = ip.payload();
    let step = (mtu.saturating_sub(header_len) / 8) * 8;
    if step == 0 {
        return Err(NtStatus::INVALID_BUFFER_SIZE);
    }
    let mut count = 0;
    for (index, piece) in payload.chunks(step).enumerate() {
        let offset = index * step;
        let more = offset + piece.len() < payload.len();
        let len = header_len + piece.len();
        let mut write = |out: &mut [u8]| {
            if out.len() < header_len {
                return;
            }
            let (head, body) = out.split_at_mut(header_len.min(out.len()));
            head.copy_from_slice(header.get(..head.len()).unwrap_or_default());
            let copied = body.len().min(piece.len());
            if let (Some(to), Some(from)) = (body.get_mut(..copied), piece.get(..copied)) {
                to.copy_from_slice(from);
            }
            let mut fragment = Ipv4Packet::new_unchecked(out);
            fragment.set_total_len(len as u16);
            fragment.set_ident(ident);
            fragment.set_more_frags(more);
            fragment.set_frag_offset(offset as u16);
            fragment.fill_checksum();
        };
        if !emit(len, &mut write) {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpProtocol, Ipv4Repr};

    /// A fragment of datagram `ident` from 10.0.0.1: `len` payload bytes at byte `offset`.
    fn fragment(ident: u16, offset: u16, len: usize, more: bool) -> Vec<u8> {
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            next_header: IpProtocol::Udp,
            payload_len: len,
            hop_limit: 64,
        };
        let mut packet = vec![0u8; repr.buffer_len() + len];
        let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
        repr.emit(&mut ip, &ChecksumCapabilities::default());
        ip.set_ident(ident);
        ip.set_frag_offset(offset);
        ip.set_more_frags(more);
        ip.fill_checksum();
        packet
    }

    /// Reassembly bounded at `bytes`, for four datagrams at once, and its configuration.
    fn bounded(bytes: usize) -> (FragmentConfig, Fragments) {
        let config = FragmentConfig {
            bytes,
            datagrams: 4,
            timeout: Duration::from_secs(30),
        };
        (config, Fragments::new(config, 1))
    }

    /// Found by the `fragment` fuzz target (fuzz/RESULTS.md): the first fragment's header was
    /// stored after room was made for its payload only, so the bytes held could pass the bound
    /// by up to a header.
    #[test]
    fn the_first_fragments_header_counts_against_the_bound() {
        let (config, mut fragments) = bounded(1000);
        let now = Instant::from_secs(1);
        assert!(
            fragments
                .reassemble(&fragment(1, 0, 496, true), now)
                .is_none()
        );
        assert_eq!(fragments.held_bytes(), 516);
        assert!(
            fragments
                .reassemble(&fragment(2, 0, 480, true), now)
                .is_none()
        );
        assert!(fragments.held_bytes() <= config.bytes);
        // The older reassembly made room for the new one, header included.
        assert_eq!(fragments.held_bytes(), 500);
        assert_eq!(fragments.stats.reassembly_failures, 1);
    }

    /// A datagram in many small in-order fragments grows its buffer by doubling (not once
    /// per fragment), and still reassembles; the bytes held stay within the bound.
    #[test]
    fn small_fragments_grow_the_buffer_by_doubling() {
        let (config, mut fragments) = bounded(4096);
        let now = Instant::from_secs(1);
        let mut capacities = Vec::new();
        for index in 0..63u16 {
            assert!(
                fragments
                    .reassemble(&fragment(7, index * 8, 8, true), now)
                    .is_none()
            );
            let held = fragments.held_bytes();
            assert!(held <= config.bytes);
            if capacities.last() != Some(&held) {
                capacities.push(held);
            }
        }
        // 20 header bytes plus 8, 16, 32, 64, 128, 256, 512 payload bytes: 7 sizes for 63
        // fragments.
        assert_eq!(capacities, [28, 36, 52, 84, 148, 276, 532]);
        let whole = fragments.reassemble(&fragment(7, 63 * 8, 8, false), now);
        let whole = whole.expect("the last fragment completes the datagram");
        assert_eq!(whole.len(), 20 + 64 * 8);
        assert_eq!(fragments.held_bytes(), 0);
    }

    /// Near the bound the buffer grows exactly, evicting nothing for the doubling.
    #[test]
    fn near_the_bound_the_buffer_grows_exactly() {
        let (_, mut fragments) = bounded(1000);
        let now = Instant::from_secs(1);
        assert!(
            fragments
                .reassemble(&fragment(1, 0, 400, true), now)
                .is_none()
        );
        assert!(
            fragments
                .reassemble(&fragment(2, 0, 400, true), now)
                .is_none()
        );
        assert_eq!(fragments.held_bytes(), 840);
        // Doubling datagram 2 would pass the bound; 8 more bytes fit exactly.
        assert!(
            fragments
                .reassemble(&fragment(2, 400, 8, true), now)
                .is_none()
        );
        assert_eq!(fragments.held_bytes(), 848);
        assert_eq!(fragments.stats.reassembly_failures, 0);
    }
}
