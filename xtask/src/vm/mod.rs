//! `cargo xtask vm`: our `tcpip.sys` in a real ReactOS kernel.
//!
//! The ReactOS livecd in `../shared/reactos/` is remastered with the driver under test in place
//! of `reactos/system32/drivers/tcpip.sys`, the project's guest program (`vm/guest/`, built with
//! mingw-w64) in place of `userinit.exe` (Winlogon starts it right after `setup -mini` has
//! started networking), the suite's configuration (`vm/suite.cfg`) next to it, and the COM1
//! debug entry booting at once. QEMU boots it ([`qemu`]); COM1 carries the kernel's log, our
//! `DbgPrintEx` lines and the guest program's result lines. A KDBG prompt is answered
//! ([`kdbg`]) and every address inside our driver is named with our PDB ([`symbols`]).
//!
//! Everything a boot leaves is under `target/vm/<label>/`: `com1.log` (all of COM1),
//! `results.tsv` (one row per scenario), `crash.txt` (the debugger report, when there was one);
//! `target/vm/comparison.md` holds the side-by-side table of a `--compare` run.

mod iso;
mod kdbg;
mod peers;
mod qemu;
mod report;
mod symbols;
mod tools;

use crate::{Error, Result};
use report::GuestReport;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The start of the line our driver prints when `DriverEntry` has succeeded.
const STARTED_LINE: &str = "tcpip: started";

/// What `cargo xtask vm` was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The driver under test (its PDB is taken from beside it); `None` is the packaged x86
    /// image.
    pub driver: Option<PathBuf>,
    /// Boot the livecd's own driver only.
    pub stock: bool,
    /// Boot stock first, then ours, and print the side-by-side table.
    pub compare: bool,
    /// Boot ours this many times (each must pass).
    pub repeat: u32,
    /// The guest suite configuration; `None` is `vm/suite.cfg`.
    pub config: Option<PathBuf>,
    /// The longest one boot may take.
    pub timeout: Duration,
    /// Print every COM1 line.
    pub verbose: bool,
    /// Capture the card's frames to `target/vm/<label>/card.pcap`.
    pub pcap: bool,
}

/// `cargo xtask vm`'s usage text.
pub const USAGE: &str = "vm [--driver PATH | --stock] [--compare] [--repeat N] [--config FILE]
           [--timeout SECONDS] [--verbose] [--pcap]
           boot the ReactOS livecd (../shared/reactos) under QEMU with our x86 tcpip.sys
           (or PATH, or the stock driver) and run the guest suite; results in target/vm/";

impl Options {
    /// Parses the words after `vm`.
    pub fn parse(args: &[&str]) -> Result<Self> {
        let mut options = Self {
            driver: None,
            stock: false,
            compare: false,
            repeat: 1,
            config: None,
            timeout: Duration::from_secs(900),
            verbose: false,
            pcap: false,
        };
        let mut args = args.iter();
        while let Some(&arg) = args.next() {
            let mut value = || {
                args.next()
                    .copied()
                    .ok_or_else(|| Error(format!("{arg} needs a value")))
            };
            match arg {
                "--driver" => options.driver = Some(PathBuf::from(value()?)),
                "--stock" => options.stock = true,
                "--compare" => options.compare = true,
                "--repeat" => options.repeat = number(arg, value()?)?,
                "--config" => options.config = Some(PathBuf::from(value()?)),
                "--timeout" => options.timeout = Duration::from_secs(number(arg, value()?)?.into()),
                "--verbose" => options.verbose = true,
                "--pcap" => options.pcap = true,
                _ => {
                    return Err(Error(format!(
                        "unknown option {arg}\nusage: cargo xtask {USAGE}"
                    )));
                }
            }
        }
        if options.stock && (options.driver.is_some() || options.compare) {
            return Err(Error(
                "--stock goes with neither --driver nor --compare".into(),
            ));
        }
        if options.repeat == 0 {
            return Err(Error("--repeat needs at least 1".into()));
        }
        Ok(options)
    }
}

fn number(option: &str, value: &str) -> Result<u32> {
    value
        .parse()
        .map_err(|_| Error(format!("{option} needs a number, not {value}")))
}

/// One boot to run: its label, the driver, and the PDB to name its addresses with.
struct Subject {
    label: String,
    driver: PathBuf,
    pdb: Option<PathBuf>,
    /// Whether this boot's failures fail the run (ours) or are only reported (stock).
    must_pass: bool,
}

