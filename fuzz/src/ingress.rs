//! The input of the `ingress` target: a sequence of steps, each a frame for the driver (raw, or
//! built from a template aimed at one of the [`World`]'s endpoints, with fields from the
//! input), a corruption of the frame just built, or time passing.
//!
//! Encoding (every missing byte reads as 0; decoding stops at the end of the input):
//!
//! ```text
//! step    := kind:u8 body
//! kind%10 0 raw Ethernet frame     len:u16le bytes
//!         1 raw IPv4 packet        len:u16le bytes             (Ethernet header added)
//!         2 TCP segment            target:u8 flags:u8 seq:i16le ack:i16le window:u16le
//!                                  options:u8(len) bytes len:u16le payload
//!         3 UDP datagram           port:u8 len:u16le payload
//!         4 ICMP message           type:u8 code:u8 len:u16le body
//!         5 ARP                    op:u8 sender:u8 target:u8 mac:u8
//!         6 IPv4 fragment (UDP)    ident:u8 offset:u16le(×8) more:u8 len:u16le payload
//!         7 time                   ms:u16le(×10; [`MAX_TIME`] per input in all)
//!         8 corrupt                at:u16le value:u8 (the next frame built; no-op if none)
//!         9 truncate               len:u16le (the next frame built)
//!        10 TDI_SEND               conn:u8 len:u16le
//!        11 TDI_DISCONNECT         conn:u8 flags:u8 timeout:u8
//!        12 TDI_RECEIVE            conn:u8 room:u16le
//!        13 close a file           file:u8
//!        14 TDI_SEND_DATAGRAM      to:u8 len:u16le
//!        15 device I/O control     (the `control` target's request: `crate::control`)
//! ```
//!
//! The requests (10 to 14) are the driver's side of the conversation: data in flight to be
//! acknowledged or retransmitted, the closing states (FIN-WAIT, CLOSE-WAIT, LAST-ACK,
//! TIME-WAIT), aborts, connections orphaned by a close, datagrams to resolve and to fragment.
//! `conn % 2`: 0 the accepted connection, 1 the connecting one.
//!
//! TCP targets (`target % 4`): 0 the accepted connection (sequence and acknowledgment
//! numbers relative to what the harness follows), 1 the connection in SYN-SENT, 2 the
//! listener from one of 64 peer ports (`seq` gives the port; the acknowledgment is relative to
//! the SYN-ACK the listener sent that port), 3 a closed port of ours.

use crate::control::Ioctl;
use crate::frames::{self, OURS, PEER, PEER_MAC};
use crate::world::{LISTEN_PORT, LISTENER_ISN, Part, UDP_PORT, Warm, World, file};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// At most this many steps per input (the target is slow per execution).
pub const MAX_STEPS: usize = 24;

/// The virtual time an input's time steps may let pass in all: past the driver's longest
/// timeouts and their chains (an ARP entry's 60 s, then the data timeout's 120 s, then
/// TIME-WAIT's 10 s; the SYN-RECEIVED 75 s, the connect's 21 s, reassembly's 30 s; smoltcp's
/// longest retransmission interval, 60 s). What follows is repetition (an ARP request a second
/// for a neighbour that never answers, zero-window probes a minute apart) that cost an input
/// up to hours of virtual time and thousands of timer DPCs.
const MAX_TIME: Duration = Duration::from_secs(300);

/// One step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Raw(Vec<u8>),
    Ip(Vec<u8>),
    Tcp {
        target: u8,
        flags: u8,
        seq: i16,
        ack: i16,
        window: u16,
        options: Vec<u8>,
        payload: Vec<u8>,
    },
    Udp {
        port: u8,
        payload: Vec<u8>,
    },
    Icmp {
        kind: u8,
        code: u8,
        body: Vec<u8>,
    },
    Arp {
        op: u8,
        sender: u8,
        target: u8,
        mac: u8,
    },
    Fragment {
        ident: u8,
        offset: u16,
        more: bool,
        payload: Vec<u8>,
    },
    Time(u16),
    Corrupt {
        at: u16,
        value: u8,
    },
    Truncate(u16),
    Send {
        conn: u8,
        len: u16,
    },
    Disconnect {
        conn: u8,
        flags: u8,
        timeout: u8,
    },
    Receive {
        conn: u8,
        room: u16,
    },
    Close(u8),
    SendDatagram {
        to: u8,
        len: u16,
    },
    Ioctl(Ioctl),
}

