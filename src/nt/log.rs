//! Kernel debugger output through `DbgPrintEx`, with levels.
//!
//! Messages are formatted into a fixed stack buffer (no allocation, so logging works when the
//! pool is exhausted and at DISPATCH_LEVEL) and passed as one `%s` argument, component
//! `DPFLTR_IHVNETWORK_ID` (80).
//!
//! What shows by default: NT and ReactOS pass `DPFLTR_ERROR_LEVEL` messages of every component
//! to the debugger unless someone turned them off, and filter the other levels through the
//! component's mask, which is 0 at boot. So errors ([`Level::Error`]) and the driver's rare
//! lifecycle events ([`Level::Notice`]: load, unload, adapter binding) go out at
//! `DPFLTR_ERROR_LEVEL` and reach COM1 or WinDbg with nothing set; the rest needs the mask:
//! `ed nt!Kd_IHVNETWORK_Mask 0xf` in WinDbg, or the `IHVNETWORK` DWORD (`0xf`) under
//! `HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\Debug Print Filter` before boot.

use crate::nt::sys;
use core::fmt::{self, Write};

/// `DPFLTR_IHVNETWORK_ID`: the component id for third-party network drivers.
pub const COMPONENT: u32 = 80;
/// Longest message, including the trailing NUL; longer ones are cut.
const MAX_MESSAGE: usize = 256;

/// How important a message is, and so whether the debugger shows it by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Something failed. Shown by default; the text says `error:`.
    Error,
    /// A rare lifecycle event a developer needs to see by default (load, unload, binding).
    /// Printed at `DPFLTR_ERROR_LEVEL` so no filter hides it; the text does not say `error`.
    Notice,
    /// `DPFLTR_WARNING_LEVEL`: shown when the component mask has bit 1.
    Warning,
    /// `DPFLTR_TRACE_LEVEL`: shown when the component mask has bit 2.
    Trace,
    /// `DPFLTR_INFO_LEVEL`: shown when the component mask has bit 3.
    Info,
}

impl Level {
    /// The `DPFLTR_*_LEVEL` passed to `DbgPrintEx`.
    pub const fn dpfltr_level(self) -> u32 {
        match self {
            Level::Error | Level::Notice => 0,
            Level::Warning => 1,
            Level::Trace => 2,
            Level::Info => 3,
        }
    }

    /// What the message says after `tcpip: `.
    const fn tag(self) -> &'static str {
        match self {
            Level::Error => "error: ",
            _ => "",
        }
    }
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
        // Text never reaches the last byte, so the whole buffer is a C string as it stands.
        match self.bytes.get_mut(self.len) {
            Some(nul) => {
                *nul = 0;
                self.bytes.get(..=self.len).unwrap_or(&self.bytes)
            }
            None => &self.bytes,
        }
    }
}

impl Default for Message {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for Message {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // The last byte stays 0: the terminator `as_c_bytes` may fall back on.
        if let Some(room) = self.bytes.get_mut(self.len..MAX_MESSAGE - 1) {
            let take = room.len().min(s.len());
            for (slot, byte) in room.iter_mut().zip(s.as_bytes()) {
                *slot = *byte;
            }
            self.len += take;
        }
        Ok(())
    }
}

/// Prints `args` at `level` with the `tcpip: ` prefix. Any IRQL ≤ DISPATCH_LEVEL.
pub fn print(level: Level, args: fmt::Arguments<'_>) {
    print_as("tcpip", level, args);
}

/// Prints `args` at `level` with the `<image>: ` prefix of another image of the project (the
/// tdiecho test driver). Any IRQL ≤ DISPATCH_LEVEL.
pub fn print_as(image: &str, level: Level, args: fmt::Arguments<'_>) {
    let mut message = Message::new();
    // `Message` never reports an error; text beyond its size is cut.
    let _ = writeln!(message, "{image}: {}{args}", level.tag());
    let text = message.as_c_bytes();
    // SAFETY: the format is a NUL-terminated "%s" and `text` is NUL-terminated and lives across
    // the call.
    unsafe {
        sys::DbgPrintEx(
            COMPONENT,
            level.dpfltr_level(),
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
