//! TDI request parameters: the `TDI_REQUEST_KERNEL_*` overlays of
//! `IO_STACK_LOCATION::Parameters` for `IRP_MJ_INTERNAL_DEVICE_CONTROL`, and the values inside
//! them (flags, query types, timeouts).
//!
//! `TdiBuild*` (tdikrnl.h) writes the request straight over the 16 / 32-byte `Parameters`
//! union, so the request type comes from `MinorFunction`, never from the overwritten
//! `IoControlCode`. The overlays, with x86 / x64 offsets (all integers little endian, pointers
//! native width):
//!
//! ```text
//! TDI_REQUEST_KERNEL (CONNECT, LISTEN, ACCEPT, DISCONNECT)
//!   ULONG RequestFlags @0; PTDI_CONNECTION_INFORMATION RequestConnectionInformation @4/8,
//!   ReturnConnectionInformation @8/16; PVOID RequestSpecific @12/24 (PLARGE_INTEGER timeout)
//! _ASSOCIATE        HANDLE AddressHandle @0
//! _SEND             ULONG SendLength @0; ULONG SendFlags @4
//! _RECEIVE          ULONG ReceiveLength @0; ULONG ReceiveFlags @4
//! _SENDDG           ULONG SendLength @0; PTDI_CONNECTION_INFORMATION SendDatagramInformation @4/8
//! _RECEIVEDG        ULONG ReceiveLength @0; ReceiveDatagramInformation @4/8;
//!                   ReturnDatagramInformation @8/16; ULONG ReceiveFlags @12/24
//! _QUERY_INFORMATION LONG QueryType @0; RequestConnectionInformation @4/8
//! _SET_EVENT        LONG EventType @0; PVOID EventHandler @4/8; PVOID EventContext @8/16
//! ```
//!
//! The decoders read these from a copy of the `Parameters` bytes ([`Parameters`]); the offsets
//! come from the `#[repr(C)]` overlays in [`crate::nt::types`], which the layout table checks
//! against the DDK. Pointer and handle members come back as plain addresses (`usize`, 0 for
//! NULL): the nt layer turns them back into pointers (with exposed provenance) and does the
//! reads, so everything here is pure.

use crate::nt::NtStatus;
use crate::nt::types::{
    IoStackParameters, TDI_DISCONNECT_ABORT, TDI_DISCONNECT_RELEASE, TDI_DISCONNECT_WAIT,
    TDI_QUERY_ADDRESS_INFO, TDI_QUERY_CONNECTION_INFO, TDI_QUERY_MAX_DATAGRAM_INFO,
    TDI_QUERY_PROVIDER_INFO, TDI_QUERY_PROVIDER_STATISTICS, TDI_RECEIVE_NORMAL, TDI_RECEIVE_PEEK,
    TDI_REQUEST_KERNEL, TDI_REQUEST_KERNEL_ASSOCIATE, TDI_REQUEST_KERNEL_QUERY_INFORMATION,
    TDI_REQUEST_KERNEL_RECEIVE, TDI_REQUEST_KERNEL_RECEIVEDG, TDI_REQUEST_KERNEL_SEND,
    TDI_REQUEST_KERNEL_SENDDG, TDI_REQUEST_KERNEL_SET_EVENT, TDI_SEND_EXPEDITED,
    TDI_SEND_NON_BLOCKING, TDI_SEND_PARTIAL,
};
use core::mem::{offset_of, size_of};
use core::time::Duration;

/// The raw bytes of `IO_STACK_LOCATION::Parameters`: 16 on x86, 32 on x64.
pub type Parameters = [u8; size_of::<IoStackParameters>()];

// Every overlay fits in `Parameters`, so the fixed-offset reads below stay in bounds.
const _: () = {
    let limit = size_of::<IoStackParameters>();
    assert!(size_of::<TDI_REQUEST_KERNEL>() <= limit);
    assert!(size_of::<TDI_REQUEST_KERNEL_ASSOCIATE>() <= limit);
    assert!(size_of::<TDI_REQUEST_KERNEL_SEND>() <= limit);
    assert!(size_of::<TDI_REQUEST_KERNEL_RECEIVE>() <= limit);
    assert!(size_of::<TDI_REQUEST_KERNEL_SENDDG>() <= limit);
    assert!(size_of::<TDI_REQUEST_KERNEL_RECEIVEDG>() <= limit);
    assert!(size_of::<TDI_REQUEST_KERNEL_QUERY_INFORMATION>() <= limit);
    assert!(size_of::<TDI_REQUEST_KERNEL_SET_EVENT>() <= limit);
};

