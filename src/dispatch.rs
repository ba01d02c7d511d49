//! IRP dispatch: decode the request and route it.
#![forbid(unsafe_code)]

use crate::driver::Tcpip;
use crate::nt::NtStatus;
use crate::nt::irp::{Dispatched, Irp};
use crate::nt::types::{
    IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL,
    IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_CONTROL_CHANNEL_FILE,
};

/// Routes an IRP by major function. PASSIVE_LEVEL.
pub fn dispatch(_driver: &'static Tcpip, _device: usize, irp: Irp) -> Dispatched {
    let stack = irp.stack();
    match stack.major() {
        IRP_MJ_CREATE => create(irp),
        IRP_MJ_CLEANUP | IRP_MJ_CLOSE => irp.complete(NtStatus::SUCCESS, 0),
        IRP_MJ_DEVICE_CONTROL | IRP_MJ_INTERNAL_DEVICE_CONTROL => {
            irp.complete(NtStatus::INVALID_DEVICE_REQUEST, 0)
        }
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
