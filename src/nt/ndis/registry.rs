//! Reading registry values: `ZwOpenKey`, `ZwQueryValueKey` (`KeyValuePartialInformation`) and
//! `ZwClose`, all exported by ReactOS's ntoskrnl. PASSIVE_LEVEL throughout.

use crate::nt::NtStatus;
use crate::nt::sys::ndis as sys;
use crate::nt::types::*;
use core::mem::size_of;

/// The largest value read: room for a few dotted-quad strings in UTF-16.
pub const VALUE_BUFFER: usize = 512;

/// An open registry key, closed when dropped.
pub struct Key(HANDLE);

/// A value's data.
#[derive(Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// `REG_DWORD`.
    Dword(u32),
    /// `REG_SZ` or `REG_MULTI_SZ`: UTF-16LE bytes, NULs included.
    Strings(&'a [u8]),
    /// Any other type.
    Other,
}

/// A counted string over `text`. Any IRQL.
fn counted(text: &[u16]) -> Result<UNICODE_STRING, NtStatus> {
    let bytes =
        u16::try_from(core::mem::size_of_val(text)).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    Ok(UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: text.as_ptr().cast_mut(),
    })
}

impl Key {
    /// Opens `path` (`\Registry\Machine\...`, UTF-16) for reading. PASSIVE_LEVEL.
    pub fn open(path: &[u16]) -> Result<Key, NtStatus> {
        let mut name = counted(path)?;
        let mut attributes = OBJECT_ATTRIBUTES {
            Length: size_of::<OBJECT_ATTRIBUTES>() as u32,
            RootDirectory: core::ptr::null_mut(),
            ObjectName: &mut name,
            Attributes: OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
            SecurityDescriptor: core::ptr::null_mut(),
            SecurityQualityOfService: core::ptr::null_mut(),
        };
        let mut handle: HANDLE = core::ptr::null_mut();
        // SAFETY: valid attributes and name for the call; a valid out pointer.
        NtStatus(unsafe { sys::ZwOpenKey(&mut handle, KEY_READ, &mut attributes) }).ok()?;
        Ok(Key(handle))
    }

    /// Reads value `name` (UTF-16) into `buffer`. Values larger than the buffer are an error
    /// (`STATUS_BUFFER_OVERFLOW`). PASSIVE_LEVEL.
    pub fn query<'b>(
        &self,
        name: &[u16],
        buffer: &'b mut [u32; VALUE_BUFFER / 4],
    ) -> Result<Value<'b>, NtStatus> {
        let mut name = counted(name)?;
        let mut length = 0u32;
        // SAFETY: an open key, a valid name, and a writable, 4-aligned buffer of its size.
        let status = unsafe {
            sys::ZwQueryValueKey(
                self.0,
                &mut name,
                KEY_VALUE_PARTIAL_INFORMATION_CLASS,
                buffer.as_mut_ptr().cast(),
                VALUE_BUFFER as u32,
                &mut length,
            )
        };
        NtStatus(status).ok()?;
        let [_title, kind, data_length, data @ ..] = &buffer[..] else {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        };
        let data: &[u32] = data;
        // SAFETY: reinterpreting initialised `u32`s as bytes.
        let bytes = unsafe {
            core::slice::from_raw_parts(data.as_ptr().cast::<u8>(), core::mem::size_of_val(data))
        };
        let data = bytes
            .get(..*data_length as usize)
            .ok_or(NtStatus::BUFFER_OVERFLOW)?;
        Ok(match *kind {
            REG_DWORD => match data {
                [a, b, c, d, ..] => Value::Dword(u32::from_le_bytes([*a, *b, *c, *d])),
                _ => Value::Other,
            },
            REG_SZ | REG_MULTI_SZ => Value::Strings(data),
            _ => Value::Other,
        })
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: our handle, closed once.
        unsafe { sys::ZwClose(self.0) };
    }
}
