//! Debugger output (`DbgPrintEx`): kept in a ring of recent lines that tests can read, and
//! printed to stderr when `TCPIP_DBGPRINT=1`.

use super::kernel::{KernelHandle, KernelInner};
use std::collections::VecDeque;
use std::ffi::CStr;
use std::sync::Mutex;

/// The environment variable that echoes debugger output to stderr.
pub const DBGPRINT_ENV: &str = "TCPIP_DBGPRINT";

pub(crate) struct DebugLog {
    lines: Mutex<VecDeque<String>>,
    capacity: usize,
    echo: bool,
}

impl DebugLog {
    pub(crate) fn new(capacity: usize) -> DebugLog {
        DebugLog {
            lines: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            echo: std::env::var(DBGPRINT_ENV).is_ok_and(|v| v == "1"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `DbgPrintEx(component, level, format, arg)`. The driver always passes `"%s"` and one
/// string; any other format is recorded as is.
///
/// # Safety
/// `format` and (for `"%s"`) `arg` are NUL-terminated strings.
pub(crate) unsafe fn print(
    kernel: Option<&KernelInner>,
    level: u32,
    format: *const u8,
    arg: *const u8,
) {
    // SAFETY: forwarded caller contract.
    let format = unsafe { CStr::from_ptr(format.cast()) };
    let text = if format.to_bytes() == b"%s" && !arg.is_null() {
        // SAFETY: forwarded caller contract.
        unsafe { CStr::from_ptr(arg.cast()) }.to_string_lossy()
    } else {
        format.to_string_lossy()
    };
    let line = text.trim_end_matches('\n').to_owned();
    let Some(kernel) = kernel else {
        eprintln!("{line}");
        return;
    };
    let log = &kernel.debug;
    if log.echo {
        eprintln!("[dbg {level}] {line}");
    }
    let mut lines = log.lock();
    if lines.len() == log.capacity {
        lines.pop_front();
    }
    if log.capacity > 0 {
        lines.push_back(line);
    }
}

impl KernelHandle {
    /// The most recent `DbgPrintEx` lines (without trailing newlines), oldest first. Any IRQL.
    pub fn debug_output(&self) -> Vec<String> {
        let _api = self.api();
        self.0.debug.lock().iter().cloned().collect()
    }

    /// Takes and clears the recorded `DbgPrintEx` lines. Any IRQL.
    pub fn take_debug_output(&self) -> Vec<String> {
        let _api = self.api();
        self.0.debug.lock().drain(..).collect()
    }
}
