//! Smoke load of the x64 `tcpip.sys` under Wine's kernel emulation (`winedevice.exe`).
//!
//! In a throwaway 64-bit `WINEPREFIX` (`target/wine/prefix`), inside one `wine cmd /c` (Wine
//! stops services as soon as the last user process exits), the test
//! 1. installs the package with its INF (`setupapi InstallHinfSection DefaultInstall`), which
//!    copies `tcpip.sys` to `system32\drivers` and configures the kernel service `Tcpip`;
//! 2. starts the service, which loads the driver and runs `DriverEntry`;
//! 3. opens `\Device\Tcp` as a control channel, sends `IOCTL_TCP_QUERY_INFORMATION_EX` for the
//!    entity list with a zero-length output buffer, then with bad pointers (0x1000, a freed
//!    buffer, a read-only page: each must fail) and a good one after them, and closes the
//!    handle. Wine's ntdll and wineserver copy METHOD_NEITHER buffers between the processes
//!    themselves and reject these pointers before the driver sees them
//!    (`STATUS_INVALID_USER_BUFFER`, `STATUS_ACCESS_DENIED`); the driver's own guarded copies
//!    are exercised by the host model (`tests/ip_helper_user_buffers.rs`) and the ReactOS VM
//!    (`vm/guest/sc_user_buffers.c`);
//! 4. stops the service, which runs `DriverUnload`;
//! 5. runs the driver's x64 guarded copy (`src/nt/sys/seh.rs`, compiled into
//!    `tests/wine_smoke/seh.c`) on unmapped, freed, read-only and half-mapped memory: Wine's
//!    x64 exception dispatch must find its `.pdata` handler, which resumes with the exception
//!    code.
//!
//! Steps 2–4 are done by a user-mode probe (`tests/wine_smoke/probe.c`, compiled here with
//! mingw-w64) through the service control manager and the native API. It switches the service
//! to demand start first (Wine's services.exe would otherwise start a SYSTEM_START service by
//! itself at the beginning of a session) and retries while the service database is locked.
//!
//! It then checks the service configuration, the service states, the probe's output, and the
//! driver's `DbgPrintEx` lines and Wine's `ntoskrnl` traces (device creation and deletion).
//!
//! Wine cannot run DPCs (`KeInsertQueueDpc` is a stub) nor the x86 image (no wine32 here), so
//! this is a load/unload and dispatch smoke test, not a network test. Without Wine or
//! mingw-w64 the test is skipped with a loud message, except under CI (`CI=true`), where it
//! fails: `.ci/run` installs both.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The start of the driver's `DbgPrintEx` line once `DriverEntry` has created its devices and
/// started (it goes on with the version).
const DRIVER_STARTED: &str = "tcpip: started";
/// The driver's `DbgPrintEx` line when `DriverUnload` begins.
const DRIVER_UNLOADING: &str = "tcpip: unloading";
/// The devices `DriverEntry` must create, all `FILE_DEVICE_NETWORK` (18), not exclusive.
const DEVICES: [&str; 4] = ["Tcp", "Udp", "RawIp", "Ip"];
/// How long the whole Wine session may take before it is killed.
const SESSION_TIMEOUT: Duration = Duration::from_secs(240);

/// The programs the test needs, or why it cannot run.
fn tools() -> Result<(), String> {
    for (tool, package) in [
        ("wine", "wine wine64"),
        ("wineserver", "wine wine64"),
        ("x86_64-w64-mingw32-gcc", "gcc-mingw-w64-x86-64"),
    ] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!(
                "`{tool}` is not installed (Debian: apt-get install {package})"
            ));
        }
    }
    Ok(())
}

/// A `wine`/`wineserver` command for the test's prefix, headless and without the Mono/Gecko
/// installers.
fn wine(program: &str, prefix: &Path, debug: &str) -> Command {
    let mut command = Command::new(program);
    command
        .env("WINEPREFIX", prefix)
        .env("WINEARCH", "win64")
        .env("WINEDEBUG", debug)
        .env("WINEDLLOVERRIDES", "mscoree,mshtml,winemenubuilder.exe=d")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::null());
    command
}

