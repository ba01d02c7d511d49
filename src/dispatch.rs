//! IRP dispatch: decode the request and route it.
#![forbid(unsafe_code)]

use crate::driver::Tcpip;
use crate::entities;
use crate::nt::NtStatus;
use crate::nt::irp::{Dispatched, Irp};
use crate::nt::types::{
    IOCTL_TCP_QUERY_INFORMATION_EX, IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE,
    IRP_MJ_DEVICE_CONTROL, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_CONTROL_CHANNEL_FILE,
};
use crate::tdi::{QueryInformationEx, copy_out_with_probe};

/// Routes an IRP by major function. PASSIVE_LEVEL.
pub fn dispatch(_driver: &'static Tcpip, _device: usize, irp: Irp) -> Dispatched {
    let stack = irp.stack();
    match stack.major() {
        IRP_MJ_CREATE => create(irp),
        IRP_MJ_CLEANUP | IRP_MJ_CLOSE => irp.complete(NtStatus::SUCCESS, 0),
        IRP_MJ_DEVICE_CONTROL => device_control(irp),
        IRP_MJ_INTERNAL_DEVICE_CONTROL => irp.complete(NtStatus::INVALID_DEVICE_REQUEST, 0),
        _ => irp.complete(NtStatus::INVALID_DEVICE_REQUEST, 0),
    }
}

/// IRP_MJ_CREATE: a create without EA opens a control channel.
fn create(irp: Irp) -> Dispatched {
    let stack = irp.stack();
    if stack.create_ea_length() != 0 {
        return irp.complete(NtStatus::NOT_IMPLEMENTED, 0);
    }
    match stack.file_object() {
        Some(file) => {
            file.set_context(0, TDI_CONTROL_CHANNEL_FILE as usize);
            irp.complete(NtStatus::SUCCESS, 0)
        }
        None => irp.complete(NtStatus::INVALID_PARAMETER, 0),
    }
}

/// IRP_MJ_DEVICE_CONTROL: IOCTLs. Accepted on every device and file type, as ReactOS's
/// tcpip.sys does; unknown codes are invalid device requests.
fn device_control(irp: Irp) -> Dispatched {
    match irp.stack().ioctl().code {
        IOCTL_TCP_QUERY_INFORMATION_EX => query_information_ex(irp),
        _ => irp.complete(NtStatus::INVALID_DEVICE_REQUEST, 0),
    }
}

/// `IOCTL_TCP_QUERY_INFORMATION_EX` (METHOD_NEITHER): answered here, in the requester's
/// context, with ReactOS's probe semantics: a zero-length or too short output buffer succeeds
/// with `Information` = the size needed and nothing copied.
fn query_information_ex(mut irp: Irp) -> Dispatched {
    let mut input = [0u8; QueryInformationEx::LEN];
    let request = irp
        .neither_input(&mut input)
        .and_then(|len| QueryInformationEx::parse(&input[..len]));
    let answer = match request.and_then(|request| entities::query(&request.id)) {
        Ok(answer) => answer,
        Err(status) => return irp.complete(status, 0),
    };
    match irp.neither_output() {
        Ok(out) => {
            let information = copy_out_with_probe(&answer, out);
            irp.complete(NtStatus::SUCCESS, information)
        }
        Err(status) => irp.complete(status, 0),
    }
}
