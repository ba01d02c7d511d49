//! `IOCTL_IP_INTERFACE_INFO` (0x120040, `METHOD_BUFFERED`, any access): the adapters behind
//! Windows' `GetInterfaceInfo`, as an `IP_INTERFACE_INFO`: a `LONG` count, then one
//! `IP_ADAPTER_INDEX_MAP` (a `ULONG` index and a 128-`WCHAR` name, 260 bytes) per interface
//! that is not loopback. The name is `\DEVICE\TCPIP_` followed by the interface name (the
//! adapter's `{GUID}` once the NDIS binding names it). ReactOS's own iphlpapi builds this table
//! from the entity queries instead.
#![forbid(unsafe_code)]

use crate::info::model::{LinkKind, Source};
use crate::nt::NtStatus;
use crate::nt::pool;
use alloc::vec::Vec;

/// `IOCTL_IP_INTERFACE_INFO`: `_TCP_CTL_CODE(0x10, METHOD_BUFFERED, FILE_ANY_ACCESS)`.
pub const IOCTL_IP_INTERFACE_INFO: u32 = 0x0012_0040;

/// `MAX_ADAPTER_NAME`: the `WCHAR`s of a name, terminator included.
const NAME_CHARS: usize = 128;
/// The name prefix Windows gives adapters.
const PREFIX: &[u8] = b"\\DEVICE\\TCPIP_";
/// Bytes of one `IP_ADAPTER_INDEX_MAP`.
pub const ENTRY_LEN: usize = 4 + 2 * NAME_CHARS;

/// The `IP_INTERFACE_INFO` answer. DISPATCH_LEVEL (under the core lock), allocates.
pub fn interface_info(source: &dyn Source) -> Result<Vec<u8>, NtStatus> {
    let mut answer = pool::try_zeroed(4)?;
    let mut count = 0u32;
    source.interfaces(&mut |interface| {
        if interface.kind == LinkKind::Loopback {
            return Ok(());
        }
        count = count.saturating_add(1);
        let mut entry = [0u8; ENTRY_LEN];
        let (index, name) = entry.split_at_mut(4);
        index.copy_from_slice(&interface.index.to_le_bytes());
        let text = PREFIX.iter().chain(interface.name);
        // One WCHAR per byte of the ASCII name; the last one stays the terminator.
        for (slot, byte) in name.chunks_exact_mut(2).take(NAME_CHARS - 1).zip(text) {
            slot.copy_from_slice(&u16::from(*byte).to_le_bytes());
        }
        pool::try_reserve(&mut answer, ENTRY_LEN)?;
        answer.extend_from_slice(&entry);
        Ok(())
    })?;
    if let Some(head) = answer.get_mut(..4) {
        head.copy_from_slice(&count.to_le_bytes());
    }
    Ok(answer)
}
