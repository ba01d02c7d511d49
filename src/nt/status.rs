//! `NTSTATUS` as a typed value.

use core::fmt;

/// An `NTSTATUS` code. Severity is in the top two bits: negative values are errors, values with
/// the top bits `01`/`10` are informational/warning, and [`NtStatus::is_success`] follows
/// `NT_SUCCESS` (`status >= 0`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct NtStatus(pub i32);

macro_rules! statuses {
    ($($name:ident = $value:literal),* $(,)?) => {
        impl NtStatus {
            $(pub const $name: NtStatus = NtStatus($value as u32 as i32);)*

            /// The `STATUS_*` name of a known code.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 as u32 {
                    $($value => Some(concat!("STATUS_", stringify!($name))),)*
                    _ => None,
                }
            }
        }
    };
}

statuses! {
    SUCCESS = 0x0000_0000,
    TIMEOUT = 0x0000_0102,
    PENDING = 0x0000_0103,
    BUFFER_OVERFLOW = 0x8000_0005,
    DEVICE_BUSY = 0x8000_0011,
    UNSUCCESSFUL = 0xC000_0001,
    NOT_IMPLEMENTED = 0xC000_0002,
    INVALID_INFO_CLASS = 0xC000_0003,
    INFO_LENGTH_MISMATCH = 0xC000_0004,
    ACCESS_VIOLATION = 0xC000_0005,
    INVALID_HANDLE = 0xC000_0008,
    INVALID_PARAMETER = 0xC000_000D,
    INVALID_DEVICE_REQUEST = 0xC000_0010,
    ACCESS_DENIED = 0xC000_0022,
    BUFFER_TOO_SMALL = 0xC000_0023,
    OBJECT_TYPE_MISMATCH = 0xC000_0024,
    OBJECT_NAME_NOT_FOUND = 0xC000_0034,
    INSUFFICIENT_RESOURCES = 0xC000_009A,
    NOT_SUPPORTED = 0xC000_00BB,
    REMOTE_NOT_LISTENING = 0xC000_00BC,
    CANT_WAIT = 0xC000_00D8,
    INVALID_BUFFER_SIZE = 0xC000_0206,
    CANCELLED = 0xC000_0120,
    FILE_CLOSED = 0xC000_0128,
    LOCAL_DISCONNECT = 0xC000_013B,
    REMOTE_DISCONNECT = 0xC000_013C,
    INVALID_CONNECTION = 0xC000_0140,
    INVALID_ADDRESS = 0xC000_0141,
    TOO_MANY_ADDRESSES = 0xC000_0209,
    ADDRESS_ALREADY_EXISTS = 0xC000_020A,
    CONNECTION_RESET = 0xC000_020D,
    CONNECTION_REFUSED = 0xC000_0236,
    DATA_NOT_ACCEPTED = 0xC000_021B,
    NETWORK_UNREACHABLE = 0xC000_023C,
    HOST_UNREACHABLE = 0xC000_023D,
    PROTOCOL_UNREACHABLE = 0xC000_023E,
    PORT_UNREACHABLE = 0xC000_023F,
    MORE_PROCESSING_REQUIRED = 0xC000_0016,
    DEVICE_DOES_NOT_EXIST = 0xC000_00C0,
    INVALID_DEVICE_STATE = 0xC000_0184,
    DUPLICATE_OBJECTID = 0xC000_022A,
    NOT_FOUND = 0xC000_0225,
}

impl NtStatus {
    /// `NT_SUCCESS(status)`.
    pub const fn is_success(self) -> bool {
        self.0 >= 0
    }

    /// The raw code as the kernel stores it.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// `Ok(())` for success codes, `Err(self)` otherwise.
    pub const fn ok(self) -> Result<(), NtStatus> {
        if self.is_success() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Debug for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "NTSTATUS({:#010x})", self.0 as u32),
        }
    }
}

impl fmt::Display for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
