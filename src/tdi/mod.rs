//! Decoding of TDI requests, smoltcp style: byte buffers parse into typed `Repr`s, and the
//! `Repr`s emit the bytes back.
//!
//! Everything here is pure and safe. The nt layer copies the raw bytes out of the IRP (EA
//! buffers, `IO_STACK_LOCATION::Parameters`, IOCTL input buffers, transport addresses) and
//! hands them over as slices; nothing here holds a pointer. Malformed input never panics: it
//! comes back as the `NtStatus` the AFD ↔ TDI contract (`afd-tdi-contract.md`) prescribes, which
//! each decoder documents.
//!
//! - [`address`]: `TRANSPORT_ADDRESS` / `TA_IP_ADDRESS` ↔ [`TransportAddress`], and the
//!   `TDI_ADDRESS_INFO` answer.
//! - [`ea`]: the `IRP_MJ_CREATE` EA chain → [`CreateRequest`] (address file, connection
//!   endpoint, control channel).
//! - [`icmp`]: the `IOCTL_ICMP_ECHO_REQUEST` input.
//! - [`ioctl`]: `IOCTL_TCP_QUERY_INFORMATION_EX` / `IOCTL_TCP_SET_INFORMATION_EX` input buffers,
//!   and [`copy_out_with_probe`], ReactOS's length-probe convention for their answers.
//! - [`request`]: the `TDI_REQUEST_KERNEL_*` overlays of `Parameters` for the TDI minor
//!   functions, disconnect flags, query types and timeouts.
#![forbid(unsafe_code)]

pub mod address;
pub mod ea;
pub mod icmp;
pub mod ioctl;
pub mod request;

pub use address::TransportAddress;
pub use ea::CreateRequest;
pub use ioctl::{QueryInformationEx, SetInformationEx, copy_out_with_probe};
pub use request::{Disconnect, QueryType, Timeout};
