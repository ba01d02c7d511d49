//! TCP initial sequence numbers as RFC 6528 defines them, through the one input smoltcp takes.
//!
//! RFC 6528 (§3): ISN = M + F(localip, localport, remoteip, remoteport, secretkey), where M is a
//! clock ticking every 4 µs and F a keyed pseudorandom function of the connection's 4-tuple.
//! The clock keeps the ISNs of successive incarnations of one 4-tuple increasing (so old
//! duplicates of a closed connection fall outside the new one's window); the keyed function
//! makes the ISNs of different 4-tuples unrelated, so a peer that sees the ISNs of its own
//! connections learns nothing about anyone else's. Here F is a ChaCha20 key-stream word
//! ([`IsnKey::isn`]): the key is drawn once from the driver's CSPRNG, the stream number is the
//! two addresses, the block counter the two ports.
//!
//! # Getting the number into smoltcp
//!
//! smoltcp 0.14 draws an ISN (for `tcp::Socket::connect`, and when a LISTEN socket takes a SYN)
//! as the next 32-bit output of its interface's generator, an sPCG32 whose only input is the
//! 64-bit `iface::Config::random_seed` given to `Interface::new`; `Interface::new` itself takes
//! one output first (the IPv4 identification, redrawn while it is 0), and with this crate's
//! features nothing else draws from it. Both steps of that generator are invertible (an odd
//! multiplier modulo 2^64, and an output that is a window of the state chosen by its top three
//! bits), so [`seed_for`] computes a seed whose second output is the wanted ISN, and the core
//! builds the interface afresh with it right before each open (`Core::reseed`,
//! `Port::reseed`). The test below checks it against smoltcp itself, by the SYN it sends.
#![forbid(unsafe_code)]

use crate::core::random::Csprng;
use core::net::SocketAddrV4;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use smoltcp::time::Instant;

/// sPCG32's multiplier and increment, as smoltcp's `rand::Rand` has them.
const MULTIPLIER: u64 = 0xbb2e_fcec_3c39_611d;
const INCREMENT: u64 = 0x7590_ef39;
/// The multiplier's inverse modulo 2^64 (Newton's iteration doubles the correct low bits).
const INVERSE: u64 = {
    let mut inverse = MULTIPLIER;
    let mut round = 0;
    while round < 6 {
        inverse = inverse.wrapping_mul(2u64.wrapping_sub(MULTIPLIER.wrapping_mul(inverse)));
        round += 1;
    }
    inverse
};
const _: () = assert!(MULTIPLIER.wrapping_mul(INVERSE) == 1);

/// The secret of F.
pub struct IsnKey {
    key: [u8; 32],
}

impl IsnKey {
    /// A key drawn from the driver's CSPRNG. Any IRQL.
    pub fn new(random: &mut Csprng) -> Self {
        let mut key = [0u8; 32];
        for chunk in key.chunks_exact_mut(8) {
            chunk.copy_from_slice(&random.next_u64().to_le_bytes());
        }
        Self { key }
    }

    /// The ISN of a connection from `local` to `remote` opened at `now`. Any IRQL.
    pub fn isn(&self, local: SocketAddrV4, remote: SocketAddrV4, now: Instant) -> u32 {
        let clock = (now.total_micros() / 4) as u32;
        let mut f = ChaCha20Rng::from_seed(self.key);
        f.set_stream(u64::from(local.ip().to_bits()) << 32 | u64::from(remote.ip().to_bits()));
        let ports = u128::from(local.port()) << 16 | u128::from(remote.port());
        // 16 words a block: the first word of block `ports`.
        f.set_word_pos(ports << 4);
        clock.wrapping_add(f.next_u32())
    }
}

/// One step of smoltcp's generator: the next state and its output.
fn step(state: u64) -> (u64, u32) {
    let next = state.wrapping_mul(MULTIPLIER).wrapping_add(INCREMENT);
    (next, (next >> (29 - (next >> 61))) as u32)
}

/// The state before `state`.
fn unstep(state: u64) -> u64 {
    state.wrapping_sub(INCREMENT).wrapping_mul(INVERSE)
}

