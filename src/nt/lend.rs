//! Pool blocks lent to smoltcp: the one place the driver makes a `&'static mut [u8]` out of
//! memory it takes back later.
//!
//! smoltcp 0.14 holds a TCP socket's rings as `ManagedSlice`s, either `Owned(Vec<u8>)`, which
//! it frees with the socket (so nothing could be recycled), or `Borrowed(&'a mut [u8])`. The
//! core keeps its sockets in `SocketSet<'static>`s, so a borrowed ring must be a
//! `&'static mut [u8]`; yet the block is only lent: the core wants it back for its lookaside
//! ([`crate::core::lookaside`]) once the socket is gone. [`Lent`] ties the two together: it
//! holds the *borrower* (the socket, and later the set that holds it) next to the blocks it
//! borrows, and the blocks come out of it, or are freed, only after the borrower is dropped.
//!
//! # The invariant
//!
//! The blocks of a [`Lent`] are reachable only through its borrower, and the borrower lives
//! inside the `Lent` until the `Lent` ends:
//! - [`Lent::tcp_socket`] hands the two references straight to smoltcp's `SocketBuffer`s: no
//!   other code ever sees them;
//! - a dropped `Lent` drops its borrower first: its fields are declared borrower first, and
//!   Rust drops fields in declaration order (the blocks are then freed to the pool);
//! - [`Lent::end`] drops the borrower, then gives the blocks back (to the lookaside);
//! - [`Lent::map`] moves the borrower into what holds it from then on (a socket into its
//!   set), keeping the blocks beside it.
//!
//! What the types cannot stop, and the core must not do: move the borrower out through the
//! `&mut` that [`Lent::get_mut`] gives (`core::mem::replace` of the socket or the set,
//! `SocketSet::remove` of the socket). The core does neither: a lent socket lives in its
//! `core::sockets` entry (and, between `Sockets::new_socket` and `Sockets::add`, in the
//! function opening it), and is only configured, polled and read through smoltcp's methods.
//!
//! A fresh block is zeroed when it is allocated (`pool::try_zeroed_block`), so Rust never
//! sees uninitialised bytes; a recycled one is lent as it was left, which shows nothing of
//! one connection to another because smoltcp never reads a ring byte it has not written
//! (see [`crate::core::lookaside`]).

use alloc::boxed::Box;
use core::mem::ManuallyDrop;
use smoltcp::socket::tcp;

/// A borrower of two pool blocks, with the blocks. Any IRQL ≤ DISPATCH_LEVEL (dropping or
/// ending it frees pool).
pub struct Lent<T> {
    /// Declared before `loan`: dropped first.
    borrower: T,
    loan: Loan,
}

/// Two pool blocks (a socket's receive and send rings) owned as `Box<[u8]>`s would own them,
/// kept as raw pointers while references to them are out.
struct Loan {
    blocks: [*mut [u8]; 2],
}

// SAFETY: a `Loan` owns its blocks as the `Box<[u8]>`s it was made from did (and `Box<[u8]>`
// is `Send`); it reads and writes nothing through the pointers, it only frees the blocks.
unsafe impl Send for Loan {}

impl Loan {
    fn new(blocks: [Box<[u8]>; 2]) -> Self {
        Self {
            blocks: blocks.map(Box::into_raw),
        }
    }

    /// The blocks as boxes again, without freeing them. Only once nothing borrows them.
    fn end(self) -> [Box<[u8]>; 2] {
        let loan = ManuallyDrop::new(self);
        // SAFETY: each pointer came from `Box::into_raw` in `new` and is turned back into its
        // box only here, once (`loan` is not dropped, so `Drop` does not free it again); the
        // caller, `Lent::end`, dropped the borrower first, so no reference to the block is
        // left (module invariant).
        loan.blocks.map(|block| unsafe { Box::from_raw(block) })
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        for &block in &self.blocks {
            // SAFETY: as in `end`: from `Box::into_raw`, freed once (`end` does not run
            // `Drop`), and only after the borrower: `Loan` is private, and the one `Lent`
            // holding it declares its borrower first, so the borrower has been dropped.
            drop(unsafe { Box::from_raw(block) });
        }
    }
}

impl Lent<tcp::Socket<'static>> {
    /// A TCP socket whose receive ring is `rx` and whose send ring is `tx`. (smoltcp panics on
    /// a receive ring over 1 GiB; the core's come from its configuration, 64 KiB at most by
    /// default, never from a request.) Any IRQL ≤ DISPATCH_LEVEL.
    pub fn tcp_socket(rx: Box<[u8]>, tx: Box<[u8]>) -> Self {
        let loan = Loan::new([rx, tx]);
        let [rx, tx] = loan.blocks;
        // SAFETY: both pointers come from `Box::into_raw` just above: non-null, aligned, of
        // initialised bytes (zeroed when the block was first allocated, written only since),
        // and distinct. `loan` owns the blocks and touches them only to free or return them
        // after the borrower has been dropped (module invariant); the two references go
        // straight into the socket's rings and nowhere else, and the socket is this `Lent`'s
        // borrower. So each reference is unique and outlives none of its uses.
        let (rx, tx): (&'static mut [u8], &'static mut [u8]) = unsafe { (&mut *rx, &mut *tx) };
        let socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
        Self {
            borrower: socket,
            loan,
        }
    }
}

impl<T> Lent<T> {
    /// The borrower. Any IRQL.
    pub fn get(&self) -> &T {
        &self.borrower
    }

    /// The borrower, to change. It must stay where it is (see the module's invariant).
    /// Any IRQL.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.borrower
    }

    /// Moves the borrower into what holds it from now on (`into` must keep it, not hand it
    /// elsewhere), keeping the blocks beside it; `into`'s second result is passed through.
    /// Any IRQL ≤ DISPATCH_LEVEL.
    pub fn map<U, R>(self, into: impl FnOnce(T) -> (U, R)) -> (Lent<U>, R) {
        let Lent { borrower, loan } = self;
        let (borrower, result) = into(borrower);
        (Lent { borrower, loan }, result)
    }

    /// Ends the loan: drops the borrower, then gives back the two blocks it borrowed.
    /// Any IRQL ≤ DISPATCH_LEVEL.
    pub fn end(self) -> [Box<[u8]>; 2] {
        let Lent { borrower, loan } = self;
        drop(borrower);
        loan.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn a_socket_borrows_the_blocks_as_its_rings_and_ending_the_loan_returns_them() {
        let rx = vec![0u8; 1024].into_boxed_slice();
        let tx = vec![0u8; 512].into_boxed_slice();
        let (rx_at, tx_at) = (rx.as_ptr(), tx.as_ptr());
        let socket = Lent::tcp_socket(rx, tx);
        assert_eq!(socket.get().recv_capacity(), 1024);
        assert_eq!(socket.get().send_capacity(), 512);
        let (moved, answer) = socket.map(|socket| ((socket, 7u8), 42));
        assert_eq!(answer, 42);
        assert_eq!(moved.get().1, 7);
        let [rx, tx] = moved.end();
        assert_eq!((rx.as_ptr(), rx.len()), (rx_at, 1024));
        assert_eq!((tx.as_ptr(), tx.len()), (tx_at, 512));
    }

    /// Under a leak checker or Miri: the blocks are freed once, after the socket.
    #[test]
    fn a_dropped_loan_frees_its_blocks() {
        let socket = Lent::tcp_socket(
            vec![0u8; 64].into_boxed_slice(),
            vec![0u8; 64].into_boxed_slice(),
        );
        drop(socket);
    }
}