/// The connection endpoint `conn` names.
fn endpoint(conn: u8) -> usize {
    if conn.is_multiple_of(2) {
        file::ACCEPTED
    } else {
        file::CLIENT
    }
}

/// The `TDI_DISCONNECT` flags a byte picks (none, wait, abort, release, both, unknown).
fn disconnect_flags(flags: u8) -> u32 {
    [0, 1, 2, 4, 6, 8][usize::from(flags % 6)]
}

/// Reads the input; missing bytes are 0.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken.to_vec()
    }

    fn sized(&mut self) -> Vec<u8> {
        let len = usize::from(self.u16()) % 1600;
        self.bytes(len)
    }
}

/// Decodes the steps of an input.
pub fn decode(data: &[u8]) -> Vec<Step> {
    let mut reader = Reader(data);
    let mut steps = Vec::new();
    while !reader.0.is_empty() && steps.len() < MAX_STEPS {
        let step = match reader.u8() % 16 {
            0 => Step::Raw(reader.sized()),
            1 => Step::Ip(reader.sized()),
            2 => Step::Tcp {
                target: reader.u8(),
                flags: reader.u8(),
                seq: reader.u16() as i16,
                ack: reader.u16() as i16,
                window: reader.u16(),
                options: {
                    let len = usize::from(reader.u8() % 41);
                    reader.bytes(len)
                },
                payload: reader.sized(),
            },
            3 => Step::Udp {
                port: reader.u8(),
                payload: reader.sized(),
            },
            4 => Step::Icmp {
                kind: reader.u8(),
                code: reader.u8(),
                body: reader.sized(),
            },
            5 => Step::Arp {
                op: reader.u8(),
                sender: reader.u8(),
                target: reader.u8(),
                mac: reader.u8(),
            },
            6 => Step::Fragment {
                ident: reader.u8(),
                offset: reader.u16(),
                more: reader.u8() & 1 != 0,
                payload: reader.sized(),
            },
            7 => Step::Time(reader.u16()),
            8 => Step::Corrupt {
                at: reader.u16(),
                value: reader.u8(),
            },
            9 => Step::Truncate(reader.u16()),
            10 => Step::Send {
                conn: reader.u8(),
                len: reader.u16(),
            },
            11 => Step::Disconnect {
                conn: reader.u8(),
                flags: reader.u8(),
                timeout: reader.u8(),
            },
            12 => Step::Receive {
                conn: reader.u8(),
                room: reader.u16(),
            },
            13 => Step::Close(reader.u8()),
            14 => Step::SendDatagram {
                to: reader.u8(),
                len: reader.u16(),
            },
            _ => Step::Ioctl(Ioctl::decode(&mut reader.0)),
        };
        steps.push(step);
    }
    steps
}

/// Encodes steps (the seed corpus): `decode(&encode(steps)) == steps` for steps whose
/// lengths are in range.
pub fn encode(steps: &[Step]) -> Vec<u8> {
    let mut out = Vec::new();
    let sized = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    for step in steps {
        match step {
            Step::Raw(bytes) => {
                out.push(0);
                sized(&mut out, bytes);
            }
            Step::Ip(bytes) => {
                out.push(1);
                sized(&mut out, bytes);
            }
            Step::Tcp {
                target,
                flags,
                seq,
                ack,
                window,
                options,
                payload,
            } => {
                out.extend_from_slice(&[2, *target, *flags]);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&ack.to_le_bytes());
                out.extend_from_slice(&window.to_le_bytes());
                out.push(options.len() as u8);
                out.extend_from_slice(options);
                sized(&mut out, payload);
            }
            Step::Udp { port, payload } => {
                out.extend_from_slice(&[3, *port]);
                sized(&mut out, payload);
            }
            Step::Icmp { kind, code, body } => {
                out.extend_from_slice(&[4, *kind, *code]);
                sized(&mut out, body);
            }
            Step::Arp {
                op,
                sender,
                target,
                mac,
            } => {
                out.extend_from_slice(&[5, *op, *sender, *target, *mac]);
            }
            Step::Fragment {
                ident,
                offset,
                more,
                payload,
            } => {
                out.extend_from_slice(&[6, *ident]);
                out.extend_from_slice(&offset.to_le_bytes());
                out.push(u8::from(*more));
                sized(&mut out, payload);
            }
            Step::Time(ms) => {
                out.push(7);
                out.extend_from_slice(&ms.to_le_bytes());
            }
            Step::Corrupt { at, value } => {
                out.push(8);
                out.extend_from_slice(&at.to_le_bytes());
                out.push(*value);
            }
            Step::Truncate(len) => {
                out.push(9);
                out.extend_from_slice(&len.to_le_bytes());
            }
            Step::Send { conn, len } => {
                out.extend_from_slice(&[10, *conn]);
                out.extend_from_slice(&len.to_le_bytes());
            }
            Step::Disconnect {
                conn,
                flags,
                timeout,
            } => out.extend_from_slice(&[11, *conn, *flags, *timeout]),
            Step::Receive { conn, room } => {
                out.extend_from_slice(&[12, *conn]);
                out.extend_from_slice(&room.to_le_bytes());
            }
            Step::Close(which) => out.extend_from_slice(&[13, *which]),
            Step::SendDatagram { to, len } => {
                out.extend_from_slice(&[14, *to]);
                out.extend_from_slice(&len.to_le_bytes());
            }
            Step::Ioctl(ioctl) => {
                out.push(15);
                ioctl.encode(&mut out);
            }
        }
    }
    out
}

