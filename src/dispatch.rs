//! IRP dispatch: decode the request in the caller's context and hand it to the core.
//!
//! Everything that needs the caller's context happens here, at PASSIVE_LEVEL: EA and parameter
//! decoding, resolving the address handle of TDI_ASSOCIATE_ADDRESS, reading the remote address
//! of TDI_CONNECT, and answering control-channel IOCTLs. The core gets values and the IRP.
#![forbid(unsafe_code)]

use crate::core::address::Protocol;
use crate::core::icmp::EchoParams;
use crate::core::icmp::reply::REPLY_LEN;
use crate::core::raw::IPPROTO_RAW;
use crate::core::work::{Object, Request};
use crate::driver::{IP_DEVICE, Tcpip};
use crate::info::adapters::IOCTL_IP_INTERFACE_INFO;
use crate::info::provider;
use crate::info::set::{self, Setting};
use crate::nt::NtStatus;
use crate::nt::irp::{Dispatched, FileObject, Irp};
use crate::nt::object::ReferencedFile;
use crate::nt::pool;
use crate::nt::process::ProcessOwner;
use crate::nt::security;
use crate::nt::types::*;
use crate::tdi::icmp::EchoRequest;
use crate::tdi::ioctl::{SetIpAddress, parse_delete_ip_address};
use crate::tdi::request::{
    AssociateParams, KernelRequest, QueryInformationParams, QueryType, ReceiveDatagramParams,
    ReceiveParams, SendDatagramParams, SendParams, SetEventParams,
};
use crate::tdi::{
    CreateRequest, Disconnect, QueryInformationEx, SetInformationEx, Timeout, TransportAddress,
    copy_out_with_probe,
};
use core::net::{Ipv4Addr, SocketAddrV4};
use zerocopy::IntoBytes;

/// What a file object of this driver is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    Address(u32),
    Connection(u32),
    Control,
}

/// Reads the kind and object index that CREATE stored in `FsContext2`/`FsContext`.
fn file_kind(file: FileObject<'_>) -> Option<FileKind> {
    let (context, kind) = file.context();
    let index = context
        .checked_sub(1)
        .and_then(|index| u32::try_from(index).ok());
    match kind as u32 {
        TDI_TRANSPORT_ADDRESS_FILE => index.map(FileKind::Address),
        TDI_CONNECTION_FILE => index.map(FileKind::Connection),
        TDI_CONTROL_CHANNEL_FILE => Some(FileKind::Control),
        _ => None,
    }
}

/// What the device a CREATE came to serves (indices of [`crate::driver::DEVICE_NAMES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceKind {
    Tcp,
    Udp,
    /// `\Device\RawIp`: raw IP of the protocol in the file name.
    RawIp,
    /// `\Device\Ip`: address files of `IPPROTO_RAW`; ICMP echo requests on control channels.
    Ip,
}

impl DeviceKind {
    /// The kind of device `device` (an index of `DEVICE_NAMES`). Any IRQL.
    fn from_index(device: usize) -> Self {
        match device {
            0 => DeviceKind::Tcp,
            1 => DeviceKind::Udp,
            2 => DeviceKind::RawIp,
            _ => DeviceKind::Ip,
        }
    }
}

/// Routes an IRP by major function. PASSIVE_LEVEL.
pub fn dispatch(driver: &'static Tcpip, device: usize, irp: Irp) -> Dispatched {
    match irp.stack().major() {
        IRP_MJ_CREATE => create(driver, DeviceKind::from_index(device), irp),
        IRP_MJ_CLEANUP => irp.complete(NtStatus::SUCCESS, 0),
        IRP_MJ_CLOSE => close(driver, irp),
        IRP_MJ_DEVICE_CONTROL => device_control(driver, irp),
        IRP_MJ_INTERNAL_DEVICE_CONTROL => internal_device_control(driver, device, irp),
        _ => irp.complete(NtStatus::INVALID_DEVICE_REQUEST, 0),
    }
}

