//! `cargo xtask <task>`: the build and test entry points of `tcpip.sys`.
//!
//! - `package`: both kernel images in release, packaged in `target/package/{x86,x64}` with
//!   their PDBs and the INF.
//! - `clippy`: clippy with `-D warnings` for the host (all targets) and both kernel targets.
//! - `test`: everything CI checks: `cargo fmt --check`, `clippy`, `package`, then
//!   `cargo test --workspace` (unit and host tests with the echo suites at reduced sizes, the
//!   image checks, the Wine smoke load, the TAP interop tests), then the loom test of the
//!   fast path's hand-over (`tests/loom_claim.rs`, built with `--cfg loom`), then the short fuzz pass
//!   (`fuzz`, 10 s per target), then the quick mode of the
//!   `driver_vs_linux` benchmark, then the VM suite (`vm --compare`).
//! - `fuzz`: the fuzz targets of `fuzz/`, a few seconds each from the committed corpus
//!   (`xtask::fuzz`); `test` runs it after `cargo test --workspace`.
//! - `vm`: the x86 image in the ReactOS livecd under QEMU, with the guest suite (`xtask::vm`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;
use xtask::{ARCHES, Output, Result};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  package  build tcpip.sys for x86 and x64 (release) into target/package/<arch>/
           with tcpip.pdb and tcpip.inf
  clippy   clippy -D warnings for the host (all targets) and both kernel targets
  test     fmt --check, clippy, package, cargo test --workspace, loom, the short fuzz pass,
           quick bench, and the VM suite against the stock driver (what CI runs)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = xtask::workspace_root();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["package"] => package(&root),
        ["clippy"] => clippy(&root),
        ["test"] => test(&root),
        ["fuzz", rest @ ..] => {
            xtask::fuzz::Options::parse(rest).and_then(|o| xtask::fuzz::run(&root, &o))
        }
        ["vm", rest @ ..] => {
            xtask::vm::Options::parse(rest).and_then(|o| xtask::vm::run(&root, &o))
        }
        ["help"] | ["--help"] | ["-h"] => {
            println!("{USAGE}{}{}", xtask::fuzz::USAGE, xtask::vm::USAGE);
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}{}{}", xtask::fuzz::USAGE, xtask::vm::USAGE);
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one named step, printing its name and how long it took.
fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    eprintln!("xtask: == {name}");
    let start = Instant::now();
    f()?;
    eprintln!(
        "xtask: == {name}: ok in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn package(root: &Path) -> Result<()> {
    step("package", || {
        for package in xtask::package(root, Output::Inherit)? {
            for file in [&package.sys, &package.pdb, &package.inf] {
                let size = std::fs::metadata(file).map_or(0, |m| m.len());
                let shown = file.strip_prefix(root).unwrap_or(file);
                eprintln!("xtask: {:>9} bytes  {}", size, shown.display());
            }
        }
        Ok(())
    })
}

fn clippy(root: &Path) -> Result<()> {
    step("clippy (host, all targets)", || {
        let mut command = xtask::cargo(root);
        command.args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]);
        xtask::run(command, Output::Inherit)
    })?;
    for arch in ARCHES {
        step(&format!("clippy ({} kernel)", arch.name), || {
            xtask::clippy(root, arch, Output::Inherit)
        })?;
    }
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    step("fmt --check", || {
        let mut command = xtask::cargo(root);
        command.args(["fmt", "--all", "--check"]);
        xtask::run(command, Output::Inherit)
    })?;
    clippy(root)?;
    package(root)?;
    step("test --workspace", || {
        let mut command = xtask::cargo(root);
        command.args(["test", "--workspace", "--no-fail-fast"]);
        xtask::run(command, Output::Inherit)
    })?;
    // The fast path's hand-over with the DPC (`core::claim`) under loom: a build of its own,
    // with `--cfg loom`, in its own target directory so that the main build stays warm.
    step("loom (tests/loom_claim.rs)", || {
        let mut command = xtask::cargo(root);
        command
            .args(["test", "--test", "loom_claim"])
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", root.join("target/loom"));
        xtask::run(command, Output::Inherit)
    })?;
    // Every fuzz target for a few seconds from its committed corpus (seeds and crash
    // regressions replayed first).
    step("fuzz (10 s per target)", || {
        xtask::fuzz::run(root, &xtask::fuzz::Options::parse(&[])?)
    })?;
    // Proves the benchmark still runs (a few seconds; it reports, it asserts no timing).
    step("bench driver_vs_linux --quick", || {
        let mut command = xtask::cargo(root);
        command.args(["bench", "--bench", "driver_vs_linux", "--", "--quick"]);
        xtask::run(command, Output::Inherit)
    })?;
    // The driver in a real ReactOS kernel: the livecd booted with the stock driver, then with
    // ours; every scenario must pass on ours.
    step("vm --compare (ReactOS livecd under QEMU)", || {
        let options = xtask::vm::Options::parse(&["--compare"])?;
        xtask::vm::run(root, &options)
    })
}