/// Waits for `child` up to `timeout`; kills it (and the prefix's wineserver) when time is up.
fn wait(mut child: Child, prefix: &Path, timeout: Duration) -> Result<ExitStatus, String> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let _ = wine("wineserver", prefix, "-all").arg("-k").status();
            return Err(format!("timed out after {} s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a prepared command to completion with a timeout, with stdout and stderr sent to files
/// (`<log>.out`, `<log>.err`); returns the exit status and both texts.
fn run_logged(
    mut command: Command,
    prefix: &Path,
    log: &Path,
    timeout: Duration,
) -> Result<(ExitStatus, String, String), String> {
    let out_path = log.with_extension("out");
    let err_path = log.with_extension("err");
    let out = fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let err = fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let child = command
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let status = wait(child, prefix, timeout)?;
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    Ok((status, read(&out_path), read(&err_path)))
}

/// The lines of `text` after the line `==== <name>` and before the next `====` line.
fn step<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let marker = format!("==== {name}");
    text.lines()
        .skip_while(|line| line.trim() != marker)
        .skip(1)
        .take_while(|line| !line.starts_with("===="))
        .collect()
}

/// The newest `lib<name>-*.rlib` in `deps`: what `-Zbuild-std` built for the x64 kernel.
fn newest_rlib(deps: &Path, name: &str) -> Option<std::path::PathBuf> {
    let prefix = format!("lib{name}-");
    fs::read_dir(deps)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".rlib"))
        })
        .max_by_key(|path| fs::metadata(path).and_then(|m| m.modified()).ok())
}

/// Compiles the driver's x64 guarded copy (`src/nt/sys/seh.rs`, against the `core` the kernel
/// build made) into an object, links it into `tests/wine_smoke/seh.c` with mingw-w64, and runs
/// that in the prefix: Wine's ntdll dispatches the faults through the routine's `.pdata`
/// handler, as the kernel does. Wine's ntoskrnl never hands the driver a bad user pointer (see
/// step 3), so this is where the x64 SEH runs for real. Returns the problems found.
fn guarded_copy_under_wine(root: &Path, work: &Path, prefix: &Path) -> Vec<String> {
    let deps = root.join("target/kernel/x86_64-pc-windows-msvc/release/deps");
    let (Some(core), Some(builtins)) = (
        newest_rlib(&deps, "core"),
        newest_rlib(&deps, "compiler_builtins"),
    ) else {
        return vec![format!("no x64 core rlib in {}", deps.display())];
    };
    let source = work.join("seh_probe.rs");
    let seh = root.join("src/nt/sys/seh.rs");
    fs::write(
        &source,
        format!(
            "#![no_std]\n#[path = {seh:?}]\nmod seh;\n\
             /// # Safety\n/// As `seh::guarded_copy`.\n\
             #[unsafe(no_mangle)]\npub unsafe extern \"C\" fn tcpip_guarded_copy(\
             dst: *mut u8, src: *const u8, len: usize) -> i32 {{\n\
             unsafe {{ seh::guarded_copy(dst, src, len) }}\n}}\n"
        ),
    )
    .expect("write seh_probe.rs");
    let object = work.join("seh_probe.obj");
    let compiled = Command::new("rustc")
        .current_dir(root)
        .args(["--edition", "2024", "--target", "x86_64-pc-windows-msvc"])
        .args(["--crate-type", "lib", "--emit", "obj", "-C", "opt-level=2"])
        .args(["-C", "panic=abort", "--extern"])
        .arg(format!("core={}", core.display()))
        .arg("--extern")
        .arg(format!("compiler_builtins={}", builtins.display()))
        .arg("-L")
        .arg(format!("dependency={}", deps.display()))
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .status();
    if !compiled.is_ok_and(|s| s.success()) {
        return vec!["compiling the guarded copy for x64 failed".into()];
    }
    let exe = prefix.join("drive_c").join("tcpip").join("seh.exe");
    let linked = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(root.join("tests/wine_smoke/seh.c"))
        .arg(&object)
        .status();
    if !linked.is_ok_and(|s| s.success()) {
        return vec!["linking tests/wine_smoke/seh.c failed".into()];
    }
    let mut run = wine("wine", prefix, "-all");
    run.arg(r"C:\tcpip\seh.exe");
    let (status, out, _) = match run_logged(run, prefix, &work.join("seh"), SESSION_TIMEOUT) {
        Ok(result) => result,
        Err(e) => return vec![format!("seh.exe: {e}")],
    };
    if status.success() && out.lines().any(|line| line == "seh: OK") {
        Vec::new()
    } else {
        vec![format!("the guarded copy under Wine ({status}):\n{out}")]
    }
}

