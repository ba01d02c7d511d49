//! Plumbing for the interop tests of issue #6: the driver's network interface (in this test
//! process) on one end of a Linux TAP device, Linux's own TCP on the other.
//!
//! [`Namespace`] makes a network namespace of its own for each test, with a TAP device whose
//! Linux side has the address [`Namespace::linux_ip`] (10.77.N.1/24); the driver's side is
//! [`Namespace::driver_ip`] (10.77.N.2). Linux-side peers ([`peers`]) run on threads that
//! entered the namespace ([`Namespace::spawn`], [`Namespace::run`]); the TAP is opened from such
//! a thread too ([`Namespace::open_tap`]), which binds it to the namespace for good. Nothing is
//! left behind: the namespace and the TAP are deleted when the `Namespace` is dropped, also
//! when the test panics, and namespaces left by a test process that died are deleted by the
//! next one.
//!
//! The tests need root, `/dev/net/tun`, iproute2 (`ip`, `tc`) and iputils' `ping`; `.ci/run`
//! installs the packages. Anything missing fails the test loudly: these tests never skip.
//!
//! Captures: [`capture_path`] names a pcap file for the TAP adapter; with
//! `TCPIP_INTEROP_PCAP_DIR=DIR` the captures go to DIR and are kept, for Wireshark.
//!
//! Crates that include this module must enable `#![feature(tcp_linger)]` (for
//! [`peers::reset_close`]).
#![allow(dead_code, reason = "each suite uses a different subset")]

pub mod bulk;
pub mod driver;
pub mod peers;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use tcpip::host::tap::{TapAdapter, enter_network_namespace};

/// The prefix of every namespace these tests create.
const PREFIX: &str = "tcpip-test-";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace with a TAP device in it. See the module documentation.
pub struct Namespace {
    name: String,
    tap: String,
    subnet: u8,
}

impl Namespace {
    /// Creates the namespace and its TAP (`tapN`, up, 10.77.N.1/24 on the Linux side, loopback
    /// up too). Panics with the failing command's output if anything fails.
    pub fn new() -> Namespace {
        delete_stale();
        let index = NEXT.fetch_add(1, Ordering::Relaxed);
        let subnet = u8::try_from(index % 250 + 1).expect("1..=250");
        let name = format!("{PREFIX}{}-{index}", std::process::id());
        run("ip", &["netns", "add", &name]);
        // From here on, Drop deletes the namespace even if a later step fails.
        let namespace = Namespace {
            name,
            tap: format!("tap{subnet}"),
            subnet,
        };
        let tap = namespace.tap.clone();
        namespace.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"]);
        namespace.ip(&[
            "address",
            "add",
            &format!("{}/24", namespace.linux_ip()),
            "dev",
            &tap,
        ]);
        namespace.ip(&["link", "set", &tap, "up"]);
        namespace.ip(&["link", "set", "lo", "up"]);
        namespace
    }

    /// The namespace's name (under `/run/netns`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TAP device's name inside the namespace.
    pub fn tap(&self) -> &str {
        &self.tap
    }