/// `N` bytes at `offset`. The callers' offsets come from overlays that fit in [`Parameters`]
/// (asserted above); an out-of-range read would yield zeros rather than panic.
fn bytes_at<const N: usize>(params: &Parameters, offset: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(src) = params.get(offset..offset + N) {
        out.copy_from_slice(src);
    }
    out
}

fn u32_at(params: &Parameters, offset: usize) -> u32 {
    u32::from_le_bytes(bytes_at(params, offset))
}

fn i32_at(params: &Parameters, offset: usize) -> i32 {
    i32::from_le_bytes(bytes_at(params, offset))
}

/// A pointer or handle member, as an address.
fn address_at(params: &Parameters, offset: usize) -> usize {
    usize::from_le_bytes(bytes_at(params, offset))
}

/// `TDI_REQUEST_KERNEL`: the parameters of `TDI_CONNECT`, `TDI_LISTEN`, `TDI_ACCEPT` and
/// `TDI_DISCONNECT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelRequest {
    /// `RequestFlags`: `TDI_QUERY_ACCEPT` for LISTEN, the `TDI_DISCONNECT_*` bits for
    /// DISCONNECT (see [`Disconnect::from_flags`]), 0 for CONNECT.
    pub flags: u32,
    /// Address of the `TDI_CONNECTION_INFORMATION` describing the request (the remote address
    /// for CONNECT, the accept filter for LISTEN), or 0.
    pub request_connection_information: usize,
    /// Address of the `TDI_CONNECTION_INFORMATION` to fill in on completion (the peer for
    /// LISTEN), or 0.
    pub return_connection_information: usize,
    /// `RequestSpecific`: for CONNECT and DISCONNECT the address of a `LARGE_INTEGER` timeout
    /// (see [`Timeout::from_large_integer`]), 0 for none.
    pub request_specific: usize,
}

impl KernelRequest {
    pub fn parse(params: &Parameters) -> Self {
        Self {
            flags: u32_at(params, offset_of!(TDI_REQUEST_KERNEL, RequestFlags)),
            request_connection_information: address_at(
                params,
                offset_of!(TDI_REQUEST_KERNEL, RequestConnectionInformation),
            ),
            return_connection_information: address_at(
                params,
                offset_of!(TDI_REQUEST_KERNEL, ReturnConnectionInformation),
            ),
            request_specific: address_at(params, offset_of!(TDI_REQUEST_KERNEL, RequestSpecific)),
        }
    }
}

/// `TDI_REQUEST_KERNEL_ASSOCIATE`: the parameters of `TDI_ASSOCIATE_ADDRESS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssociateParams {
    /// The caller's (kernel) handle to the address file, to be resolved in the dispatch routine.
    pub address_handle: usize,
}

impl AssociateParams {
    pub fn parse(params: &Parameters) -> Self {
        Self {
            address_handle: address_at(
                params,
                offset_of!(TDI_REQUEST_KERNEL_ASSOCIATE, AddressHandle),
            ),
        }
    }
}

/// `SendFlags` of `TDI_SEND`. AFD always sends 0. The flags are reported, not validated:
/// ReactOS's transport ignores them all, and so may this one (there is no urgent data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendFlags(pub u32);

impl SendFlags {
    /// `TDI_SEND_EXPEDITED` (0x20): urgent data.
    pub const fn expedited(self) -> bool {
        self.0 & TDI_SEND_EXPEDITED != 0
    }

    /// `TDI_SEND_PARTIAL` (0x40): more data follows in a later send.
    pub const fn partial(self) -> bool {
        self.0 & TDI_SEND_PARTIAL != 0
    }

    /// `TDI_SEND_NON_BLOCKING` (0x100): fail rather than pend when there is no send space.
    pub const fn non_blocking(self) -> bool {
        self.0 & TDI_SEND_NON_BLOCKING != 0
    }
}

/// `ReceiveFlags` of `TDI_RECEIVE` and `TDI_RECEIVE_DATAGRAM`.
///
/// AFD sends `TDI_RECEIVE_NORMAL` (0x20) on connections and 0 on datagram sockets; PEEK is done
/// inside AFD and never reaches the transport. The flags are not validated: unknown bits are
/// kept in the value and otherwise ignored, as ReactOS's transport ignores them, because a
/// failed receive makes AFD treat the connection as dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveFlags(pub u32);

