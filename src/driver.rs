//! The driver object: its devices and its state from `DriverEntry` to `DriverUnload`.

use crate::core::stack::Stack;
use crate::core::state::CoreConfig;
use crate::dispatch;
use crate::ndis::NdisProtocol;
use crate::nt::NtStatus;
use crate::nt::device::Device;
use crate::nt::dpc::DpcHandler;
use crate::nt::entry::{self, Driver};
use crate::nt::irp::{CancelRoutine, Dispatched, Irp, IrpId};
use crate::nt::log::Level;
use crate::nt::system;
use crate::nt::work_item::{WorkHandler, WorkItem};

/// The device names, in the order ReactOS's tcpip.sys creates them. Every request is accepted
/// on every device (iphlpapi sends everything to `\Device\Tcp`).
pub const DEVICE_NAMES: &[&str] = &[
    "\\Device\\Tcp",
    "\\Device\\Udp",
    "\\Device\\RawIp",
    "\\Device\\Ip",
];

/// The index of `\Device\Ip` in [`DEVICE_NAMES`]: the IP helper's device, with no transport.
pub const IP_DEVICE: usize = 3;
const _: () = assert!(IP_DEVICE < DEVICE_NAMES.len());

/// The state of tcpip.sys.
pub struct Tcpip {
    devices: [Device; DEVICE_NAMES.len()],
    stack: Stack,
    /// The NDIS protocol and its bindings to network adapters.
    ndis: NdisProtocol,
    /// Completes finished requests at PASSIVE_LEVEL.
    completions: WorkItem<Tcpip>,
    cancel: CancelRoutine,
}

impl Tcpip {
    /// The devices, indexed like [`DEVICE_NAMES`].
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The TCP/IP stack.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// The NDIS protocol.
    pub fn ndis(&self) -> &NdisProtocol {
        &self.ndis
    }

    /// The cancel routine armed on pending TDI requests.
    pub fn cancel_routine(&self) -> CancelRoutine {
        self.cancel
    }

    /// This driver's identity, to recognise its own file objects.
    pub fn driver_id(&self) -> usize {
        self.devices[0].driver()
    }
}

impl Driver for Tcpip {
    const DEVICES: &'static [&'static str] = DEVICE_NAMES;
    /// `\\.\Tcp` for user mode, as Windows' tcpip.sys makes it (`DD_TCP_SYMBOLIC_DEVICE_NAME`
    /// of `tcpioctl.h`; programs and ReactOS's own API tests open the control channel so).
    const SYMBOLIC_LINKS: &'static [(&'static str, &'static str)] =
        &[("\\DosDevices\\Tcp", "\\Device\\Tcp")];

    fn init(devices: &[Device]) -> Result<Self, NtStatus> {
        let devices: [Device; DEVICE_NAMES.len()] = devices
            .try_into()
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        let physical_memory = system::physical_memory();
        let config = CoreConfig::for_machine(physical_memory);
        crate::log!(
            Level::Notice,
            "physical memory {} MiB, socket memory limit {} MiB",
            physical_memory.unwrap_or(0) >> 20,
            config.socket_memory_limit >> 20
        );
        Ok(Tcpip {
            completions: WorkItem::allocate(&devices[0])?,
            stack: Stack::new(config)?,
            ndis: NdisProtocol::new()?,
            devices,
            cancel: entry::cancel_routine::<Tcpip>(),
        })
    }

    fn start(&'static self) {
        self.stack.start(self);
        self.ndis.register(&self.stack);
        crate::log!(
            Level::Notice,
            "started: {} {}, devices {}",
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            DEVICE_NAMES.len()
        );
    }

    fn dispatch(&'static self, device: usize, irp: Irp) -> Dispatched {
        let dispatched = dispatch::dispatch(self, device, irp);
        // The fast path completed the caller's own requests; others' go to the work item.
        if self.stack.take_completions_waiting() {
            self.completions.queue(self);
        }
        dispatched
    }

    fn cancel(&'static self, irp: IrpId) {
        self.stack.cancel(irp);
    }

    fn stop(&'static self) {
        self.ndis.shutdown();
        self.stack.stop();
        crate::log!(Level::Notice, "unloading");
    }
}

impl DpcHandler for Tcpip {
    fn run_dpc(&'static self) {
        if self.stack.run_dpc(self.cancel).completions {
            self.completions.queue(self);
        }
    }
}

impl WorkHandler for Tcpip {
    fn run_work(&'static self) {
        self.stack.run_completions();
    }
}
