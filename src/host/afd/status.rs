//! Winsock error codes and msafd's `TranslateNtStatusError` (contract §4.3).

use crate::nt::NtStatus;
use std::fmt;

/// A Winsock error code (`WSAGetLastError`), with the `WSA*` values of `winerror.h`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WsaError(pub i32);

macro_rules! wsa_errors {
    ($($name:ident = $value:literal),* $(,)?) => {
        impl WsaError {
            $(pub const $name: WsaError = WsaError($value);)*

            /// The `WSA*` name of a known code.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

wsa_errors! {
    WSA_IO_PENDING = 997,
    WSA_OPERATION_ABORTED = 995,
    WSAEINTR = 10004,
    WSAEFAULT = 10014,
    WSAEINVAL = 10022,
    WSAEACCES = 10013,
    WSAEWOULDBLOCK = 10035,
    WSAENOTSOCK = 10038,
    WSAEMSGSIZE = 10040,
    WSAENOPROTOOPT = 10042,
    WSAEOPNOTSUPP = 10045,
    WSAEAFNOSUPPORT = 10047,
    WSAEADDRINUSE = 10048,
    WSAEADDRNOTAVAIL = 10049,
    WSAENETDOWN = 10050,
    WSAENETUNREACH = 10051,
    WSAECONNABORTED = 10053,
    WSAECONNRESET = 10054,
    WSAENOBUFS = 10055,
    WSAEISCONN = 10056,
    WSAENOTCONN = 10057,
    WSAESHUTDOWN = 10058,
    WSAETIMEDOUT = 10060,
    WSAECONNREFUSED = 10061,
    WSAEHOSTUNREACH = 10065,
}

impl fmt::Debug for WsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "WSA error {}", self.0),
        }
    }
}

impl fmt::Display for WsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for WsaError {}

/// `STATUS_ACCESS_VIOLATION`.
pub const STATUS_ACCESS_VIOLATION: NtStatus = NtStatus(0xC000_0005_u32 as i32);
/// `STATUS_END_OF_FILE`.
pub const STATUS_END_OF_FILE: NtStatus = NtStatus(0xC000_0011_u32 as i32);
/// `STATUS_NO_MEMORY`.
pub const STATUS_NO_MEMORY: NtStatus = NtStatus(0xC000_0017_u32 as i32);
/// `STATUS_PROTOCOL_NOT_SUPPORTED`.
pub const STATUS_PROTOCOL_NOT_SUPPORTED: NtStatus = NtStatus(0xC000_0213_u32 as i32);
/// `STATUS_IO_TIMEOUT`.
pub const STATUS_IO_TIMEOUT: NtStatus = NtStatus(0xC000_00B5_u32 as i32);
/// `STATUS_CONNECTION_ABORTED`.
pub const STATUS_CONNECTION_ABORTED: NtStatus = NtStatus(0xC000_0241_u32 as i32);
/// `STATUS_SHARING_VIOLATION`.
pub const STATUS_SHARING_VIOLATION: NtStatus = NtStatus(0xC000_0043_u32 as i32);

/// msafd's `TranslateNtStatusError`: the Winsock error a program sees for an NTSTATUS, `None`
/// for `STATUS_SUCCESS` (`NO_ERROR`). Exactly the table of contract §4.3, including its gaps:
/// every status not listed (notably `STATUS_CONNECTION_REFUSED`, `STATUS_CONNECTION_RESET`,
/// `STATUS_CONNECTION_ABORTED`, `STATUS_IO_TIMEOUT`, `STATUS_SHARING_VIOLATION`) becomes
/// `WSAENETDOWN`.
pub fn translate_nt_status(status: NtStatus) -> Option<WsaError> {
    let error = match status {
        NtStatus::SUCCESS => return None,
        NtStatus::CANT_WAIT => WsaError::WSAEWOULDBLOCK,
        NtStatus::TIMEOUT => WsaError::WSAETIMEDOUT,
        NtStatus::FILE_CLOSED => WsaError::WSAECONNRESET,
        STATUS_END_OF_FILE => WsaError::WSAESHUTDOWN,
        NtStatus::PENDING => WsaError::WSA_IO_PENDING,
        NtStatus::BUFFER_TOO_SMALL | NtStatus::BUFFER_OVERFLOW => WsaError::WSAEMSGSIZE,
        STATUS_NO_MEMORY | NtStatus::INSUFFICIENT_RESOURCES => WsaError::WSAENOBUFS,
        NtStatus::INVALID_CONNECTION => WsaError::WSAENOTCONN,
        STATUS_PROTOCOL_NOT_SUPPORTED => WsaError::WSAEAFNOSUPPORT,
        NtStatus::INVALID_ADDRESS => WsaError::WSAEADDRNOTAVAIL,
        NtStatus::REMOTE_NOT_LISTENING | NtStatus::REMOTE_DISCONNECT => WsaError::WSAECONNREFUSED,
        NtStatus::NETWORK_UNREACHABLE => WsaError::WSAENETUNREACH,
        NtStatus::HOST_UNREACHABLE => WsaError::WSAEHOSTUNREACH,
        NtStatus::INVALID_PARAMETER => WsaError::WSAEINVAL,
        NtStatus::CANCELLED => WsaError::WSA_OPERATION_ABORTED,
        NtStatus::ADDRESS_ALREADY_EXISTS => WsaError::WSAEADDRINUSE,
        NtStatus::LOCAL_DISCONNECT => WsaError::WSAECONNABORTED,
        STATUS_ACCESS_VIOLATION => WsaError::WSAEFAULT,
        NtStatus::ACCESS_DENIED => WsaError::WSAEACCES,
        NtStatus::NOT_IMPLEMENTED => WsaError::WSAEOPNOTSUPP,
        _ => WsaError::WSAENETDOWN,
    };
    Some(error)
}

/// `Ok(())` for `STATUS_SUCCESS`, the translated error otherwise. Informational and warning
/// statuses other than `STATUS_SUCCESS` are errors to msafd too (it compares with
/// `STATUS_SUCCESS`, not `NT_SUCCESS`).
pub fn check(status: NtStatus) -> Result<(), WsaError> {
    match translate_nt_status(status) {
        None => Ok(()),
        Some(error) => Err(error),
    }
}