impl ReceiveFlags {
    /// `TDI_RECEIVE_NORMAL` (0x20): ordinary data (0 means the same).
    pub const fn normal(self) -> bool {
        self.0 & TDI_RECEIVE_NORMAL != 0
    }

    /// `TDI_RECEIVE_PEEK` (0x80): copy the data without consuming it.
    pub const fn peek(self) -> bool {
        self.0 & TDI_RECEIVE_PEEK != 0
    }
}

/// `TDI_REQUEST_KERNEL_SEND`: the parameters of `TDI_SEND`. The data is the IRP's MDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendParams {
    /// Bytes to send from the MDL (AFD: what its send window holds).
    pub length: u32,
    pub flags: SendFlags,
}

impl SendParams {
    pub fn parse(params: &Parameters) -> Self {
        Self {
            length: u32_at(params, offset_of!(TDI_REQUEST_KERNEL_SEND, SendLength)),
            flags: SendFlags(u32_at(
                params,
                offset_of!(TDI_REQUEST_KERNEL_SEND, SendFlags),
            )),
        }
    }
}

/// `TDI_REQUEST_KERNEL_RECEIVE`: the parameters of `TDI_RECEIVE`. The buffer is the IRP's MDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveParams {
    /// Room in the MDL (AFD: the free space of its receive window).
    pub length: u32,
    pub flags: ReceiveFlags,
}

impl ReceiveParams {
    pub fn parse(params: &Parameters) -> Self {
        Self {
            length: u32_at(
                params,
                offset_of!(TDI_REQUEST_KERNEL_RECEIVE, ReceiveLength),
            ),
            flags: ReceiveFlags(u32_at(
                params,
                offset_of!(TDI_REQUEST_KERNEL_RECEIVE, ReceiveFlags),
            )),
        }
    }
}

/// `TDI_REQUEST_KERNEL_SENDDG`: the parameters of `TDI_SEND_DATAGRAM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendDatagramParams {
    pub length: u32,
    /// Address of the `TDI_CONNECTION_INFORMATION` whose `RemoteAddress` is the destination.
    /// AFD frees it as soon as the dispatch routine returns: read it during dispatch.
    pub send_datagram_information: usize,
}

impl SendDatagramParams {
    pub fn parse(params: &Parameters) -> Self {
        Self {
            length: u32_at(params, offset_of!(TDI_REQUEST_KERNEL_SENDDG, SendLength)),
            send_datagram_information: address_at(
                params,
                offset_of!(TDI_REQUEST_KERNEL_SENDDG, SendDatagramInformation),
            ),
        }
    }
}

/// `TDI_REQUEST_KERNEL_RECEIVEDG`: the parameters of `TDI_RECEIVE_DATAGRAM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveDatagramParams {
    pub length: u32,
    /// Address of a `TDI_CONNECTION_INFORMATION`. AFD puts its *local* address there; it is
    /// not a source filter.
    pub receive_datagram_information: usize,
    /// Address of the `TDI_CONNECTION_INFORMATION` that receives the sender (AFD passes the
    /// same block as above).
    pub return_datagram_information: usize,
    pub flags: ReceiveFlags,
}

impl ReceiveDatagramParams {
    pub fn parse(params: &Parameters) -> Self {
        Self {
            length: u32_at(
                params,
                offset_of!(TDI_REQUEST_KERNEL_RECEIVEDG, ReceiveLength),
            ),
            receive_datagram_information: address_at(
                params,
                offset_of!(TDI_REQUEST_KERNEL_RECEIVEDG, ReceiveDatagramInformation),
            ),
            return_datagram_information: address_at(
                params,
                offset_of!(TDI_REQUEST_KERNEL_RECEIVEDG, ReturnDatagramInformation),
            ),
            flags: ReceiveFlags(u32_at(
                params,
                offset_of!(TDI_REQUEST_KERNEL_RECEIVEDG, ReceiveFlags),
            )),
        }
    }
}