/// IRP_MJ_CREATE: the EA decides what the file is, the device which protocol an address file
/// serves. Malformed EAs fail here, before anything is allocated. Address files and connection
/// endpoints are created by the core; the IRP pends until then. A control channel may be
/// opened on every device; connection endpoints exist only on `\Device\Tcp`
/// (`STATUS_INVALID_PARAMETER` elsewhere, as ReactOS's transport answers). A raw IP address
/// file's protocol is the decimal number after `\Device\RawIp\` (none: `IPPROTO_RAW`, as on
/// `\Device\Ip`); anything else in the name is `STATUS_INVALID_PARAMETER`.
fn create(driver: &'static Tcpip, device: DeviceKind, mut irp: Irp) -> Dispatched {
    let ea_length = irp.stack().create_ea_length() as usize;
    let share_access = irp.stack().create_share_access();
    let request = CreateRequest::parse(irp.system_buffer(ea_length));
    let Some(file) = irp.stack().file_object() else {
        return irp.complete(NtStatus::INVALID_PARAMETER, 0);
    };
    match request {
        Err(status) => irp.complete(status, 0),
        Ok(CreateRequest::ControlChannel) => {
            file.set_context(0, TDI_CONTROL_CHANNEL_FILE as usize);
            irp.complete(NtStatus::SUCCESS, 0)
        }
        Ok(CreateRequest::AddressFile(address)) => {
            let protocol = match device {
                DeviceKind::Tcp => Protocol::Tcp,
                DeviceKind::Udp => Protocol::Udp,
                DeviceKind::RawIp => match raw_protocol(file.file_name()) {
                    Some(number) => Protocol::Raw(number),
                    None => return irp.complete(NtStatus::INVALID_PARAMETER, 0),
                },
                DeviceKind::Ip => Protocol::Raw(IPPROTO_RAW),
            };
            driver.stack().submit(
                Request::OpenAddress {
                    address,
                    shared: share_access != 0,
                    protocol,
                    owner: ProcessOwner::current(),
                },
                irp,
                None,
            )
        }
        Ok(CreateRequest::ConnectionEndpoint { .. }) if device != DeviceKind::Tcp => {
            irp.complete(NtStatus::INVALID_PARAMETER, 0)
        }
        Ok(CreateRequest::ConnectionEndpoint { context }) => {
            driver
                .stack()
                .submit(Request::OpenConnection { context }, irp, None)
        }
    }
}

/// The IP protocol of a `\Device\RawIp` file name: `\<decimal 0..=255>`, or `IPPROTO_RAW`
/// for an empty name; `None` for anything else. Any IRQL.
fn raw_protocol(name: &[u16]) -> Option<u8> {
    let digits = match name {
        [] => return Some(IPPROTO_RAW),
        [separator, digits @ ..] if *separator == u16::from(b'\\') && !digits.is_empty() => digits,
        _ => return None,
    };
    if digits.len() > 3 {
        return None;
    }
    let mut number: u16 = 0;
    for digit in digits {
        let value = digit.checked_sub(u16::from(b'0')).filter(|v| *v < 10)?;
        number = number * 10 + value;
    }
    u8::try_from(number).ok()
}

/// IRP_MJ_CLOSE: the core completes the file's pending requests with `STATUS_CANCELLED`,
/// closes or resets its connection and drops its references.
fn close(driver: &'static Tcpip, irp: Irp) -> Dispatched {
    let kind = irp.stack().file_object().and_then(file_kind);
    match kind {
        Some(FileKind::Address(index)) => {
            driver
                .stack()
                .submit(Request::Close(Object::Address(index)), irp, None)
        }
        Some(FileKind::Connection(index)) => {
            driver
                .stack()
                .submit(Request::Close(Object::Connection(index)), irp, None)
        }
        Some(FileKind::Control) | None => irp.complete(NtStatus::SUCCESS, 0),
    }
}

