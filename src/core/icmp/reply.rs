//! The `ICMP_ECHO_REPLY` an `IOCTL_ICMP_ECHO_REQUEST` returns (METHOD_BUFFERED): one reply
//! structure at the start of the output buffer, the echoed data right after it, cut to the
//! buffer. `Data` holds the data's address in the caller's own buffer (`Irp->UserBuffer` plus
//! its offset), since the I/O manager copies the system buffer back there; `Reserved` of the
//! first reply is the number of replies, which iphlpapi reads and clears.
#![forbid(unsafe_code)]

use crate::nt::irp::Irp;
use crate::nt::types::ICMP_ECHO_REPLY;
use core::net::Ipv4Addr;
use zerocopy::IntoBytes;

/// Bytes of the reply structure.
pub const REPLY_LEN: usize = core::mem::size_of::<ICMP_ECHO_REPLY>();

/// One reply, as the ICMP layer fills it.
#[derive(Clone, Copy, Debug)]
pub struct Reply<'a> {
    /// The host that answered (the destination, or the router that sent an error).
    pub address: Ipv4Addr,
    /// The `IP_*` status.
    pub status: u32,
    pub round_trip_ms: u32,
    pub ttl: u8,
    pub tos: u8,
    pub flags: u8,
    /// The echoed data (none for an error or a timeout).
    pub data: &'a [u8],
    /// Replies counted in `Reserved`: 1, or 0 for a timeout.
    pub count: u16,
}

/// Writes `reply` into the output buffer of `irp`. Returns the bytes written (the IRP's
/// `Information`), or 0 if the buffer cannot hold the reply structure (the dispatch routine
/// refused such requests). IRQL ≤ DISPATCH_LEVEL, under the core lock.
pub fn write(irp: &mut Irp, reply: &Reply<'_>) -> usize {
    let room = irp.stack().ioctl().output_length as usize;
    let user = irp.user_buffer() as usize;
    let buffer = irp.system_buffer(room);
    let Some((head, tail)) = buffer.split_at_mut_checked(REPLY_LEN) else {
        return 0;
    };
    let mut take = 0;
    for (to, from) in tail.iter_mut().zip(reply.data) {
        *to = *from;
        take += 1;
    }
    let mut out = ICMP_ECHO_REPLY {
        Address: reply.address.octets(),
        Status: reply.status,
        RoundTripTime: reply.round_trip_ms,
        DataSize: take as u16,
        Reserved: reply.count,
        Data: if take > 0 {
            user.wrapping_add(REPLY_LEN)
        } else {
            0
        },
        ..ICMP_ECHO_REPLY::default()
    };
    out.Options.Ttl = reply.ttl;
    out.Options.Tos = reply.tos;
    out.Options.Flags = reply.flags;
    head.copy_from_slice(out.as_bytes());
    REPLY_LEN + take
}
