//! Raw TDI requests for the transport tests: the IRPs and EAs AFD builds (`host::afd::wire`),
//! sent one at a time so each test can look at exactly one request's outcome.
#![allow(dead_code)]

use std::net::SocketAddrV4;
use tcpip::host::afd::wire;
use tcpip::host::{Clock, Config, Driver, Event, EventType, Handle, IoStatus, Kernel, MdlKind};
use tcpip::host::{CompletionFlags, KernelHandle, StackLocation};
use tcpip::nt::NtStatus;
use tcpip::nt::entry::driver_entry;
use tcpip::nt::types::*;

/// A kernel with tcpip.sys loaded.
pub struct Loaded {
    pub kernel: Kernel,
    driver: Option<Driver>,
}

impl Loaded {
    pub fn new(clock: Clock) -> Loaded {
        Loaded::with_config(Config {
            clock,
            ..Config::default()
        })
    }

    /// The driver loaded in a kernel made with `config`.
    pub fn with_config(config: Config) -> Loaded {
        let kernel = Kernel::new(config);
        let driver = kernel.load_driver(driver_entry).expect("DriverEntry");
        Loaded {
            kernel,
            driver: Some(driver),
        }
    }

    /// The loaded driver.
    pub fn driver(&self) -> &Driver {
        self.driver.as_ref().expect("loaded")
    }

    /// Unloads the driver and asserts nothing leaked.
    pub fn unload(mut self) {
        if let Some(driver) = self.driver.take() {
            let report = driver.unload();
            assert!(report.is_clean(), "{report}");
        }
    }

    pub fn open_address(&self, address: SocketAddrV4, share: u16) -> Result<Handle, NtStatus> {
        self.kernel.create_file(
            "\\Device\\Tcp",
            Some(&wire::address_file_ea(address)),
            share,
        )
    }

    pub fn open_connection(&self) -> Result<Handle, NtStatus> {
        self.kernel
            .create_file("\\Device\\Tcp", Some(&wire::connection_file_ea()), 0)
    }

    pub fn close(&self, handle: Handle) {
        assert_eq!(self.kernel.close(handle), NtStatus::SUCCESS);
    }

    /// Sends one TDI request on `handle` and waits for its completion.
    pub fn request(
        &self,
        handle: Handle,
        minor: u8,
        parameters: IoStackParameters,
        buffer: Option<&mut [u8]>,
    ) -> IoStatus {
        let pending = self.start(handle, minor, parameters, buffer);
        pending.wait()
    }

    /// Sends one TDI request on `handle` without waiting.
    pub fn start(
        &self,
        handle: Handle,
        minor: u8,
        parameters: IoStackParameters,
        buffer: Option<&mut [u8]>,
    ) -> PendingRequest {
        start(&self.kernel, handle, minor, parameters, buffer)
    }

    pub fn associate(&self, connection: Handle, address: Handle) -> NtStatus {
        self.request(
            connection,
            TDI_ASSOCIATE_ADDRESS,
            wire::associate(address.as_raw()),
            None,
        )
        .status
    }

    pub fn query_address(&self, handle: Handle) -> Result<SocketAddrV4, NtStatus> {
        let mut out = [0u8; 64];
        let result = self.request(
            handle,
            TDI_QUERY_INFORMATION,
            wire::query_information(TDI_QUERY_ADDRESS_INFO),
            Some(&mut out),
        );
        if result.status != NtStatus::SUCCESS {
            return Err(result.status);
        }
        assert_eq!(
            result.information, 26,
            "TDI_ADDRESS_INFO with one TA_IP_ADDRESS"
        );
        Ok(wire::parse_address_info(&out).expect("TDI_ADDRESS_INFO"))
    }
}

/// A request in flight, with its completion event, status block, and the connection
/// information blocks and timeout it points to (kept alive until it completes).
pub struct PendingRequest {
    pub irp: *mut IRP,
    pub returned: NtStatus,
    event: Event,
    iosb: Box<IO_STATUS_BLOCK>,
    request_info: Option<Box<wire::ConnectionInfo>>,
    return_info: Option<Box<wire::ConnectionInfo>>,
    timeout: Option<Box<i64>>,
}

// SAFETY: the IRP pointer is only an identity for cancel; the model owns the IRP.
unsafe impl Send for PendingRequest {}

impl PendingRequest {
    /// Waits for completion and returns the final status block.
    pub fn wait(&self) -> IoStatus {
        if self.returned == NtStatus::PENDING {
            self.event.wait(None);
        }
        self.status()
    }

