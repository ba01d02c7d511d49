//! Debugger output (`DbgPrintEx`): what the kernel debugger would show is kept in a ring of
//! recent lines that tests can read; everything is printed to stderr when `TCPIP_DBGPRINT=1`.
//!
//! The filter is NT's and ReactOS's: a message at `DPFLTR_ERROR_LEVEL` (0) always reaches the
//! debugger; other levels only when the component's mask (`Kd_<COMPONENT>_Mask`, 0 at boot) has
//! their bit, set here with [`KernelHandle::set_debug_print_mask`]. A level of 32 or more is a
//! mask itself. The model keeps one mask for every component.

use super::kernel::{KernelHandle, KernelInner};
use std::collections::VecDeque;
use std::ffi::CStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable that echoes debugger output to stderr.
pub const DBGPRINT_ENV: &str = "TCPIP_DBGPRINT";

pub(crate) struct DebugLog {
    lines: Mutex<VecDeque<String>>,
    capacity: usize,
    echo: bool,
    /// The component mask: which levels besides errors the debugger shows.
    mask: AtomicU32,
}

impl DebugLog {
    pub(crate) fn new(capacity: usize) -> DebugLog {
        DebugLog {
            lines: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            echo: std::env::var(DBGPRINT_ENV).is_ok_and(|v| v == "1"),
            mask: AtomicU32::new(0),
        }
    }

    /// Whether the debugger shows a message at `level`: errors always, the rest per the mask.
    fn shows(&self, level: u32) -> bool {
        let bits = if level < 32 { 1 << level } else { level };
        bits & (1 | self.mask.load(Ordering::Relaxed)) != 0
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
    if !log.shows(level) {
        return;
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
    /// Sets the debug print mask, as `ed nt!Kd_IHVNETWORK_Mask MASK` does in WinDbg: bit N lets
    /// level N through (errors always pass). Any IRQL.
    pub fn set_debug_print_mask(&self, mask: u32) {
        let _api = self.api();
        self.0.debug.mask.store(mask, Ordering::Relaxed);
    }

    /// The most recent `DbgPrintEx` lines that the debugger shows (without trailing newlines), oldest first. Any IRQL.
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
