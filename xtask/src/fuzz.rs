//! `cargo xtask fuzz`: the fuzz targets of `fuzz/` (libFuzzer through `cargo fuzz`), each run
//! for a few seconds from its corpus; any crash fails.
//!
//! Each target starts from the inputs committed in `fuzz/corpus/<target>/` (seeds and crash
//! regressions, all replayed first) and writes what it finds to `target/fuzz/corpus/<target>/`,
//! so the repository's corpus only changes when someone copies inputs in on purpose. A crash
//! leaves its input in `target/fuzz/artifacts/<target>/`, named in the error, for
//! `cargo fuzz run <target> <file>` and `cargo fuzz tmin`.

use crate::{Error, Output, Result};
use std::fs;
use std::path::Path;
use std::time::Instant;

pub const USAGE: &str = "
  fuzz [--seconds N] [--target NAME]...
           build the fuzz targets (cargo fuzz, nightly) and run each for N seconds
           (default 10) from its committed corpus; fails on any crash
  ";

/// The seconds each target runs when none are given.
pub const DEFAULT_SECONDS: u64 = 10;

/// What `cargo xtask fuzz` was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub seconds: u64,
    /// The targets to run; empty: all of them.
    pub targets: Vec<String>,
}

impl Options {
    /// Parses the arguments after `fuzz`.
    pub fn parse(args: &[&str]) -> Result<Options> {
        let mut options = Options {
            seconds: DEFAULT_SECONDS,
            targets: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(&arg) = args.next() {
            match (arg, args.next()) {
                ("--seconds", Some(n)) => {
                    options.seconds = n
                        .parse()
                        .map_err(|_| Error(format!("--seconds: not a number: {n}")))?;
                }
                ("--target", Some(name)) => options.targets.push((*name).to_owned()),
                _ => return Err(Error(format!("fuzz: unexpected argument {arg}"))),
            }
        }
        Ok(options)
    }
}

/// Builds the targets and runs each for `options.seconds`.
pub fn run(root: &Path, options: &Options) -> Result<()> {
    let version = crate::cargo(root).args(["fuzz", "--version"]).output();
    if !version.is_ok_and(|o| o.status.success()) {
        return Err(Error(
            "cargo fuzz is not installed: cargo install cargo-fuzz --locked".to_owned(),
        ));
    }
    let mut build = crate::cargo(root);
    build.args(["fuzz", "build"]);
    crate::run(build, Output::Inherit)?;

    let all = list(root)?;
    if let Some(unknown) = options.targets.iter().find(|t| !all.contains(t)) {
        return Err(Error(format!(
            "fuzz: no target {unknown} (targets: {})",
            all.join(", ")
        )));
    }
    let targets = if options.targets.is_empty() {
        all
    } else {
        options.targets.clone()
    };
    for target in &targets {
        let started = Instant::now();
        run_target(root, target, options.seconds)?;
        eprintln!(
            "xtask: fuzz {target}: no crash in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The fuzz targets: the files of `fuzz/fuzz_targets/` (the crate's other binaries, the seed
/// writer and the replayer, are not targets), sorted.
fn list(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("fuzz").join("fuzz_targets");
    let entries =
        fs::read_dir(&dir).map_err(|e| Error(format!("cannot read {}: {e}", dir.display())))?;
    let mut targets: Vec<String> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "rs").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    targets.sort();
    Ok(targets)
}

/// Runs one target for `seconds` from its committed corpus.
fn run_target(root: &Path, target: &str, seconds: u64) -> Result<()> {
    let committed = root.join("fuzz").join("corpus").join(target);
    let work = root.join("target").join("fuzz").join("corpus").join(target);
    let artifacts = root
        .join("target")
        .join("fuzz")
        .join("artifacts")
        .join(target);
    for dir in [&committed, &work, &artifacts] {
        fs::create_dir_all(dir)
            .map_err(|e| Error(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut command = crate::cargo(root);
    command.args(["fuzz", "run", target]);
    command.arg(&work).arg(&committed);
    command.arg("--");
    command.arg(format!("-max_total_time={seconds}"));
    command.arg(format!("-artifact_prefix={}/", artifacts.display()));
    // The model's own leak check runs at each unload; LeakSanitizer would also count the
    // kernel model's threads and caches between inputs.
    command.arg("-detect_leaks=0");
    command.arg("-print_final_stats=1");
    crate::run(command, Output::Inherit).map_err(|e| {
        Error(format!(
            "fuzz target {target} failed (input in {}): {e}",
            artifacts.display()
        ))
    })
}
