//! What the network tools print in the guest, checked against what the runner knows of the
//! network it gave the guest (`peers`): an `exec` of `ipconfig`, `route`, `arp`, `netstat` or
//! `ping` that exits 0 but prints something else than the truth fails.
//!
//! The facts: the card has [`GUEST_MAC`] and leases [`GUEST_IP`] in [`NETWORK`] from QEMU's
//! DHCP server at [`SERVER_IP`], the second card ([`SECOND`]) its own address on its own
//! network; the `card` scenario talks to QEMU at [`SERVER_IP`] (TFTP) and
//! [`TCP_PEER`], so both are in the ARP cache with QEMU's MAC addresses; an `exec` with
//! `listen=PORT` holds a TCP listener and a UDP socket on 0.0.0.0:PORT in the guest program's
//! process (`pid=` of its RESULT line); the DHCP client keeps UDP port 68. `restrict=on` makes
//! QEMU's DHCP offer neither a router nor DNS servers, so there is no default route.

use super::peers::{GUEST_IP, GUEST_MAC, NETWORK, SECOND, SERVER_IP, TCP_PEER, slirp_mac};

/// The entry the `arp_set` exec sets and deletes (`vm/suite.cfg`).
const STATIC_ARP: (&str, &str) = ("10.0.2.50", "02-00-00-00-00-50");

/// The problems of exec `name`'s output (empty if it told the truth, or if `name` is not a
/// checked tool). `outputs` are every exec's (name, line); `metrics` the RESULT's keys.
pub fn check(
    name: &str,
    outputs: &[(String, String)],
    metrics: &[(String, String)],
) -> Vec<String> {
    let lines: Vec<&str> = outputs
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, text)| text.as_str())
        .collect();
    let metric = |key: &str| {
        metrics
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let mut problems = Vec::new();
    let mut want = |ok: bool, what: String| {
        if !ok {
            problems.push(format!("{name} does not show {what}"));
        }
    };
    let peer_ip = TCP_PEER.split(':').next().unwrap_or(TCP_PEER);
    match name {
        "ping" => ping(&lines, "127.0.0.1", 32, 3, &mut want),
        // Past the loopback's 16 KiB MTU: request and reply both go as fragments.
        "ping_big" => ping(&lines, "127.0.0.1", 20000, 2, &mut want),
        // Past the card's 1500-byte MTU, to QEMU (which answers pings to its own address).
        "ping_card" => ping(&lines, SERVER_IP, 3000, 2, &mut want),
        // The second card, to QEMU on its own network.
        "ping_card2" => ping(&lines, SECOND.server, 32, 2, &mut want),
        "ipconfig" => {
            for (mac, ip, mask, server) in [
                (GUEST_MAC, GUEST_IP, NETWORK.1, SERVER_IP),
                (SECOND.mac, SECOND.ip, SECOND.network.1, SECOND.server),
            ] {
                let dashed = mac.replace(':', "-").to_uppercase();
                for (field, value) in [
                    ("Physical Address", dashed.as_str()),
                    ("DHCP Enabled", "Yes"),
                    ("IPv4 Address", ip),
                    ("Subnet Mask", mask),
                    ("DHCP Server", server),
                ] {
                    want(field_is(&lines, field, value), format!("{field} {value}"));
                }
            }
        }
        "route" => {
            for mac in [GUEST_MAC, SECOND.mac] {
                let spaced = mac.replace(':', " ");
                want(
                    lines.iter().any(|l| l.contains(&spaced)),
                    format!("the card {spaced} in the interface list"),
                );
            }
            let (network, mask) = SECOND.network;
            want(
                has_row(&lines, &[network, mask, SECOND.ip, SECOND.ip]),
                format!("the route to {network} on the second card"),
            );
            want(
                has_row(
                    &lines,
                    &["127.0.0.0", "255.0.0.0", "127.0.0.1", "127.0.0.1"],
                ),
                "the loopback route".into(),
            );
            want(
                has_row(&lines, &[NETWORK.0, NETWORK.1, GUEST_IP, GUEST_IP]),
                format!("the route to {} on the card", NETWORK.0),
            );
            want(
                !has_row(&lines, &["0.0.0.0", "0.0.0.0"]),
                "no default route (QEMU offers no router with restrict=on)".into(),
            );
        }
        "arp" => {
            want(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("Interface: {GUEST_IP} "))),
                format!("the card's interface {GUEST_IP}"),
            );
            for ip in [SERVER_IP, peer_ip] {
                let mac = slirp_mac(ip).unwrap_or_default();
                want(
                    has_row(&lines, &[ip, &mac, "dynamic"]),
                    format!("{ip} at {mac}"),
                );
            }
        }
        "netstat" => {
            want(
                lines.iter().any(|l| {
                    let row: Vec<&str> = l.split_whitespace().collect();
                    row.first() == Some(&"UDP") && row.get(1) == Some(&"0.0.0.0:68")
                }),
                "the DHCP client's UDP 0.0.0.0:68".into(),
            );
            if let (Some(port), Some(pid)) = (metric("listen"), metric("pid")) {
                let local = format!("0.0.0.0:{port}");
                want(
                    has_row(&lines, &["TCP", &local, "0.0.0.0:0", "LISTENING", pid]),
                    format!("TCP {local} LISTENING in process {pid}"),
                );
                want(
                    has_row(&lines, &["UDP", &local, "*:*", pid]),
                    format!("UDP {local} in process {pid}"),
                );
            }
        }
        "arp_set" => {
            // `arp -s` then `arp -a`: the entry is listed as static. (`arp -d` cannot be
            // checked here: ReactOS 0.4.16's iphlpapi `DeleteIpNetEntry` is a stub that sends
            // nothing; the driver's delete is tested in the host model.)
            want(
                has_row(&lines, &[STATIC_ARP.0, STATIC_ARP.1, "static"]),
                format!("{} {} static after arp -s", STATIC_ARP.0, STATIC_ARP.1),
            );
        }
        "netstat_s" => {
            // ReactOS 0.4.16's iphlpapi answers GetTcpStatistics, GetUdpStatistics and
            // GetIcmpStatistics from stubs (zeros, whatever the driver counts); its IPv4
            // statistics come from the driver, after `card` moved traffic both ways.
            for counter in [
                "Packets Received",
                "Received Packets Delivered",
                "Output Requests",
            ] {
                let value = lines
                    .iter()
                    .find(|l| l.trim_start().starts_with(counter))
                    .and_then(|l| l.rsplit('=').next())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                want(
                    value.is_some_and(|v| v > 0),
                    format!("a non-zero IPv4 {counter} (it shows {value:?})"),
                );
            }
        }
        _ => {}
    }
    problems
}

