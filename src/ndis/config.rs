//! The IP configuration of an adapter, as RT reads it (`ReadIpConfiguration` in ReactOS's
//! `lan.c`): the key `Services\Tcpip\Parameters\Interfaces\{GUID}`, where the TCP/IP property
//! page (netcfgx) writes `EnableDHCP` (REG_DWORD) and, for a static address, `IPAddress`,
//! `SubnetMask` and `DefaultGateway` (REG_MULTI_SZ of dotted quads, of which the first counts).
//! With DHCP the interface has no address until the DHCP client sets one
//! (`IOCTL_SET_IP_ADDRESS`). netcfgx's defaults are `EnableDHCP` = 1 and `0.0.0.0` for the
//! rest: an all-zero static address means "not configured".
#![forbid(unsafe_code)]

use crate::nt::ndis::registry::{Key, VALUE_BUFFER, Value};
use crate::nt::pool::try_box;
use core::fmt;
use core::net::Ipv4Addr;

/// What the registry says about an adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpConfig {
    /// `EnableDHCP` = 1: no address until the DHCP client sets one.
    Dhcp,
    /// A static address with its prefix length and an optional default gateway.
    Static {
        address: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
    },
    /// No key, no usable address: the interface keeps whatever it has.
    None,
}

impl fmt::Display for IpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpConfig::Dhcp => f.write_str("DHCP"),
            IpConfig::Static {
                address,
                prefix,
                gateway: Some(gateway),
            } => write!(f, "static {address}/{prefix} via {gateway}"),
            IpConfig::Static {
                address, prefix, ..
            } => write!(f, "static {address}/{prefix}"),
            IpConfig::None => f.write_str("no IP configuration"),
        }
    }
}

/// `\Registry\Machine\System\CurrentControlSet\Services\Tcpip\Parameters\Interfaces\`.
const INTERFACES: &str =
    "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\Tcpip\\Parameters\\Interfaces\\";
/// Room for [`INTERFACES`] and a `{GUID}` (38 characters) with some slack.
const PATH: usize = 160;

/// `name` as UTF-16 into `out`; the units written. Any IRQL.
fn encode(name: &str, out: &mut [u16]) -> usize {
    let mut len = 0;
    for (slot, unit) in out.iter_mut().zip(name.encode_utf16()) {
        *slot = unit;
        len += 1;
    }
    len
}

/// Reads the configuration of the adapter whose interface name is `guid` (`{...}`).
/// PASSIVE_LEVEL.
pub fn read(guid: &[u16]) -> IpConfig {
    // In pool, not on the stack: this runs inside NdisRegisterProtocol, deep in DriverEntry.
    let Ok(mut buffers) = try_box(([0u16; PATH], [0u32; VALUE_BUFFER / 4])) else {
        return IpConfig::None;
    };
    let (path, buffer) = &mut *buffers;
    let prefix_len = encode(INTERFACES, path);
    let Some(tail) = path.get_mut(prefix_len..prefix_len + guid.len()) else {
        return IpConfig::None;
    };
    tail.copy_from_slice(guid);
    let Some(path) = path.get(..prefix_len + guid.len()) else {
        return IpConfig::None;
    };
    let Ok(key) = Key::open(path) else {
        return IpConfig::None;
    };
    if let Ok(Value::Dword(dhcp)) = query(&key, "EnableDHCP", buffer)
        && dhcp != 0
    {
        return IpConfig::Dhcp;
    }
    let address = first_address(&key, "IPAddress", buffer);
    let mask = first_address(&key, "SubnetMask", buffer);
    let gateway = first_address(&key, "DefaultGateway", buffer).filter(|g| !g.is_unspecified());
    match (address, mask.and_then(prefix_of)) {
        (Some(address), Some(prefix)) if !address.is_unspecified() => IpConfig::Static {
            address,
            prefix,
            gateway,
        },
        _ => IpConfig::None,
    }
}

/// Reads value `name` of `key` into `buffer`. PASSIVE_LEVEL.
fn query<'b>(
    key: &Key,
    name: &str,
    buffer: &'b mut [u32; VALUE_BUFFER / 4],
) -> Result<Value<'b>, crate::nt::NtStatus> {
    let mut wide = [0u16; 32];
    let len = encode(name, &mut wide);
    key.query(wide.get(..len).unwrap_or_default(), buffer)
}

/// The first dotted quad of string value `name`.
fn first_address(key: &Key, name: &str, buffer: &mut [u32; VALUE_BUFFER / 4]) -> Option<Ipv4Addr> {
    match query(key, name, buffer) {
        Ok(Value::Strings(data)) => parse_first(data),
        _ => None,
    }
}

/// The first string of REG_SZ/REG_MULTI_SZ data (UTF-16LE) as an IPv4 address.
pub fn parse_first(data: &[u8]) -> Option<Ipv4Addr> {
    let mut text = [0u8; 16];
    let mut len = 0;
    for &pair in data.as_chunks::<2>().0 {
        let unit = u16::from_le_bytes(pair);
        if unit == 0 {
            break;
        }
        let byte = u8::try_from(unit).ok().filter(u8::is_ascii)?;
        *text.get_mut(len)? = byte;
        len += 1;
    }
    core::str::from_utf8(text.get(..len)?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The prefix length of a contiguous subnet mask.
pub fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let prefix = bits.leading_ones();
    (bits.checked_shl(prefix).unwrap_or(0) == 0).then_some(prefix as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(text: &str) -> alloc::vec::Vec<u8> {
        text.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn the_first_string_of_a_multi_string_is_the_address() {
        let data = utf16("192.168.1.20\u{0}10.0.0.1\u{0}\u{0}");
        assert_eq!(parse_first(&data), Some(Ipv4Addr::new(192, 168, 1, 20)));
        assert_eq!(parse_first(&utf16("300.1.1.1\0")), None);
        assert_eq!(parse_first(&utf16("\0")), None);
        assert_eq!(parse_first(&utf16("1.2.3.4.5.6.7.8.9\0")), None);
    }

    #[test]
    fn masks_must_be_contiguous() {
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(prefix_of(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 0, 255, 0)), None);
    }
}
