//! Loading and unloading the driver under test, and the leak check at unload.
//!
//! `load_driver` calls `DriverEntry` at PASSIVE_LEVEL with a fresh `DRIVER_OBJECT` whose major
//! functions all point to the I/O manager's default (invalid device request), then clears
//! `DO_DEVICE_INITIALIZING` on the devices the driver created. `unload` calls `DriverUnload` at
//! PASSIVE_LEVEL, waits until the system is quiescent, and checks that the driver left nothing
//! behind: pool, IRPs it never completed, work items, devices, file object references, set
//! timers. Each kind of leak is a verifier violation; the report lists every leaked item.

use super::context::EntryScope;
use super::device::{DriverRecord, new_driver_object, retire_driver_object};
use super::kernel::{KernelHandle, KernelInner};
use super::object::ObjectKind;
use super::verifier::{self, Entry, RoutineFrame, Rule, Site};
use crate::nt::NtStatus;
use crate::nt::types::*;
use std::fmt;
use std::sync::Arc;

/// A driver's `DriverEntry` (`PDRIVER_INITIALIZE`).
pub type DriverInitialize =
    unsafe extern "system" fn(*mut DRIVER_OBJECT, *const UNICODE_STRING) -> NTSTATUS;

/// The name of the driver object, `\Driver\Tcpip`, in UTF-16.
static DRIVER_NAME: [u16; 13] = {
    let ascii = b"\\Driver\\Tcpip";
    let mut units = [0u16; 13];
    let mut i = 0;
    while i < units.len() {
        units[i] = ascii[i] as u16;
        i += 1;
    }
    units
};
/// The registry path passed to `DriverEntry`.
const REGISTRY_PATH: &str = "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\Tcpip";

/// How many leaked items a violation message lists (the report lists all).
const LISTED: usize = 10;

/// One leaked item.
#[derive(Clone, Debug)]
pub struct Leak {
    pub rule: Rule,
    pub detail: String,
}

/// What `DriverUnload` left behind.
#[derive(Clone, Debug, Default)]
pub struct UnloadReport {
    pub leaks: Vec<Leak>,
}

impl UnloadReport {
    /// No leak at all.
    pub fn is_clean(&self) -> bool {
        self.leaks.is_empty()
    }

    /// The leaks of one kind.
    pub fn leaks_of(&self, rule: Rule) -> impl Iterator<Item = &Leak> {
        self.leaks.iter().filter(move |l| l.rule == rule)
    }
}

impl fmt::Display for UnloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.leaks.is_empty() {
            return f.write_str("no leaks");
        }
        writeln!(f, "{} leak(s):", self.leaks.len())?;
        for leak in &self.leaks {
            writeln!(f, "  {:?}: {}", leak.rule, leak.detail)?;
        }
        Ok(())
    }
}

/// A loaded driver. Unload it with [`Driver::unload`]; a driver still loaded when the
/// [`Kernel`](super::Kernel) is dropped is unloaded then.
pub struct Driver {
    kernel: KernelHandle,
    object: usize,
}

impl Driver {
    /// The kernel the driver is loaded in. Any IRQL.
    pub fn kernel(&self) -> &KernelHandle {
        &self.kernel
    }

    /// The driver object. Any IRQL.
    pub fn object(&self) -> *mut DRIVER_OBJECT {
        self.object as *mut DRIVER_OBJECT
    }

    /// Calls `DriverUnload`, waits for quiescence, checks for leaks (each kind a verifier
    /// violation) and returns the report. PASSIVE_LEVEL.
    pub fn unload(self) -> UnloadReport {
        let _api = self.kernel.api();
        unload(&self.kernel.0, self.object())
    }
}

/// A `UNICODE_STRING` over an owned buffer.
fn unicode(units: &mut [u16]) -> UNICODE_STRING {
    UNICODE_STRING {
        Length: (units.len() * 2) as u16,
        MaximumLength: (units.len() * 2) as u16,
        Buffer: units.as_mut_ptr(),
    }
}

impl KernelHandle {
    /// Loads a driver: calls `entry` (`DriverEntry`) at PASSIVE_LEVEL. On failure the leak
    /// check runs as at unload (the driver must have undone everything). PASSIVE_LEVEL.
    pub fn load_driver(&self, entry: DriverInitialize) -> Result<Driver, NtStatus> {
        let _api = self.api();
        let kernel = &self.0;
        let object = new_driver_object(Some(super::io::invalid_device_request));
        // SAFETY: a fresh driver object. The name is a static that drivers only read.
        unsafe {
            (*object).DriverName = UNICODE_STRING {
                Length: (DRIVER_NAME.len() * 2) as u16,
                MaximumLength: (DRIVER_NAME.len() * 2) as u16,
                Buffer: DRIVER_NAME.as_ptr().cast_mut(),
            }
        };
        kernel.drivers.lock().push(DriverRecord {
            object: object as usize,
            foreign: false,
        });
        let mut registry: Vec<u16> = REGISTRY_PATH.encode_utf16().collect();
        let registry = unicode(&mut registry);
        let frame = RoutineFrame::begin();
        let status = {
            let _scope = EntryScope::enter(Arc::as_ptr(&kernel.pool), Entry::DriverEntry);
            // SAFETY: DriverEntry called as the I/O manager does, with a valid driver object
            // and registry path, at PASSIVE_LEVEL.
            NtStatus(unsafe { entry(object, &registry) })
        };
        frame.end(Entry::DriverEntry, entry as usize);
        if !status.is_success() {
            self.wait_quiescent();
            check_leaks(kernel, object, "after DriverEntry failed");
            forget_driver(kernel, object);
            // SAFETY: made by `new_driver_object`; forgotten, so retired once.
            unsafe { retire_driver_object(kernel, object) };
            return Err(status);
        }
        // SAFETY: the driver object and its devices are live.
        unsafe {
            let mut device = (*object).DeviceObject;
            while !device.is_null() {
                (*device).Flags &= !DO_DEVICE_INITIALIZING;
                device = (*device).NextDevice;
            }
        }
        Ok(Driver {
            kernel: self.clone(),
            object: object as usize,
        })
    }
}

