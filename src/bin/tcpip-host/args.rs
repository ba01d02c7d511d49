//! The command line, parsed by hand.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: tcpip-host --tap NAME --address IP/PREFIX [--gateway IP] [--mac MAC] [--pcap FILE]
                  [--impair] [--quiet] COMMAND [OPTIONS]

Runs the tcpip driver in the host model of the NT kernel, bound to the Linux TAP interface
NAME (opened in the current network namespace; created if it does not exist), with the
address IP/PREFIX and the default gateway IP.

commands:
  echo-server [--port N] [--count N]
        echo every connection on port N (7) until Ctrl-C, or until N connections were served
  echo-client --connect IP:PORT --message TEXT [--threads N] [--count N]
        N threads (1) each make N connections (1): send TEXT, shut down the sending side,
        read the echo to the end, check it and print it
  demo [--port N]
        an echo server on port N (7); type `status` for the counters, `quit` (or end the
        input) to stop

options:
  --mac MAC     the driver's MAC address (default 02:54:43:50 and the address's last two bytes)
  --pcap FILE   capture every frame the driver sends and receives to FILE (pcap, Ethernet)
  --impair      impair the wire both ways like netem's `loss 2% reorder 5% delay 20ms 5ms`
  --quiet       no status line (otherwise printed every second on stderr)";

/// What to run on the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    EchoServer {
        port: u16,
        count: Option<u64>,
    },
    EchoClient {
        connect: SocketAddrV4,
        message: String,
        threads: usize,
        count: usize,
    },
    Demo {
        port: u16,
    },
}

/// The whole command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub tap: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: [u8; 6],
    pub pcap: Option<PathBuf>,
    pub impair: bool,
    pub quiet: bool,
    pub command: Command,
}

/// `Ok(None)` when help was asked for.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = args.into_iter();
    let mut tap = None;
    let mut address = None;
    let mut gateway = None;
    let mut mac = None;
    let mut pcap = None;
    let (mut impair, mut quiet) = (false, false);
    let mut command = None;
    let mut port = None;
    let mut count = None;
    let mut connect = None;
    let mut message = None;
    let mut threads = None;
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--tap" => tap = Some(value()?),
            "--address" => address = Some(cidr(&value()?)?),
            "--gateway" => gateway = Some(ip(&value()?)?),
            "--mac" => mac = Some(parse_mac(&value()?)?),
            "--pcap" => pcap = Some(PathBuf::from(value()?)),
            "--impair" => impair = true,
            "--quiet" => quiet = true,
            "--port" => port = Some(number(&arg, &value()?)?),
            "--count" => count = Some(number(&arg, &value()?)?),
            "--threads" => threads = Some(number(&arg, &value()?)?),
            "--connect" => {
                let text = value()?;
                let parsed = text.parse().map_err(|_| format!("not IP:PORT: {text}"))?;
                connect = Some(parsed);
            }
            "--message" => message = Some(value()?),
            "echo-server" | "echo-client" | "demo" if command.is_none() => {
                command = Some(arg);
            }
            _ => return Err(format!("unexpected argument: {arg}")),
        }
    }
    let tap = tap.ok_or("--tap is required")?;
    let (address, prefix) = address.ok_or("--address is required")?;
    let mac = mac.unwrap_or_else(|| {
        let [.., c, d] = address.octets();
        [0x02, 0x54, 0x43, 0x50, c, d]
    });
    let command = match command.as_deref() {
        Some("echo-server") => {
            refuse(&[
                ("--connect", connect.is_some()),
                ("--message", message.is_some()),
                ("--threads", threads.is_some()),
            ])?;
            Command::EchoServer {
                port: port_number(port)?,
                count: count.map(|n| at_least_one(n, "--count")).transpose()?,
            }
        }
        Some("echo-client") => {
            refuse(&[("--port", port.is_some())])?;
            let how_many = |n: Option<u64>, what| {
                n.map_or(Ok(1), |n| at_least_one(n, what))?
                    .try_into()
                    .map_err(|_| format!("{what} too large"))
            };
            Command::EchoClient {
                connect: connect.ok_or("echo-client needs --connect IP:PORT")?,
                message: message.ok_or("echo-client needs --message TEXT")?,
                threads: how_many(threads, "--threads")?,
                count: how_many(count, "--count")?,
            }
        }
        Some(_) => {
            refuse(&[
                ("--connect", connect.is_some()),
                ("--message", message.is_some()),
                ("--threads", threads.is_some()),
                ("--count", count.is_some()),
            ])?;
            Command::Demo {
                port: port_number(port)?,
            }
        }
        None => return Err("a command is required: echo-server, echo-client or demo".into()),
    };
    Ok(Some(Args {
        tap,
        address,
        prefix,
        gateway,
        mac,
        pcap,
        impair,
        quiet,
        command,
    }))
}

