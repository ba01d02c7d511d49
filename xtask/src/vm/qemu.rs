//! One boot of the livecd under QEMU, with COM1 read live.
//!
//! QEMU runs with TCG (the `/dev/kvm` of these machines cannot run the guest), headless, one
//! vCPU, the AMD PCnet card on QEMU's user-mode network with `restrict=on` (the guest reaches
//! nothing outside the QEMU process), and COM1 on QEMU's standard input and output. Everything
//! the guest sends to COM1 (the kernel's debug log, `DbgPrintEx`, the guest program's
//! `OutputDebugStringA` lines, bugcheck text, KDBG) is appended to the COM1 log as it comes.
//!
//! A boot ends on the guest program's end line, on KDBG's prompt (after the debugger has been
//! asked for what a developer would ask, see [`crate::vm::kdbg`]), when QEMU exits, or on the
//! timeout.

use crate::vm::kdbg::{self, Session};
use crate::vm::peers::Peers;
use crate::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The guest program's last line.
const END_MARKER: &str = "TCPIPVM END";

/// How one boot is run.
pub struct BootConfig<'a> {
    /// The remastered ISO.
    pub iso: &'a Path,
    /// Where the whole COM1 output goes.
    pub log: PathBuf,
    /// The longest the boot may take, power-on to the end line.
    pub timeout: Duration,
    /// Print every COM1 line to stderr, not only the interesting ones.
    pub verbose: bool,
    /// Label printed in front of live lines (`ours`, `stock`).
    pub label: &'a str,
    /// Where to capture the card's frames (QEMU's `filter-dump`), if anywhere.
    pub pcap: Option<PathBuf>,
}

/// How a boot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The guest program printed its end line.
    Finished,
    /// KDBG's prompt came (a bugcheck, an assertion, a breakpoint); the session is in
    /// [`Boot::debugger`].
    Debugger,
    /// QEMU exited by itself (e.g. a triple fault with `-no-reboot`).
    QemuExited(String),
    /// Nothing ended the boot within the timeout.
    TimedOut,
}

/// What one boot produced.
pub struct Boot {
    /// How it ended.
    pub ending: Ending,
    /// Every complete COM1 line, in order.
    pub lines: Vec<String>,
    /// The debugger session, when KDBG's prompt came.
    pub debugger: Option<Session>,
    /// Power-on to the end.
    pub elapsed: Duration,
}

