//! DHCP against a real DHCP server: dnsmasq in the namespace serves the TAP, and the driver,
//! bound to it through the NDIS model with DHCP configured (no address), gets its address the
//! way ReactOS's DHCP client does it: DISCOVER, OFFER, REQUEST and ACK over Winsock UDP (port
//! 68, broadcast from 0.0.0.0), then `IOCTL_SET_IP_ADDRESS` (`AddIPAddress`) with the lease and
//! the router as the default route (`CreateIpForwardEntry`, an `IPRouteEntry` set on the card's
//! IP entity). Then the lease works: dnsmasq records it, Linux pings the leased address, the
//! driver reaches a Linux echo server, and the IP helper shows the address and the route.

#![feature(tcp_linger)]

mod interop_support;

use interop_support::Namespace;
use interop_support::driver::DriverOnTap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tcpip::host::winsock::{Socket, Winsock};
use tcpip::info::wire::{IPAddrEntry, IPRouteEntry};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use zerocopy::{FromBytes, IntoBytes};

/// DHCP message types (option 53).
const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
/// The BOOTP magic cookie before the options.
const COOKIE: [u8; 4] = [99, 130, 83, 99];

/// dnsmasq serving DHCP (no DNS) on the namespace's TAP; killed on drop.
struct Dnsmasq {
    child: Child,
    leases: std::path::PathBuf,
}

impl Dnsmasq {
    /// Leases 10.77.N.100–150/24 for an hour on the namespace's TAP; dnsmasq's own address
    /// (Linux's) is the router.
    fn start(namespace: &Namespace, dir: &std::path::Path) -> Dnsmasq {
        Dnsmasq::start_on(namespace, dir, &[(namespace.tap(), namespace.linux_ip())])
    }

    /// Leases .100–.150 of each `(TAP, Linux address)`'s /24 on that TAP, for an hour, with
    /// dnsmasq's address there as the router.
    fn start_on(
        namespace: &Namespace,
        dir: &std::path::Path,
        links: &[(&str, Ipv4Addr)],
    ) -> Dnsmasq {
        let leases = dir.join("dnsmasq.leases");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", namespace.name(), "dnsmasq", "--no-daemon"])
            .args(["--conf-file=/dev/null", "--port=0", "--bind-interfaces"]);
        for (tap, linux) in links {
            let linux = linux.octets();
            command.arg(format!("--interface={tap}")).arg(format!(
                "--dhcp-range={0}.{1}.{2}.100,{0}.{1}.{2}.150,255.255.255.0,1h",
                linux[0], linux[1], linux[2]
            ));
        }
        let child = command
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .args(["--user=root", "--dhcp-authoritative", "--log-dhcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dnsmasq (Debian's dnsmasq-base; .ci/run installs it)");
        Dnsmasq { child, leases }
    }

    /// Stops dnsmasq; its log.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut log = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut log);
        }
        log
    }
}

/// A reply's options, as (code, value), in order.
type Options = Vec<(u8, Vec<u8>)>;

/// A BOOTREQUEST from `mac` with transaction `xid`, broadcast flag set (the client has no
/// address to receive a unicast reply on), and `options` after the message type.
fn bootrequest(mac: [u8; 6], xid: u32, kind: u8, options: &[u8]) -> Vec<u8> {
    let mut message = vec![0u8; 240];
    message[..4].copy_from_slice(&[1, 1, 6, 0]);
    message[4..8].copy_from_slice(&xid.to_be_bytes());
    message[10] = 0x80;
    message[28..34].copy_from_slice(&mac);
    message[236..240].copy_from_slice(&COOKIE);
    message.extend_from_slice(&[53, 1, kind]);
    message.extend_from_slice(options);
    // Parameter request list: subnet mask, router; then the end.
    message.extend_from_slice(&[55, 2, 1, 3, 255]);
    message.resize(300, 0);
    message
}

/// A BOOTREPLY's offered address and options, if it answers `xid` with message type `kind`.
fn bootreply(message: &[u8], xid: u32, kind: u8) -> Option<(Ipv4Addr, Options)> {
    if message.len() < 240 || message[0] != 2 || message[4..8] != xid.to_be_bytes() {
        return None;
    }
    if message[236..240] != COOKIE {
        return None;
    }
    let mut options = Vec::new();
    let mut rest = &message[240..];
    while let [code, tail @ ..] = rest {
        match code {
            0 => rest = tail,
            255 => break,
            _ => {
                let [len, tail @ ..] = tail else { break };
                let len = usize::from(*len);
                let value = tail.get(..len)?;
                options.push((*code, value.to_vec()));
                rest = &tail[len..];
            }
        }
    }
    let kind_ok = options
        .iter()
        .any(|(c, v)| *c == 53 && v.as_slice() == [kind]);
    let yiaddr = Ipv4Addr::new(message[16], message[17], message[18], message[19]);
    kind_ok.then_some((yiaddr, options))
}