/// A `random_seed` for `Interface::new` that makes the interface's first ISN `isn`. `noise`
/// fills the 29 state bits the output does not show. Any IRQL.
pub fn seed_for(isn: u32, noise: u64) -> u64 {
    let mut noise = noise;
    loop {
        // Top three bits 0: the output is bits 29..61, which are `isn`.
        let second = u64::from(isn) << 29 | (noise & 0x1fff_ffff);
        let first = unstep(second);
        let seed = unstep(first);
        // `Interface::new` redraws the IPv4 identification while it is 0 (1 in 65,536).
        let (_, drawn) = step(seed);
        if (drawn ^ (drawn >> 16)) as u16 != 0 {
            return seed;
        }
        noise = noise.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;
    use smoltcp::iface::{Config, Interface, SocketSet};
    use smoltcp::phy::{Loopback, Medium};
    use smoltcp::socket::tcp;
    use smoltcp::wire::{IpAddress, IpCidr, Ipv4Packet, TcpPacket};

    /// The sequence number of the SYN smoltcp sends for a connect on an interface built with
    /// `seed`.
    fn syn_sequence(seed: u64) -> u32 {
        let mut device = Loopback::new(Medium::Ip);
        let mut config = Config::new(smoltcp::wire::HardwareAddress::Ip);
        config.random_seed = seed;
        let now = smoltcp::time::Instant::from_millis(1);
        let mut iface = Interface::new(config, &mut device, now);
        iface.update_ip_addrs(|list| {
            list.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8))
                .unwrap();
        });
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 64]),
            tcp::SocketBuffer::new(vec![0; 64]),
        );
        socket
            .connect(iface.context(), (IpAddress::v4(127, 0, 0, 1), 80), 4000)
            .unwrap();
        let mut sockets = SocketSet::new(vec![]);
        sockets.add(socket);
        iface.poll(now, &mut device, &mut sockets);
        use smoltcp::phy::{Device, RxToken};
        let (rx, _) = device.receive(now).expect("the SYN");
        rx.consume(|frame| {
            let ip = Ipv4Packet::new_checked(frame).unwrap();
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(tcp.syn());
            tcp.seq_number().0 as u32
        })
    }

    #[test]
    fn smoltcp_sends_the_isn_the_seed_was_made_for() {
        let mut random = Csprng::from_seed([7, 8, 9, 10]);
        for isn in [0, 1, 0x8000_0000, u32::MAX, 0x1234_5678] {
            let seed = seed_for(isn, random.next_u64());
            assert_eq!(syn_sequence(seed), isn);
        }
        for _ in 0..200 {
            let isn = random.next_u32();
            assert_eq!(syn_sequence(seed_for(isn, random.next_u64())), isn);
        }
    }

    #[test]
    fn isns_follow_the_clock_per_tuple_and_differ_across_tuples_and_keys() {
        let mut random = Csprng::from_seed([1, 2, 3, 4]);
        let key = IsnKey::new(&mut random);
        let other_key = IsnKey::new(&mut random);
        let local = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 15), 49152);
        let remote = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 2), 80);
        let at = |micros| Instant::from_micros(micros);
        let first = key.isn(local, remote, at(1_000_000));
        // The same 4-tuple later: M has advanced by one per 4 µs.
        assert_eq!(
            key.isn(local, remote, at(1_004_000)),
            first.wrapping_add(1000)
        );
        // Any change of the tuple, or of the key, gives an unrelated number.
        let moved = SocketAddrV4::new(*remote.ip(), 81);
        let others = [
            key.isn(SocketAddrV4::new(*local.ip(), 49153), remote, at(1_000_000)),
            key.isn(local, moved, at(1_000_000)),
            key.isn(remote, local, at(1_000_000)),
            other_key.isn(local, remote, at(1_000_000)),
        ];
        for other in others {
            assert_ne!(other, first);
        }
        // Over many tuples the numbers spread over the whole space: no two of 1,000 collide
        // (a collision among 1,000 uniform 32-bit values has odds of about 1 in 8,600).
        let mut seen: Vec<u32> = (0..1000u16)
            .map(|port| key.isn(SocketAddrV4::new(*local.ip(), port), remote, at(0)))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 1000);
    }
}
