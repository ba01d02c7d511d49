//! The `tcpip-host` program against Linux (issue #6): the built binary runs inside the test's
//! namespace on its TAP, as an echo server for a Linux client and as echo clients of a Linux
//! echo server. Each run is bounded by coreutils' `timeout` (SIGTERM, which the program takes
//! as a stop request, then SIGKILL).
#![feature(tcp_linger)]

mod interop_support;

use interop_support::Namespace;
use interop_support::peers;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// How long a run of the program may take.
const LIMIT_SECONDS: &str = "60";

/// The program, started inside the namespace with the driver at the namespace's driver address
/// on its TAP, and `command` after the common options.
struct Program {
    child: Child,
    stderr: Receiver<String>,
    lines: Vec<String>,
}

impl Program {
    fn start(namespace: &Namespace, command: &[&str]) -> Program {
        let address = format!("{}/24", namespace.driver_ip());
        let gateway = namespace.linux_ip().to_string();
        let mut args = vec![
            "-k",
            "5",
            LIMIT_SECONDS,
            "ip",
            "netns",
            "exec",
            namespace.name(),
            env!("CARGO_BIN_EXE_tcpip-host"),
            "--tap",
            namespace.tap(),
            "--address",
            &address,
            "--gateway",
            &gateway,
            "--quiet",
        ];
        args.extend_from_slice(command);
        let mut child = Command::new("timeout")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run tcpip-host under timeout: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let (lines, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[tcpip-host] {line}");
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Program {
            child,
            stderr: receiver,
            lines: Vec::new(),
        }
    }

    /// Waits for a line of stderr that contains `text`; panics if the program ends first.
    fn wait_for(&mut self, text: &str) {
        while !self.lines.iter().any(|line| line.contains(text)) {
            match self.stderr.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => self.lines.push(line),
                Err(e) => panic!("tcpip-host never printed `{text}` ({e}): {:#?}", self.lines),
            }
        }
    }

    /// Waits for the program to end; its status, stdout and all of stderr.
    fn finish(mut self) -> (ExitStatus, String, Vec<String>) {
        let output = self.child.wait_with_output().expect("wait for tcpip-host");
        self.lines.extend(self.stderr.iter());
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status, stdout, self.lines)
    }
}

#[test]
fn serves_a_linux_echo_client() {
    let namespace = Namespace::new();
    let mut program = Program::start(&namespace, &["echo-server", "--port", "7", "--count", "1"]);
    program.wait_for("echo server listening on port 7");
    let addr = SocketAddr::from((namespace.driver_ip(), 7));
    namespace
        .run(move || peers::echo_once(addr, b"hello from Linux\n"))
        .expect("the echo through tcpip-host");
    let (status, _, stderr) = program.finish();
    assert!(status.success(), "tcpip-host: {status}: {stderr:#?}");
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("17 B echoed, closed by the peer")),
        "{stderr:#?}"
    );
    assert!(
        stderr.iter().any(|l| l.contains("driver unloaded cleanly")),
        "{stderr:#?}"
    );
}

#[test]
fn echoes_through_a_linux_echo_server() {
    let namespace = Namespace::new();
    let (threads, count, message) = (4, 5, "hello from the driver");
    let addr = SocketAddr::from((namespace.linux_ip(), 7300));
    let listener = namespace
        .run(move || TcpListener::bind(addr))
        .expect("Linux listener");
    let server = namespace.spawn("linux-echo-server", move || {
        peers::echo_server(listener, threads * count)
    });
    let (threads_text, count_text, connect) =
        (threads.to_string(), count.to_string(), addr.to_string());
    let program = Program::start(
        &namespace,
        &[
            "echo-client",
            "--connect",
            &connect,
            "--message",
            message,
            "--threads",
            &threads_text,
            "--count",
            &count_text,
        ],
    );
    let (status, stdout, stderr) = program.finish();
    assert!(status.success(), "tcpip-host: {status}: {stderr:#?}");
    let echoes: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        echoes,
        vec![message; threads * count],
        "one echo per connection"
    );
    let echoed = server.join().expect("Linux server").expect("Linux echo");
    assert_eq!(echoed, (threads * count * message.len()) as u64);
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("20 of 20 echoes came back whole")),
        "{stderr:#?}"
    );
}