/// Builds the frame of a frame step, from the world's state; `None` for the other steps.
fn build(step: &Step, world: &World) -> Option<Vec<u8>> {
    let packet = match step {
        Step::Raw(bytes) => return Some(bytes.clone()),
        Step::Ip(bytes) => bytes.clone(),
        Step::Tcp {
            target,
            flags,
            seq,
            ack,
            window,
            options,
            payload,
        } => {
            let (src, dst, seq, ack) = match target % 4 {
                0 => {
                    let c = world.accepted;
                    let seq = c.peer_next.wrapping_add(*seq as i32 as u32);
                    (
                        c.remote,
                        c.local,
                        seq,
                        c.our_next.wrapping_add(*ack as i32 as u32),
                    )
                }
                1 => {
                    let c = world.connecting;
                    let seq = c.peer_next.wrapping_add(*seq as i32 as u32);
                    (
                        c.remote,
                        c.local,
                        seq,
                        c.our_next.wrapping_add(*ack as i32 as u32),
                    )
                }
                2 => {
                    // The peer's SYN has sequence number LISTENER_ISN; what follows it, one
                    // more; the acknowledgment is relative to the listener's SYN-ACK, if any.
                    let port = 1024 + (*seq as u16 % 64);
                    let src = SocketAddrV4::new(PEER, port);
                    let dst = SocketAddrV4::new(OURS, LISTEN_PORT);
                    let seq = LISTENER_ISN.wrapping_add(u32::from(flags & frames::SYN == 0));
                    let next = world.half_open.iter().find(|(p, _)| *p == port);
                    let ack = next.map_or(0, |(_, n)| *n).wrapping_add(*ack as i32 as u32);
                    (src, dst, seq, ack)
                }
                _ => {
                    let src = SocketAddrV4::new(PEER, 5555);
                    let dst = SocketAddrV4::new(OURS, 8080);
                    (src, dst, *seq as i32 as u32, *ack as i32 as u32)
                }
            };
            frames::Segment {
                src,
                dst,
                seq,
                ack,
                flags: *flags,
                window: *window,
                options,
                payload,
            }
            .packet()
        }
        Step::Udp { port, payload } => {
            let dst = match port % 4 {
                0 | 1 => SocketAddrV4::new(OURS, UDP_PORT),
                2 => SocketAddrV4::new(Ipv4Addr::BROADCAST, UDP_PORT),
                _ => SocketAddrV4::new(OURS, 1000 + u16::from(*port)),
            };
            frames::udp(SocketAddrV4::new(PEER, 5353), dst, payload)
        }
        Step::Icmp { kind, code, body } => frames::icmp(PEER, OURS, *kind, *code, body),
        Step::Arp {
            op,
            sender,
            target,
            mac,
        } => {
            let sender = Ipv4Addr::new(10, 13, 0, *sender);
            let target = if target & 1 == 0 {
                OURS
            } else {
                Ipv4Addr::new(10, 13, 0, *target)
            };
            let mut mac_address = PEER_MAC;
            mac_address[5] = *mac;
            return Some(frames::arp(op & 1 != 0, mac_address, sender, target));
        }
        Step::Fragment {
            ident,
            offset,
            more,
            payload,
        } => {
            // Fragments of a UDP datagram to the UDP address file: the first carries the
            // UDP header (its length and checksum as for a datagram of this fragment alone).
            let offset = usize::from(*offset % 8192) * 8;
            let body = if offset == 0 {
                let whole = frames::udp(
                    SocketAddrV4::new(PEER, 5353),
                    SocketAddrV4::new(OURS, UDP_PORT),
                    payload,
                );
                whole[20..].to_vec()
            } else {
                payload.clone()
            };
            frames::ipv4(PEER, OURS, 17, &body, (u16::from(*ident), offset, *more))
        }
        _ => return None,
    };
    Some(frames::ethernet_ipv4(&packet))
}

