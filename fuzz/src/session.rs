//! One [`World`] per process, kept between the inputs of `ingress` and `control` that leave it
//! intact (`world::reset`): loading the driver, opening seven files and making two
//! handshakes is most of an input's time otherwise. A world an input changed is torn down
//! after it, with the full checks of unload (every request completed, no leak, no verifier
//! violation), and so is every world after [`INPUTS_PER_WORLD`] inputs; the next input gets
//! a fresh world. The world alive when libFuzzer exits is not torn down (the host model's
//! thread-locals are gone by then): its inputs had the per-input checks only; `replay` calls
//! [`finish`].

use crate::world::World;
use std::cell::RefCell;

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

/// Runs `input` against the kept world (a fresh one if there is none), then keeps the world
/// or tears it down and makes a fresh one. Panics (a crash for the fuzzer) on any failed
/// check.
pub fn run(input: impl FnOnce(&mut World)) {
    let kept = KEPT.with_borrow_mut(|kept| kept.0.take());
    let mut world = kept.unwrap_or_else(World::load);
    world.begin_input();
    input(&mut world);
    // The next world is made here, by the input that changed this one, so that what an input
    // covers does not depend on the input before it (for libFuzzer's coverage feedback).
    let world = if world.end_input() && world.inputs() < INPUTS_PER_WORLD {
        world
    } else {
        world.finish();
        World::load()
    };
    KEPT.with_borrow_mut(|kept| kept.0 = Some(world));
}

/// Tears down the kept world, if any, with the checks of unload.
pub fn finish() {
    if let Some(world) = KEPT.with_borrow_mut(|kept| kept.0.take()) {
        world.finish();
    }
}