/// IRP_MJ_INTERNAL_DEVICE_CONTROL: TDI requests, by `MinorFunction`.
fn internal_device_control(driver: &'static Tcpip, device: usize, mut irp: Irp) -> Dispatched {
    let stack = irp.stack();
    let minor = stack.minor();
    let params = stack.parameters();
    let kind = stack.file_object().and_then(file_kind);
    let cancel = Some(driver.cancel_routine());
    let connection = match kind {
        Some(FileKind::Connection(index)) => Some(index),
        _ => None,
    };
    let address = match kind {
        Some(FileKind::Address(index)) => Some(index),
        _ => None,
    };
    let request = match (minor, connection) {
        (TDI_ASSOCIATE_ADDRESS, Some(connection)) => {
            return associate(driver, connection, AssociateParams::parse(&params), irp);
        }
        (TDI_DISASSOCIATE_ADDRESS, Some(connection)) => {
            return driver
                .stack()
                .submit(Request::Disassociate { connection }, irp, None);
        }
        (TDI_CONNECT, Some(connection)) => {
            let remote = irp
                .tdi_connection_information(1)
                .ok_or(NtStatus::INVALID_ADDRESS)
                .and_then(|info| TransportAddress::parse(info.remote_address()));
            let remote = match remote {
                Ok(remote) => SocketAddrV4::new(remote.ip, remote.port),
                Err(status) => return irp.complete(status, 0),
            };
            Request::Connect {
                connection,
                remote,
                timeout: Timeout::from_large_integer(irp.tdi_timeout()),
            }
        }
        (TDI_LISTEN, Some(connection)) => Request::Listen { connection },
        (TDI_SEND, Some(connection)) => Request::Send {
            connection,
            length: SendParams::parse(&params).length,
        },
        (TDI_RECEIVE, Some(connection)) => {
            let receive = ReceiveParams::parse(&params);
            Request::Receive {
                connection,
                length: receive.length,
                peek: receive.flags.peek(),
            }
        }
        (TDI_DISCONNECT, Some(connection)) => {
            match Disconnect::from_flags(KernelRequest::parse(&params).flags) {
                Ok(kind) => Request::Disconnect { connection, kind },
                Err(status) => return irp.complete(status, 0),
            }
        }
        (TDI_QUERY_INFORMATION, _) => {
            let query = match QueryInformationParams::parse(&params) {
                Ok(query) => query.query_type,
                Err(status) => return irp.complete(status, 0),
            };
            let object = match (kind, query) {
                (_, QueryType::ProviderStatistics) | (Some(FileKind::Control), _) => {
                    return query_transport(driver, device, query, irp);
                }
                (Some(FileKind::Address(index)), _) => Object::Address(index),
                (Some(FileKind::Connection(index)), _) => Object::Connection(index),
                (None, _) => return irp.complete(NtStatus::INVALID_PARAMETER, 0),
            };
            Request::Query {
                object,
                kind: query,
            }
        }
        (TDI_SET_EVENT_HANDLER, _) => {
            let event = SetEventParams::parse(&params);
            let (Some(FileKind::Address(address)), Ok(event_type)) =
                (kind, usize::try_from(event.event_type))
            else {
                return irp.complete(NtStatus::INVALID_PARAMETER, 0);
            };
            if let Err(status) = driver.stack().set_event_handler(
                address,
                event_type,
                event.event_handler,
                event.event_context,
            ) {
                return irp.complete(status, 0);
            }
            Request::SetEventHandler {
                address,
                event: event_type,
                set: event.event_handler != 0,
            }
        }
        (TDI_SEND_DATAGRAM, _) => match address {
            Some(address) => match send_datagram_request(address, &mut irp) {
                Ok(request) => request,
                Err(status) => return irp.complete(status, 0),
            },
            None => return irp.complete(NtStatus::INVALID_DEVICE_REQUEST, 0),
        },
        (TDI_RECEIVE_DATAGRAM, _) => match address {
            Some(address) => Request::ReceiveDatagram {
                address,
                length: ReceiveDatagramParams::parse(&params).length,
            },
            None => return irp.complete(NtStatus::INVALID_DEVICE_REQUEST, 0),
        },
        (TDI_ACTION, _) => return irp.complete(NtStatus::SUCCESS, 0),
        (TDI_ACCEPT | TDI_SET_INFORMATION, _) => {
            return irp.complete(NtStatus::NOT_IMPLEMENTED, 0);
        }
        (
            TDI_ASSOCIATE_ADDRESS
            | TDI_DISASSOCIATE_ADDRESS
            | TDI_CONNECT
            | TDI_LISTEN
            | TDI_SEND
            | TDI_RECEIVE
            | TDI_DISCONNECT,
            None,
        ) => return irp.complete(NtStatus::INVALID_CONNECTION, 0),
        _ => return irp.complete(NtStatus::INVALID_DEVICE_REQUEST, 0),
    };
    let cancellable = matches!(
        request,
        Request::Connect { .. }
            | Request::Listen { .. }
            | Request::Send { .. }
            | Request::Receive { .. }
            | Request::Disconnect { .. }
            | Request::SendDatagram { .. }
            | Request::ReceiveDatagram { .. }
    );
    driver
        .stack()
        .submit(request, irp, if cancellable { cancel } else { None })
}

