//! The build tasks of `tcpip.sys`, shared by the `cargo xtask` command line and by the tests
//! that need the packaged images (`tests/image_checks.rs`, `tests/wine_smoke.rs`), so that both
//! build the images the same way.
//!
//! Kernel builds use the cargo aliases of `.cargo/config.toml` (`kbuild-x86`, `kbuild-x64`,
//! `kclippy-x86`, `kclippy-x64`), which carry the `-Z build-std` flags, and run with
//! `CARGO_TARGET_DIR=target/kernel`, so they never wait for the host build's lock nor
//! invalidate its artifacts.

pub mod fuzz;
pub mod vm;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A kernel architecture the driver is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arch {
    /// The package folder name: `x86` or `x64`.
    pub name: &'static str,
    /// The folder cargo writes the target's artifacts to, under `target/kernel`.
    pub target_dir: &'static str,
    /// The cargo alias that builds the release image.
    build_alias: &'static str,
    /// The cargo alias that runs clippy on the library and the image.
    clippy_alias: &'static str,
}

/// 32-bit x86: the soft-float target JSON, NT 5.01 subsystem.
pub const X86: Arch = Arch {
    name: "x86",
    target_dir: "i686-reactos-kernel-msvc",
    build_alias: "kbuild-x86",
    clippy_alias: "kclippy-x86",
};

/// x86-64: the built-in `x86_64-pc-windows-msvc` target, NT 5.02 subsystem.
pub const X64: Arch = Arch {
    name: "x64",
    target_dir: "x86_64-pc-windows-msvc",
    build_alias: "kbuild-x64",
    clippy_alias: "kclippy-x64",
};

/// Both architectures, in the order they are built.
pub const ARCHES: [Arch; 2] = [X86, X64];

/// A failed task step, with what it ran and why it failed.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// The result of a task step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do with the output of the commands a task runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Show it as it comes (the command line).
    Inherit,
    /// Keep it, and put it into the error if the command fails (tests).
    Capture,
}

/// The workspace root: the folder of the `tcpip` crate, one above this crate.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in a subfolder of the workspace")
        .to_path_buf()
}

/// The folder kernel builds use as `CARGO_TARGET_DIR`.
pub fn kernel_target_dir(root: &Path) -> PathBuf {
    root.join("target").join("kernel")
}

/// The package folder of `arch`: `target/package/<arch>`.
pub fn package_dir(root: &Path, arch: Arch) -> PathBuf {
    root.join("target").join("package").join(arch.name)
}

/// A `cargo` command in `root`: the cargo that runs this program (`$CARGO`) if there is one,
/// so that the pinned toolchain is used throughout.
pub fn cargo(root: &Path) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root);
    command
}

/// A `cargo` command for a kernel build: `cargo` with `CARGO_TARGET_DIR=target/kernel`.
pub fn kernel_cargo(root: &Path) -> Command {
    let mut command = cargo(root);
    command.env("CARGO_TARGET_DIR", kernel_target_dir(root));
    command
}

/// Runs `command` to completion and fails unless it exits successfully.
pub fn run(mut command: Command, output: Output) -> Result<()> {
    let shown = format!("{command:?}");
    match output {
        Output::Inherit => {
            let status = command
                .status()
                .map_err(|e| Error(format!("cannot run {shown}: {e}")))?;
            if !status.success() {
                return Err(Error(format!("{shown} failed ({status})")));
            }
        }
        Output::Capture => {
            let out = command
                .stdin(Stdio::null())
                .output()
                .map_err(|e| Error(format!("cannot run {shown}: {e}")))?;
            if !out.status.success() {
                return Err(Error(format!(
                    "{shown} failed ({})\n--- stdout\n{}--- stderr\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
    }
    Ok(())
}

/// Builds the release image of `arch` (`cargo kbuild-<arch>`).
pub fn build(root: &Path, arch: Arch, output: Output) -> Result<()> {
    let mut command = kernel_cargo(root);
    command.arg(arch.build_alias);
    run(command, output)
}

/// Runs clippy on the library and the image for `arch`, with warnings denied.
pub fn clippy(root: &Path, arch: Arch, output: Output) -> Result<()> {
    let mut command = kernel_cargo(root);
    command.args([arch.clippy_alias, "--", "-D", "warnings"]);
    run(command, output)
}

/// The files of one packaged architecture.
#[derive(Clone, Debug)]
pub struct Package {
    /// The architecture.
    pub arch: Arch,
    /// `target/package/<arch>/tcpip.sys`.
    pub sys: PathBuf,
    /// `target/package/<arch>/tcpip.pdb`.
    pub pdb: PathBuf,
    /// `target/package/<arch>/tcpip.inf`.
    pub inf: PathBuf,
    /// `target/package/<arch>/tdiecho.sys`: the TDI client test driver (`src/bin/tdiecho.rs`).
    pub test_sys: PathBuf,
    /// `target/package/<arch>/tdiecho.pdb`.
    pub test_pdb: PathBuf,
}

/// Builds both images in release and writes `target/package/<arch>/{tcpip.sys, tcpip.pdb,
/// tcpip.inf}` for each, and the test driver `tdiecho.sys` with its `tdiecho.pdb`. The builds are incremental: with nothing changed this takes a second
/// or two per architecture.
pub fn package(root: &Path, output: Output) -> Result<Vec<Package>> {
    ARCHES
        .iter()
        .map(|&arch| {
            build(root, arch, output)?;
            let built = kernel_target_dir(root)
                .join(arch.target_dir)
                .join("release");
            let dir = package_dir(root, arch);
            fs::create_dir_all(&dir)
                .map_err(|e| Error(format!("cannot create {}: {e}", dir.display())))?;
            let package = Package {
                arch,
                sys: dir.join("tcpip.sys"),
                pdb: dir.join("tcpip.pdb"),
                inf: dir.join("tcpip.inf"),
                test_sys: dir.join("tdiecho.sys"),
                test_pdb: dir.join("tdiecho.pdb"),
            };
            copy(&built.join("tcpip.exe"), &package.sys)?;
            copy(&built.join("tcpip.pdb"), &package.pdb)?;
            copy(&root.join("inf").join("tcpip.inf"), &package.inf)?;
            copy(&built.join("tdiecho.exe"), &package.test_sys)?;
            copy(&built.join("tdiecho.pdb"), &package.test_pdb)?;
            Ok(package)
        })
        .collect()
}

/// Copies `from` to `to`, naming both in the error.
fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).map(drop).map_err(|e| {
        Error(format!(
            "cannot copy {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })
}