/// Checks that ping printed `count` replies of `bytes` bytes from `from`, and that many
/// received.
fn ping(
    lines: &[&str],
    from: &str,
    bytes: usize,
    count: usize,
    want: &mut impl FnMut(bool, String),
) {
    let prefix = format!("Reply from {from}: bytes={bytes} ");
    let replies = lines.iter().filter(|l| l.starts_with(&prefix)).count();
    want(
        replies == count,
        format!("{count} replies of {bytes} bytes from {from} (it shows {replies})"),
    );
    want(
        lines
            .iter()
            .any(|l| l.contains(&format!("Received = {count},"))),
        format!("{count} received"),
    );
}

/// Whether a line reads `field . . . : value` (ipconfig's layout).
fn field_is(lines: &[&str], field: &str, value: &str) -> bool {
    lines.iter().any(|l| {
        l.trim_start().starts_with(field)
            && l.split_once(" : ").is_some_and(|(_, v)| v.trim() == value)
    })
}

/// Whether a line's words begin with `words`.
fn has_row(lines: &[&str], words: &[&str]) -> bool {
    lines.iter().any(|l| {
        let row: Vec<&str> = l.split_whitespace().collect();
        row.len() >= words.len() && row.iter().zip(words).all(|(a, b)| a == b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(name: &str, text: &str) -> Vec<(String, String)> {
        text.lines()
            .map(|l| (name.to_string(), l.to_string()))
            .collect()
    }

    /// Lines as ReactOS 0.4.16's tools printed them on the stock driver in the VM.
    const ROUTE: &str = "Interface List\n0x0  ........................... Loopback\n\
        0x1  ...52 54 00 12 34 56 ...... AMD PCnet\n\
        0x2  ...52 54 00 12 34 57 ...... AMD PCnet\nActive Routes:\n\
        Network Destination        Netmask          Gateway        Interface  Metric\n\
                127.0.0.0        255.0.0.0        127.0.0.1        127.0.0.1       1\n\
                 10.0.2.0    255.255.255.0        10.0.2.15        10.0.2.15       1\n\
                 10.0.3.0    255.255.255.0        10.0.3.15        10.0.3.15       1\n";

    #[test]
    fn a_true_route_table_passes_and_a_missing_route_fails() {
        assert!(check("route", &out("route", ROUTE), &[]).is_empty());
        let without = ROUTE.replace("10.0.2.0 ", "10.0.4.0 ");
        let problems = check("route", &out("route", &without), &[]);
        assert_eq!(
            problems,
            ["route does not show the route to 10.0.2.0 on the card"]
        );
        let default =
            format!("{ROUTE}          0.0.0.0          0.0.0.0         10.0.2.2  10.0.2.15  1\n");
        assert_eq!(check("route", &out("route", &default), &[]).len(), 1);
    }

    #[test]
    fn netstat_must_list_the_held_ports_in_the_guest_process() {
        let text = "  Proto  Local Address          Foreign Address        State\n\
            \x20 TCP    0.0.0.0:7321           0.0.0.0:0              LISTENING       312\n\
            \x20 UDP    0.0.0.0:68             *:*                                    188\n\
            \x20 UDP    0.0.0.0:7321           *:*                                    312\n";
        let metrics = [
            ("listen".to_string(), "7321".to_string()),
            ("pid".to_string(), "312".to_string()),
        ];
        assert!(check("netstat", &out("netstat", text), &metrics).is_empty());
        let other = [
            ("listen".to_string(), "7321".to_string()),
            ("pid".to_string(), "400".to_string()),
        ];
        assert_eq!(check("netstat", &out("netstat", text), &other).len(), 2);
        let no_dhcp = text.replace("0.0.0.0:68 ", "0.0.0.0:69 ");
        assert_eq!(
            check("netstat", &out("netstat", &no_dhcp), &metrics).len(),
            1
        );
    }

    #[test]
    fn arp_set_must_list_the_static_entry() {
        let listing = "Interface: 10.0.2.15 --- 0x1\n\
            \x20 10.0.2.2              52-55-0a-00-02-02     dynamic\n\
            \x20 10.0.2.50             02-00-00-00-00-50     static\n";
        assert!(check("arp_set", &out("arp_set", listing), &[]).is_empty());
        let dynamic = listing.replace("     static", "     dynamic");
        assert_eq!(check("arp_set", &out("arp_set", &dynamic), &[]).len(), 1);
    }

    #[test]
    fn ipconfig_arp_and_ping_are_read_as_printed() {
        let ipconfig = " Physical Address. . . . . . . . . : 52-54-00-12-34-56\n\
            \x20DHCP Enabled. . . . . . . . . . . : Yes\n\
            \x20IPv4 Address. . . . . . . . . . . : 10.0.2.15\n\
            \x20Subnet Mask . . . . . . . . . . . : 255.255.255.0\n\
            \x20DHCP Server . . . . . . . . . . . : 10.0.2.2\n\
            \x20Physical Address. . . . . . . . . : 52-54-00-12-34-57\n\
            \x20DHCP Enabled. . . . . . . . . . . : Yes\n\
            \x20IPv4 Address. . . . . . . . . . . : 10.0.3.15\n\
            \x20Subnet Mask . . . . . . . . . . . : 255.255.255.0\n\
            \x20DHCP Server . . . . . . . . . . . : 10.0.3.2\n";
        assert!(check("ipconfig", &out("ipconfig", ipconfig), &[]).is_empty());
        let wrong = ipconfig.replace("10.0.2.15", "0.0.0.0");
        let one_card: String = ipconfig.lines().take(5).map(|l| format!("{l}\n")).collect();
        assert_eq!(
            check("ipconfig", &out("ipconfig", &one_card), &[]).len(),
            3,
            "the second card's MAC, address and server are missing"
        );
        assert_eq!(
            check("ipconfig", &out("ipconfig", &wrong), &[]),
            ["ipconfig does not show IPv4 Address 10.0.2.15"]
        );
        let arp = "Interface: 10.0.2.15 --- 0x1\n  10.0.2.2              52-55-0a-00-02-02     dynamic\n\
            \x20 10.0.2.100            52-55-0a-00-02-64     dynamic\n";
        assert!(check("arp", &out("arp", arp), &[]).is_empty());
        assert_eq!(
            check("arp", &out("arp", &arp.replace("-64", "-65")), &[]).len(),
            1
        );
        let ping = "Reply from 127.0.0.1: bytes=32 time<1ms TTL=64\n".repeat(3)
            + "    Packets: Sent = 3, Received = 3, Lost 0 (0% loss),\n";
        assert!(check("ping", &out("ping", &ping), &[]).is_empty());
        let second = ping
            .replace("127.0.0.1", "10.0.3.2")
            .replace("Sent = 3, Received = 3", "Sent = 2, Received = 2");
        let second: String = second.lines().skip(1).map(|l| format!("{l}\n")).collect();
        assert!(check("ping_card2", &out("ping_card2", &second), &[]).is_empty());
        let big = ping
            .replace("bytes=32", "bytes=20000")
            .replace("Sent = 3, Received = 3", "Sent = 2, Received = 2");
        assert_eq!(
            check("ping_big", &out("ping_big", &big), &[]).len(),
            1,
            "3 replies, not 2"
        );
        let two: String = big.lines().skip(1).map(|l| format!("{l}\n")).collect();
        assert!(check("ping_big", &out("ping_big", &two), &[]).is_empty());
        assert_eq!(
            check("ping", &out("ping", "Request timed out.\n"), &[]).len(),
            2
        );
        assert!(check("other", &[], &[]).is_empty());
        let stats = "  Packets Received                   = 1495\n\
            \x20 Received Packets Delivered         = 1495\n\
            \x20 Output Requests                    = 970\n";
        assert!(check("netstat_s", &out("netstat_s", stats), &[]).is_empty());
        let idle = stats.replace("= 970", "= 0");
        assert_eq!(check("netstat_s", &out("netstat_s", &idle), &[]).len(), 1);
    }
}
