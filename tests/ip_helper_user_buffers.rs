//! Bad user-mode buffers on the IP helper's IOCTLs. `IOCTL_TCP_QUERY_INFORMATION_EX` is
//! METHOD_NEITHER: the driver gets the caller's own addresses and must reach them only through
//! its fault-safe copies (`nt::user`). The model maps a user request's buffers for the request
//! (`host::user`), so an address it did not map, or a read-only output, faults where the real
//! kernel would. Each case gets its status, nothing is written, the driver keeps answering, and
//! nothing leaks (the pool is checked at unload). `IOCTL_TCP_SET_INFORMATION_EX` is
//! METHOD_BUFFERED: its bad pointers fail in the I/O manager and never reach the driver.

mod ip_helper_support;
mod tdi_support;
mod udp_support;

use ip_helper_support::*;
use tcpip::host::{Handle, IoctlOptions, UserBuffer};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tcpip::tdi::QueryInformationEx;
use tdi_support::*;

/// x64 Windows' `MmUserProbeAddress`, which the model uses.
const USER_PROBE_ADDRESS: usize = 0x7FFF_FFFF_0000;
/// An address in no mapped range: the first page above the null page.
const UNMAPPED: usize = 0x1000;
/// A kernel-space address.
const KERNEL_ADDRESS: usize = 0xFFFF_F800_0000_1000;

/// The entity-list query's input.
fn entity_list_input() -> Vec<u8> {
    let id = object(
        GENERIC_ENTITY,
        0,
        INFO_CLASS_GENERIC,
        INFO_TYPE_PROVIDER,
        ENTITY_LIST_ID,
    );
    let mut input = vec![0; QueryInformationEx::LEN];
    QueryInformationEx {
        id,
        context: [0; 16],
    }
    .emit(&mut input)
    .unwrap();
    input
}

/// One entity-list query with the given buffers, into a 256-byte output filled with 0xAA:
/// the status, `Information` and the output afterwards.
fn query_with(
    t: &Loaded,
    control: Handle,
    mode: KPROCESSOR_MODE,
    input: UserBuffer,
    output: UserBuffer,
) -> (NtStatus, usize, Vec<u8>) {
    let mut out = vec![0xAA; 256];
    let options = IoctlOptions {
        requestor_mode: mode,
        input,
        output,
        ..IoctlOptions::default()
    };
    let (status, information) = t.kernel.device_io_control_with(
        control,
        IOCTL_TCP_QUERY_INFORMATION_EX,
        &entity_list_input(),
        &mut out,
        options,
    );
    (status, information, out)
}

/// Every bad buffer of a user-mode query on `device`: each fails with its status and writes
/// nothing, and a good query answers afterwards.
fn bad_buffers_fail_cleanly(device: &str) {
    let t = loaded();
    let control = t.kernel.create_file(device, None, 0).expect(device);
    let good = query_with(
        &t,
        control,
        USER_MODE,
        UserBuffer::Mapped,
        UserBuffer::Mapped,
    );
    assert_eq!(good.0, NtStatus::SUCCESS);
    let size = good.1;
    assert!(size > 0 && size < 256);
    let cases = [
        (
            "unmapped input",
            UserBuffer::Unmapped(UNMAPPED),
            UserBuffer::Mapped,
            NtStatus::ACCESS_VIOLATION,
        ),
        (
            "unmapped output",
            UserBuffer::Mapped,
            UserBuffer::Unmapped(UNMAPPED),
            NtStatus::ACCESS_VIOLATION,
        ),
        (
            "read-only output",
            UserBuffer::Mapped,
            UserBuffer::ReadOnly,
            NtStatus::ACCESS_VIOLATION,
        ),
        (
            "read-only input (reading it is fine)",
            UserBuffer::ReadOnly,
            UserBuffer::Mapped,
            NtStatus::SUCCESS,
        ),
        (
            "output running past MmUserProbeAddress",
            UserBuffer::Mapped,
            UserBuffer::Unmapped(USER_PROBE_ADDRESS - 16),
            NtStatus::INVALID_PARAMETER,
        ),
        (
            "input running past MmUserProbeAddress",
            UserBuffer::Unmapped(USER_PROBE_ADDRESS - 16),
            UserBuffer::Mapped,
            NtStatus::INVALID_PARAMETER,
        ),
        (
            "input wrapping around the address space",
            UserBuffer::Unmapped(usize::MAX - 8),
            UserBuffer::Mapped,
            NtStatus::INVALID_PARAMETER,
        ),
        (
            "kernel input address",
            UserBuffer::Unmapped(KERNEL_ADDRESS),
            UserBuffer::Mapped,
            NtStatus::INVALID_PARAMETER,
        ),
        (
            "kernel output address",
            UserBuffer::Mapped,
            UserBuffer::Unmapped(KERNEL_ADDRESS),
            NtStatus::INVALID_PARAMETER,
        ),
    ];
    for (what, input, output, expected) in cases {
        let (status, information, out) = query_with(&t, control, USER_MODE, input, output);
        assert_eq!(status, expected, "{device}: {what}");
        if expected == NtStatus::SUCCESS {
            assert_eq!(
                (information, &out[..size]),
                (size, &good.2[..size]),
                "{what}"
            );
        } else {
            assert_eq!(information, 0, "{device}: {what}");
            assert!(out.iter().all(|&b| b == 0xAA), "{device}: {what}: written");
        }
        let after = query_with(
            &t,
            control,
            USER_MODE,
            UserBuffer::Mapped,
            UserBuffer::Mapped,
        );
        assert_eq!(after, good, "{device}: a good query after {what}");
    }
    t.close(control);
    t.unload();
}