fn refuse(options: &[(&str, bool)]) -> Result<(), String> {
    match options.iter().find(|(_, given)| *given) {
        Some((name, _)) => Err(format!("{name} does not apply to this command")),
        None => Ok(()),
    }
}

fn at_least_one(n: u64, option: &str) -> Result<u64, String> {
    match n {
        0 => Err(format!("{option} must be at least 1")),
        n => Ok(n),
    }
}

fn port_number(port: Option<u64>) -> Result<u16, String> {
    match port {
        None => Ok(7),
        Some(port) => u16::try_from(port)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("not a port: {port}")),
    }
}

fn number(option: &str, text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("{option} takes a number, not {text}"))
}

fn ip(text: &str) -> Result<Ipv4Addr, String> {
    text.parse()
        .map_err(|_| format!("not an IPv4 address: {text}"))
}

fn cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (address, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("not IP/PREFIX: {text}"))?;
    let prefix = prefix
        .parse()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .ok_or_else(|| format!("not a prefix length (1-32): {prefix}"))?;
    Ok((ip(address)?, prefix))
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("not a MAC address: {text}"))?;
    let mac: [u8; 6] = bytes
        .try_into()
        .map_err(|_| format!("not a MAC address: {text}"))?;
    if mac[0] & 1 != 0 || mac == [0; 6] {
        return Err(format!("not a unicast MAC address: {text}"));
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Option<Args>, String> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn parses_the_readme_command_line() {
        let args =
            parse_line("--tap tap0 --address 10.0.0.2/24 --gateway 10.0.0.1 echo-server --port 7")
                .unwrap()
                .unwrap();
        assert_eq!(args.tap, "tap0");
        assert_eq!(
            (args.address, args.prefix),
            ("10.0.0.2".parse().unwrap(), 24)
        );
        assert_eq!(args.gateway, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(args.mac, [0x02, 0x54, 0x43, 0x50, 0, 2]);
        let command = Command::EchoServer {
            port: 7,
            count: None,
        };
        assert_eq!(args.command, command);
    }

    #[test]
    fn parses_an_echo_client() {
        let args = parse_line(
            "--tap t --address 10.1.2.3/16 --mac 02:00:00:00:00:09 echo-client \
             --connect 10.1.0.1:7 --message hi --threads 4 --count 5",
        )
        .unwrap()
        .unwrap();
        assert_eq!(args.mac, [2, 0, 0, 0, 0, 9]);
        let command = Command::EchoClient {
            connect: "10.1.0.1:7".parse().unwrap(),
            message: "hi".into(),
            threads: 4,
            count: 5,
        };
        assert_eq!(args.command, command);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        for line in [
            "--address 10.0.0.2/24 echo-server",
            "--tap t echo-server",
            "--tap t --address 10.0.0.2 echo-server",
            "--tap t --address 10.0.0.2/33 echo-server",
            "--tap t --address 10.0.0.2/24",
            "--tap t --address 10.0.0.2/24 echo-server --port 0",
            "--tap t --address 10.0.0.2/24 echo-server --port 70000",
            "--tap t --address 10.0.0.2/24 echo-server --count 0",
            "--tap t --address 10.0.0.2/24 echo-server --message x",
            "--tap t --address 10.0.0.2/24 echo-client --message x",
            "--tap t --address 10.0.0.2/24 echo-client --connect 1.2.3.4:5 --message x --count 0",
            "--tap t --address 10.0.0.2/24 --mac 01:00:00:00:00:01 demo",
            "--tap t --address 10.0.0.2/24 demo demo",
            "--tap t --address 10.0.0.2/24 demo --port",
        ] {
            assert!(parse_line(line).is_err(), "{line}");
        }
        assert_eq!(parse_line("--tap t --help"), Ok(None));
    }
}
