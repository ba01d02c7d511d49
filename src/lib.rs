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
// A panic in the kernel is a bugcheck. The code built into the driver never calls the panicking
// shorthands, never indexes or slices with `[]` (`get`, `first_chunk`, `split_first_chunk` and
// iterators instead; a fixed-size array indexed by a constant is checked at compile time), and
// `cargo xtask clippy` runs the kernel targets with these lints as errors. Arithmetic cannot
// panic in the kernel images (release builds, no overflow checks: it wraps); division is by
// constants or by values checked non-zero, reviewed by hand (ARCHITECTURE.md, "Panics").
#![cfg_attr(
    kernel,
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented,
        clippy::indexing_slicing,
        clippy::string_slice
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
