//! `IOCTL_ICMP_ECHO_REQUEST` input: the `ICMP_ECHO_REQUEST` that iphlpapi's `IcmpSendEcho` and
//! `IcmpSendEcho2` build (`dll/win32/iphlpapi/icmp.c` in ReactOS): the structure, then the IP
//! options at `OptionsOffset`, then the echo data at `DataOffset`; the input buffer may be
//! longer (iphlpapi makes it as long as the reply buffer).
#![forbid(unsafe_code)]

use crate::nt::NtStatus;
use crate::nt::types::ICMP_ECHO_REQUEST;
use core::net::Ipv4Addr;
use zerocopy::FromBytes;

/// The TTL of an echo request that does not ask for one (Windows' default TTL).
pub const DEFAULT_TTL: u8 = 128;

/// The largest echo data an IPv4 packet carries (65,535 − 20 − 8).
pub const MAX_DATA: usize = 65_507;

/// `IP_FLAG_DF` of `IP_OPTION_INFORMATION::Flags`: don't fragment (`ping -f`).
pub const IP_FLAG_DF: u8 = 0x2;

/// A decoded echo request; `data` borrows the input buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoRequest<'a> {
    pub dst: Ipv4Addr,
    pub ttl: u8,
    /// The type of service byte (`ping -v`).
    pub tos: u8,
    /// Don't fragment (`ping -f`): a request past the MTU is `IP_PACKET_TOO_BIG`.
    pub dont_fragment: bool,
    /// Milliseconds to wait for the reply.
    pub timeout_ms: u32,
    pub data: &'a [u8],
}

impl<'a> EchoRequest<'a> {
    /// Decodes the input buffer. `STATUS_INVALID_PARAMETER` for a buffer shorter than the
    /// structure, data or options past its end, more data than an IPv4 packet carries, or
    /// the destination 0.0.0.0. A TTL of 0 (iphlpapi sends 0 when the caller gave no options)
    /// means [`DEFAULT_TTL`]. Any IRQL.
    pub fn parse(input: &'a [u8]) -> Result<Self, NtStatus> {
        let (request, _) =
            ICMP_ECHO_REQUEST::read_from_prefix(input).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let data_start = usize::from(request.DataOffset);
        let data = data_start
            .checked_add(usize::from(request.DataSize))
            .and_then(|end| input.get(data_start..end))
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        let options_end =
            usize::from(request.OptionsOffset).saturating_add(usize::from(request.OptionsSize));
        if data.len() > MAX_DATA || (request.OptionsSize > 0 && options_end > input.len()) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let dst = Ipv4Addr::from(request.Address);
        if dst.is_unspecified() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let ttl = match request.Ttl {
            0 => DEFAULT_TTL,
            ttl => ttl,
        };
        Ok(Self {
            dst,
            ttl,
            tos: request.Tos,
            dont_fragment: request.Flags & IP_FLAG_DF != 0,
            timeout_ms: request.Timeout,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    fn input(data: &[u8], ttl: u8) -> Vec<u8> {
        let request = ICMP_ECHO_REQUEST {
            Address: [127, 0, 0, 1],
            Timeout: 1000,
            DataOffset: 20,
            DataSize: data.len() as u16,
            HasOptions: u8::from(ttl != 0),
            Ttl: ttl,
            OptionsOffset: 20,
            ..ICMP_ECHO_REQUEST::default()
        };
        let mut bytes = request.as_bytes().to_vec();
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn reads_what_iphlpapi_sends() {
        let bytes = input(b"abcd", 0);
        let request = EchoRequest::parse(&bytes).unwrap();
        assert_eq!(request.dst, Ipv4Addr::LOCALHOST);
        assert_eq!((request.ttl, request.timeout_ms), (DEFAULT_TTL, 1000));
        assert_eq!(request.data, b"abcd");
        assert_eq!(EchoRequest::parse(&input(b"", 3)).unwrap().ttl, 3);
    }

    #[test]
    fn rejects_short_or_inconsistent_input() {
        let bytes = input(b"abcd", 0);
        for len in 0..bytes.len() {
            assert_eq!(
                EchoRequest::parse(&bytes[..len]),
                Err(NtStatus::INVALID_PARAMETER),
                "{len} bytes"
            );
        }
        let mut options = bytes.clone();
        options[18] = 40; // OptionsSize past the end
        assert_eq!(
            EchoRequest::parse(&options),
            Err(NtStatus::INVALID_PARAMETER)
        );
        let mut zero = bytes;
        zero[..4].fill(0);
        assert_eq!(EchoRequest::parse(&zero), Err(NtStatus::INVALID_PARAMETER));
    }
}