    /// The status block as it is now.
    pub fn status(&self) -> IoStatus {
        IoStatus {
            // SAFETY: plain integers written by the completion before it signalled the event.
            status: NtStatus(unsafe { self.iosb.Status.Status }),
            information: self.iosb.Information,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.event.is_signaled()
    }

    /// The remote address the transport wrote into `ReturnConnectionInformation`.
    pub fn returned_peer(&self) -> Option<SocketAddrV4> {
        self.return_info.as_ref()?.remote()
    }
}

/// The pieces a TDI request may point to, and an optional completion routine (set like AFD's:
/// on success, error and cancel, needing PASSIVE_LEVEL) with its context.
#[derive(Default)]
pub struct Extras {
    pub request_info: Option<Box<wire::ConnectionInfo>>,
    pub return_info: Option<Box<wire::ConnectionInfo>>,
    pub timeout: Option<Box<i64>>,
    pub completion: Option<(PIO_COMPLETION_ROUTINE, usize)>,
}

impl Extras {
    /// The request information, return information and timeout pointers (null when absent),
    /// for `wire::kernel_request`.
    fn pointers(
        &mut self,
    ) -> (
        *mut TDI_CONNECTION_INFORMATION,
        *mut TDI_CONNECTION_INFORMATION,
        *mut i64,
    ) {
        let request = self
            .request_info
            .as_mut()
            .map_or(std::ptr::null_mut(), |i| i.as_ptr());
        let ret = self
            .return_info
            .as_mut()
            .map_or(std::ptr::null_mut(), |i| i.as_ptr());
        let timeout = self
            .timeout
            .as_mut()
            .map_or(std::ptr::null_mut(), |t| &mut **t as *mut i64);
        (request, ret, timeout)
    }
}

/// Sends one TDI request on `handle` without waiting (TdiBuildInternalDeviceControlIrp with an
/// event and status block, so the test can wait).
pub fn start(
    kernel: &KernelHandle,
    handle: Handle,
    minor: u8,
    parameters: IoStackParameters,
    buffer: Option<&mut [u8]>,
) -> PendingRequest {
    start_with(kernel, handle, minor, parameters, buffer, Extras::default())
}

/// As [`start`], keeping `extras` alive with the request.
pub fn start_with(
    kernel: &KernelHandle,
    handle: Handle,
    minor: u8,
    parameters: IoStackParameters,
    buffer: Option<&mut [u8]>,
    extras: Extras,
) -> PendingRequest {
    let file = kernel.reference_file(handle).expect("file handle");
    let mut location =
        StackLocation::new(IRP_MJ_INTERNAL_DEVICE_CONTROL, minor, std::ptr::null_mut());
    location.parameters = parameters;
    let irp = kernel.allocate_file_irp(&file, location);
    let event = Event::new(kernel, EventType::Notification, false);
    let mut iosb = Box::new(IO_STATUS_BLOCK {
        Status: IoStatusUnion { Status: 0 },
        Information: 0,
    });
    let iosb_ptr: *mut IO_STATUS_BLOCK = &mut *iosb;
    let mdl = buffer.map(|b| kernel.build_mdl(b.as_mut_ptr(), b.len(), MdlKind::Locked));
    // SAFETY: a fresh IRP owned by this test until it is sent.
    unsafe {
        kernel.with_irp(irp, |i| {
            i.UserEvent = event.as_ptr();
            i.UserIosb = iosb_ptr;
            if let Some(mdl) = mdl {
                i.MdlAddress = mdl;
            }
        })
    };
    if let Some((routine, context)) = extras.completion {
        kernel.set_completion_routine(
            irp,
            routine,
            context as *mut std::ffi::c_void,
            CompletionFlags::ALWAYS_PASSIVE,
        );
    }
    let returned = kernel.call_driver(file.device(), irp);
    PendingRequest {
        irp,
        returned,
        event,
        iosb,
        request_info: extras.request_info,
        return_info: extras.return_info,
        timeout: extras.timeout,
    }
}

/// TDI_CONNECT to `remote` (no timeout, as AFD) without waiting.
pub fn start_connect(loaded: &Loaded, connection: Handle, remote: SocketAddrV4) -> PendingRequest {
    start_connect_with_timeout(loaded, connection, remote, None)
}

/// TDI_CONNECT with an optional timeout (100 ns units, negative = relative).
pub fn start_connect_with_timeout(
    loaded: &Loaded,
    connection: Handle,
    remote: SocketAddrV4,
    timeout: Option<i64>,
) -> PendingRequest {
    let mut extras = Extras {
        request_info: Some(wire::ConnectionInfo::new(remote)),
        return_info: Some(wire::ConnectionInfo::new(remote)),
        timeout: timeout.map(Box::new),
        ..Extras::default()
    };
    let (request, ret, timeout) = extras.pointers();
    let parameters = wire::kernel_request(0, request, ret, timeout);
    start_with(
        &loaded.kernel,
        connection,
        TDI_CONNECT,
        parameters,
        None,
        extras,
    )
}

/// TDI_LISTEN (flags 0, null request information, as AFD) without waiting; the peer lands in
/// [`PendingRequest::returned_peer`].
pub fn start_listen(loaded: &Loaded, connection: Handle) -> PendingRequest {
    let mut extras = Extras {
        request_info: Some(wire::ConnectionInfo::null()),
        return_info: Some(wire::ConnectionInfo::null()),
        ..Extras::default()
    };
    let (request, ret, timeout) = extras.pointers();
    let parameters = wire::kernel_request(0, request, ret, timeout);
    start_with(
        &loaded.kernel,
        connection,
        TDI_LISTEN,
        parameters,
        None,
        extras,
    )
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port)
}

