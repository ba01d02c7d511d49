//! Who is asking: the caller's right to change the network configuration.
//!
//! Windows' tcpip.sys lets only administrators change routes, ARP entries and addresses from
//! user mode (an access check of the caller's token against an administrators-only security
//! descriptor); kernel-mode callers are trusted. The same question here is asked with what
//! ReactOS exports for it: the subject context the caller runs under
//! (`SeCaptureSubjectContext`), its effective token (the impersonation token if any, else the
//! primary token, as `SeQuerySubjectContextToken` picks it), read under
//! `SeLockSubjectContext`, and `SeTokenIsAdmin` (membership of the Administrators alias, which
//! LocalSystem's token has: dhcpcsvc, a service, may configure).

use crate::nt::irp::{Irp, RequestorMode};
use crate::nt::sys;
use crate::nt::types::SECURITY_SUBJECT_CONTEXT;

/// Whether the requester of `irp` may change the network configuration: kernel-mode
/// requesters always, user-mode ones if their token is an administrator's. PASSIVE_LEVEL, in
/// the requester's context (dispatch routines of IRP_MJ_DEVICE_CONTROL run there).
pub fn may_configure(irp: &Irp) -> bool {
    if irp.requestor_mode() == RequestorMode::Kernel {
        return true;
    }
    let mut context = SECURITY_SUBJECT_CONTEXT {
        ClientToken: core::ptr::null_mut(),
        ImpersonationLevel: 0,
        PrimaryToken: core::ptr::null_mut(),
        ProcessAuditId: core::ptr::null_mut(),
    };
    // SAFETY: `context` is a writable SECURITY_SUBJECT_CONTEXT on our stack; at PASSIVE_LEVEL.
    unsafe { sys::SeCaptureSubjectContext(&mut context) };
    // SAFETY: the context was just captured; locked while its tokens are read, as Windows does.
    unsafe { sys::SeLockSubjectContext(&mut context) };
    let token = if context.ClientToken.is_null() {
        context.PrimaryToken
    } else {
        context.ClientToken
    };
    // SAFETY: `token` comes from the captured, locked context, which holds a reference on it.
    let admin = !token.is_null() && unsafe { sys::SeTokenIsAdmin(token) } != 0;
    // SAFETY: unlocks and releases what was locked and captured above, once each.
    unsafe {
        sys::SeUnlockSubjectContext(&mut context);
        sys::SeReleaseSubjectContext(&mut context);
    }
    admin
}