/// What `TDI_QUERY_INFORMATION` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    /// `TDI_QUERY_PROVIDER_INFO` (2): a `TDI_PROVIDER_INFO`. ReactOS's transport does not
    /// implement it; Windows does.
    ProviderInfo,
    /// `TDI_QUERY_ADDRESS_INFO` (3): a `TDI_ADDRESS_INFO` (getsockname).
    AddressInfo,
    /// `TDI_QUERY_CONNECTION_INFO` (4): a `TDI_CONNECTION_INFO`.
    ConnectionInfo,
    /// `TDI_QUERY_MAX_DATAGRAM_INFO` (9): a `TDI_MAX_DATAGRAM_INFO`.
    MaxDatagramInfo,
    /// `TDI_QUERY_PROVIDER_STATISTICS` (5): a `TDI_PROVIDER_STATISTICS`.
    ProviderStatistics,
}

impl QueryType {
    /// Decodes `QueryType`. Any other value is `STATUS_NOT_IMPLEMENTED`, as in ReactOS's
    /// transport (msafd: `WSAEOPNOTSUPP`).
    pub fn from_raw(raw: i32) -> Result<Self, NtStatus> {
        match raw {
            TDI_QUERY_PROVIDER_INFO => Ok(Self::ProviderInfo),
            TDI_QUERY_ADDRESS_INFO => Ok(Self::AddressInfo),
            TDI_QUERY_CONNECTION_INFO => Ok(Self::ConnectionInfo),
            TDI_QUERY_MAX_DATAGRAM_INFO => Ok(Self::MaxDatagramInfo),
            TDI_QUERY_PROVIDER_STATISTICS => Ok(Self::ProviderStatistics),
            _ => Err(NtStatus::NOT_IMPLEMENTED),
        }
    }

    /// The `TDI_QUERY_*` value.
    pub const fn raw(self) -> i32 {
        match self {
            Self::ProviderInfo => TDI_QUERY_PROVIDER_INFO,
            Self::AddressInfo => TDI_QUERY_ADDRESS_INFO,
            Self::ConnectionInfo => TDI_QUERY_CONNECTION_INFO,
            Self::MaxDatagramInfo => TDI_QUERY_MAX_DATAGRAM_INFO,
            Self::ProviderStatistics => TDI_QUERY_PROVIDER_STATISTICS,
        }
    }
}

/// `TDI_REQUEST_KERNEL_QUERY_INFORMATION`: the parameters of `TDI_QUERY_INFORMATION`. The
/// answer goes to the IRP's MDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryInformationParams {
    pub query_type: QueryType,
    /// Address of a `TDI_CONNECTION_INFORMATION`; always 0 from AFD.
    pub request_connection_information: usize,
}

impl QueryInformationParams {
    /// Decodes the request; an unknown `QueryType` is `STATUS_NOT_IMPLEMENTED`.
    pub fn parse(params: &Parameters) -> Result<Self, NtStatus> {
        Ok(Self {
            query_type: QueryType::from_raw(i32_at(
                params,
                offset_of!(TDI_REQUEST_KERNEL_QUERY_INFORMATION, QueryType),
            ))?,
            request_connection_information: address_at(
                params,
                offset_of!(
                    TDI_REQUEST_KERNEL_QUERY_INFORMATION,
                    RequestConnectionInformation
                ),
            ),
        })
    }
}

/// `TDI_REQUEST_KERNEL_SET_EVENT`: the parameters of `TDI_SET_EVENT_HANDLER` (not used by AFD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetEventParams {
    /// `TDI_EVENT_*`.
    pub event_type: i32,
    /// Address of the handler, 0 to deregister.
    pub event_handler: usize,
    pub event_context: usize,
}

impl SetEventParams {
    pub fn parse(params: &Parameters) -> Self {
        Self {
            event_type: i32_at(params, offset_of!(TDI_REQUEST_KERNEL_SET_EVENT, EventType)),
            event_handler: address_at(
                params,
                offset_of!(TDI_REQUEST_KERNEL_SET_EVENT, EventHandler),
            ),
            event_context: address_at(
                params,
                offset_of!(TDI_REQUEST_KERNEL_SET_EVENT, EventContext),
            ),
        }
    }
}

/// How `TDI_DISCONNECT` closes the connection, from `RequestFlags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// `TDI_DISCONNECT_RELEASE` (0x4): graceful; send a FIN after the queued data. AFD sends it
    /// for shutdown(SD_SEND) and closesocket() without linger, and expects completion once the
    /// FIN is queued.
    Release,
    /// `TDI_DISCONNECT_ABORT` (0x2), or no flags at all (ReactOS treats 0 as an abort): drop the
    /// connection and fail pending requests.
    Abort,
    /// `TDI_DISCONNECT_WAIT` (0x1) alone: wait for the peer's disconnect. AFD never sends it.
    Wait,
}

