//! One [`World`] per process, kept between the inputs of `ingress` and `control`: after each
//! input, what it changed is put back as the setup made it, with the driver still loaded
//! (`world::reset`): loading the driver, opening seven files, warming it up and making two
//! handshakes would be most of an input's time otherwise. A world that cannot be put back is
//! torn down after the input, with the full checks of unload (every request completed, no
//! leak, no verifier violation), and so is every world after [`INPUTS_PER_WORLD`] inputs; the
//! next input gets a fresh world. The world alive when libFuzzer exits is not torn down (the
//! host model's thread-locals are gone by then): its inputs had the per-input checks only;
//! `replay` calls [`finish`].

use crate::world::{Warm, World};
use std::cell::RefCell;
use std::sync::Once;

/// Inputs a world serves at most before it is torn down and checked at unload.
pub const INPUTS_PER_WORLD: usize = 1_000;

/// The world kept between inputs; left as it is when the thread exits (its kernel's
/// teardown needs thread-locals that may be gone).
struct Kept(Option<World>);

impl Drop for Kept {
    fn drop(&mut self) {
        std::mem::forget(self.0.take());
    }
}

thread_local! {
    static KEPT: RefCell<Kept> = const { RefCell::new(Kept(None)) };
}

/// Runs `input` against the kept world (a fresh one, warmed up as `warm` says, if there is
/// none), then puts the world back or tears it down and makes a fresh one. Panics (a crash
/// for the fuzzer) on any failed check.
pub fn run(warm: Warm, input: impl FnOnce(&mut World)) {
    keep_freed_memory();
    let kept = KEPT.with_borrow_mut(|kept| kept.0.take());
    let mut world = kept.unwrap_or_else(|| World::load(warm));
    world.begin_input();
    input(&mut world);
    // The world is put back (or the next one made) here, by the input that changed it, so
    // that what an input covers does not depend on the input before it (for libFuzzer's
    // coverage feedback).
    let world = if world.end_input() && world.inputs() < INPUTS_PER_WORLD {
        world
    } else {
        world.finish();
        World::load(warm)
    };
    KEPT.with_borrow_mut(|kept| kept.0 = Some(world));
}

/// Keeps the memory the driver frees in the process. By default glibc gives a freed heap top
/// back to the kernel past 128 KiB and serves blocks from 128 KiB up with their own mappings,
/// so the buffers each input's sockets free and the next ones allocate again (64 KiB each)
/// cost page faults: a quarter of the `ingress` target's time without AddressSanitizer (whose
/// allocator has its own settings, and ignores these).
fn keep_freed_memory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: mallopt only changes allocator parameters; no allocation is in progress on
        // this thread. 32 MiB is glibc's largest mmap threshold.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        }
    });
}

/// Tears down the kept world, if any, with the checks of unload.
pub fn finish() {
    if let Some(world) = KEPT.with_borrow_mut(|kept| kept.0.take()) {
        world.finish();
    }
}
