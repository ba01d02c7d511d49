//! The registry as the driver reads it: keys by full path (case-insensitive), each with named
//! values, and the open handles of `ZwOpenKey`.

use crate::nt::types::{REG_DWORD, REG_MULTI_SZ, REG_SZ};
use std::collections::HashMap;
use std::sync::Mutex;

/// A registry value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegValue {
    Dword(u32),
    Sz(String),
    MultiSz(Vec<String>),
}

impl RegValue {
    /// The value's type and its data as stored (UTF-16LE strings with their NULs).
    pub(super) fn encode(&self) -> (u32, Vec<u8>) {
        let wide = |text: &str, out: &mut Vec<u8>| {
            for unit in text.encode_utf16().chain([0]) {
                out.extend_from_slice(&unit.to_le_bytes());
            }
        };
        match self {
            RegValue::Dword(value) => (REG_DWORD, value.to_le_bytes().to_vec()),
            RegValue::Sz(text) => {
                let mut data = Vec::new();
                wide(text, &mut data);
                (REG_SZ, data)
            }
            RegValue::MultiSz(texts) => {
                let mut data = Vec::new();
                for text in texts {
                    wide(text, &mut data);
                }
                data.extend_from_slice(&[0, 0]);
                (REG_MULTI_SZ, data)
            }
        }
    }
}

#[derive(Default)]
struct State {
    /// Lower-cased key path → (lower-cased value name → value).
    keys: HashMap<String, HashMap<String, RegValue>>,
    /// Open handle → key path.
    handles: HashMap<usize, String>,
    next: usize,
}

/// The model registry.
#[derive(Default)]
pub(crate) struct Registry {
    state: Mutex<State>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets a value, creating its key.
    pub(crate) fn set(&self, path: &str, name: &str, value: RegValue) {
        self.lock()
            .keys
            .entry(path.to_lowercase())
            .or_default()
            .insert(name.to_lowercase(), value);
    }

    /// `ZwOpenKey`: a handle, or `None` if the key does not exist.
    pub(super) fn open(&self, path: &str) -> Option<usize> {
        let mut state = self.lock();
        let path = path.to_lowercase();
        if !state.keys.contains_key(&path) {
            return None;
        }
        state.next += 4;
        let handle = 0x8000_0000 + state.next;
        state.handles.insert(handle, path);
        Some(handle)
    }

    /// `ZwQueryValueKey`: `None` for an unknown handle, `Some(None)` for a missing value.
    pub(super) fn query(&self, handle: usize, name: &str) -> Option<Option<RegValue>> {
        let state = self.lock();
        let path = state.handles.get(&handle)?;
        Some(
            state
                .keys
                .get(path)
                .and_then(|values| values.get(&name.to_lowercase()))
                .cloned(),
        )
    }

    /// `ZwClose`: false for an unknown handle.
    pub(super) fn close(&self, handle: usize) -> bool {
        self.lock().handles.remove(&handle).is_some()
    }

    /// Handles still open.
    pub(super) fn open_handles(&self) -> usize {
        self.lock().handles.len()
    }
}
