//! Locks.
//!
//! One generic [`Lock<T, B>`](lock::Lock) over an unsafe [`Backend`](lock::Backend) trait, the
//! shape of Rust-for-Linux's `kernel::sync::lock`: the lock owns the data it protects, and the
//! guard that gives access restores the IRQL when dropped.

pub mod lock;
pub mod spinlock;

pub use lock::{Guard, Lock};
pub use spinlock::SpinLock;
