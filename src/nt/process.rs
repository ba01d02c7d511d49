//! Who opened a file: the requesting process and when, as the owner-PID and owner-module
//! tables of the IP helper (`GetExtendedTcpTable`/`GetExtendedUdpTable`, `netstat -o`)
//! report them.

use crate::nt::sys;
use crate::nt::system::system_time;

/// The process that opened an address file, and when.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessOwner {
    /// The process id (`PsGetCurrentProcessId` in the requester's context).
    pub pid: u32,
    /// The system time of the open, in 100 ns units since 1601 (0 if it could not be read).
    pub created: u64,
}

impl ProcessOwner {
    /// The calling process, now. PASSIVE_LEVEL, in the requester's context (IRP_MJ_CREATE's
    /// dispatch routine runs there).
    pub fn current() -> Self {
        // SAFETY: no preconditions; a process id is a small integer carried in a HANDLE.
        let pid = unsafe { sys::PsGetCurrentProcessId() } as usize;
        ProcessOwner {
            pid: u32::try_from(pid).unwrap_or(u32::MAX),
            created: system_time().unwrap_or(0),
        }
    }
}