#[test]
fn bad_user_buffers_on_the_tcp_control_channel() {
    bad_buffers_fail_cleanly("\\Device\\Tcp");
}

#[test]
fn bad_user_buffers_on_the_ip_device() {
    bad_buffers_fail_cleanly("\\Device\\Ip");
}

#[test]
fn a_size_probe_never_touches_the_output() {
    // A zero-length or too short output is a size probe: the answer is not copied, so the
    // output pointer is not touched and cannot fault, as on ReactOS.
    let t = loaded();
    let control = control(&t);
    let options = IoctlOptions {
        output: UserBuffer::Unmapped(UNMAPPED),
        ..IoctlOptions::default()
    };
    let input = entity_list_input();
    for room in [0usize, 4] {
        let mut out = vec![0xAA; room];
        let (status, needed) = t.kernel.device_io_control_with(
            control,
            IOCTL_TCP_QUERY_INFORMATION_EX,
            &input,
            &mut out,
            options,
        );
        assert_eq!(status, NtStatus::SUCCESS, "room {room}");
        assert!(needed > room, "room {room}");
    }
    t.close(control);
    t.unload();
}

#[test]
fn a_kernel_mode_requester_is_trusted_as_before() {
    // A kernel-mode caller's buffers are not user memory: they are copied directly, unmapped
    // or not in the model's user space.
    let t = loaded();
    let control = control(&t);
    let user = query_with(
        &t,
        control,
        USER_MODE,
        UserBuffer::Mapped,
        UserBuffer::Mapped,
    );
    let kernel = query_with(
        &t,
        control,
        KERNEL_MODE,
        UserBuffer::Mapped,
        UserBuffer::Mapped,
    );
    assert_eq!(user, kernel);
    assert_eq!(kernel.0, NtStatus::SUCCESS);
    t.close(control);
    t.unload();
}

#[test]
fn set_information_ex_bad_buffers_fail_in_the_io_manager() {
    // METHOD_BUFFERED: the I/O manager probes and copies; the driver never sees the pointer.
    let t = loaded();
    let control = control(&t);
    let id = object(
        CO_TL_ENTITY,
        0x1000,
        INFO_CLASS_PROTOCOL,
        INFO_TYPE_ADDRESS_OBJECT,
        tcpip::info::set::AO_OPTION_TTL,
    );
    let request = tcpip::tdi::SetInformationEx {
        id,
        buffer: &[64, 0, 0, 0],
    };
    let mut input = vec![0; request.buffer_len()];
    request.emit(&mut input).unwrap();
    for (input_buffer, output_buffer) in [
        (UserBuffer::Unmapped(UNMAPPED), UserBuffer::Mapped),
        (UserBuffer::Unmapped(KERNEL_ADDRESS), UserBuffer::Mapped),
        (UserBuffer::Mapped, UserBuffer::ReadOnly),
    ] {
        let options = IoctlOptions {
            input: input_buffer,
            output: output_buffer,
            ..IoctlOptions::default()
        };
        let result = t.kernel.device_io_control_with(
            control,
            IOCTL_TCP_SET_INFORMATION_EX,
            &input,
            &mut [],
            options,
        );
        assert_eq!(result, (NtStatus::ACCESS_VIOLATION, 0));
    }
    assert_eq!(entities(&t, control).len(), 6, "the driver still answers");
    t.close(control);
    t.unload();
}
