//! The livecd image: unpacked once from `../shared/reactos/`, then remastered per boot with the
//! driver under test, the guest test program in place of `userinit.exe`, and a boot menu that
//! starts the COM1 debug entry at once.
//!
//! ReactOS's livecd boots from an El Torito no-emulation image (`loader/isoboot.bin`). Of the
//! Debian tools, `genisoimage` writes an image that still boots; `xorriso`'s mkisofs emulation
//! and its `-boot_image any replay` do not (nothing on COM1), so xorriso only extracts.

use crate::{Error, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The compressed livecd in the shared folder beside the repository.
pub const LIVECD_XZ: &str = "livecd-0.4.16-dev-89d5a3d-x86-dbg.iso.xz";
/// sha256 of the unpacked ISO (`../shared/reactos/README.md`).
const LIVECD_SHA256: &str = "23a7374de69f0a19c93f9921fa4d493421c3e4bb1756634ddaa698ce1b6e024d";
/// Where the stock driver lives in the ISO tree.
pub const DRIVER_PATH: &str = "reactos/system32/drivers/tcpip.sys";
/// Where the project's TDI client test driver goes (the `kdriver` scenario installs it as the
/// service `TdiEcho`, image `\SystemRoot\System32\drivers\tdiecho.sys`).
pub const TEST_DRIVER_PATH: &str = "reactos/system32/drivers/tdiecho.sys";
/// The program Winlogon starts after `setup -mini` has started networking.
const USERINIT_PATH: &str = "reactos/system32/userinit.exe";
/// The guest program's configuration, read from the program's own folder.
const CONFIG_PATH: &str = "reactos/system32/tcpipvm.cfg";
/// The boot entry with `/DEBUG /DEBUGPORT=COM1 /BAUDRATE=115200`.
const DEBUG_ENTRY: &str = "LiveCD_Debug";

/// The unpacked livecd: the ISO tree under `target/vm/base/tree`, checked against its sha256.
pub struct BaseTree {
    tree: PathBuf,
}

impl BaseTree {
    /// Unpacks `shared/reactos/<LIVECD_XZ>` into `work/base` unless that was done before.
    /// Needs `xz`, `sha256sum` and `xorriso`.
    pub fn prepare(shared: &Path, work: &Path) -> Result<Self> {
        let base = work.join("base");
        let tree = base.join("tree");
        let done = base.join("unpacked");
        if done.exists() {
            return Ok(Self { tree });
        }
        let xz = shared.join(LIVECD_XZ);
        if !xz.exists() {
            return Err(Error(format!(
                "the ReactOS livecd is missing: {} (the shared folder beside the repository)",
                xz.display()
            )));
        }
        remove_dir(&base)?;
        create_dir(&base)?;
        let iso = base.join("livecd.iso");
        eprintln!("vm: unpacking {}", xz.display());
        let file = fs::File::create(&iso).map_err(|e| io_error("create", &iso, e))?;
        let mut unxz = Command::new("xz");
        unxz.arg("-dc").arg(&xz).stdout(file);
        crate::run(unxz, crate::Output::Capture)?;
        let sum = Command::new("sha256sum")
            .arg(&iso)
            .output()
            .map_err(|e| Error(format!("cannot run sha256sum: {e}")))?;
        let sum = String::from_utf8_lossy(&sum.stdout);
        if !sum.starts_with(LIVECD_SHA256) {
            return Err(Error(format!(
                "{} does not have the expected sha256 {LIVECD_SHA256}: {sum}",
                iso.display()
            )));
        }
        let mut extract = Command::new("xorriso");
        extract
            .args(["-osirrox", "on", "-indev"])
            .arg(&iso)
            .args(["-extract", "/"])
            .arg(&tree);
        crate::run(extract, crate::Output::Capture)?;
        let mut writable = Command::new("chmod");
        writable.args(["-R", "u+w"]).arg(&tree);
        crate::run(writable, crate::Output::Capture)?;
        fs::remove_file(&iso).map_err(|e| io_error("remove", &iso, e))?;
        fs::write(&done, b"").map_err(|e| io_error("write", &done, e))?;
        Ok(Self { tree })
    }

    /// The stock `tcpip.sys` of the livecd.
    pub fn stock_driver(&self) -> PathBuf {
        self.tree.join(DRIVER_PATH)
    }

    /// Writes `iso`: the livecd with `driver` as `tcpip.sys`, `test_driver` (if any) as
    /// `tdiecho.sys` beside it, `guest` as `userinit.exe`, `config` as the guest's
    /// configuration and the COM1 debug entry booting at once. The tree is a hard-linked copy
    /// of the base (`cp -al`) in which only the replaced files are new.
    pub fn remaster(
        &self,
        iso: &Path,
        driver: &Path,
        test_driver: Option<&Path>,
        guest: &Path,
        config: &str,
    ) -> Result<()> {
        let staging = iso.with_extension("tree");
        remove_dir(&staging)?;
        let mut link = Command::new("cp");
        link.arg("-al").arg(&self.tree).arg(&staging);
        crate::run(link, crate::Output::Capture)?;
        replace(&staging.join(DRIVER_PATH), &fs_read(driver)?)?;
        if let Some(test_driver) = test_driver {
            replace(&staging.join(TEST_DRIVER_PATH), &fs_read(test_driver)?)?;
        }
        replace(&staging.join(USERINIT_PATH), &fs_read(guest)?)?;
        replace(&staging.join(CONFIG_PATH), config.as_bytes())?;
        let ini = staging.join("freeldr.ini");
        let menu = String::from_utf8_lossy(&fs_read(&ini)?).into_owned();
        replace(&ini, boot_menu(&menu).as_bytes())?;
        let mut master = Command::new("genisoimage");
        master
            .args(["-quiet", "-o"])
            .arg(iso)
            .args([
                "-iso-level",
                "4",
                "-volid",
                "ReactOS",
                "-eltorito-boot",
                "loader/isoboot.bin",
                "-no-emul-boot",
                "-boot-load-size",
                "4",
                "-hide",
                "boot.catalog",
            ])
            .arg(&staging);
        let result = crate::run(master, crate::Output::Capture);
        remove_dir(&staging)?;
        result
    }
}

/// `freeldr.ini` with the COM1 debug entry as the default, no wait, and `/KDSERIAL` on that
/// entry: without it KDBG reads its commands from the PS/2 keyboard, not from COM1.
fn boot_menu(ini: &str) -> String {
    let mut out = String::with_capacity(ini.len() + 16);
    let mut section = "";
    for line in ini.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed;
        }
        let key = trimmed.split('=').next().unwrap_or("").trim();
        match key {
            "DefaultOS" => out.push_str(&format!("DefaultOS={DEBUG_ENTRY}")),
            "TimeOut" => out.push_str("TimeOut=0"),
            "Options" if section == format!("[{DEBUG_ENTRY}]") && !line.contains("/KDSERIAL") => {
                out.push_str(line.trim_end());
                out.push_str(" /KDSERIAL");
            }
            _ => out.push_str(line),
        }
        out.push_str("\r\n");
    }
    out
}

