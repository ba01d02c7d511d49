//! `tcpip.sys`: a TCP/IP TDI transport driver for ReactOS and Windows NT on smoltcp.
//!
//! Layering (Rust-for-Linux style: FFI → safe abstractions → driver logic):
//! - [`nt`]: the only module that touches the NT kernel. Raw `#[repr(C)]` types, the `sys`
//!   functions (raw-dylib imports on the kernel, the host model on Linux), and safe wrappers
//!   (`Irp`, `SpinLock<T>`, `Dpc`, `Timer`, `WorkItem`, pool, logging).
//! - [`tdi`]: decoding of TDI requests, EAs, transport addresses and IOCTL buffers into typed
//!   `Repr`s, smoltcp style. Pure and safe.
//! - [`driver`], [`dispatch`], [`objects`]: the device objects and the IRP dispatch routines,
//!   and the TDI objects (`AddressFile`, `TcpContext`, `ControlChannel`).
//! - [`core`]: the one smoltcp core behind one spinlock, its DPC-driven work queue, ports,
//!   listeners and accept queues, and the completion path to PASSIVE_LEVEL.
//! - [`ndis`]: the NDIS 5.0 protocol "Tcpip": bindings to network adapters and their IP
//!   configuration.
//! - [`link`]: the link layer under the core: the loopback, and the Ethernet link over an
//!   NDIS-miniport-shaped adapter (a TAP device in the host model).
//! - `host` (host builds only): the NT kernel model that runs all of the above on Linux and
//!   checks it like Driver Verifier, plus the AFD model and a Winsock-style API.
#![cfg_attr(kernel, no_std)]
// A panic in the kernel is a bugcheck: the code built into the driver never calls the panicking
// shorthands (`cargo xtask clippy` runs the kernel targets with warnings denied). Indexing and
// arithmetic are reviewed by hand for now (issue #16).
#![cfg_attr(
    kernel,
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]
#![feature(allocator_api)]

extern crate alloc;

pub mod core;
pub mod dispatch;
pub mod driver;
pub mod echo;
pub mod info;
pub mod link;
pub mod ndis;
pub mod nt;
pub mod tdi;

#[cfg(not(kernel))]
pub mod host;