/// `TDI_QUERY_INFORMATION` about the transport itself, answered synchronously as Windows does:
/// provider information on a control channel (not on `\Device\Ip`, which has no transport
/// behind it), provider statistics on any file. PASSIVE_LEVEL.
fn query_transport(
    driver: &'static Tcpip,
    device: usize,
    query: QueryType,
    irp: Irp,
) -> Dispatched {
    let info;
    let statistics;
    let answer: &[u8] = match query {
        QueryType::ProviderInfo if device != IP_DEVICE => {
            info = provider::control_channel_info();
            info.as_bytes()
        }
        QueryType::ProviderInfo => return irp.complete(NtStatus::NOT_IMPLEMENTED, 0),
        QueryType::ProviderStatistics => match driver.stack().provider_statistics() {
            Ok(answer) => {
                statistics = answer;
                statistics.as_bytes()
            }
            Err(status) => return irp.complete(status, 0),
        },
        _ => return irp.complete(NtStatus::INVALID_PARAMETER, 0),
    };
    let written = match irp.mdl() {
        Some(mdl) if mdl.len() >= answer.len() => mdl.write(answer),
        _ => Err(NtStatus::BUFFER_TOO_SMALL),
    };
    match written {
        Ok(written) => irp.complete(NtStatus::SUCCESS, written),
        Err(status) => irp.complete(status, 0),
    }
}

/// TDI_SEND_DATAGRAM: the destination is copied out of `SendDatagramInformation` here, in
/// dispatch, because AFD frees that block as soon as the dispatch routine returns. A missing
/// block is `STATUS_INVALID_ADDRESS`; a malformed `TRANSPORT_ADDRESS` `STATUS_INVALID_PARAMETER`.
/// PASSIVE_LEVEL, in the caller's context.
fn send_datagram_request(address: u32, irp: &mut Irp) -> Result<Request, NtStatus> {
    let length = SendDatagramParams::parse(&irp.stack().parameters()).length;
    let info = irp
        .tdi_connection_information(1)
        .ok_or(NtStatus::INVALID_ADDRESS)?;
    let remote = TransportAddress::parse(info.remote_address())?;
    Ok(Request::SendDatagram {
        address,
        remote: SocketAddrV4::new(remote.ip, remote.port),
        length,
    })
}

/// TDI_ASSOCIATE_ADDRESS: resolves the address handle in the caller's context (it is the
/// caller's handle) and checks it is an address file of this driver.
fn associate(
    driver: &'static Tcpip,
    connection: u32,
    params: AssociateParams,
    irp: Irp,
) -> Dispatched {
    let file = match ReferencedFile::from_handle(params.address_handle, irp.requestor_mode()) {
        Ok(file) => file,
        Err(status) => return irp.complete(status, 0),
    };
    let ours = file.file().driver() == driver.driver_id();
    let address = match (ours, file_kind(file.file())) {
        (true, Some(FileKind::Address(index))) => index,
        _ => return irp.complete(NtStatus::INVALID_HANDLE, 0),
    };
    drop(file);
    driver.stack().submit(
        Request::Associate {
            connection,
            address,
        },
        irp,
        None,
    )
}

/// IRP_MJ_DEVICE_CONTROL: IOCTLs. Accepted on every device and file type, as ReactOS's
/// tcpip.sys does; unknown codes are invalid device requests.
fn device_control(driver: &'static Tcpip, irp: Irp) -> Dispatched {
    match irp.stack().ioctl().code {
        IOCTL_TCP_QUERY_INFORMATION_EX => query_information_ex(driver, irp),
        IOCTL_TCP_SET_INFORMATION_EX => set_information_ex(driver, irp),
        IOCTL_SET_IP_ADDRESS => set_ip_address(driver, irp),
        IOCTL_DELETE_IP_ADDRESS => delete_ip_address(driver, irp),
        IOCTL_IP_INTERFACE_INFO => interface_info(driver, irp),
        IOCTL_ICMP_ECHO_REQUEST => echo_request(driver, irp),
        IOCTL_QUERY_IP_HW_ADDRESS => query_hw_address(driver, irp),
        _ => irp.complete(NtStatus::INVALID_DEVICE_REQUEST, 0),
    }
}

