//! Kernel debugger output through `DbgPrintEx`, with levels.
//!
//! Messages are formatted into a fixed stack buffer (no allocation, so logging works when the
//! pool is exhausted and at DISPATCH_LEVEL) and passed as one `%s` argument. With WinDbg attached,
//! enable them with `ed nt!Kd_IHVNETWORK_Mask 0xf` (or the DPFLTR level bits you want).

use crate::nt::sys;
use core::fmt::{self, Write};

/// `DPFLTR_IHVNETWORK_ID`: the component id for third-party network drivers.
pub const COMPONENT: u32 = 80;
/// Longest message, including the trailing NUL; longer ones are cut.
const MAX_MESSAGE: usize = 256;

/// `DPFLTR_*_LEVEL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Level {
    Error = 0,
    Warning = 1,
    Trace = 2,
    Info = 3,
}

/// A NUL-terminated message being formatted; overflowing text is dropped.
pub struct Message {
    bytes: [u8; MAX_MESSAGE],
    len: usize,
}

impl Message {
    /// An empty message.
    pub const fn new() -> Self {
        Self {
            bytes: [0; MAX_MESSAGE],
            len: 0,
        }
    }

    /// The text written so far followed by its NUL.
    pub fn as_c_bytes(&mut self) -> &[u8] {
        self.bytes[self.len] = 0;
        &self.bytes[..=self.len]
    }
}

impl Default for Message {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for Message {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_MESSAGE - 1 - self.len;
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Prints `args` at `level` with the `tcpip: ` prefix. Any IRQL ≤ DISPATCH_LEVEL.
pub fn print(level: Level, args: fmt::Arguments<'_>) {
    let mut message = Message::new();
    // `Message` never reports an error; text beyond its size is cut.
    let _ = writeln!(message, "tcpip: {args}");
    let text = message.as_c_bytes();
    // SAFETY: the format is a NUL-terminated "%s" and `text` is NUL-terminated and lives across
    // the call.
    unsafe {
        sys::DbgPrintEx(
            COMPONENT,
            level as u32,
            c"%s".as_ptr().cast(),
            text.as_ptr(),
        )
    };
}

/// `log!(Level::Trace, "fmt", args…)`: debugger output at the given level.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {
        $crate::nt::log::print($level, format_args!($($arg)*))
    };
}
