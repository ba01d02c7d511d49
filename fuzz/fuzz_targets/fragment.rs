//! `core::fragment`: reassembly of sequences of fragments (`Fragments::reassemble`), and
//! `split` of whole packets.
//!
//! The input is a list of steps. A *fragment* step builds a well-formed IPv4 fragment (one of
//! a few sources and identifications, any offset, length and MF flag) whose payload byte at
//! datagram offset `i` is a function of the datagram and `i`, so that every fragment agrees
//! with every other one about the bytes they share; a *raw* step hands over arbitrary bytes;
//! a *time* step lets time pass (expiry); a *split* step cuts a packet and reassembles it.
//!
//! Invariants: the bytes held never pass the configured bound; a reassembled datagram is a
//! whole IPv4 packet with a valid checksum, whose payload is the datagram's bytes; a split
//! packet's fragments each fit the MTU and reassemble to the packet.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::Ipv4Packet;
use std::sync::OnceLock;
use tcpip::core::fragment::{FragmentConfig, Fragments, split};

#[derive(Arbitrary, Debug)]
enum Step {
    Fragment {
        datagram: u8,
        offset: u16,
        len: u16,
        more: bool,
        options: bool,
    },
    Raw(Vec<u8>),
    Time(u16),
    Split {
        len: u16,
        mtu: u16,
    },
}

/// The most fragments a split step cuts a packet into (its length is cut down to fit).
const MAX_PIECES: usize = 64;

/// The payload byte at datagram offset `at` of datagram `datagram`.
fn byte(datagram: u8, at: usize) -> u8 {
    (at as u8) ^ (at >> 8) as u8 ^ datagram.wrapping_mul(37)
}

/// The payload bytes at offsets `offset..offset + len` of datagram `datagram`, sliced from a
/// table made once per datagram (filling and checking payloads byte by byte took most of an
/// input's time under the sanitizers).
fn pattern(datagram: u8, offset: usize, len: usize) -> &'static [u8] {
    /// Offsets reach 65,528 + 2,047 (fragments) or 9,000 (splits).
    const LEN: usize = 65_536 + 2048;
    static TABLES: OnceLock<Vec<Box<[u8]>>> = OnceLock::new();
    let tables = TABLES.get_or_init(|| {
        (0..=255u8)
            .map(|d| (0..LEN).map(|at| byte(d, at)).collect())
            .collect()
    });
    &tables[usize::from(datagram)][offset..offset + len]
}

/// An IPv4 packet from 10.0.0.(datagram % 4 + 1) to 10.0.0.9, protocol 17, identification
/// `datagram / 4`, with fragment offset `offset` (bytes) and `len` bytes of payload.
fn packet(datagram: u8, offset: usize, len: usize, more: bool, options: bool) -> Vec<u8> {
    let header = if options { 24 } else { 20 };
    let mut out = vec![0u8; header];
    out[0] = 0x40 | (header / 4) as u8;
    out[2..4].copy_from_slice(&((header + len) as u16).to_be_bytes());
    out[4..6].copy_from_slice(&u16::from(datagram / 4).to_be_bytes());
    let frag = ((offset / 8) as u16 & 0x1fff) | if more { 0x2000 } else { 0 };
    out[6..8].copy_from_slice(&frag.to_be_bytes());
    out[8] = 64;
    out[9] = 17;
    out[12..16].copy_from_slice(&[10, 0, 0, datagram % 4 + 1]);
    out[16..20].copy_from_slice(&[10, 0, 0, 9]);
    out.extend_from_slice(pattern(datagram, offset, len));
    Ipv4Packet::new_unchecked(&mut out[..]).fill_checksum();
    out
}

fn check_whole(whole: &[u8], datagram: Option<u8>) {
    let ip = Ipv4Packet::new_checked(whole).expect("a reassembled datagram parses");
    assert!(ip.verify_checksum());
    assert!(!ip.more_frags() && ip.frag_offset() == 0);
    assert_eq!(usize::from(ip.total_len()), whole.len());
    if let Some(datagram) = datagram {
        let payload = ip.payload();
        let expected = pattern(datagram, 0, payload.len());
        if payload != expected {
            let at = payload.iter().zip(expected).position(|(a, b)| a != b);
            panic!("reassembled byte {at:?} differs");
        }
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let config = FragmentConfig {
        bytes: 16 * 1024,
        datagrams: 4,
        timeout: Duration::from_secs(30),
    };
    let mut fragments = Fragments::new(config, 1);
    let mut now = Instant::from_secs(1);
    let mut tainted = false;
    for step in steps.into_iter().take(64) {
        match step {
            Step::Fragment {
                datagram,
                offset,
                len,
                more,
                options,
            } => {
                let offset = usize::from(offset) & !7;
                let len = usize::from(len) % 2048;
                let frame = packet(datagram, offset.min(0xfff8), len, more, options);
                if offset + len + 24 > 65_535 {
                    continue;
                }
                if let Some(whole) = fragments.reassemble(&frame, now) {
                    // Raw steps may have fed the datagram bytes of their own.
                    check_whole(&whole, (!tainted).then_some(datagram));
                }
            }
            Step::Raw(bytes) => {
                tainted |= Ipv4Packet::new_checked(&bytes[..]).is_ok();
                if let Some(whole) = fragments.reassemble(&bytes, now) {
                    assert!(Ipv4Packet::new_checked(&whole[..]).is_ok());
                }
            }
            Step::Time(seconds) => {
                now += Duration::from_millis(u64::from(seconds) * 10);
                fragments.expire(now);
            }
            Step::Split { len, mtu } => {
                let datagram = 200;
                let mtu = usize::from(mtu) % 1600;
                // At most MAX_PIECES fragments: a 9,000-byte packet at an MTU of 28 would be
                // 1,125, each reassembled, and took most of the target's time.
                let step = (mtu.saturating_sub(20) / 8 * 8).max(8);
                let len = (usize::from(len) % 9000).min(MAX_PIECES * step);
                let whole = packet(datagram, 0, len, false, false);
                let mut pieces = Vec::new();
                let result = split(&whole, mtu, 0x4242, |len, write| {
                    let mut piece = vec![0u8; len];
                    write(&mut piece);
                    pieces.push(piece);
                    true
                });
                let Ok(count) = result else {
                    assert!(mtu < 28);
                    continue;
                };
                assert_eq!(count, pieces.len());
                let mut own = Fragments::new(FragmentConfig::default(), 1);
                let mut done = None;
                for piece in &pieces {
                    assert!(piece.len() <= mtu);
                    if let Some(d) = own.reassemble(piece, now) {
                        done = Some(d);
                    }
                }
                if whole.len() == 20 {
                    assert_eq!(count, 0);
                } else if count == 1 {
                    assert_eq!(pieces[0][20..], whole[20..]);
                } else {
                    let done = done.expect("the pieces of a split reassemble");
                    assert_eq!(done[20..], whole[20..]);
                    check_whole(&done, Some(datagram));
                }
            }
        }
        assert!(
            fragments.held_bytes() <= config.bytes,
            "reassembly stays within its bound: {} > {}",
            fragments.held_bytes(),
            config.bytes
        );
    }
});