/// `IOCTL_QUERY_IP_HW_ADDRESS` (METHOD_BUFFERED): iphlpapi's `SendARP`. Input: the target and
/// source IPv4 addresses (`ULONG[2]`, network order; the source is not used, as on Windows);
/// output: the target's MAC address. Less than 8 bytes of input, or no output buffer, is
/// `STATUS_INVALID_BUFFER_SIZE`; the core answers the rest (`core::resolve`), waiting up to
/// 1 s for an ARP answer. Cancellable. PASSIVE_LEVEL.
fn query_hw_address(driver: &'static Tcpip, mut irp: Irp) -> Dispatched {
    let ioctl = irp.stack().ioctl();
    let (input_length, room) = (ioctl.input_length as usize, ioctl.output_length as usize);
    let target = match irp.system_buffer(input_length) {
        [a, b, c, d, _, _, _, _, ..] if room > 0 => Ipv4Addr::new(*a, *b, *c, *d),
        _ => return irp.complete(NtStatus::INVALID_BUFFER_SIZE, 0),
    };
    driver.stack().submit(
        Request::ResolveNeighbor { target, room },
        irp,
        Some(driver.cancel_routine()),
    )
}

/// `IOCTL_ICMP_ECHO_REQUEST` (METHOD_BUFFERED): iphlpapi's `IcmpSendEcho`/`IcmpSendEcho2`
/// (`ping`), on a `\Device\Ip` control channel. The request and its data are copied here;
/// the core completes the IRP with the reply (`ICMP_ECHO_REPLY` and the echoed data), or with
/// `STATUS_TIMEOUT` and `IP_REQ_TIMED_OUT`. An output buffer too small for one reply is
/// `STATUS_BUFFER_TOO_SMALL`; malformed input `STATUS_INVALID_PARAMETER`. Cancellable.
/// PASSIVE_LEVEL.
fn echo_request(driver: &'static Tcpip, mut irp: Irp) -> Dispatched {
    let ioctl = irp.stack().ioctl();
    if (ioctl.output_length as usize) < REPLY_LEN {
        return irp.complete(NtStatus::BUFFER_TOO_SMALL, 0);
    }
    let input_length = ioctl.input_length as usize;
    let params = EchoRequest::parse(irp.system_buffer(input_length)).and_then(|request| {
        let mut data = pool::try_vec(request.data.len())?;
        data.extend_from_slice(request.data);
        Ok(EchoParams {
            dst: request.dst,
            ttl: request.ttl,
            tos: request.tos,
            dont_fragment: request.dont_fragment,
            timeout_ms: request.timeout_ms,
            data,
        })
    });
    match params {
        Ok(params) => driver.stack().submit(
            Request::EchoRequest(params),
            irp,
            Some(driver.cancel_routine()),
        ),
        Err(status) => irp.complete(status, 0),
    }
}

/// `IOCTL_IP_INTERFACE_INFO` (METHOD_BUFFERED): the adapters and their names. An output buffer
/// too small for all of them is `STATUS_BUFFER_TOO_SMALL`, with nothing copied.
fn interface_info(driver: &'static Tcpip, mut irp: Irp) -> Dispatched {
    let length = irp.stack().ioctl().output_length as usize;
    let answer = match driver.stack().interface_info() {
        Ok(answer) => answer,
        Err(status) => return irp.complete(status, 0),
    };
    match irp.system_buffer(length).get_mut(..answer.len()) {
        Some(out) => {
            out.copy_from_slice(&answer);
            irp.complete(NtStatus::SUCCESS, answer.len())
        }
        None => irp.complete(NtStatus::BUFFER_TOO_SMALL, 0),
    }
}

/// `IOCTL_SET_IP_ADDRESS` (METHOD_BUFFERED): iphlpapi's AddIPAddress and dhcpcsvc (which runs
/// as LocalSystem); an unprivileged user-mode caller is denied. On success
/// `Information` is the interface index, which iphlpapi keeps as the NTE context.
fn set_ip_address(driver: &'static Tcpip, mut irp: Irp) -> Dispatched {
    if !security::may_configure(&irp) {
        return irp.complete(NtStatus::ACCESS_DENIED, 0);
    }
    let length = irp.stack().ioctl().input_length as usize;
    match SetIpAddress::parse(irp.system_buffer(length)) {
        Ok(request) => driver.stack().submit(
            Request::SetIpAddress {
                interface: request.interface,
                ip: request.ip,
                prefix: request.prefix,
            },
            irp,
            None,
        ),
        Err(status) => irp.complete(status, 0),
    }
}

