//! The driver on the TAP: a model kernel with the driver loaded, its address set with
//! `IOCTL_SET_IP_ADDRESS` (as dhcpcsvc does), the TAP bound under it, the default gateway, and
//! Winsock over the AFD model; and the clean shutdown that checks for leaks.

use crate::args::Args;
use std::net::Ipv4Addr;
use std::sync::Arc;
use tcpip::host::binding::TapBinding;
use tcpip::host::impair::Impairment;
use tcpip::host::tap::TapAdapter;
use tcpip::host::winsock::Winsock;
use tcpip::host::{Clock, Config, Driver, Kernel};
use tcpip::nt::NtStatus;
use tcpip::nt::entry::driver_entry;
use tcpip::nt::types::IOCTL_SET_IP_ADDRESS;

/// The seed of `--impair`.
const IMPAIRMENT_SEED: u64 = 1;

/// A loaded driver bound to the TAP.
pub struct Station {
    pub kernel: Kernel,
    pub ws: Arc<Winsock>,
    pub tap: Arc<TapAdapter>,
    driver: Driver,
    binding: TapBinding,
}

impl Station {
    /// Loads the driver and binds the TAP as `args` say.
    pub fn start(args: &Args) -> Result<Station, String> {
        let mut tap = TapAdapter::open(&args.tap, args.mac, args.pcap.as_deref())
            .map_err(|e| format!("cannot open TAP {}: {e}", args.tap))?;
        if args.impair {
            tap = tap
                .impair(Impairment::lossy_wan(IMPAIRMENT_SEED))
                .map_err(|e| format!("cannot impair TAP {}: {e}", args.tap))?;
        }
        let tap = Arc::new(tap);
        let kernel = Kernel::new(Config {
            processors: 2,
            clock: Clock::Real,
            ..Config::default()
        });
        let driver = kernel
            .load_driver(driver_entry)
            .map_err(|status| format!("DriverEntry failed: {status:?}"))?;
        let configured = set_ip_address(&kernel, args.address, args.prefix);
        let binding = configured
            .and_then(|()| TapBinding::bind(&driver, tap.clone()))
            .map_err(|status| format!("cannot configure the driver: {status:?}"));
        let binding = match binding {
            Ok(binding) => binding,
            Err(e) => {
                let report = driver.unload();
                let violations = kernel.take_violations().len();
                return Err(format!(
                    "{e} (unload: {report}; {violations} verifier violation(s))"
                ));
            }
        };
        binding.set_gateway(args.gateway);
        let ws = Arc::new(Winsock::new(&kernel));
        Ok(Station {
            kernel,
            ws,
            tap,
            driver,
            binding,
        })
    }

    /// Unbinds the TAP and unloads the driver. Returns what was not clean: sockets left open,
    /// a failed TAP reader, leaks, verifier violations.
    pub fn shut_down(self) -> Vec<String> {
        let mut problems = Vec::new();
        let open = self.ws.open_sockets();
        if open > 0 {
            problems.push(format!("{open} socket(s) still open"));
        }
        match Arc::try_unwrap(self.ws) {
            Ok(ws) => drop(ws),
            Err(_) => problems.push("Winsock still in use".into()),
        }
        if let Err(e) = self.binding.unbind() {
            problems.push(format!("TAP: {e}"));
        }
        let report = self.driver.unload();
        if !report.is_clean() {
            problems.push(format!("unload: {report}"));
        }
        for violation in self.kernel.take_violations() {
            problems.push(format!("verifier: {violation}"));
        }
        problems
    }
}

/// `IOCTL_SET_IP_ADDRESS` for interface 1 on the control channel.
fn set_ip_address(kernel: &Kernel, address: Ipv4Addr, prefix: u8) -> Result<(), NtStatus> {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix))
        .unwrap_or(0)
        .to_be_bytes();
    let input = [1u32.to_le_bytes(), address.octets(), mask].concat();
    let control = kernel.create_file("\\Device\\Tcp", None, 0)?;
    let (status, _) =
        kernel.device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut [0u8; 12]);
    kernel.close(control);
    match status {
        NtStatus::SUCCESS => Ok(()),
        status => Err(status),
    }
}
