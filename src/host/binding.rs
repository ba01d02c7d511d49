//! Binding a host TAP adapter under a loaded tcpip driver the way NDIS binds a miniport: the
//! TAP becomes a miniport of the kernel's NDIS model, which calls the driver's
//! `ProtocolBindAdapter`; the driver opens it, queries it and attaches it to its core, exactly
//! as it does on ReactOS. The adapter's reader thread then indicates every received frame
//! through the NDIS model (`ProtocolReceivePacket` at DISPATCH_LEVEL), and the driver's sends
//! reach the TAP through `NdisSend`.
//!
//! The address comes from `IOCTL_SET_IP_ADDRESS`, sent by the caller as dhcpcsvc would; the
//! default gateway is set here ([`TapBinding::set_gateway`]), the host stand-in for a route
//! added through iphlpapi.

use super::driver::Driver;
use super::kernel::KernelHandle;
use super::ndis::MiniportOptions;
use super::tap::TapAdapter;
use crate::driver::Tcpip;
use crate::nt::NtStatus;
use crate::nt::entry;
use core::net::Ipv4Addr;
use core::ptr::NonNull;
use std::io;
use std::sync::Arc;

/// A TAP adapter bound under a loaded driver. Unbind it (or drop it) before the driver
/// unloads.
pub struct TapBinding {
    tap: Arc<TapAdapter>,
    tcpip: &'static Tcpip,
    kernel: KernelHandle,
    name: String,
    bound: bool,
}

/// The miniport device name the model gives a TAP: `\Device\{GUID}`, the GUID made from the
/// interface's name.
fn device_name(tap: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tap.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "\\Device\\{{{:08X}-{:04X}-{:04X}-0000-{:012X}}}",
        hash >> 32,
        (hash >> 16) & 0xffff,
        hash & 0xffff,
        hash & 0xffff_ffff_ffff
    )
}

impl TapBinding {
    /// Adds `tap` as a miniport of the NDIS model, which binds the driver to it, and starts
    /// indicating its frames. PASSIVE_LEVEL, on a thread of the driver's kernel.
    pub fn bind(driver: &Driver, tap: Arc<TapAdapter>) -> Result<Self, NtStatus> {
        Self::bind_with(driver, tap, MiniportOptions::default())
    }

    /// [`TapBinding::bind`] with the miniport behaving as `options` say (lookahead-only
    /// indications, pended sends and transfers, like a PCnet under ReactOS's NDIS).
    /// PASSIVE_LEVEL, on a thread of the driver's kernel.
    pub fn bind_with(
        driver: &Driver,
        tap: Arc<TapAdapter>,
        options: MiniportOptions,
    ) -> Result<Self, NtStatus> {
        let object = NonNull::new(driver.object()).ok_or(NtStatus::INVALID_PARAMETER)?;
        let tcpip: &'static Tcpip =
            entry::loaded_state::<Tcpip>(object).ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let kernel = driver.kernel().clone();
        let name = device_name(tap.name());
        let status = kernel.ndis_add_miniport(&name, tap.clone(), options);
        if !status.is_success() || !kernel.ndis_is_bound(&name) {
            kernel.ndis_remove_miniport(&name);
            return Err(if status.is_success() {
                NtStatus::UNSUCCESSFUL
            } else {
                status
            });
        }
        let indicator = (kernel.clone(), name.clone());
        let started = tap.start(move |frame| {
            indicator.0.ndis_indicate(&indicator.1, frame);
        });
        if started.is_err() {
            kernel.ndis_remove_miniport(&name);
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        Ok(Self {
            tap,
            tcpip,
            kernel,
            name,
            bound: true,
        })
    }

    /// The driver's interface index for this adapter, while it is bound. PASSIVE_LEVEL.
    pub fn interface(&self) -> Option<u32> {
        let name: Vec<u16> = self.name.encode_utf16().collect();
        self.tcpip.ndis().interface_of(&name)
    }

    /// Sets or clears the driver's default gateway through this adapter. PASSIVE_LEVEL.
    pub fn set_gateway(&self, gateway: Option<Ipv4Addr>) {
        if let Some(index) = self.interface() {
            self.tcpip.stack().set_gateway(index, gateway);
        }
    }

    /// The adapter.
    pub fn tap(&self) -> &Arc<TapAdapter> {
        &self.tap
    }

    /// The miniport's device name in the NDIS model.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// Stops the adapter's reader and removes the miniport (NDIS unbinds the driver from it);
    /// reports a reader failure. PASSIVE_LEVEL.
    pub fn unbind(mut self) -> io::Result<()> {
        self.release()
    }

    fn release(&mut self) -> io::Result<()> {
        if !std::mem::replace(&mut self.bound, false) {
            return Ok(());
        }
        let stopped = self.tap.stop();
        self.kernel.ndis_remove_miniport(&self.name);
        stopped
    }
}

impl Drop for TapBinding {
    fn drop(&mut self) {
        let _ = self.release();
    }
}