/// `IOCTL_DELETE_IP_ADDRESS` (METHOD_BUFFERED): iphlpapi's DeleteIPAddress; an unprivileged
/// user-mode caller is denied.
fn delete_ip_address(driver: &'static Tcpip, mut irp: Irp) -> Dispatched {
    if !security::may_configure(&irp) {
        return irp.complete(NtStatus::ACCESS_DENIED, 0);
    }
    let length = irp.stack().ioctl().input_length as usize;
    match parse_delete_ip_address(irp.system_buffer(length)) {
        Ok(interface) => driver
            .stack()
            .submit(Request::DeleteIpAddress { interface }, irp, None),
        Err(status) => irp.complete(status, 0),
    }
}

/// `IOCTL_TCP_QUERY_INFORMATION_EX` (METHOD_NEITHER): answered here, in the requester's
/// context, with ReactOS's probe semantics: a zero-length or too short output buffer succeeds
/// with `Information` = the size needed and nothing copied. The answer is built in pool and
/// copied out once; a user-mode caller's buffers are only touched by fault-safe copies, so a
/// bad pointer fails the request (`STATUS_INVALID_PARAMETER` outside user space, the fault's
/// `STATUS_ACCESS_VIOLATION` for an unmapped or read-only page). PASSIVE_LEVEL.
fn query_information_ex(driver: &'static Tcpip, mut irp: Irp) -> Dispatched {
    let mut input = [0u8; QueryInformationEx::LEN];
    let request = irp
        .neither_input(&mut input)
        .and_then(|len| QueryInformationEx::parse(input.get(..len).unwrap_or_default()));
    let answer = request.and_then(|request| {
        driver
            .stack()
            .query_information(&request.id, &request.context)
    });
    let answer = match answer {
        Ok(answer) => answer,
        Err(status) => return irp.complete(status, 0),
    };
    let room = irp.neither_output_length();
    match copy_out_with_probe(&answer, room, |answer| irp.write_neither_output(answer)) {
        Ok(information) => irp.complete(NtStatus::SUCCESS, information),
        Err(status) => irp.complete(status, 0),
    }
}

/// `IOCTL_TCP_SET_INFORMATION_EX` (METHOD_BUFFERED). `TCP_SOCKET_NODELAY` on a connection file
/// applies to that connection, and `AO_OPTION_IP_HDRINCL` on a raw address file to that file.
/// Everything else is decoded by [`set::decode`] and names its object by entity: routes (IP
/// entity), ARP entries (AT entity), which need the caller's right to change the
/// configuration, and socket options on an address file's transport entity (what wshtcpip's
/// setsockopt sends over a control channel).
fn set_information_ex(driver: &'static Tcpip, mut irp: Irp) -> Dispatched {
    let length = irp.stack().ioctl().input_length as usize;
    let kind = irp.stack().file_object().and_then(file_kind);
    let decoded = SetInformationEx::parse(irp.system_buffer(length)).map(|request| {
        let enabled = request.buffer.iter().any(|byte| *byte != 0);
        (
            request.id,
            enabled,
            set::decode(&request.id, request.buffer),
        )
    });
    let (id, enabled, setting) = match decoded {
        Ok(decoded) => decoded,
        Err(status) => return irp.complete(status, 0),
    };
    if let Some(FileKind::Address(address)) = kind
        && id.toi_class == INFO_CLASS_PROTOCOL
        && id.toi_type == INFO_TYPE_ADDRESS_OBJECT
        && id.toi_id == AO_OPTION_IP_HDRINCL
    {
        return driver
            .stack()
            .submit(Request::SetHeaderInclude { address, enabled }, irp, None);
    }
    if let (Ok(Setting::Option { option, .. }), Some(FileKind::Connection(connection))) =
        (setting, kind)
        && id.toi_type == INFO_TYPE_CONNECTION
        && let set::SocketOption::NoDelay(enabled) = option
    {
        return driver.stack().submit(
            Request::SetNoDelay {
                connection,
                enabled,
            },
            irp,
            None,
        );
    }
    let setting = match setting {
        Ok(setting) => setting,
        Err(status) => return irp.complete(status, 0),
    };
    if setting.is_configuration() && !security::may_configure(&irp) {
        return irp.complete(NtStatus::ACCESS_DENIED, 0);
    }
    let status = driver.stack().apply_setting(setting);
    irp.complete(status, 0)
}