/// Runs the VM suite as `options` say; fails if any boot of our driver failed.
pub fn run(root: &Path, options: &Options) -> Result<()> {
    let work = root.join("target").join("vm");
    fs::create_dir_all(&work)
        .map_err(|e| Error(format!("cannot create {}: {e}", work.display())))?;
    let shared = root.join("..").join("shared").join("reactos");
    let base = iso::BaseTree::prepare(&shared, &work)?;
    let guest = build_guest(root, &work)?;
    let config_path = options
        .config
        .clone()
        .unwrap_or_else(|| root.join("vm").join("suite.cfg"));
    let config = fs::read_to_string(&config_path)
        .map_err(|e| Error(format!("cannot read {}: {e}", config_path.display())))?;

    let ours = options
        .driver
        .clone()
        .unwrap_or_else(|| crate::package_dir(root, crate::X86).join("tcpip.sys"));
    // The PDB beside the image, as `cargo xtask package` writes it.
    let ours_pdb = Some(ours.with_extension("pdb")).filter(|pdb| pdb.exists());
    // The TDI client test driver (the `kdriver` scenario), beside the image or in the package;
    // both drivers' boots get it.
    let test_driver = [
        ours.with_file_name("tdiecho.sys"),
        crate::package_dir(root, crate::X86).join("tdiecho.sys"),
    ]
    .into_iter()
    .find(|path| path.exists());
    if test_driver.is_none() {
        eprintln!("vm: no tdiecho.sys (run `cargo xtask package`): the kdriver scenario will fail");
    }
    let mut subjects = Vec::new();
    if options.stock || options.compare {
        subjects.push(Subject {
            label: "stock".into(),
            driver: base.stock_driver(),
            pdb: None,
            must_pass: false,
        });
    }
    if !options.stock {
        for n in 1..=options.repeat {
            let label = if options.repeat == 1 {
                "ours".into()
            } else {
                format!("ours-{n}")
            };
            subjects.push(Subject {
                label,
                driver: ours.clone(),
                pdb: ours_pdb.clone(),
                must_pass: true,
            });
        }
    }

    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for subject in &subjects {
        let boot = || {
            boot_one(
                &base,
                &work,
                &guest,
                test_driver.as_deref(),
                &config,
                subject,
                options,
            )
        };
        let (mut report, mut failure) = boot()?;
        // The stock driver is only the baseline, and it sometimes takes the machine down
        // (QEMU exits: the guest reset itself). A baseline needs a finished suite: boot it
        // again, once, and say so.
        if !subject.must_pass && !report.ended {
            eprintln!(
                "vm[{}]: the suite did not finish ({}); booting the baseline once more",
                subject.label,
                failure.as_deref().unwrap_or("?")
            );
            (report, failure) = boot()?;
        }
        if let Some(failure) = failure {
            eprintln!("vm[{}]: FAILED: {failure}", subject.label);
            if subject.must_pass {
                failures.push(format!("{}: {failure}", subject.label));
            }
        } else {
            eprintln!("vm[{}]: every scenario passed", subject.label);
        }
        reports.push((subject.label.clone(), report));
    }
    if options.compare
        && let [(_, stock), (_, ours), ..] = reports.as_slice()
    {
        let table = report::comparison(stock, ours);
        let path = work.join("comparison.md");
        fs::write(&path, &table)
            .map_err(|e| Error(format!("cannot write {}: {e}", path.display())))?;
        eprintln!(
            "vm: ours against stock on the same emulator ({}):\n{table}",
            path.display()
        );
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error(format!(
            "VM suite failed:\n  {}",
            failures.join("\n  ")
        )))
    }
}

