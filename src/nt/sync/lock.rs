//! A lock that owns its data, generic over the kernel primitive behind it.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

/// The kernel primitive behind a [`Lock`].
///
/// # Safety
/// `lock` must give the caller exclusive access until the matching `unlock`, and `unlock` must
/// undo exactly what `lock` did (including the IRQL change) using the returned guard state.
pub unsafe trait Backend {
    /// The lock word, e.g. a `KSPIN_LOCK`.
    type State;
    /// What acquisition returns and release needs back, e.g. the previous IRQL.
    type GuardState;

    /// A fresh, unlocked state.
    fn init() -> Self::State;

    /// Acquires the lock.
    ///
    /// # Safety
    /// `state` points to a `State` made by [`Backend::init`] that does not move while locked.
    unsafe fn lock(state: *mut Self::State) -> Self::GuardState;

    /// Releases the lock.
    ///
    /// # Safety
    /// The caller holds the lock through a guard state returned by `lock` on this processor.
    unsafe fn unlock(state: *mut Self::State, guard: &Self::GuardState);
}

/// Data of type `T` protected by a kernel lock of kind `B`.
pub struct Lock<T: ?Sized, B: Backend> {
    state: UnsafeCell<B::State>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock gives exclusive access to `T`, so sharing it across threads only needs `T` to
// be sendable; `B::State` is a kernel lock word designed to be shared.
unsafe impl<T: ?Sized + Send, B: Backend> Sync for Lock<T, B> {}
// SAFETY: moving the lock moves the data; nothing in `B::State` is tied to a thread while
// unlocked.
unsafe impl<T: ?Sized + Send, B: Backend> Send for Lock<T, B> {}

impl<T, B: Backend> Lock<T, B> {
    /// A new unlocked lock around `data`.
    pub fn new(data: T) -> Self {
        Self {
            state: UnsafeCell::new(B::init()),
            data: UnsafeCell::new(data),
        }
    }
}

impl<T: ?Sized, B: Backend> Lock<T, B> {
    /// Acquires the lock; the guard releases it (and restores the IRQL) when dropped.
    #[track_caller]
    pub fn lock(&self) -> Guard<'_, T, B> {
        // SAFETY: `state` is owned by `self`, which is borrowed (so it does not move) for the
        // guard's lifetime.
        let guard = unsafe { B::lock(self.state.get()) };
        Guard {
            lock: self,
            state: guard,
            _not_send: PhantomData,
        }
    }
}

/// Exclusive access to the data of a [`Lock`]. Not `Send`: a spin lock is released on the
/// processor that acquired it.
pub struct Guard<'a, T: ?Sized, B: Backend> {
    lock: &'a Lock<T, B>,
    state: B::GuardState,
    _not_send: PhantomData<*mut ()>,
}

impl<T: ?Sized, B: Backend> Deref for Guard<'_, T, B> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held, so no other reference to the data exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized, B: Backend> DerefMut for Guard<'_, T, B> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held, and `&mut self` makes this the only access.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized, B: Backend> Drop for Guard<'_, T, B> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the lock with this guard state.
        unsafe { B::unlock(self.lock.state.get(), &self.state) };
    }
}