/// Replaces a (possibly hard-linked) file with new contents without touching the base tree.
fn replace(path: &Path, contents: &[u8]) -> Result<()> {
    if path.exists() {
        fs::remove_file(path).map_err(|e| io_error("remove", path, e))?;
    }
    fs::write(path, contents).map_err(|e| io_error("write", path, e))
}

fn fs_read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| io_error("read", path, e))
}

fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| io_error("create", path, e))
}

fn remove_dir(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("remove", path, e)),
        _ => Ok(()),
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error(format!("cannot {what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_menu_boots_the_debug_entry_at_once_with_kdbg_on_com1() {
        let ini = "[FREELOADER]\nDefaultOS=LiveCD\nTimeOut=5\n\n[LiveCD]\nOptions=/MININT\n\n\
                   [LiveCD_Debug]\nOptions=/DEBUG /DEBUGPORT=COM1 /MININT\n";
        let menu = boot_menu(ini);
        assert!(menu.contains("DefaultOS=LiveCD_Debug\r\n"), "{menu}");
        assert!(menu.contains("TimeOut=0\r\n"), "{menu}");
        assert!(menu.contains("[LiveCD]\r\nOptions=/MININT\r\n"), "{menu}");
        assert!(
            menu.contains("Options=/DEBUG /DEBUGPORT=COM1 /MININT /KDSERIAL\r\n"),
            "{menu}"
        );
        assert!(!menu.contains("TimeOut=5"), "{menu}");
        assert_eq!(boot_menu(&menu).matches("/KDSERIAL").count(), 1);
    }
}