impl Disconnect {
    /// Decodes the disconnect flags. ABORT wins over RELEASE when both are set (ReactOS does the
    /// release and then the abort, so the abort is what remains); WAIT counts only on its own.
    /// Bits outside the three are ignored when one of the three is present; flags made only of
    /// unknown bits are `STATUS_INVALID_PARAMETER`, so that they cannot be mistaken for an
    /// abort.
    pub fn from_flags(flags: u32) -> Result<Self, NtStatus> {
        if flags == 0 || flags & TDI_DISCONNECT_ABORT != 0 {
            Ok(Self::Abort)
        } else if flags & TDI_DISCONNECT_RELEASE != 0 {
            Ok(Self::Release)
        } else if flags & TDI_DISCONNECT_WAIT != 0 {
            Ok(Self::Wait)
        } else {
            Err(NtStatus::INVALID_PARAMETER)
        }
    }
}

/// A CONNECT or DISCONNECT timeout, from the `LARGE_INTEGER` that `RequestSpecific` points to.
///
/// NT times are in 100-nanosecond units. A negative value is an interval relative to now; a
/// positive one is an absolute system time (since 1601-01-01 UTC, as `KeQuerySystemTime`
/// returns); zero means "now", i.e. expire at once (closesocket() passes 0 for its disconnect;
/// shutdown() passes -1,000,000, i.e. 100 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// No timeout pointer: wait as long as it takes.
    Infinite,
    /// Expire this many 100-ns units from now (0: at once).
    Relative(u64),
    /// Expire at this system time, in 100-ns units.
    Absolute(u64),
}

impl Timeout {
    /// Decodes the timeout: `None` when `RequestSpecific` is NULL.
    pub fn from_large_integer(value: Option<i64>) -> Self {
        match value {
            None => Self::Infinite,
            Some(v) if v <= 0 => Self::Relative(v.unsigned_abs()),
            Some(v) => Self::Absolute(v.unsigned_abs()),
        }
    }