/// Boots one subject; returns what the guest reported and why the boot failed, if it did.
fn boot_one(
    base: &iso::BaseTree,
    work: &Path,
    guest: &Path,
    test_driver: Option<&Path>,
    config: &str,
    subject: &Subject,
    options: &Options,
) -> Result<(GuestReport, Option<String>)> {
    let dir = work.join(&subject.label);
    fs::create_dir_all(&dir).map_err(|e| Error(format!("cannot create {}: {e}", dir.display())))?;
    let iso = dir.join("livecd.iso");
    eprintln!(
        "vm[{}]: remastering with {}",
        subject.label,
        subject.driver.display()
    );
    base.remaster(&iso, &subject.driver, test_driver, guest, config)?;
    let peers = peers::Peers::new(&dir).map_err(|e| {
        Error(format!(
            "cannot write the TFTP folder in {}: {e}",
            dir.display()
        ))
    })?;
    let boot = qemu::boot(
        &qemu::BootConfig {
            iso: &iso,
            log: dir.join("com1.log"),
            timeout: options.timeout,
            verbose: options.verbose,
            label: &subject.label,
            pcap: options.pcap.then(|| dir.join("card.pcap")),
        },
        &peers,
    )?;
    // The ISO is a few hundred MB and rebuilt every time.
    let _ = fs::remove_file(&iso);
    let mut report = GuestReport::parse(&boot.lines);
    report.check_tools();
    let results = dir.join("results.tsv");
    fs::write(&results, report.results_file())
        .map_err(|e| Error(format!("cannot write {}: {e}", results.display())))?;
    eprintln!(
        "vm[{}]: {:?} after {:.0} s; COM1 log {}, results {}",
        subject.label,
        boot.ending,
        boot.elapsed.as_secs_f64(),
        dir.join("com1.log").display(),
        results.display()
    );
    let failure = match &boot.ending {
        qemu::Ending::Finished => report.failure(),
        qemu::Ending::Debugger => {
            let symbols = match &subject.pdb {
                Some(pdb) => Some(symbols::Symbols::load(pdb)?),
                None => None,
            };
            let session = boot.debugger.unwrap_or_default();
            let range = kdbg::driver_range(&boot.lines);
            let text = kdbg::report(&boot.lines, &session, range, symbols.as_ref());
            let path = dir.join("crash.txt");
            fs::write(&path, &text)
                .map_err(|e| Error(format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "vm[{}]: the kernel debugger was entered:\n{text}",
                subject.label
            );
            Some(format!(
                "kernel debugger entered (report in {})",
                path.display()
            ))
        }
        qemu::Ending::QemuExited(status) => Some(format!("QEMU exited by itself ({status})")),
        qemu::Ending::TimedOut => Some(format!(
            "timed out after {} s ({})",
            options.timeout.as_secs(),
            report.failure().unwrap_or_else(|| "guest finished".into())
        )),
    };
    let failure = failure.or_else(|| {
        if boot.lines.iter().any(|l| l.contains("tcpip: panic")) {
            Some("the driver printed a panic".into())
        } else if subject.must_pass && !boot.lines.iter().any(|l| l.contains(STARTED_LINE)) {
            // Our load line is printed at a level the default debug filter passes.
            Some(format!("no `{STARTED_LINE}` line on COM1"))
        } else if subject.must_pass {
            kdriver_failure(&report, &boot.lines)
        } else {
            None
        }
    });
    Ok((report, failure))
}

/// What COM1 must show for each `kdriver` scenario (tdiecho.sys) that passed: the driver's
/// start, and its unload with every request completed, once per load; no panic of its own.
fn kdriver_failure(report: &GuestReport, lines: &[String]) -> Option<String> {
    let loads = report
        .results
        .iter()
        .filter(|r| r.status == "pass" && r.metric("unloaded") == Some("1"))
        .count();
    let count = |text: &str| lines.iter().filter(|l| l.contains(text)).count();
    if lines.iter().any(|l| l.contains("tdiecho: panic")) {
        return Some("tdiecho.sys printed a panic".into());
    }
    let started = count("tdiecho: started:");
    let clean = count(" 0 requests outstanding");
    (started < loads || clean < loads).then(|| {
        format!(
            "{loads} kdriver scenario(s) passed, but COM1 shows {started} `tdiecho: started` and \
             {clean} clean unload line(s)"
        )
    })
}

/// Builds the guest program (`vm/guest/*.c`) with mingw-w64 into `target/vm/tcpipvm.exe`.
fn build_guest(root: &Path, work: &Path) -> Result<PathBuf> {
    let source = root.join("vm").join("guest");
    let mut files: Vec<PathBuf> = fs::read_dir(&source)
        .map_err(|e| Error(format!("cannot read {}: {e}", source.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "c"))
        .collect();
    files.sort();
    let exe = work.join("tcpipvm.exe");
    let mut gcc = Command::new("i686-w64-mingw32-gcc");
    gcc.args(GUEST_CFLAGS)
        .arg("-o")
        .arg(&exe)
        .args(&files)
        .args(["-lws2_32", "-liphlpapi", "-ladvapi32"]);
    crate::run(gcc, crate::Output::Capture).map_err(|e| {
        Error(format!(
            "building the guest program (needs gcc-mingw-w64-i686): {e}"
        ))
    })?;
    Ok(exe)
}

/// The guest program's compiler flags: XP/2003-level Win32 (what ReactOS implements), no
/// warnings, libgcc linked in.
const GUEST_CFLAGS: &[&str] = &[
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-std=gnu11",
    "-D_WIN32_WINNT=0x0502",
    "-DWINVER=0x0502",
    "-static-libgcc",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_reject_what_does_not_go_together() {
        let options = Options::parse(&["--compare", "--repeat", "3", "--timeout", "60"]).unwrap();
        assert!(options.compare);
        assert_eq!(options.repeat, 3);
        assert_eq!(options.timeout, Duration::from_secs(60));
        assert!(Options::parse(&["--stock", "--compare"]).is_err());
        assert!(Options::parse(&["--repeat", "0"]).is_err());
        assert!(Options::parse(&["--repeat"]).is_err());
        assert!(Options::parse(&["--bogus"]).is_err());
    }
}
