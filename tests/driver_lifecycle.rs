//! `DriverEntry`/`DriverUnload` of tcpip.sys under the host kernel model: the devices are
//! created and deleted, nothing leaks, and an allocation failure at any point of
//! initialisation unwinds cleanly with an error status instead of a panic.

use tcpip::driver::DEVICE_NAMES;
use tcpip::host::{Config, FaultInjection, Kernel};
use tcpip::nt::NtStatus;
use tcpip::nt::entry::driver_entry;

#[test]
fn driver_entry_creates_every_device_and_unload_deletes_them() {
    let kernel = Kernel::new(Config::default());
    let driver = kernel
        .load_driver(driver_entry)
        .expect("DriverEntry succeeds");
    for name in DEVICE_NAMES {
        assert!(kernel.device_by_name(name).is_some(), "{name} exists");
    }
    let report = driver.unload();
    assert!(report.is_clean(), "{report}");
    for name in DEVICE_NAMES {
        assert!(kernel.device_by_name(name).is_none(), "{name} deleted");
    }
}

/// Load and unload reach the debugger with its default filter (nothing set, as on a fresh
/// ReactOS boot where COM1 shows only what passes it).
#[test]
fn load_and_unload_are_shown_by_default() {
    let kernel = Kernel::new(Config::default());
    let driver = kernel
        .load_driver(driver_entry)
        .expect("DriverEntry succeeds");
    let output = kernel.take_debug_output();
    assert!(
        output.iter().any(|l| l.starts_with("tcpip: started")),
        "{output:?}"
    );
    assert!(driver.unload().is_clean());
    assert!(
        kernel
            .debug_output()
            .iter()
            .any(|l| l == "tcpip: unloading"),
        "{:?}",
        kernel.debug_output()
    );
}

#[test]
fn control_channel_opens_and_closes_on_every_device() {
    let kernel = Kernel::new(Config::default());
    let driver = kernel
        .load_driver(driver_entry)
        .expect("DriverEntry succeeds");
    for name in DEVICE_NAMES {
        let handle = kernel.create_file(name, None, 0).expect("control channel");
        assert_eq!(kernel.close(handle), NtStatus::SUCCESS);
    }
    let report = driver.unload();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn unknown_ioctl_is_an_invalid_device_request() {
    let kernel = Kernel::new(Config::default());
    let driver = kernel
        .load_driver(driver_entry)
        .expect("DriverEntry succeeds");
    let handle = kernel
        .create_file("\\Device\\Tcp", None, 0)
        .expect("control channel");
    let (status, information) = kernel.device_io_control(handle, 0x0012_3457, &[], &mut []);
    assert_eq!(status, NtStatus::INVALID_DEVICE_REQUEST);
    assert_eq!(information, 0);
    assert_eq!(kernel.close(handle), NtStatus::SUCCESS);
    assert!(driver.unload().is_clean());
}

/// Fails the 1st, 2nd, … allocation of `DriverEntry` in turn until initialisation needs no
/// more: every failure returns `STATUS_INSUFFICIENT_RESOURCES` and leaves nothing behind (the
/// model's leak check runs after a failed `DriverEntry` and records any leak as a violation,
/// which fails the test when the kernel is dropped).
#[test]
fn allocation_failure_at_every_point_of_driver_entry_unwinds_cleanly() {
    let mut failures = 0;
    for nth in 1.. {
        let kernel = Kernel::new(Config {
            fault: FaultInjection::FailNth(nth),
            ..Config::default()
        });
        match kernel.load_driver(driver_entry) {
            Err(status) => {
                assert_eq!(status, NtStatus::INSUFFICIENT_RESOURCES, "allocation {nth}");
                for name in DEVICE_NAMES {
                    assert!(kernel.device_by_name(name).is_none(), "{name} after {nth}");
                }
                // The failure reaches the debugger with no filter set.
                let output = kernel.debug_output();
                assert!(
                    output
                        .iter()
                        .any(|l| l.starts_with("tcpip: error: DriverEntry failed")),
                    "allocation {nth}: {output:?}"
                );
                failures += 1;
            }
            Ok(driver) => {
                let report = driver.unload();
                assert!(report.is_clean(), "{report}");
                break;
            }
        }
    }
    assert!(
        failures >= 2,
        "DriverEntry allocates; {failures} failure points seen"
    );
}
