//! Writes the seed corpus, a handful of valid inputs per target, into `fuzz/corpus/<target>/`
//! (`cargo run --manifest-path fuzz/Cargo.toml --bin seeds`). Seeds are named `seed-<n>`;
//! files of other names (inputs the fuzzer found, regressions) are left alone.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use tcpip::host::afd::wire;
use tcpip::nt::types::*;
use tcpip_fuzz::control::Ioctl;
use tcpip_fuzz::frames::{self, ACK, FIN, OURS, PEER, PEER_MAC, PSH, SYN};
use tcpip_fuzz::ingress::{Step, encode};

fn write(target: &str, seeds: &[Vec<u8>]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus folder");
    for (n, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{n}")), seed).expect("seed");
    }
}

fn prefixed(byte: u8, rest: &[u8]) -> Vec<u8> {
    [&[byte][..], rest].concat()
}

fn main() {
    let address = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80);
    let ta = wire::ta_ip_address(address).to_vec();

    let two_entries = [
        wire::ea_entry(b"Other", b"value"),
        wire::address_file_ea(address),
    ];
    let mut chained = two_entries[0].clone();
    chained.resize(chained.len().div_ceil(4) * 4, 0);
    let next = chained.len() as u32;
    chained[..4].copy_from_slice(&next.to_le_bytes());
    chained.extend_from_slice(&two_entries[1]);
    write(
        "ea",
        &[
            wire::address_file_ea(address),
            wire::connection_file_ea(),
            chained,
            Vec::new(),
        ],
    );

    // A TRANSPORT_ADDRESS of two entries, a non-IP one first.
    let mut generic = 2i32.to_le_bytes().to_vec();
    generic.extend_from_slice(&[4, 0, 17, 0, 1, 2, 3, 4]);
    generic.extend_from_slice(&ta[4..]);
    write(
        "address",
        &[ta.clone(), generic, [&7u32.to_le_bytes()[..], &ta].concat()],
    );

    let mut listen = vec![0u8; 32];
    listen[..4].copy_from_slice(&TDI_QUERY_ADDRESS_INFO.to_le_bytes());
    let mut disconnect = vec![0u8; 32];
    disconnect[0] = 4;
    disconnect.extend_from_slice(&(-1_000_000i64).to_le_bytes());
    disconnect.extend_from_slice(&133_801_632_000_000_000i64.to_le_bytes());
    write("request", &[listen, disconnect, vec![0xff; 48]]);

    let query = wire::query_information_ex(
        CO_TL_ENTITY,
        0,
        INFO_CLASS_PROTOCOL,
        INFO_TYPE_PROVIDER,
        0x101,
    );
    let set = wire::set_information_ex(
        CO_TL_ENTITY,
        0,
        INFO_CLASS_PROTOCOL,
        INFO_TYPE_CONNECTION,
        TCP_SOCKET_NODELAY,
        &1u32.to_le_bytes(),
    );
    write(
        "ioctl",
        &[
            prefixed(0, &query),
            prefixed(1, &set),
            prefixed(2, &[1, 0, 0, 0, 10, 0, 0, 2, 255, 255, 255, 0]),
            prefixed(3, &[1, 0]),
            prefixed(4, b"answerout-buffer"),
        ],
    );

    let mut echo = vec![0u8; 20];
    echo[..4].copy_from_slice(&[127, 0, 0, 1]);
    echo[4..8].copy_from_slice(&1000u32.to_le_bytes());
    echo[8..10].copy_from_slice(&20u16.to_le_bytes());
    echo[10..12].copy_from_slice(&8u16.to_le_bytes());
    echo[13] = 64;
    echo.extend_from_slice(b"pingdata");
    let mut with_options = echo.clone();
    with_options[12] = 1;
    with_options[16..18].copy_from_slice(&28u16.to_le_bytes());
    with_options[18] = 4;
    with_options.extend_from_slice(&[1, 1, 1, 0]);
    write("icmp_echo_request", &[echo, with_options]);

    let mut route = vec![0u8; 52];
    route[..4].copy_from_slice(&[10, 1, 0, 0]);
    route[24..28].copy_from_slice(&[10, 13, 0, 1]);
    route[28..32].copy_from_slice(&4u32.to_le_bytes());
    route[40..44].copy_from_slice(&[255, 255, 0, 0]);
    let mut arp = vec![0u8; 24];
    arp[4..8].copy_from_slice(&6u32.to_le_bytes());
    arp[8..14].copy_from_slice(&PEER_MAC);
    arp[16..20].copy_from_slice(&PEER.octets());
    arp[20..24].copy_from_slice(&4u32.to_le_bytes());
    let route_set = wire::set_information_ex(
        CL_NL_ENTITY,
        1,
        INFO_CLASS_PROTOCOL,
        INFO_TYPE_PROVIDER,
        0x101,
        &route,
    );
    let arp_set = wire::set_information_ex(
        AT_ENTITY,
        1,
        INFO_CLASS_PROTOCOL,
        INFO_TYPE_PROVIDER,
        0x101,
        &arp,
    );
    write(
        "info_set",
        &[
            [&[0u8, 1][..], &route].concat(),
            [&[1u8, 1][..], &arp].concat(),
            [&[2u8, 0][..], &[1][..]].concat(),
            [&[3u8, 0][..], &64u32.to_le_bytes()].concat(),
        ],
    );

    let request = frames::icmp(PEER, OURS, 8, 0, &[0, 1, 0, 7, b'a', b'b', b'c', b'd']);
    let reply = frames::icmp(PEER, OURS, 0, 0, &[0, 1, 0, 7, b'a', b'b', b'c', b'd']);
    let datagram = frames::udp(
        SocketAddrV4::new(OURS, 4000),
        SocketAddrV4::new(PEER, 53),
        b"query",
    );
    let unreachable = frames::icmp(PEER, OURS, 3, 3, &[&[0u8; 4][..], &datagram[..28]].concat());
    write(
        "icmp_wire",
        &[
            prefixed(1, &request),
            prefixed(1, &reply),
            prefixed(1, &unreachable),
            prefixed(0, &request),
        ],
    );
    write(
        "udp_wire",
        &[prefixed(1, &datagram), prefixed(0, &datagram)],
    );

    let segment = |flags, payload: &[u8]| {
        frames::Segment {
            src: SocketAddrV4::new(PEER, 40000),
            dst: SocketAddrV4::new(OURS, 80),
            seq: 1,
            ack: 2,
            flags,
            window: 8192,
            options: &[2, 4, 5, 0xb4],
            payload,
        }
        .packet()
    };
    write(
        "segment",
        &[
            segment(SYN, b""),
            segment(ACK | PSH, b"data"),
            segment(FIN | ACK, b""),
        ],
    );

    // Arbitrary-decoded targets: any bytes are an input; these decode to a few steps each.
    let bytes = |seed: u32, len: usize| -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    };
    write("fragment", &[bytes(1, 64), bytes(2, 256), bytes(3, 1024)]);
    write("neighbors", &[bytes(4, 64), bytes(5, 256), bytes(6, 1024)]);

    let tcp = |target, flags, payload: &[u8]| Step::Tcp {
        target,
        flags,
        seq: 0,
        ack: 0,
        window: 8192,
        options: Vec::new(),
        payload: payload.to_vec(),
    };
    let fragment = |offset, more, payload: &[u8]| Step::Fragment {
        ident: 9,
        offset,
        more,
        payload: payload.to_vec(),
    };
    write(
        "ingress",
        &[
            encode(&[
                tcp(0, ACK | PSH, b"hello"),
                tcp(0, ACK | PSH, b" world"),
                tcp(0, FIN | ACK, b""),
            ]),
            encode(&[
                tcp(1, SYN | ACK, b""),
                tcp(1, ACK | PSH, b"reply"),
                Step::Time(100),
            ]),
            encode(&[
                tcp(2, SYN, b""),
                tcp(2, ACK, b""),
                tcp(2, ACK | PSH, b"new"),
                Step::Time(50),
                tcp(0, RST_FLAG, b""),
            ]),
            encode(&[
                Step::Udp {
                    port: 0,
                    payload: b"datagram".to_vec(),
                },
                Step::Udp {
                    port: 2,
                    payload: b"broadcast".to_vec(),
                },
                Step::Udp {
                    port: 3,
                    payload: b"closed port".to_vec(),
                },
            ]),
            encode(&[
                fragment(0, true, &[7u8; 64]),
                fragment(9, false, &[8u8; 32]),
            ]),
            encode(&[
                Step::Icmp {
                    kind: 8,
                    code: 0,
                    body: vec![0, 1, 0, 1, 1, 2, 3, 4],
                },
                Step::Arp {
                    op: 0,
                    sender: 1,
                    target: 0,
                    mac: 9,
                },
                Step::Corrupt {
                    at: 20,
                    value: 0xff,
                },
                tcp(0, ACK, b"corrupted"),
                Step::Time(1000),
            ]),
            encode(&[
                Step::Send { conn: 0, len: 3000 },
                tcp(0, ACK, b""),
                Step::Disconnect {
                    conn: 0,
                    flags: 3,
                    timeout: 255,
                },
                tcp(0, FIN | ACK, b""),
                Step::Time(3000),
            ]),
            encode(&[
                Step::Send { conn: 0, len: 100 },
                Step::Time(500),
                Step::Close(4),
                Step::SendDatagram { to: 0, len: 4000 },
                Step::SendDatagram { to: 2, len: 10 },
                Step::Time(400),
            ]),
        ],
    );
    let ioctl = |code: u8, file: u8, output: u16, input: Vec<u8>| {
        let mut out = Vec::new();
        Ioctl {
            code,
            file,
            output,
            input,
        }
        .encode(&mut out);
        out
    };
    let query = |entity, instance, class, kind, id| {
        ioctl(
            0,
            0,
            4096,
            wire::query_information_ex(entity, instance, class, kind, id),
        )
    };
    let echo = {
        let mut echo = vec![0u8; 20];
        echo[..4].copy_from_slice(&PEER.octets());
        echo[4..8].copy_from_slice(&500u32.to_le_bytes());
        echo[8..10].copy_from_slice(&20u16.to_le_bytes());
        echo[10..12].copy_from_slice(&4u16.to_le_bytes());
        echo.extend_from_slice(b"ping");
        echo
    };
    write(
        "control",
        &[
            [
                query(
                    GENERIC_ENTITY,
                    0,
                    INFO_CLASS_GENERIC,
                    INFO_TYPE_PROVIDER,
                    ENTITY_LIST_ID,
                ),
                query(
                    CO_TL_ENTITY,
                    0,
                    INFO_CLASS_PROTOCOL,
                    INFO_TYPE_PROVIDER,
                    0x101,
                ),
                query(
                    CL_TL_ENTITY,
                    0,
                    INFO_CLASS_PROTOCOL,
                    INFO_TYPE_PROVIDER,
                    0x101,
                ),
                query(
                    CL_NL_ENTITY,
                    0,
                    INFO_CLASS_PROTOCOL,
                    INFO_TYPE_PROVIDER,
                    0x102,
                ),
                query(AT_ENTITY, 0, INFO_CLASS_PROTOCOL, INFO_TYPE_PROVIDER, 0x101),
            ]
            .concat(),
            [
                ioctl(1, 0, 0, [&route_set[..]].concat()),
                ioctl(1, 0, 0, [&arp_set[..]].concat()),
                query(
                    CL_NL_ENTITY,
                    0,
                    INFO_CLASS_PROTOCOL,
                    INFO_TYPE_PROVIDER,
                    0x101,
                ),
            ]
            .concat(),
            [
                ioctl(4, 0, 1024, Vec::new()),
                ioctl(2, 0, 12, vec![1, 0, 0, 0, 10, 13, 0, 9, 255, 255, 0, 0]),
                ioctl(3, 0, 0, vec![1, 0]),
            ]
            .concat(),
            [
                ioctl(5, 0, 256, echo),
                ioctl(6, 0, 8, PEER.octets().to_vec()),
            ]
            .concat(),
            ioctl(
                0,
                3,
                4096,
                wire::query_information_ex(
                    CO_TL_ENTITY,
                    0,
                    INFO_CLASS_PROTOCOL,
                    INFO_TYPE_CONNECTION,
                    1,
                ),
            ),
        ],
    );
    eprintln!("seeds written");
}

const RST_FLAG: u8 = frames::RST;
