//! Binding a host TAP adapter under a loaded tcpip driver, as NDIS will bind a miniport
//! (`ProtocolBindAdapter`): the driver's core gets an Ethernet interface on the adapter, and
//! the adapter's reader thread indicates every received frame to the driver at DISPATCH_LEVEL.
//!
//! The address comes from `IOCTL_SET_IP_ADDRESS`, sent by the caller as dhcpcsvc would; the
//! default gateway is set here ([`TapBinding::set_gateway`]), the host stand-in for a route
//! added through iphlpapi.

use super::driver::Driver;
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
    bound: bool,
}

impl TapBinding {
    /// Binds `tap` under `driver` with a receive queue of `frames` buffers and starts
    /// indicating its frames. PASSIVE_LEVEL, on a thread of the driver's kernel.
    pub fn bind(driver: &Driver, tap: Arc<TapAdapter>, frames: usize) -> Result<Self, NtStatus> {
        let object = NonNull::new(driver.object()).ok_or(NtStatus::INVALID_PARAMETER)?;
        let tcpip: &'static Tcpip =
            entry::loaded_state::<Tcpip>(object).ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        tcpip.stack().attach_link(tap.clone(), frames)?;
        let started = tap.start(move |frame| {
            tcpip.stack().indicate_receive(frame);
        });
        if started.is_err() {
            tcpip.stack().detach_link();
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        Ok(Self {
            tap,
            tcpip,
            bound: true,
        })
    }

    /// Sets or clears the driver's default gateway. PASSIVE_LEVEL.
    pub fn set_gateway(&self, gateway: Option<Ipv4Addr>) {
        self.tcpip.stack().set_gateway(gateway);
    }

    /// The adapter.
    pub fn tap(&self) -> &Arc<TapAdapter> {
        &self.tap
    }

    /// Stops the adapter's reader and unbinds it; reports a reader failure. PASSIVE_LEVEL.
    pub fn unbind(mut self) -> io::Result<()> {
        self.release()
    }

    fn release(&mut self) -> io::Result<()> {
        if !std::mem::replace(&mut self.bound, false) {
            return Ok(());
        }
        let stopped = self.tap.stop();
        self.tcpip.stack().detach_link();
        stopped
    }
}

impl Drop for TapBinding {
    fn drop(&mut self) {
        let _ = self.release();
    }
}
