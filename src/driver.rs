//! The driver object: its devices and its state from `DriverEntry` to `DriverUnload`.

use crate::dispatch;
use crate::nt::NtStatus;
use crate::nt::device::Device;
use crate::nt::entry::Driver;
use crate::nt::irp::{Dispatched, Irp, IrpId};

/// The device names, in the order ReactOS's tcpip.sys creates them. Every request is accepted
/// on every device (iphlpapi sends everything to `\Device\Tcp`).
pub const DEVICE_NAMES: &[&str] = &[
    "\\Device\\Tcp",
    "\\Device\\Udp",
    "\\Device\\RawIp",
    "\\Device\\Ip",
];

/// The state of tcpip.sys.
pub struct Tcpip {
    devices: [Device; DEVICE_NAMES.len()],
}

impl Tcpip {
    /// The devices, indexed like [`DEVICE_NAMES`].
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }
}

impl Driver for Tcpip {
    const DEVICES: &'static [&'static str] = DEVICE_NAMES;

    fn init(devices: &[Device]) -> Result<Self, NtStatus> {
        let devices = devices
            .try_into()
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        Ok(Tcpip { devices })
    }

    fn start(&'static self) {
        crate::log!(crate::nt::log::Level::Info, "started");
    }

    fn dispatch(&'static self, device: usize, irp: Irp) -> Dispatched {
        dispatch::dispatch(self, device, irp)
    }

    fn cancel(&'static self, _irp: IrpId) {}

    fn stop(&'static self) {
        crate::log!(crate::nt::log::Level::Info, "unloading");
    }
}
