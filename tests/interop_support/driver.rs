//! The driver on the namespace's TAP: a model kernel with the driver loaded, interface 1
//! configured by `IOCTL_SET_IP_ADDRESS` (as dhcpcsvc does) with the namespace's driver
//! address, the TAP bound under it, and Winsock over the AFD model.

use super::Namespace;
use std::sync::Arc;
use tcpip::host::binding::TapBinding;
use tcpip::host::winsock::Winsock;
use tcpip::host::{Clock, Config, Driver, Kernel};
use tcpip::link::ethernet::DEFAULT_FRAMES;
use tcpip::nt::NtStatus;
use tcpip::nt::entry::driver_entry;
use tcpip::nt::types::IOCTL_SET_IP_ADDRESS;

/// The driver bound to a namespace's TAP.
pub struct DriverOnTap {
    pub kernel: Kernel,
    pub ws: Arc<Winsock>,
    driver: Option<Driver>,
    binding: Option<TapBinding>,
}

impl DriverOnTap {
    /// Loads the driver, gives it the namespace's driver address (/24), binds the TAP (with
    /// an optional pcap capture), and sets Linux's address as the default gateway.
    pub fn start(namespace: &Namespace, pcap: Option<&std::path::Path>) -> DriverOnTap {
        let kernel = Kernel::new(Config {
            processors: 2,
            clock: Clock::Real,
            ..Config::default()
        });
        let driver = kernel.load_driver(driver_entry).expect("DriverEntry");
        let control = kernel
            .create_file("\\Device\\Tcp", None, 0)
            .expect("control channel");
        let input = [
            1u32.to_le_bytes(),
            namespace.driver_ip().octets(),
            [255, 255, 255, 0],
        ]
        .concat();
        let mut output = [0u8; 12];
        let (status, _) =
            kernel.device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut output);
        assert_eq!(status, NtStatus::SUCCESS, "IOCTL_SET_IP_ADDRESS");
        assert_eq!(kernel.close(control), NtStatus::SUCCESS);
        let tap = Arc::new(namespace.open_tap(pcap));
        let binding = TapBinding::bind(&driver, tap, DEFAULT_FRAMES).expect("bind the TAP");
        binding.set_gateway(Some(namespace.linux_ip()));
        let ws = Arc::new(Winsock::new(&kernel));
        DriverOnTap {
            kernel,
            ws,
            driver: Some(driver),
            binding: Some(binding),
        }
    }

    /// The bound adapter's binding (counters, the TAP).
    pub fn binding(&self) -> &TapBinding {
        self.binding.as_ref().expect("bound")
    }

    /// Checks that every socket was closed and no completion hit a freed FCB, unbinds the TAP
    /// (its reader must have ended cleanly), unloads the driver (leak check).
    pub fn finish(mut self) {
        assert_eq!(self.ws.open_sockets(), 0, "every socket closed");
        let stats = self.ws.stats();
        assert_eq!(stats.use_after_free, 0, "{stats:?}");
        let ws = std::mem::replace(&mut self.ws, Arc::new(Winsock::new(&self.kernel)));
        drop(Arc::try_unwrap(ws).unwrap_or_else(|_| panic!("Winsock still shared")));
        self.binding
            .take()
            .expect("bound")
            .unbind()
            .expect("the TAP reader ended cleanly");
        let report = self.driver.take().expect("loaded").unload();
        assert!(report.is_clean(), "{report}");
    }
}
