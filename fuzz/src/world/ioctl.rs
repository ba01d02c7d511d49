//! [`World::ioctl`]: device I/O control requests from user mode.

use super::{Part, World};
use std::time::Duration;
use tcpip::host::{Event, EventType, StackLocation};
use tcpip::nt::types::*;

/// `IRP::Flags` of a buffered request whose output the I/O manager copies back.
const IRP_BUFFERED_IO: u32 = 0x0010;
const IRP_INPUT_OPERATION: u32 = 0x0040;

impl World {
    /// A device I/O control request with `code` and `input` and an output buffer of
    /// `output_len` bytes, from user mode, on a control channel (`file` `None`) or on `file`.
    pub fn ioctl(&mut self, file: Option<usize>, code: u32, input: &[u8], output_len: usize) {
        let handle = match file {
            Some(file) => match self.handle(file) {
                Some(handle) => handle,
                None => return,
            },
            None => match self.control {
                Some(handle) => handle,
                None => {
                    let control = self.kernel.create_file("\\Device\\Ip", None, 0);
                    let control = control.expect("control channel");
                    self.control = Some(control);
                    control
                }
            },
        };
        if !matches!(code, IOCTL_ICMP_ECHO_REQUEST | IOCTL_QUERY_IP_HW_ADDRESS) {
            let mut output = vec![0u8; output_len];
            let (status, _) = self
                .kernel
                .device_io_control(handle, code, input, &mut output);
            // A request that changed the configuration: the interface's address is given back
            // after the input; routes, ARP entries and TCP connection states end the world.
            if status.is_success() {
                match code {
                    IOCTL_SET_IP_ADDRESS | IOCTL_DELETE_IP_ADDRESS => self.change(Part::Address),
                    IOCTL_TCP_SET_INFORMATION_EX => self.change(Part::Whole),
                    _ => {}
                }
            }
            self.settle();
            return;
        }
        // These wait for an answer from the network or their timeout (at most 2 s here, ARP
        // resolution 1 s): sent as the I/O manager sends a METHOD_BUFFERED request from user
        // mode, without waiting for it; the virtual clock then moves on 100 ms at a time
        // until it completes. Not done after 60 s of virtual time, the request is stuck in the
        // driver.
        let kernel = &self.kernel;
        let file = kernel.reference_file(handle).expect("file handle");
        let mut location = StackLocation::new(IRP_MJ_DEVICE_CONTROL, 0, std::ptr::null_mut());
        location.parameters = IoStackParameters {
            DeviceIoControl: DeviceIoControlParameters::new(
                code,
                input.len() as u32,
                output_len as u32,
                std::ptr::null_mut(),
            ),
        };
        let irp = kernel.allocate_file_irp(&file, location);
        // The system buffer: max(input, output) bytes, the input copied in, 8-byte aligned.
        let mut system = vec![0u64; input.len().max(output_len).div_ceil(8)];
        // SAFETY: `system` holds at least `input.len()` bytes; u64 has no invalid bit patterns.
        unsafe {
            std::ptr::copy_nonoverlapping(input.as_ptr(), system.as_mut_ptr().cast(), input.len())
        };
        let mut output = vec![0u8; output_len];
        let event = Event::new(kernel, EventType::Notification, false);
        let mut iosb = Box::new(IO_STATUS_BLOCK {
            Status: IoStatusUnion { Status: 0 },
            Information: 0,
        });
        let iosb_ptr: *mut IO_STATUS_BLOCK = &mut *iosb;
        // SAFETY: a fresh IRP, owned by the harness until it is sent; the buffers and the
        // status block outlive the request (it completes before this function returns).
        unsafe {
            kernel.with_irp(irp, |i| {
                i.RequestorMode = USER_MODE;
                i.AssociatedIrp.SystemBuffer = system.as_mut_ptr().cast();
                i.UserBuffer = output.as_mut_ptr().cast();
                i.Flags |= IRP_BUFFERED_IO | IRP_INPUT_OPERATION;
                i.UserEvent = event.as_ptr();
                i.UserIosb = iosb_ptr;
            })
        };
        kernel.call_driver(file.device(), irp);
        self.settle();
        let mut steps = 0;
        while !event.is_signaled() {
            assert!(steps < 600, "IOCTL {code:#x} still pending after 60 s");
            self.advance(Duration::from_millis(100));
            steps += 1;
        }
        self.settle();
    }
}
