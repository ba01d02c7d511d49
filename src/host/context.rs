//! Who is running on the current thread: which kernel instance, which driver entry point, and
//! whether the code executing is the driver's (so that its allocations are attributed to it).
//!
//! Several kernels can live in one process (cargo runs tests in parallel threads), so the
//! kernel is a thread-local that the model's own threads inherit. The "inside the driver"
//! marker is the current kernel's pool tracker: it is set by the model around every call into
//! driver code and cleared inside every model function, and the global allocator reads it (see
//! [`super::pool`]). All the allocator-visible thread-locals are `const`-initialised `Cell`s, so
//! reading them never allocates.

use super::kernel::KernelInner;
use super::pool::PoolTracker;
use super::verifier::Entry;
use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::ptr;
use std::sync::Arc;
use std::thread::ThreadId;

thread_local! {
    static KERNEL: RefCell<Option<Arc<KernelInner>>> = const { RefCell::new(None) };
    static DRIVER: Cell<*const PoolTracker> = const { Cell::new(ptr::null()) };
    static ENTRY: Cell<Entry> = const { Cell::new(Entry::Client) };
    static NOTED_SITE: Cell<Option<&'static Location<'static>>> = const { Cell::new(None) };
}

/// The current thread's kernel, if it has one.
pub(crate) fn try_current() -> Option<Arc<KernelInner>> {
    KERNEL.try_with(|k| k.borrow().clone()).ok().flatten()
}

/// The current thread's kernel. Panics on threads that do not belong to a kernel.
pub(crate) fn current() -> Arc<KernelInner> {
    try_current().expect(
        "this thread has no NT kernel model: create the Kernel on it, use Kernel::spawn, or call \
         KernelHandle::enter",
    )
}

/// Makes `kernel` the current thread's kernel until dropped (on the same thread; dropped on
/// another thread it changes nothing).
pub(crate) struct KernelContext {
    previous: Option<Arc<KernelInner>>,
    thread: ThreadId,
}

impl KernelContext {
    pub(crate) fn install(kernel: Arc<KernelInner>) -> KernelContext {
        let previous = KERNEL.with(|k| k.borrow_mut().replace(kernel));
        KernelContext {
            previous,
            thread: std::thread::current().id(),
        }
    }
}

impl Drop for KernelContext {
    fn drop(&mut self) {
        if std::thread::current().id() != self.thread {
            return;
        }
        let previous = self.previous.take();
        // The thread may be exiting; then there is nothing left to restore.
        let _ = KERNEL.try_with(|k| *k.borrow_mut() = previous);
    }
}

/// The pool tracker of the driver executing on this thread, or null outside the driver.
pub(crate) fn driver_tracker() -> *const PoolTracker {
    DRIVER.try_with(Cell::get).unwrap_or(ptr::null())
}

/// The driver entry point executing on this thread.
pub(crate) fn entry() -> Entry {
    ENTRY.try_with(Cell::get).unwrap_or(Entry::Client)
}

/// Records the driver's call site for its next allocation.
pub(crate) fn note_site(location: &'static Location<'static>) {
    let _ = NOTED_SITE.try_with(|s| s.set(Some(location)));
}

/// Takes the call site noted by the driver's pool wrappers, if any.
pub(crate) fn take_noted_site() -> Option<&'static Location<'static>> {
    NOTED_SITE.try_with(|s| s.take()).ok().flatten()
}

/// A stable, non-zero identity of the current thread (the address of one of its
/// thread-locals), used as the owner word of spin locks and mutexes.
pub(crate) fn thread_token() -> usize {
    NOTED_SITE.with(|s| ptr::from_ref(s) as usize)
}

/// Inside a model function: clears the "inside the driver" marker, so that allocations the
/// model makes on the driver's behalf are not attributed to it; restores it when dropped.
pub(crate) struct ModelScope {
    saved: *const PoolTracker,
}

impl ModelScope {
    pub(crate) fn enter() -> ModelScope {
        let saved = DRIVER
            .try_with(|d| d.replace(ptr::null()))
            .unwrap_or(ptr::null());
        ModelScope { saved }
    }

    /// Whether the model function was called by driver code.
    pub(crate) fn called_by_driver(&self) -> bool {
        !self.saved.is_null()
    }
}

impl Drop for ModelScope {
    fn drop(&mut self) {
        let _ = DRIVER.try_with(|d| d.set(self.saved));
    }
}

/// Around a call from the model into a routine: sets the entry point and the "inside the
/// driver" marker (`tracker`, null for code that is not the driver's, such as completion
/// routines); restores both when dropped.
pub(crate) struct EntryScope {
    driver: *const PoolTracker,
    entry: Entry,
    site: Option<&'static Location<'static>>,
}

impl EntryScope {
    pub(crate) fn enter(tracker: *const PoolTracker, entry: Entry) -> EntryScope {
        EntryScope {
            driver: DRIVER.with(|d| d.replace(tracker)),
            entry: ENTRY.with(|e| e.replace(entry)),
            site: NOTED_SITE.with(|s| s.take()),
        }
    }
}

impl Drop for EntryScope {
    fn drop(&mut self) {
        let _ = DRIVER.try_with(|d| d.set(self.driver));
        let _ = ENTRY.try_with(|e| e.set(self.entry));
        let _ = NOTED_SITE.try_with(|s| s.set(self.site));
    }
}
