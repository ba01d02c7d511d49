//! Sets `cfg(kernel)` for the NT kernel targets and passes the kernel link arguments to the
//! driver image only, so nothing kernel-specific leaks into host builds.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kernel)");
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "windows" {
        return;
    }
    println!("cargo::rustc-cfg=kernel");
    let subsystem = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86") => "5.01",
        _ => "5.02",
    };
    for arg in [
        "/DRIVER",
        &format!("/SUBSYSTEM:NATIVE,{subsystem}"),
        "/ENTRY:DriverEntry",
        "/NODEFAULTLIB",
        "/RELEASE",
        "/TSAWARE:NO",
        "/BASE:0x10000",
    ] {
        println!("cargo::rustc-link-arg-bins={arg}");
    }
}