    /// The Linux side's address: 10.77.N.1 (prefix length 24).
    pub fn linux_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 1)
    }

    /// The driver side's address: 10.77.N.2 (prefix length 24).
    pub fn driver_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 2)
    }

    /// A locally administered MAC for the driver's side of the wire.
    pub fn driver_mac(&self) -> [u8; 6] {
        [0x02, 0x54, 0x43, 0x50, 0x77, self.subnet]
    }

    /// Runs `ip -n NAME ARGS…`; panics with its output if it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Adds a netem qdisc on the TAP's Linux side, e.g.
    /// `"loss 2% reorder 5% delay 20ms 5ms"`; the error is tc's output (a kernel without
    /// `sch_netem` says "Specified qdisc kind is unknown").
    pub fn netem(&self, spec: &str) -> Result<(), String> {
        let mut args = vec![
            "-n", &self.name, "qdisc", "add", "dev", &self.tap, "root", "netem",
        ];
        args.extend(spec.split_whitespace());
        try_run("tc", &args).map(drop)
    }

    /// Runs `f` on a thread inside the namespace and returns its result (a panic in `f` fails
    /// the caller).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            let name = &self.name;
            scope
                .spawn(move || {
                    enter(name);
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Starts `f` on a thread inside the namespace.
    pub fn spawn<T, F>(&self, name: &str, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let namespace = self.name.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                enter(&namespace);
                f()
            })
            .expect("spawn a thread")
    }

    /// Opens the TAP (from inside the namespace) as the driver's adapter, with the driver's
    /// MAC, capturing to `pcap` if given. Panics if it cannot be opened.
    pub fn open_tap(&self, pcap: Option<&Path>) -> TapAdapter {
        let (tap, mac) = (self.tap.as_str(), self.driver_mac());
        self.run(|| TapAdapter::open(tap, mac, pcap))
            .unwrap_or_else(|e| panic!("cannot open TAP {tap} in {}: {e}", self.name))
    }

    /// Adds a second TAP to the namespace (`tapNb`, up, 10.78.N.1/24 on the Linux side: another
    /// subnet) and opens it as a second adapter for the driver (MAC
    /// `02:54:43:50:78:N`, no capture). Deleted with the namespace.
    pub fn second_tap(&self) -> (TapAdapter, SecondLink) {
        let link = SecondLink {
            tap: format!("{}b", self.tap),
            subnet: self.subnet,
        };
        let tap = link.tap.clone();
        self.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"]);
        self.ip(&[
            "address",
            "add",
            &format!("{}/24", link.linux_ip()),
            "dev",
            &tap,
        ]);
        self.ip(&["link", "set", &tap, "up"]);
        let mac = link.driver_mac();
        let adapter = self
            .run(|| TapAdapter::open(&tap, mac, None))
            .unwrap_or_else(|e| panic!("cannot open TAP {tap} in {}: {e}", self.name));
        (adapter, link)
    }

    /// Runs `ip -n NAME neigh show dev TAP`: Linux's neighbour table on the link.
    pub fn neighbours(&self) -> String {
        let tap = self.tap.clone();
        self.ip(&["neigh", "show", "dev", &tap])
    }

    /// Starts `ping -c COUNT` from the Linux side to `target`, one echo every 0.2 s, waiting
    /// up to 2 s for each reply; the thread returns ping's output.
    pub fn ping(&self, target: Ipv4Addr, count: u32) -> JoinHandle<Output> {
        self.ping_sized(target, count, 56)
    }

    /// Linux pings `target` `count` times; every echo must be answered.
    pub fn assert_pings(&self, target: Ipv4Addr, count: u32) {
        let output = self.ping(target, count).join().expect("ping");
        assert!(
            output.status.success(),
            "ping {target}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }

    /// Linux's `ping` with `size` bytes of data (past the MTU, the request leaves as
    /// fragments, and so must the reply).
    pub fn ping_sized(&self, target: Ipv4Addr, count: u32, size: usize) -> JoinHandle<Output> {
        let (count, target, size) = (count.to_string(), target.to_string(), size.to_string());
        self.spawn("ping", move || {
            Command::new("ping")
                .args([
                    "-n", "-c", &count, "-i", "0.2", "-W", "2", "-s", &size, &target,
                ])
                .output()
                .unwrap_or_else(|e| panic!("cannot run ping (iputils-ping): {e}"))
        })
    }
}

/// The second TAP of a namespace ([`Namespace::second_tap`]).
pub struct SecondLink {
    tap: String,
    subnet: u8,
}

impl SecondLink {
    /// The TAP device's name inside the namespace.
    pub fn tap(&self) -> &str {
        &self.tap
    }

    /// The Linux side's address: 10.78.N.1 (prefix length 24).
    pub fn linux_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 78, self.subnet, 1)
    }

    /// The driver side's address: 10.78.N.2 (prefix length 24).
    pub fn driver_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 78, self.subnet, 2)
    }

    /// The driver's MAC on this wire.
    pub fn driver_mac(&self) -> [u8; 6] {
        [0x02, 0x54, 0x43, 0x50, 0x78, self.subnet]
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes its TAP; deleting the TAP first also detaches a
        // descriptor that is still open.
        let _ = Command::new("ip")
            .args(["-n", &self.name, "link", "delete", &self.tap])
            .output();
        if let Err(e) = try_run("ip", &["netns", "delete", &self.name]) {
            eprintln!("interop: cannot delete namespace {}: {e}", self.name);
        }
    }
}

/// Where a test's capture goes, and whether to keep it: `$TCPIP_INTEROP_PCAP_DIR/LABEL.pcap`
/// (kept) when the variable is set, a file in the temporary directory (to be removed by the
/// test) otherwise.
pub fn capture_path(namespace: &Namespace, label: &str) -> (PathBuf, bool) {
    match std::env::var_os("TCPIP_INTEROP_PCAP_DIR") {
        Some(dir) => (Path::new(&dir).join(format!("{label}.pcap")), true),
        None => (
            std::env::temp_dir().join(format!("{}-{label}.pcap", namespace.name())),
            false,
        ),
    }
}

/// Moves the current thread into namespace `name`, or panics.
fn enter(name: &str) {
    enter_network_namespace(name)
        .unwrap_or_else(|e| panic!("cannot enter network namespace {name}: {e}"));
}

/// Runs a command; its standard output, or a panic with everything it printed.
fn run(program: &str, args: &[&str]) -> String {
    try_run(program, args).unwrap_or_else(|e| {
        panic!("interop tests need root, /dev/net/tun and iproute2 (.ci/run installs them): {e}")
    })
}

fn try_run(program: &str, args: &[&str]) -> Result<String, String> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("`{command}` did not start: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{command}` failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Deletes the namespaces of test processes that no longer exist (killed before their Drop
/// ran).
fn delete_stale() {
    let Ok(list) = try_run("ip", &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = try_run("ip", &["netns", "delete", name]);
        }
    }
}