fn forget_driver(kernel: &KernelInner, object: *mut DRIVER_OBJECT) {
    kernel
        .drivers
        .lock()
        .retain(|d| d.object != object as usize);
}

/// Unloads a loaded driver. PASSIVE_LEVEL.
fn unload(kernel: &Arc<KernelInner>, object: *mut DRIVER_OBJECT) -> UnloadReport {
    // SAFETY: a loaded driver's object is live.
    let deviceless = unsafe { (*object).DeviceObject.is_null() };
    // SAFETY: as above.
    if let Some(routine) = unsafe { (*object).DriverUnload } {
        let frame = RoutineFrame::begin();
        {
            let _scope = EntryScope::enter(Arc::as_ptr(&kernel.pool), Entry::DriverUnload);
            // SAFETY: DriverUnload called as the I/O manager does, at PASSIVE_LEVEL.
            unsafe { routine(object) };
        }
        frame.end(Entry::DriverUnload, routine as usize);
    }
    KernelHandle(kernel.clone()).wait_quiescent();
    let mut report = check_leaks(kernel, object, "at unload");
    if deviceless {
        report.leaks.push(Leak {
            rule: Rule::UnloadRefused,
            detail: "a driver with no device object: ReactOS would not unload it".to_string(),
        });
    }
    forget_driver(kernel, object);
    // SAFETY: made by `new_driver_object`; the driver is forgotten, so it is retired once.
    unsafe { retire_driver_object(kernel, object) };
    report
}

/// Unloads the drivers still loaded (kernel teardown).
pub(crate) fn unload_remaining(kernel: &Arc<KernelInner>) {
    let loaded: Vec<usize> = kernel
        .drivers
        .lock()
        .iter()
        .filter(|d| !d.foreign)
        .map(|d| d.object)
        .collect();
    for object in loaded {
        unload(kernel, object as *mut DRIVER_OBJECT);
    }
}

/// Finds what the driver left behind and reports each kind as a violation.
fn check_leaks(kernel: &KernelInner, object: *mut DRIVER_OBJECT, when: &str) -> UnloadReport {
    let mut leaks = Vec::new();
    for record in kernel.pool.live() {
        leaks.push(Leak {
            rule: Rule::PoolLeak,
            detail: record.to_string(),
        });
    }
    for (irp, entry) in kernel.irps.in_driver() {
        leaks.push(Leak {
            rule: Rule::IrpLeak,
            detail: format!("IRP {irp:#x} received by {entry} and never completed"),
        });
    }
    for (item, device) in kernel.workers.live_items() {
        leaks.push(Leak {
            rule: Rule::WorkItemLeak,
            detail: format!("work item {item:#x} allocated for device {device:#x}"),
        });
    }
    // SAFETY: the driver object is live; its device list is intact.
    unsafe {
        let mut device = (*object).DeviceObject;
        while !device.is_null() {
            leaks.push(Leak {
                rule: Rule::DeviceLeak,
                detail: format!("device object {device:p} not deleted"),
            });
            device = (*device).NextDevice;
        }
    }
    for detail in kernel.ndis.leaks() {
        leaks.push(Leak {
            rule: Rule::NdisLeak,
            detail,
        });
    }
    for timer in kernel.timers.set_timers() {
        leaks.push(Leak {
            rule: Rule::TimerLeak,
            detail: format!("timer {timer:#x} still set"),
        });
    }
    {
        let state = kernel.objects.lock();
        for (&address, record) in &state.objects {
            let ObjectKind::File(data) = &record.kind else {
                continue;
            };
            if record.driver_refs > 0 {
                leaks.push(Leak {
                    rule: Rule::FileObjectLeak,
                    detail: format!(
                        "file object {address:#x}: {} reference(s) taken by the driver and never \
                         dropped",
                        record.driver_refs
                    ),
                });
            }
            let device = data.device as *mut DEVICE_OBJECT;
            // SAFETY: a device with open files stays allocated.
            if unsafe { (*device).DriverObject } == object {
                leaks.push(Leak {
                    rule: Rule::FileObjectLeak,
                    detail: format!(
                        "file object {address:#x} on the driver's device {device:p} still open \
                         ({} handle(s), {} reference(s))",
                        record.handle_count, record.pointer_count
                    ),
                });
            }
        }
    }
    let mut rules: Vec<Rule> = leaks.iter().map(|l| l.rule).collect();
    rules.sort();
    rules.dedup();
    for rule in rules {
        let items: Vec<&str> = leaks
            .iter()
            .filter(|l| l.rule == rule)
            .map(|l| l.detail.as_str())
            .collect();
        let mut message = format!("{} leaked item(s) {when}:", items.len());
        for item in items.iter().take(LISTED) {
            message.push_str("\n    ");
            message.push_str(item);
        }
        if items.len() > LISTED {
            message.push_str("\n    …");
        }
        verifier::report(rule, Site::entry(Entry::DriverUnload), message);
    }
    UnloadReport { leaks }
}
