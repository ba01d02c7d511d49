//! `tcpip-host`: the driver on a real network. It loads tcpip in the host model of the NT kernel
//! (the same model the tests use, with its verifier and leak check), binds a Linux TAP
//! interface under it as its Ethernet adapter, gives it an address and a default gateway, and
//! runs a Winsock program on it: an echo server, echo clients, or an interactive demo. Linux
//! (or anything routed through the TAP) talks to it with its own TCP.
//!
//! A status line on stderr shows, every second, the connections (open/total), the link's bytes
//! and frames each way, and the TCP retransmissions seen on the wire (the driver's/Linux's).
//! At the end the TAP is unbound and the driver unloaded; sockets left open, leaks and verifier
//! violations are reported and make the exit status 1. `--help` for the command line.
//!
//! Linux only (TAP devices); it needs `/dev/net/tun` and the right to open the interface (root,
//! or a TAP made with `ip tuntap add … user $USER`).

#[cfg(target_os = "linux")]
mod args;
#[cfg(target_os = "linux")]
mod console;
#[cfg(target_os = "linux")]
mod echo;
#[cfg(target_os = "linux")]
mod signals;
#[cfg(target_os = "linux")]
mod station;

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    use std::process::ExitCode;
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tcpip-host: {e}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcpip-host: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the driver, runs the command, shuts down; the error says everything that failed.
#[cfg(target_os = "linux")]
fn run(args: &args::Args) -> Result<(), String> {
    use args::Command;
    use console::{Console, Counters, StatusLine, status_line};
    use std::sync::Arc;

    let stop = signals::Stop::default();
    signals::install(stop.clone()).map_err(|e| format!("cannot take SIGINT/SIGTERM: {e}"))?;
    let existed = std::path::Path::new("/sys/class/net")
        .join(&args.tap)
        .exists();
    let station = station::Station::start(args)?;
    let console = Arc::new(Console::new());
    let mac = args.mac.map(|b| format!("{b:02x}")).join(":");
    let gateway = args.gateway.map_or("none".into(), |g| g.to_string());
    console.log(&format!(
        "driver at {}/{} on {} (MAC {mac}), gateway {gateway}{}{}",
        args.address,
        args.prefix,
        args.tap,
        if args.impair { ", impaired wire" } else { "" },
        match &args.pcap {
            Some(path) => format!(", capturing to {}", path.display()),
            None => String::new(),
        }
    ));
    if !existed {
        console.log(&format!(
            "created {0}, which goes away at exit: give Linux its side with \
             `ip addr add ADDRESS/PREFIX dev {0}; ip link set {0} up`",
            args.tap
        ));
    }
    let counters = Arc::new(Counters::default());
    let status = match args.quiet {
        true => None,
        false => Some(
            StatusLine::start(console.clone(), counters.clone(), station.tap.clone())
                .map_err(|e| format!("cannot start the status line: {e}"))?,
        ),
    };
    let env = echo::Env {
        console: console.clone(),
        counters: counters.clone(),
        stop,
    };
    let result = match &args.command {
        Command::EchoServer { port, count } => echo::server(&station, &env, *port, *count),
        Command::EchoClient {
            connect,
            message,
            threads,
            count,
        } => echo::clients(&station, &env, *connect, message, *threads, *count),
        Command::Demo { port } => echo::demo(&station, &env, *port),
    };
    if let Some(status) = status {
        status.stop();
    }
    console.log(&status_line(&counters, &station.tap.stats()));
    let problems = station.shut_down();
    match (result, problems.is_empty()) {
        (Ok(()), true) => {
            console.log("driver unloaded cleanly");
            Ok(())
        }
        (result, _) => {
            let mut report = result.err().into_iter().chain(problems);
            let first = report.next().unwrap_or_default();
            Err(report.fold(first, |all, problem| all + "\n  " + &problem))
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("tcpip-host runs on Linux only: it needs a TAP device.");
    std::process::exit(2);
}