#[test]
fn x64_driver_loads_serves_a_control_channel_and_unloads_under_wine() {
    if let Err(missing) = tools() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "Wine smoke test cannot run under CI: {missing}");
        eprintln!(
            "\n*** SKIPPED the Wine smoke load of tcpip.sys: {missing}. ***\n\
             *** Install Wine and mingw-w64 to run it (CI does).        ***\n"
        );
        return;
    }

    let root = xtask::workspace_root();
    let x64 = xtask::package(&root, xtask::Output::Capture)
        .unwrap_or_else(|e| panic!("building the kernel images failed:\n{e}"))
        .into_iter()
        .find(|p| p.arch == xtask::X64)
        .expect("the x64 package");

    let work = root.join("target").join("wine");
    let prefix = work.join("prefix");
    if prefix.exists() {
        let _ = wine("wineserver", &prefix, "-all").arg("-k").status();
        fs::remove_dir_all(&prefix).expect("remove the previous prefix");
    }
    fs::create_dir_all(&work).expect("create target/wine");

    // The probe.
    let probe = work.join("probe.exe");
    let compiled = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&probe)
        .arg(root.join("tests/wine_smoke/probe.c"))
        .arg("-lntdll")
        .status()
        .expect("run x86_64-w64-mingw32-gcc");
    assert!(compiled.success(), "compiling the probe failed");

    // A fresh prefix.
    let mut boot = wine("wine", &prefix, "-all");
    boot.args(["wineboot", "--init"]);
    let (status, _, err) = run_logged(boot, &prefix, &work.join("wineboot"), SESSION_TIMEOUT)
        .unwrap_or_else(|e| panic!("wineboot: {e}"));
    assert!(
        status.success(),
        "wineboot --init failed ({status}):\n{err}"
    );
    // Let that session's wineserver and services exit, so that the session below starts its
    // own, with its logging.
    let mut settle = wine("wineserver", &prefix, "-all");
    settle.arg("-w");
    run_logged(settle, &prefix, &work.join("wineserver"), SESSION_TIMEOUT)
        .unwrap_or_else(|e| panic!("wineserver -w: {e}"));

    // The package, as an admin would get it, and the probe.
    let package = prefix.join("drive_c").join("tcpip");
    fs::create_dir_all(&package).expect("create C:\\tcpip");
    for file in [&x64.sys, &x64.inf] {
        fs::copy(file, package.join(file.file_name().unwrap())).expect("copy the package");
    }
    fs::copy(&probe, package.join("probe.exe")).expect("copy the probe");

    // One session: install, start, probe, stop.
    let script = [
        "echo ==== install",
        r"start /wait rundll32 setupapi.dll,InstallHinfSection DefaultInstall 128 C:\tcpip\tcpip.inf",
        "echo ==== registry",
        r"reg query HKLM\System\CurrentControlSet\Services\Tcpip",
        "echo ==== start",
        r"C:\tcpip\probe.exe start Tcpip",
        "echo ==== channel",
        r"C:\tcpip\probe.exe channel",
        "echo ==== stop",
        r"C:\tcpip\probe.exe stop Tcpip",
        "echo ==== end",
    ]
    .join(" & ");
    let mut session = wine("wine", &prefix, "-all,+debugstr,+ntoskrnl");
    session.args(["cmd", "/c", &script]);
    let log = work.join("session");
    let started = Instant::now();
    let (status, out, err) =
        run_logged(session, &prefix, &log, SESSION_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "the Wine session failed: {e}; logs: {}.{{out,err}}",
                log.display()
            )
        });
    eprintln!(
        "wine session: {status} in {:.1} s; logs in {}.{{out,err}}",
        started.elapsed().as_secs_f64(),
        log.display()
    );

    let mut problems = Vec::new();

    // 1. The INF installed the kernel service.
    let registry = step(&out, "registry");
    let value_of = |name: &str| {
        registry.iter().find_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (words.len() >= 3 && words[0] == name).then(|| words[2..].join(" "))
        })
    };
    for (name, expected) in [
        ("Type", "0x1"),
        ("Start", "0x1"),
        ("ErrorControl", "0x1"),
        ("Group", "PNP_TDI"),
    ] {
        if value_of(name).as_deref() != Some(expected) {
            problems.push(format!(
                "service value {name} is {:?}, expected {expected}",
                value_of(name)
            ));
        }
    }
    let image_path = value_of("ImagePath").unwrap_or_default();
    if !image_path
        .to_ascii_lowercase()
        .ends_with(r"\drivers\tcpip.sys")
    {
        problems.push(format!(
            "service ImagePath is {image_path:?}, not ...\\drivers\\tcpip.sys"
        ));
    }

    // 2. DriverEntry succeeded and created the devices.
    for expected in ["probe: service Tcpip is RUNNING", "probe: start OK"] {
        if !step(&out, "start")
            .iter()
            .any(|line| line.starts_with(expected))
        {
            problems.push(format!("starting the service: no `{expected}`"));
        }
    }
    if !err.lines().any(|line| line.contains(DRIVER_STARTED)) {
        problems.push(format!("no `{DRIVER_STARTED}` DbgPrint line"));
    }
    for device in DEVICES {
        let name = format!(r#", L"\\Device\\{device}", 18, 0, 0, "#);
        if !err
            .lines()
            .any(|line| line.contains(":IoCreateDevice (") && line.contains(&name))
        {
            problems.push(format!(
                r"\Device\{device} was not created as FILE_DEVICE_NETWORK"
            ));
        }
    }

    // 3. The control channel works.
    let probe_lines = step(&out, "channel");
    for expected in [
        r"probe: open \Device\Tcp control channel: status 0x00000000",
        "probe: ENTITY_LIST with a 0-byte output buffer: status 0x00000000",
        "probe: ENTITY_LIST fetch: status 0x00000000",
        "probe: ENTITY_LIST fetch again: status 0x00000000",
        "probe: bad pointers OK",
        "probe: close: status 0x00000000",
        "probe: channel OK",
    ] {
        if !probe_lines.iter().any(|line| line.starts_with(expected)) {
            problems.push(format!("control channel: no `{expected}`"));
        }
    }

    // 4. DriverUnload ran and deleted every device once.
    for expected in ["probe: service Tcpip is STOPPED", "probe: stop OK"] {
        if !step(&out, "stop")
            .iter()
            .any(|line| line.starts_with(expected))
        {
            problems.push(format!("stopping the service: no `{expected}`"));
        }
    }
    if !err.lines().any(|line| line.ends_with(DRIVER_UNLOADING)) {
        problems.push(format!("no `{DRIVER_UNLOADING}` DbgPrint line"));
    }
    let unload = err
        .lines()
        .position(|line| line.contains(r#"unload_driver L"\\Driver\\Tcpip""#));
    match unload {
        None => problems.push("DriverUnload was not called".to_string()),
        Some(at) => {
            let thread = err
                .lines()
                .nth(at)
                .and_then(|l| l.split(':').next())
                .unwrap_or("");
            let deleted: Vec<&str> = err
                .lines()
                .skip(at)
                .filter(|line| {
                    line.starts_with(&format!("{thread}:trace:ntoskrnl:IoDeleteDevice "))
                })
                .collect();
            let distinct: std::collections::BTreeSet<&str> = deleted.iter().copied().collect();
            if deleted.len() != DEVICES.len() || distinct.len() != DEVICES.len() {
                problems.push(format!(
                    "DriverUnload called IoDeleteDevice {} times on {} devices, expected {} once each",
                    deleted.len(),
                    distinct.len(),
                    DEVICES.len()
                ));
            }
        }
    }

    // 5. Nothing crashed.
    for bad in [
        "tcpip: panic",
        "KeBugCheck",
        "Unhandled page fault",
        "Unhandled exception",
    ] {
        if let Some(line) = err.lines().find(|line| line.contains(bad)) {
            problems.push(format!("Wine log: {line}"));
        }
    }

    // Whatever is left of the session (a driver stuck in DriverUnload, say) ends here.
    let _ = wine("wineserver", &prefix, "-all").arg("-k").status();

    // 6. The guarded copy catches faults through Wine's x64 exception dispatch.
    problems.extend(guarded_copy_under_wine(&root, &work, &prefix));
    let _ = wine("wineserver", &prefix, "-all").arg("-k").status();
    if problems.is_empty() {
        let _ = fs::remove_dir_all(&prefix);
    }
    assert!(
        problems.is_empty(),
        "\n{}\n\n--- session stdout\n{out}\n--- logs and prefix kept: {} {}",
        problems.join("\n"),
        log.display(),
        prefix.display()
    );
}