/// `0.0.0.0:port`.
pub fn any(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, port)
}

/// A connected pair over loopback: (address, connection) on each side.
pub struct Pair {
    pub server_address: Handle,
    pub server: Handle,
    pub client_address: Handle,
    pub client: Handle,
    pub listen_address: SocketAddrV4,
}

/// Opens a listener on `listen`, connects a client to it, and returns both ends.
pub fn connected_pair(loaded: &Loaded, listen: SocketAddrV4) -> Pair {
    let server_address = loaded.open_address(listen, 0).expect("server address");
    let server = loaded.open_connection().expect("server endpoint");
    assert_eq!(loaded.associate(server, server_address), NtStatus::SUCCESS);
    let listening = start_listen(loaded, server);
    let client_address = loaded
        .open_address(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0), 0)
        .expect("client address");
    let client = loaded.open_connection().expect("client endpoint");
    assert_eq!(loaded.associate(client, client_address), NtStatus::SUCCESS);
    let connecting = start_connect(loaded, client, listen);
    assert_eq!(connecting.wait().status, NtStatus::SUCCESS);
    assert_eq!(listening.wait().status, NtStatus::SUCCESS);
    assert!(listening.returned_peer().is_some());
    Pair {
        server_address,
        server,
        client_address,
        client,
        listen_address: listen,
    }
}

/// Closes both ends of a pair, each connection after its address file (AFD's order).
pub fn close_pair(loaded: &Loaded, pair: Pair) {
    for handle in [
        pair.client_address,
        pair.client,
        pair.server_address,
        pair.server,
    ] {
        loaded.close(handle);
    }
}

/// Sends `data` on `connection` (one TDI_SEND) and returns the bytes accepted.
pub fn send(loaded: &Loaded, connection: Handle, data: &[u8]) -> IoStatus {
    let mut buffer = data.to_vec();
    let length = buffer.len() as u32;
    loaded.request(
        connection,
        TDI_SEND,
        wire::send(length, 0),
        Some(&mut buffer),
    )
}

/// One TDI_RECEIVE of up to `room` bytes.
pub fn receive(loaded: &Loaded, connection: Handle, room: usize) -> (IoStatus, Vec<u8>) {
    let mut buffer = vec![0u8; room];
    let result = loaded.request(
        connection,
        TDI_RECEIVE,
        wire::receive(room as u32, TDI_RECEIVE_NORMAL),
        Some(&mut buffer),
    );
    buffer.truncate(result.information);
    (result, buffer)
}

/// TDI_DISCONNECT with `flags`.
pub fn disconnect(loaded: &Loaded, connection: Handle, flags: u32) -> IoStatus {
    let mut extras = Extras {
        timeout: Some(Box::new(0)),
        ..Extras::default()
    };
    let timeout = extras
        .timeout
        .as_mut()
        .map_or(std::ptr::null_mut(), |t| &mut **t as *mut i64);
    let parameters =
        wire::kernel_request(flags, std::ptr::null_mut(), std::ptr::null_mut(), timeout);
    start_with(
        &loaded.kernel,
        connection,
        TDI_DISCONNECT,
        parameters,
        None,
        extras,
    )
    .wait()
}

/// The real-clock default for transport tests.
pub fn loaded() -> Loaded {
    Loaded::new(Clock::Real)
}