/// The part of the world a frame step may change for good (`crate::world` puts it back
/// after the input): segments built for the accepted or the connecting connection, and ARP
/// frames (the neighbour caches hold no pool, so the baseline check would not see them).
fn changes(step: &Step, frame: &[u8]) -> Option<Part> {
    match step {
        Step::Tcp { target, .. } if target % 4 == 0 => Some(Part::Accepted),
        Step::Tcp { target, .. } if target % 4 == 1 => Some(Part::Connecting),
        _ if frames::is_arp(frame) => Some(Part::Neighbours),
        _ => None,
    }
}

/// Runs the steps against the world (`crate::session`) and checks the verdict.
pub fn run(data: &[u8]) {
    let steps = decode(data);
    crate::session::run(Warm::All, |world| run_steps(&steps, world));
}

/// Runs the steps against `world`.
fn run_steps(steps: &[Step], world: &mut World) {
    let mut edits: Vec<&Step> = Vec::new();
    let mut time_left = MAX_TIME;
    for step in steps {
        match step {
            Step::Time(ms) => {
                let time = Duration::from_millis(u64::from(*ms) * 10).min(time_left);
                time_left -= time;
                world.advance(time);
            }
            Step::Corrupt { .. } | Step::Truncate(_) => edits.push(step),
            Step::Send { conn, len } => world.send(endpoint(*conn), usize::from(*len) % 4096),
            Step::Disconnect {
                conn,
                flags,
                timeout,
            } => {
                // 255: no timeout; else a relative one of `timeout` × 10 ms (0: at once).
                let timeout = (*timeout != 255).then(|| -i64::from(*timeout) * 100_000);
                world.disconnect(endpoint(*conn), disconnect_flags(*flags), timeout);
            }
            Step::Receive { conn, room } => {
                world.receive(endpoint(*conn), usize::from(*room) % 8192)
            }
            Step::Close(which) => world.close(usize::from(*which) % file::COUNT),
            Step::SendDatagram { to, len } => {
                let to = match to % 4 {
                    0 => SocketAddrV4::new(PEER, 5353),
                    1 => SocketAddrV4::new(Ipv4Addr::BROADCAST, UDP_PORT),
                    2 => SocketAddrV4::new(Ipv4Addr::new(10, 13, 0, 77), 9),
                    _ => SocketAddrV4::new(OURS, UDP_PORT),
                };
                world.send_datagram(to, usize::from(*len) % 9000);
            }
            Step::Ioctl(ioctl) => ioctl.apply(world),
            _ => {
                let Some(mut frame) = build(step, world) else {
                    continue;
                };
                for edit in edits.drain(..) {
                    match *edit {
                        Step::Corrupt { at, value } => {
                            if !frame.is_empty() {
                                let at = usize::from(at) % frame.len();
                                frame[at] = value;
                            }
                        }
                        Step::Truncate(len) => frame.truncate(usize::from(len)),
                        _ => {}
                    }
                }
                if let Some(part) = changes(step, &frame) {
                    world.change(part);
                }
                world.indicate(&frame);
                // In-order data from the peer moves its next sequence number on.
                if let Step::Tcp {
                    target,
                    flags,
                    seq: 0,
                    payload,
                    ..
                } = step
                {
                    let c = match target % 4 {
                        0 => &mut world.accepted,
                        1 => &mut world.connecting,
                        _ => continue,
                    };
                    let syn_fin = u32::from(flags & (frames::SYN | frames::FIN) != 0);
                    c.peer_next = c.peer_next.wrapping_add(payload.len() as u32 + syn_fin);
                }
            }
        }
    }
}
