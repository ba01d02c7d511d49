//! The peers the guest reaches through its network card, all inside the QEMU process or
//! started by it on this machine.
//!
//! QEMU's user-mode network runs with `restrict=on`: the guest reaches nothing outside the QEMU
//! process except what is forwarded. (Its UDP `hostfwd` does not help here: with `restrict=on`
//! the guest's replies to a forwarded datagram never reach the host, with the stock driver as
//! with ours.)
//!
//! - **TCP**: `guestfwd` hands every guest connection to [`TCP_PEER`] to a `cat` that QEMU
//!   starts for that connection: an echo server, one process per connection.
//! - **UDP**: QEMU's own TFTP server (`tftp=DIR`, at 10.0.2.2:69) serves [`TFTP_FILE`], whose
//!   bytes follow [`tftp_byte`]; the guest fetches it, one 512-byte DATA datagram and one ACK
//!   at a time, and checks every byte.
//!
//! A second card ([`SECOND`]) sits on a second user-mode network of its own, 10.0.3.0/24, with
//! nothing but QEMU's DHCP server (which answers pings to its address): the driver runs two
//! Ethernet interfaces, each leasing its own address.

use std::fs;
use std::path::{Path, PathBuf};

/// The card's MAC address (QEMU's default, given explicitly so the checks can rely on it).
pub const GUEST_MAC: &str = "52:54:00:12:34:56";
/// The address QEMU's DHCP server leases to the guest (its first, on 10.0.2.0/24).
pub const GUEST_IP: &str = "10.0.2.15";
/// The network of QEMU's user-mode network and its mask.
pub const NETWORK: (&str, &str) = ("10.0.2.0", "255.255.255.0");
/// QEMU's own address on it: DHCP and TFTP server (and, without `restrict=on`, the router).
pub const SERVER_IP: &str = "10.0.2.2";

/// The second card: its MAC, the address QEMU leases it, its network and mask, and QEMU's
/// address there.
pub struct Card {
    pub mac: &'static str,
    pub ip: &'static str,
    pub network: (&'static str, &'static str),
    pub server: &'static str,
}

/// The second card, on its own user-mode network.
pub const SECOND: Card = Card {
    mac: "52:54:00:12:34:57",
    ip: "10.0.3.15",
    network: ("10.0.3.0", "255.255.255.0"),
    server: "10.0.3.2",
};

/// The `-netdev user` options of the second card's network: restricted, on 10.0.3.0/24.
pub fn second_netdev() -> String {
    format!("user,id=net1,restrict=on,net={}/24", SECOND.network.0)
}

/// The MAC address QEMU's user network answers ARP with for one of its addresses: 52:55
/// followed by the IPv4 address.
pub fn slirp_mac(ip: &str) -> Option<String> {
    let octets: Vec<u8> = ip
        .split('.')
        .map(|o| o.parse().ok())
        .collect::<Option<_>>()?;
    let [a, b, c, d] = octets.as_slice() else {
        return None;
    };
    Some(format!("52-55-{a:02x}-{b:02x}-{c:02x}-{d:02x}"))
}

/// Where the guest's TCP echo peer is (on QEMU's user network, forwarded to `cat`).
pub const TCP_PEER: &str = "10.0.2.100:7";
/// The file QEMU's TFTP server offers the guest.
pub const TFTP_FILE: &str = "card.bin";
/// Its size: 128 full blocks and a short last one.
pub const TFTP_SIZE: usize = 128 * 512 + 100;

/// Byte `i` of [`TFTP_FILE`] (the guest program computes the same, `sc_card.c`).
pub fn tftp_byte(i: usize) -> u8 {
    ((i ^ (i >> 8) ^ (i >> 16)).wrapping_mul(31).wrapping_add(7) & 0xff) as u8
}

/// The TFTP folder of one boot.
pub struct Peers {
    tftp: PathBuf,
}

impl Peers {
    /// Writes the TFTP folder under `dir`.
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        let tftp = dir.join("tftp");
        fs::create_dir_all(&tftp)?;
        let bytes: Vec<u8> = (0..TFTP_SIZE).map(tftp_byte).collect();
        fs::write(tftp.join(TFTP_FILE), bytes)?;
        Ok(Self { tftp })
    }

    /// The `-netdev user` options: restricted, with the TCP forward and the TFTP folder.
    pub fn netdev(&self) -> String {
        let (ip, port) = TCP_PEER.split_once(':').unwrap_or((TCP_PEER, "7"));
        format!(
            "user,id=net0,restrict=on,guestfwd=tcp:{ip}:{port}-cmd:cat,tftp={}",
            self.tftp.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_is_restricted_and_its_peers_are_on_this_machine() {
        let dir = std::env::temp_dir().join(format!("tcpip-peers-{}", std::process::id()));
        let peers = Peers::new(&dir).unwrap();
        let netdev = peers.netdev();
        assert!(netdev.contains("restrict=on"), "{netdev}");
        assert!(
            netdev.contains("guestfwd=tcp:10.0.2.100:7-cmd:cat"),
            "{netdev}"
        );
        assert!(netdev.ends_with(&format!("tftp={}", dir.join("tftp").display())));
        let file = fs::read(dir.join("tftp").join(TFTP_FILE)).unwrap();
        assert_eq!(file.len(), TFTP_SIZE);
        // The pattern the guest checks: not periodic at 256 or 512 bytes.
        assert_eq!(&file[..4], &[7, 38, 69, 100]);
        assert_ne!(file[..512], file[512..1024]);
        fs::remove_dir_all(dir).unwrap();
    }
}
