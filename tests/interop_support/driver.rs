//! The driver on the namespace's TAP: a model kernel with the driver loaded, interface 1
//! configured by `IOCTL_SET_IP_ADDRESS` (as dhcpcsvc does) with the namespace's driver
//! address, the TAP bound under it, and Winsock over the AFD model; and the driver-side echo
//! server and client, Winsock programs on that driver.

use super::Namespace;
use std::net::SocketAddrV4;
use std::sync::Arc;
use tcpip::host::binding::TapBinding;
use tcpip::host::impair::Impairment;
use tcpip::host::tap::TapStats;
use tcpip::host::winsock::{Socket, Winsock};
use tcpip::host::{Clock, Config, Driver, Kernel, MiniportOptions};
use tcpip::nt::NtStatus;
use tcpip::nt::entry::driver_entry;
use tcpip::nt::types::*;
use tcpip::tdi::{QueryInformationEx, SetInformationEx};

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
        DriverOnTap::start_impaired(namespace, pcap, None)
    }

    /// [`DriverOnTap::start`] with the TAP's wire impaired in both directions.
    pub fn start_impaired(
        namespace: &Namespace,
        pcap: Option<&std::path::Path>,
        impairment: Option<Impairment>,
    ) -> DriverOnTap {
        DriverOnTap::start_with(
            namespace,
            pcap,
            impairment,
            true,
            MiniportOptions::default(),
        )
    }

    /// The driver on the TAP before DHCP has configured it: no address, no gateway.
    pub fn start_unconfigured(namespace: &Namespace) -> DriverOnTap {
        DriverOnTap::start_with(namespace, None, None, false, MiniportOptions::default())
    }

    /// [`DriverOnTap::start`] with the TAP's miniport behaving as `options` say in the NDIS
    /// model.
    pub fn start_with_miniport(namespace: &Namespace, options: MiniportOptions) -> DriverOnTap {
        DriverOnTap::start_with(namespace, None, None, true, options)
    }

    fn start_with(
        namespace: &Namespace,
        pcap: Option<&std::path::Path>,
        impairment: Option<Impairment>,
        configured: bool,
        options: MiniportOptions,
    ) -> DriverOnTap {
        let kernel = Kernel::new(Config {
            processors: 2,
            clock: Clock::Real,
            ..Config::default()
        });
        let driver = kernel.load_driver(driver_entry).expect("DriverEntry");
        if configured {
            configure(&kernel, namespace);
        }
        let mut tap = namespace.open_tap(pcap);
        if let Some(impairment) = impairment {
            tap = tap.impair(impairment).expect("impair the TAP");
        }
        let tap = Arc::new(tap);
        let binding = TapBinding::bind_with(&driver, tap, options).expect("bind the TAP");
        if configured {
            binding.set_gateway(Some(namespace.linux_ip()));
        }
        let ws = Arc::new(Winsock::new(&kernel));
        DriverOnTap {
            kernel,
            ws,
            driver: Some(driver),
            binding: Some(binding),
        }
    }

    /// One `IOCTL_TCP_QUERY_INFORMATION_EX` (provider type, protocol class) of `entity`
    /// `instance` for `id` on a control channel, as iphlpapi sends it; the answer's bytes.
    pub fn query_information(&self, entity: u32, instance: u32, id: u32) -> Vec<u8> {
        let control = self
            .kernel
            .create_file("\\Device\\Tcp", None, 0)
            .expect("control channel");
        let mut input = vec![0; QueryInformationEx::LEN];
        QueryInformationEx {
            id: provider(entity, instance, id),
            context: [0; 16],
        }
        .emit(&mut input)
        .expect("request");
        let mut out = vec![0u8; 64 * 1024];
        let (status, len) = self.kernel.device_io_control(
            control,
            IOCTL_TCP_QUERY_INFORMATION_EX,
            &input,
            &mut out,
        );
        assert_eq!(
            status,
            NtStatus::SUCCESS,
            "query {entity:#x}/{instance}/{id:#x}"
        );
        assert_eq!(self.kernel.close(control), NtStatus::SUCCESS);
        out.truncate(len);
        out
    }

    /// One `IOCTL_TCP_SET_INFORMATION_EX` of `value` for `entity` `instance` `id` (provider
    /// type, protocol class) on a control channel, as iphlpapi sends it; its status.
    pub fn set_information(&self, entity: u32, instance: u32, id: u32, value: &[u8]) -> NtStatus {
        let control = self
            .kernel
            .create_file("\\Device\\Tcp", None, 0)
            .expect("control channel");
        let request = SetInformationEx {
            id: provider(entity, instance, id),
            buffer: value,
        };
        let mut input = vec![0; request.buffer_len()];
        request.emit(&mut input).expect("request");
        let (status, _) =
            self.kernel
                .device_io_control(control, IOCTL_TCP_SET_INFORMATION_EX, &input, &mut []);
        assert_eq!(self.kernel.close(control), NtStatus::SUCCESS);
        status
    }

    /// `IOCTL_SET_IP_ADDRESS` for interface `context` with `ip`/24, as dhcpcsvc sends it.
    pub fn set_ip_address(&self, context: u32, ip: std::net::Ipv4Addr) -> NtStatus {
        let control = self
            .kernel
            .create_file("\\Device\\Tcp", None, 0)
            .expect("control channel");
        let input = [context.to_le_bytes(), ip.octets(), [255, 255, 255, 0]].concat();
        let (status, _) =
            self.kernel
                .device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut [0u8; 12]);
        assert_eq!(self.kernel.close(control), NtStatus::SUCCESS);
        status
    }

    /// The loaded driver.
    pub fn driver(&self) -> &Driver {
        self.driver.as_ref().expect("loaded")
    }

    /// The bound adapter's binding (counters, the TAP).
    pub fn binding(&self) -> &TapBinding {
        self.binding.as_ref().expect("bound")
    }

    /// The adapter's counters.
    pub fn tap_stats(&self) -> TapStats {
        self.binding().tap().stats()
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

/// Gives interface 1 the namespace's driver address (/24) with `IOCTL_SET_IP_ADDRESS`, as
/// dhcpcsvc does.
/// The object `entity` `instance` `id` of the provider type in the protocol class.
fn provider(entity: u32, instance: u32, id: u32) -> TDIObjectID {
    TDIObjectID {
        toi_entity: TDIEntityID {
            tei_entity: entity,
            tei_instance: instance,
        },
        toi_class: INFO_CLASS_PROTOCOL,
        toi_type: INFO_TYPE_PROVIDER,
        toi_id: id,
    }
}

fn configure(kernel: &Kernel, namespace: &Namespace) {
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
    let (status, _) = kernel.device_io_control(control, IOCTL_SET_IP_ADDRESS, &input, &mut output);
    assert_eq!(status, NtStatus::SUCCESS, "IOCTL_SET_IP_ADDRESS");
    assert_eq!(kernel.close(control), NtStatus::SUCCESS);
}

/// Serves `connections` echo connections on the driver at `port`, one thread each; each
/// echoes until the peer shuts down, then closes gracefully. The thread returns the bytes
/// echoed.
pub fn echo_server(
    setup: &DriverOnTap,
    port: u16,
    connections: usize,
) -> std::thread::JoinHandle<u64> {
    let ws = setup.ws.clone();
    let listener = ws.socket().expect("socket");
    ws.bind(listener, SocketAddrV4::new([0, 0, 0, 0].into(), port))
        .expect("bind");
    ws.listen(listener, 200).expect("listen");
    let kernel = setup.kernel.handle();
    setup.kernel.spawn("driver-echo-server", move || {
        let handlers: Vec<_> = (0..connections)
            .map(|_| {
                let (s, _) = ws.accept(listener).expect("accept");
                let ws = ws.clone();
                kernel.spawn("driver-echo", move || echo(&ws, s))
            })
            .collect();
        let total = handlers.into_iter().map(|h| h.join().expect("echo")).sum();
        ws.closesocket(listener).expect("close listener");
        total
    })
}

fn echo(ws: &Winsock, s: Socket) -> u64 {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = ws.recv(s, &mut buffer).expect("recv");
        if n == 0 {
            break;
        }
        ws.send_all(s, &buffer[..n]).expect("send");
        total += n as u64;
    }
    ws.closesocket(s).expect("close");
    total
}

/// One echo round trip from the driver: connects to `peer`, sends `message`, receives it back,
/// checks it, and closes gracefully. Any error (refused, reset, a short or wrong echo) is
/// returned with what failed.
pub fn echo_once(ws: &Winsock, peer: SocketAddrV4, message: &[u8]) -> Result<(), String> {
    let s = ws.socket().map_err(|e| format!("socket: {e}"))?;
    let result = (|| {
        ws.connect(s, peer).map_err(|e| format!("connect: {e}"))?;
        ws.send_all(s, message).map_err(|e| format!("send: {e}"))?;
        let mut echoed = vec![0u8; message.len()];
        match ws.recv_exact(s, &mut echoed) {
            Ok(true) if echoed == message => Ok(()),
            Ok(true) => Err("the echo differs".to_owned()),
            Ok(false) => Err("the peer closed before the whole echo".to_owned()),
            Err(e) => Err(format!("recv: {e}")),
        }
    })();
    let closed = ws.closesocket(s).map_err(|e| format!("closesocket: {e}"));
    result.and(closed)
}