/// The QEMU command line for `iso`, with the card on the user-mode network `netdev` and a
/// second card on a network of its own (`peers::SECOND`).
fn qemu_command(iso: &Path, netdev: &str) -> Command {
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args([
            "-machine",
            "pc,accel=tcg",
            "-cpu",
            "qemu64",
            "-smp",
            "1",
            "-m",
            "1024",
        ])
        .arg("-cdrom")
        .arg(iso)
        .args(["-boot", "d"])
        .args(["-netdev", netdev])
        .args([
            "-device",
            &format!("pcnet,netdev=net0,mac={}", super::peers::GUEST_MAC),
        ])
        .args(["-netdev", &super::peers::second_netdev()])
        .args([
            "-device",
            &format!("pcnet,netdev=net1,mac={}", super::peers::SECOND.mac),
        ])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .args([
            "-chardev",
            "stdio,id=com1,signal=off",
            "-serial",
            "chardev:com1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// Boots `config.iso`, its card's peers as `peers` says, and reads COM1 until the boot ends.
pub fn boot(config: &BootConfig<'_>, peers: &Peers) -> Result<Boot> {
    let mut command = qemu_command(config.iso, &peers.netdev());
    if let Some(pcap) = &config.pcap {
        let mut object = std::ffi::OsString::from("filter-dump,id=dump,netdev=net0,file=");
        object.push(pcap);
        command.arg("-object").arg(object);
    }
    let mut child = command
        .spawn()
        .map_err(|e| Error(format!("cannot start qemu-system-x86_64: {e}")))?;
    let started = Instant::now();
    let result = read_com1(&mut child, config, started);
    // The guest never shuts down by itself: stop QEMU whatever happened.
    let _ = child.kill();
    let _ = child.wait();
    let (ending, lines, debugger) = result?;
    Ok(Boot {
        ending,
        lines,
        debugger,
        elapsed: started.elapsed(),
    })
}

type Read3 = (Ending, Vec<String>, Option<Session>);

fn read_com1(child: &mut Child, config: &BootConfig<'_>, started: Instant) -> Result<Read3> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error("no qemu stdout".into()))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| Error("no qemu stdin".into()))?;
    let chunks = spawn_reader(stdout);
    let file = File::create(&config.log)
        .map_err(|e| Error(format!("cannot create {}: {e}", config.log.display())))?;
    let mut log = BufWriter::new(file);
    let mut serial = Serial::default();
    loop {
        let left = config.timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Ok((Ending::TimedOut, serial.lines, None));
        }
        let chunk = match chunks.recv_timeout(left.min(Duration::from_millis(500))) {
            Ok(chunk) => chunk,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Ok((Ending::QemuExited(status), serial.lines, None));
            }
        };
        log.write_all(&chunk)
            .map_err(|e| Error(format!("COM1 log: {e}")))?;
        for line in serial.push(&chunk) {
            show(config, &line);
            if line.contains(END_MARKER) {
                log.flush().map_err(|e| Error(format!("COM1 log: {e}")))?;
                return Ok((Ending::Finished, serial.lines, None));
            }
        }
        if kdbg::is_assertion_question(&serial.partial) {
            // A debug build's failed assertion: break once, into KDBG.
            serial.partial.clear();
            send(&mut stdin, b"o")?;
        } else if kdbg::is_prompt(&serial.partial) {
            let session = debug(&mut stdin, &chunks, &mut log, &mut serial, config)?;
            log.flush().map_err(|e| Error(format!("COM1 log: {e}")))?;
            return Ok((Ending::Debugger, serial.lines, Some(session)));
        }
    }
}

/// At KDBG's prompt: sends each of [`kdbg::COMMANDS`], collecting what each printed up to the
/// next prompt (answering KDBG's pager), and returns the session.
fn debug(
    stdin: &mut ChildStdin,
    chunks: &Receiver<Vec<u8>>,
    log: &mut BufWriter<File>,
    serial: &mut Serial,
    config: &BootConfig<'_>,
) -> Result<Session> {
    eprintln!("vm[{}]: KDBG prompt: asking the debugger", config.label);
    let mut session = Session::default();
    for command in kdbg::COMMANDS {
        serial.partial.clear();
        send(stdin, format!("{command}\r").as_bytes())?;
        let mut output = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(chunk) = chunks.recv_timeout(left) else {
                output.push(format!("(no prompt after `{command}` within 30 s)"));
                break;
            };
            log.write_all(&chunk)
                .map_err(|e| Error(format!("COM1 log: {e}")))?;
            output.extend(serial.push(&chunk));
            if kdbg::is_pager(&serial.partial) {
                serial.partial.clear();
                send(stdin, b" ")?;
            } else if kdbg::is_prompt(&serial.partial) {
                break;
            }
        }
        session.record(command, output);
    }
    Ok(session)
}

/// Types `bytes` on COM1.
fn send(stdin: &mut ChildStdin, bytes: &[u8]) -> Result<()> {
    stdin
        .write_all(bytes)
        .and_then(|()| stdin.flush())
        .map_err(|e| Error(format!("cannot write to COM1: {e}")))
}

/// Prints a COM1 line live: every line with `--verbose`, else the guest program's lines, the
/// driver's own lines, and anything that looks like trouble.
fn show(config: &BootConfig<'_>, line: &str) {
    let interesting = line.contains("TCPIPVM ")
        || line.contains("tcpip: ")
        || line.contains("tcpip.sys")
        || kdbg::is_trouble(line);
    if config.verbose || interesting {
        eprintln!("vm[{}] {line}", config.label);
    }
}

/// COM1 split into lines; `partial` is the text after the last newline (where prompts are).
#[derive(Default)]
struct Serial {
    lines: Vec<String>,
    partial: String,
}

impl Serial {
    /// Adds bytes and returns the lines they completed.
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut done = Vec::new();
        for &byte in bytes {
            match byte {
                b'\n' => {
                    let line = std::mem::take(&mut self.partial);
                    done.push(line.trim_end_matches('\r').to_string());
                }
                // KDBG's terminal probes and line editing: not text.
                0x1b | 0x08 | 0x07 | 0 => {}
                _ => self.partial.push(byte as char),
            }
        }
        self.lines.extend(done.iter().cloned());
        done
    }
}

/// Reads QEMU's standard output on a thread of its own, in chunks as they come.
fn spawn_reader(mut stdout: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        loop {
            match stdout.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sender.send(buffer[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_splits_lines_and_keeps_the_prompt_partial() {
        let mut serial = Serial::default();
        assert_eq!(serial.push(b"one\r\ntw"), vec!["one".to_string()]);
        assert_eq!(serial.push(b"o\n\x1b[18tkdb:> "), vec!["two".to_string()]);
        assert_eq!(serial.partial, "[18tkdb:> ");
        assert!(kdbg::is_prompt(&serial.partial));
        assert_eq!(serial.lines, vec!["one", "two"]);
    }
}