    /// Time left given the current system time `now` (100-ns units): `None` for
    /// [`Infinite`](Self::Infinite), zero for a deadline already past.
    pub fn remaining(self, now: i64) -> Option<Duration> {
        let units = match self {
            Self::Infinite => return None,
            Self::Relative(units) => units,
            Self::Absolute(deadline) => deadline.saturating_sub(u64::try_from(now).unwrap_or(0)),
        };
        Some(Duration::from_nanos(units.saturating_mul(100)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nt::types::TDI_QUERY_ACCEPT;
    use proptest::prelude::*;

    const PTR: usize = size_of::<usize>();

    /// Builds `Parameters` from (offset, bytes) pieces, little endian, like `TdiBuild*`.
    fn params(pieces: &[(usize, &[u8])]) -> Parameters {
        let mut p = [0xA5; size_of::<IoStackParameters>()];
        for (offset, bytes) in pieces {
            p[*offset..*offset + bytes.len()].copy_from_slice(bytes);
        }
        p
    }

    #[test]
    fn parameters_size() {
        assert_eq!(size_of::<Parameters>(), 4 * PTR);
    }

    #[test]
    fn connect_request() {
        let p = params(&[
            (0, &0u32.to_le_bytes()),
            (PTR, &0x1000usize.to_le_bytes()),
            (2 * PTR, &0x2000usize.to_le_bytes()),
            (3 * PTR, &0usize.to_le_bytes()),
        ]);
        assert_eq!(
            KernelRequest::parse(&p),
            KernelRequest {
                flags: 0,
                request_connection_information: 0x1000,
                return_connection_information: 0x2000,
                request_specific: 0,
            }
        );
    }

    #[test]
    fn request_flags_are_a_ulong() {
        // On x64 the padding after RequestFlags holds stale bytes; they must not leak in.
        let p = params(&[(0, &TDI_QUERY_ACCEPT.to_le_bytes())]);
        assert_eq!(KernelRequest::parse(&p).flags, TDI_QUERY_ACCEPT);
    }

    #[test]
    fn associate() {
        let p = params(&[(0, &0x1234usize.to_le_bytes())]);
        assert_eq!(
            AssociateParams::parse(&p),
            AssociateParams {
                address_handle: 0x1234
            }
        );
    }

    #[test]
    fn send_and_receive() {
        let p = params(&[(0, &0x2000u32.to_le_bytes()), (4, &0u32.to_le_bytes())]);
        let send = SendParams::parse(&p);
        assert_eq!(
            send,
            SendParams {
                length: 0x2000,
                flags: SendFlags(0)
            }
        );
        assert!(!send.flags.expedited() && !send.flags.partial() && !send.flags.non_blocking());

        let p = params(&[
            (0, &100u32.to_le_bytes()),
            (4, &TDI_RECEIVE_NORMAL.to_le_bytes()),
        ]);
        let receive = ReceiveParams::parse(&p);
        assert_eq!(receive.length, 100);
        assert!(receive.flags.normal() && !receive.flags.peek());
    }

    #[test]
    fn flag_accessors() {
        let f = SendFlags(TDI_SEND_EXPEDITED | TDI_SEND_PARTIAL | TDI_SEND_NON_BLOCKING);
        assert!(f.expedited() && f.partial() && f.non_blocking());
        assert!(ReceiveFlags(TDI_RECEIVE_PEEK).peek());
    }

    #[test]
    fn unknown_receive_flags_are_kept_and_ignored() {
        let p = params(&[(0, &1u32.to_le_bytes()), (4, &0x8000_0420u32.to_le_bytes())]);
        let receive = ReceiveParams::parse(&p);
        assert_eq!(receive.flags, ReceiveFlags(0x8000_0420));
        assert!(receive.flags.normal() && !receive.flags.peek());
    }

    #[test]
    fn datagrams() {
        let p = params(&[
            (0, &512u32.to_le_bytes()),
            (PTR, &0x3000usize.to_le_bytes()),
        ]);
        assert_eq!(
            SendDatagramParams::parse(&p),
            SendDatagramParams {
                length: 512,
                send_datagram_information: 0x3000
            }
        );
        let p = params(&[
            (0, &0x2000u32.to_le_bytes()),
            (PTR, &0x4000usize.to_le_bytes()),
            (2 * PTR, &0x4000usize.to_le_bytes()),
            (3 * PTR, &0u32.to_le_bytes()),
        ]);
        assert_eq!(
            ReceiveDatagramParams::parse(&p),
            ReceiveDatagramParams {
                length: 0x2000,
                receive_datagram_information: 0x4000,
                return_datagram_information: 0x4000,
                flags: ReceiveFlags(0),
            }
        );
    }

    #[test]
    fn query_information() {
        let p = params(&[(0, &TDI_QUERY_ADDRESS_INFO.to_le_bytes()), (PTR, &[0; PTR])]);
        assert_eq!(
            QueryInformationParams::parse(&p),
            Ok(QueryInformationParams {
                query_type: QueryType::AddressInfo,
                request_connection_information: 0,
            })
        );
    }

    #[test]
    fn query_types() {
        for (raw, t) in [
            (2, QueryType::ProviderInfo),
            (3, QueryType::AddressInfo),
            (4, QueryType::ConnectionInfo),
            (5, QueryType::ProviderStatistics),
            (9, QueryType::MaxDatagramInfo),
        ] {
            assert_eq!(QueryType::from_raw(raw), Ok(t));
            assert_eq!(t.raw(), raw);
        }
    }

    #[test]
    fn unknown_query_type_is_not_implemented() {
        for raw in [0, 1, 6, 7, 8, 10, -1, i32::MAX] {
            assert_eq!(
                QueryType::from_raw(raw),
                Err(NtStatus::NOT_IMPLEMENTED),
                "{raw}"
            );
            let p = params(&[(0, &raw.to_le_bytes())]);
            assert_eq!(
                QueryInformationParams::parse(&p),
                Err(NtStatus::NOT_IMPLEMENTED)
            );
        }
    }

    #[test]
    fn set_event() {
        let p = params(&[
            (0, &6i32.to_le_bytes()),
            (PTR, &0x5000usize.to_le_bytes()),
            (2 * PTR, &0x6000usize.to_le_bytes()),
        ]);
        assert_eq!(
            SetEventParams::parse(&p),
            SetEventParams {
                event_type: 6,
                event_handler: 0x5000,
                event_context: 0x6000
            }
        );
    }

    #[test]
    fn disconnect_flags() {
        assert_eq!(
            Disconnect::from_flags(TDI_DISCONNECT_RELEASE),
            Ok(Disconnect::Release)
        );
        assert_eq!(
            Disconnect::from_flags(TDI_DISCONNECT_ABORT),
            Ok(Disconnect::Abort)
        );
        assert_eq!(
            Disconnect::from_flags(TDI_DISCONNECT_WAIT),
            Ok(Disconnect::Wait)
        );
        assert_eq!(
            Disconnect::from_flags(TDI_DISCONNECT_RELEASE | TDI_DISCONNECT_ABORT),
            Ok(Disconnect::Abort)
        );
        assert_eq!(
            Disconnect::from_flags(TDI_DISCONNECT_RELEASE | TDI_DISCONNECT_WAIT),
            Ok(Disconnect::Release)
        );
        assert_eq!(
            Disconnect::from_flags(TDI_DISCONNECT_RELEASE | 0x100),
            Ok(Disconnect::Release)
        );
    }

    #[test]
    fn disconnect_flags_zero_is_abort() {
        assert_eq!(Disconnect::from_flags(0), Ok(Disconnect::Abort));
    }

    #[test]
    fn disconnect_flags_only_unknown_bits() {
        for flags in [0x8, 0x100, 0x8000_0000] {
            assert_eq!(
                Disconnect::from_flags(flags),
                Err(NtStatus::INVALID_PARAMETER)
            );
        }
    }

    #[test]
    fn timeouts() {
        assert_eq!(Timeout::from_large_integer(None), Timeout::Infinite);
        assert_eq!(Timeout::from_large_integer(Some(0)), Timeout::Relative(0));
        assert_eq!(
            Timeout::from_large_integer(Some(-1_000_000)),
            Timeout::Relative(1_000_000)
        );
        assert_eq!(
            Timeout::from_large_integer(Some(i64::MIN)),
            Timeout::Relative(1 << 63)
        );
        assert_eq!(Timeout::from_large_integer(Some(42)), Timeout::Absolute(42));
    }

    #[test]
    fn remaining_time() {
        assert_eq!(Timeout::Infinite.remaining(0), None);
        assert_eq!(Timeout::Relative(0).remaining(5), Some(Duration::ZERO));
        // shutdown()'s 100 ms.
        assert_eq!(
            Timeout::from_large_integer(Some(-1_000_000)).remaining(123),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            Timeout::Absolute(1_000).remaining(400),
            Some(Duration::from_micros(60))
        );
        assert_eq!(
            Timeout::Absolute(1_000).remaining(2_000),
            Some(Duration::ZERO)
        );
        assert_eq!(
            Timeout::Absolute(1_000).remaining(-5),
            Some(Duration::from_micros(100))
        );
        assert!(Timeout::Relative(u64::MAX).remaining(0).is_some());
    }

    proptest! {
        #[test]
        fn arbitrary_parameters_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), size_of::<Parameters>()),
        ) {
            let mut p: Parameters = [0; size_of::<Parameters>()];
            p.copy_from_slice(&bytes);
            let request = KernelRequest::parse(&p);
            let _ = Disconnect::from_flags(request.flags);
            let _ = AssociateParams::parse(&p);
            let _ = SendParams::parse(&p);
            let _ = ReceiveParams::parse(&p);
            let _ = SendDatagramParams::parse(&p);
            let _ = ReceiveDatagramParams::parse(&p);
            let _ = SetEventParams::parse(&p);
            if let Err(s) = QueryInformationParams::parse(&p) {
                prop_assert_eq!(s, NtStatus::NOT_IMPLEMENTED);
            }
        }

        #[test]
        fn disconnect_is_total_over_known_bits(flags in any::<u32>()) {
            let known = TDI_DISCONNECT_ABORT | TDI_DISCONNECT_RELEASE | TDI_DISCONNECT_WAIT;
            match Disconnect::from_flags(flags) {
                Ok(_) => prop_assert!(flags == 0 || flags & known != 0),
                Err(s) => {
                    prop_assert_eq!(s, NtStatus::INVALID_PARAMETER);
                    prop_assert!(flags != 0 && flags & known == 0);
                }
            }
        }

        #[test]
        fn timeout_never_panics(value in proptest::option::of(any::<i64>()), now in any::<i64>()) {
            let _ = Timeout::from_large_integer(value).remaining(now);
        }
    }
}