/// The value of option `code` as an IPv4 address.
fn address_option(options: &[(u8, Vec<u8>)], code: u8) -> Option<Ipv4Addr> {
    let (_, value) = options.iter().find(|(c, _)| *c == code)?;
    let octets: [u8; 4] = value.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(octets))
}

/// Sends `message` to 255.255.255.255:67 until a reply of `kind` for `xid` comes (at most 5
/// tries of 2 s, as a DHCP client retransmits).
fn exchange(
    ws: &Winsock,
    socket: Socket,
    message: &[u8],
    xid: u32,
    kind: u8,
) -> (Ipv4Addr, Options) {
    let server = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let mut buffer = [0u8; 1500];
    for _ in 0..5 {
        ws.sendto(socket, message, server)
            .expect("sendto 255.255.255.255:67");
        while let Ok((n, _)) = ws.recvfrom(socket, &mut buffer) {
            if let Some(reply) = bootreply(&buffer[..n], xid, kind) {
                return reply;
            }
        }
    }
    panic!("no DHCP reply of type {kind}");
}

/// The REQUEST for `offered` from `server` (options 50 and 54) and its ACK: the leased address
/// and the ACK's options.
fn request(
    ws: &Winsock,
    socket: Socket,
    mac: [u8; 6],
    xid: u32,
    offered: Ipv4Addr,
    server: Ipv4Addr,
) -> (Ipv4Addr, Options) {
    let mut options = vec![50, 4];
    options.extend_from_slice(&offered.octets());
    options.extend_from_slice(&[54, 4]);
    options.extend_from_slice(&server.octets());
    exchange(
        ws,
        socket,
        &bootrequest(mac, xid, REQUEST, &options),
        xid,
        ACK,
    )
}

#[test]
fn the_driver_leases_its_address_from_dnsmasq_and_uses_it() {
    let namespace = Namespace::new();
    let dir = std::env::temp_dir().join(format!("tcpip-dhcp-{}", namespace.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let dnsmasq = Dnsmasq::start(&namespace, &dir);
    let setup = DriverOnTap::start_unconfigured(&namespace);
    let ws = &setup.ws;
    let client = ws.socket_datagram().unwrap();
    ws.set_broadcast(client, true).unwrap();
    ws.set_receive_timeout(client, Some(Duration::from_secs(2)))
        .unwrap();
    ws.bind(client, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))
        .unwrap();
    let mac = namespace.driver_mac();
    let xid = 0x7c9_0001;
    let (offered, options) = exchange(
        ws,
        client,
        &bootrequest(mac, xid, DISCOVER, &[]),
        xid,
        OFFER,
    );
    let server = address_option(&options, 54).expect("server identifier");
    assert_eq!(server, namespace.linux_ip());
    let (leased, options) = request(ws, client, mac, xid, offered, server);
    assert_eq!(leased, offered);
    let mask = address_option(&options, 1).expect("subnet mask");
    let router = address_option(&options, 3).expect("router");
    assert_eq!(
        (mask, router),
        (Ipv4Addr::new(255, 255, 255, 0), namespace.linux_ip())
    );
    ws.closesocket(client).unwrap();

    // What dhcpcsvc does with the lease: AddIPAddress, then CreateIpForwardEntry.
    let control = setup.kernel.create_file("\\Device\\Tcp", None, 0).unwrap();
    let input = [1u32.to_le_bytes(), leased.octets(), mask.octets()].concat();
    let (status, _) =
        setup
            .kernel
            .device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut [0u8; 12]);
    assert_eq!(status, NtStatus::SUCCESS, "IOCTL_SET_IP_ADDRESS");
    assert_eq!(setup.kernel.close(control), NtStatus::SUCCESS);
    let default_route = IPRouteEntry {
        ire_index: 1,
        ire_metric1: 1,
        ire_nexthop: router.octets(),
        ire_type: 3,
        ire_proto: 3,
        ..IPRouteEntry::default()
    };
    assert_eq!(
        setup.set_information(CL_NL_ENTITY, 1, 0x101, default_route.as_bytes()),
        NtStatus::SUCCESS
    );

    // The IP helper's view: the leased address on interface 1, the default route via Linux.
    let addresses = setup.query_information(CL_NL_ENTITY, 1, 0x102);
    let addresses = <[IPAddrEntry]>::ref_from_bytes(&addresses).unwrap();
    assert!(
        addresses
            .iter()
            .any(|a| a.iae_addr == leased.octets() && a.iae_index == 1),
        "{addresses:?}"
    );
    let routes = setup.query_information(CL_NL_ENTITY, 1, 0x101);
    let routes = <[IPRouteEntry]>::ref_from_bytes(&routes).unwrap();
    assert!(
        routes.iter().any(|r| r.ire_dest == [0; 4]
            && r.ire_mask == [0; 4]
            && r.ire_nexthop == router.octets()),
        "{routes:?}"
    );

    // The lease works: Linux reaches the leased address, the driver reaches Linux over TCP.
    namespace.assert_pings(leased, 2);
    let listener = namespace.run(|| TcpListener::bind((namespace.linux_ip(), 7007)).unwrap());
    let echo = std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().unwrap();
        let mut buffer = [0u8; 64];
        let n = stream.read(&mut buffer).unwrap();
        stream.write_all(&buffer[..n]).unwrap();
        peer
    });
    let socket = ws.socket().unwrap();
    ws.connect(socket, SocketAddrV4::new(namespace.linux_ip(), 7007))
        .expect("connect from the leased address");
    assert_eq!(ws.send(socket, b"leased"), Ok(6));
    let mut buffer = [0u8; 16];
    assert_eq!(ws.recv(socket, &mut buffer), Ok(6));
    assert_eq!(&buffer[..6], b"leased");
    let peer = echo.join().unwrap();
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(leased),
        "Linux saw the leased address"
    );
    ws.closesocket(socket).unwrap();

    let leases = std::fs::read_to_string(&dnsmasq.leases).unwrap_or_default();
    let log = dnsmasq.stop();
    let mac_text = mac.map(|b| format!("{b:02x}")).join(":");
    assert!(
        leases.contains(&mac_text) && leases.contains(&leased.to_string()),
        "dnsmasq's lease file: {leases}\nits log: {log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    setup.finish();
}

