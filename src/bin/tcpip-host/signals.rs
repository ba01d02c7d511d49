//! Ctrl-C and SIGTERM as a stop request: both signals are blocked in every thread (the mask is
//! set before any thread starts, and threads inherit it) and one thread takes them with
//! `sigwait(3)`, so no handler runs in signal context. The first signal asks the program to
//! stop; a second one ends the process at once.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set when the program should stop.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn request(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given; sigaddset adds valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts afterwards, and
/// starts the thread that turns them into `stop`. Call first thing in `main`.
pub fn install(stop: Stop) -> io::Result<()> {
    let set = signal_set();
    // SAFETY: `set` is a valid, initialised signal set; the old mask is not wanted.
    let error = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if error != 0 {
        return Err(io::Error::from_raw_os_error(error));
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let mut signal = 0;
                // SAFETY: `set` is a valid signal set and `signal` a valid place for the result.
                if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                    return;
                }
                if stop.requested() {
                    eprintln!("\ntcpip-host: second signal, exiting at once");
                    std::process::exit(130);
                }
                stop.request();
            }
        })?;
    Ok(())
}