#[test]
fn two_adapters_lease_from_their_own_subnets_over_one_socket() {
    let namespace = Namespace::new();
    let dir = std::env::temp_dir().join(format!("tcpip-dhcp-{}", namespace.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let setup = DriverOnTap::start_unconfigured(&namespace);
    let (tap, second) = namespace.second_tap();
    let binding = tcpip::host::binding::TapBinding::bind(setup.driver(), std::sync::Arc::new(tap))
        .expect("bind the second TAP");
    assert_eq!(binding.interface(), Some(2));
    let dnsmasq = Dnsmasq::start_on(
        &namespace,
        &dir,
        &[
            (namespace.tap(), namespace.linux_ip()),
            (second.tap(), second.linux_ip()),
        ],
    );
    // ReactOS's dhcpcsvc: one socket on 0.0.0.0:68 for every adapter, each adapter's requests
    // named by its MAC (chaddr) only.
    let ws = &setup.ws;
    let client = ws.socket_datagram().unwrap();
    ws.set_broadcast(client, true).unwrap();
    ws.set_receive_timeout(client, Some(Duration::from_secs(2)))
        .unwrap();
    ws.bind(client, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))
        .unwrap();
    let mut leased = Vec::new();
    for (index, mac, server, xid) in [
        (
            1u32,
            namespace.driver_mac(),
            namespace.linux_ip(),
            0x7c9_0101,
        ),
        (2, second.driver_mac(), second.linux_ip(), 0x7c9_0102),
    ] {
        let (offered, options) = exchange(
            ws,
            client,
            &bootrequest(mac, xid, DISCOVER, &[]),
            xid,
            OFFER,
        );
        assert_eq!(
            address_option(&options, 54),
            Some(server),
            "the offer for interface {index} comes from its own subnet's server"
        );
        let (address, _) = request(ws, client, mac, xid, offered, server);
        assert_eq!(address, offered);
        let control = setup.kernel.create_file("\\Device\\Tcp", None, 0).unwrap();
        let input = [index.to_le_bytes(), address.octets(), [255, 255, 255, 0]].concat();
        let (status, _) =
            setup
                .kernel
                .device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut [0u8; 12]);
        assert_eq!(status, NtStatus::SUCCESS, "IOCTL_SET_IP_ADDRESS {index}");
        assert_eq!(setup.kernel.close(control), NtStatus::SUCCESS);
        leased.push(address);
    }
    ws.closesocket(client).unwrap();
    for address in &leased {
        namespace.assert_pings(*address, 2);
    }
    let log = dnsmasq.stop();
    // Each adapter's DISCOVER reached its own subnet's server only.
    let first_mac = namespace.driver_mac().map(|b| format!("{b:02x}")).join(":");
    let second_mac = second.driver_mac().map(|b| format!("{b:02x}")).join(":");
    for (tap, mac) in [(namespace.tap(), &first_mac), (second.tap(), &second_mac)] {
        assert!(log.contains(&format!("DHCPDISCOVER({tap}) {mac}")), "{log}");
    }
    assert!(
        !log.lines()
            .any(|line| line.contains(&format!("({})", second.tap())) && line.contains(&first_mac)),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|line| line.contains(&format!("({})", namespace.tap()))
                && line.contains(&second_mac)),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    binding
        .unbind()
        .expect("the second TAP's reader ended cleanly");
    setup.finish();
}
