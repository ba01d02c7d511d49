//! The hand-over between the dispatch fast path and the core DPC (`core::claim`), checked by
//! loom under every interleaving it explores: the core is never run by two at once, and work
//! queued by either side is always run by someone — a DPC that finds the core taken is never
//! lost. Run by `cargo xtask test` as
//! `RUSTFLAGS="--cfg loom" cargo test --test loom_claim` (its own target directory).
#![cfg(loom)]

#[allow(dead_code)]
#[path = "../src/core/claim.rs"]
mod claim;

use claim::CoreClaim;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The model's world: the claim, the work queued for the core, a flag that catches two
/// runners inside the core at once, and the DPC's "queued" flag.
#[derive(Default)]
struct World {
    claim: CoreClaim,
    /// Requests and frames queued and not yet run.
    queued: AtomicUsize,
    /// Set while a runner is inside the core.
    inside: AtomicBool,
    /// The DPC is queued (KeInsertQueueDpc: queueing a queued DPC is a no-op).
    dpc_queued: AtomicBool,
}

impl World {
    /// The core's run: drains everything queued. Panics if another runner is inside.
    fn run_core(&self) {
        assert!(
            !self.inside.swap(true, Ordering::SeqCst),
            "two runners inside the core"
        );
        // The queues are under their spin locks: taking everything is one atomic step.
        self.queued.swap(0, Ordering::SeqCst);
        self.inside.store(false, Ordering::SeqCst);
    }

    /// A dispatch routine: queues a request, then runs the core itself if it can claim it
    /// (the fast path), or queues the DPC.
    fn dispatch(&self) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.claim.try_claim() {
            self.run_core();
            if self.claim.release() {
                self.dpc_queued.store(true, Ordering::SeqCst);
            }
        } else {
            self.dpc_queued.store(true, Ordering::SeqCst);
        }
    }

    /// The DPC's body: runs the core if it can claim it, else leaves it to the runner.
    fn dpc(&self) {
        if self.claim.claim_for_dpc() {
            self.run_core();
            if self.claim.release() {
                self.dpc_queued.store(true, Ordering::SeqCst);
            }
        }
    }

    /// A frame's arrival: queued, then the DPC queued (NDIS's receive indication).
    fn indicate(&self) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.dpc_queued.store(true, Ordering::SeqCst);
    }

    /// What the processors do once the threads are done: run the DPC while it is queued.
    fn drain_dpcs(&self) {
        while self.dpc_queued.swap(false, Ordering::SeqCst) {
            self.dpc();
        }
    }
}

#[test]
fn a_dpc_that_meets_the_fast_path_is_never_lost() {
    loom::model(|| {
        let world = Arc::new(World::default());
        // A frame arrives and its DPC runs on one processor while a thread dispatches on
        // the other.
        let dpc = {
            let world = world.clone();
            loom::thread::spawn(move || {
                world.indicate();
                if world.dpc_queued.swap(false, Ordering::SeqCst) {
                    world.dpc();
                }
            })
        };
        world.dispatch();
        dpc.join().unwrap();
        world.drain_dpcs();
        assert_eq!(
            world.queued.load(Ordering::SeqCst),
            0,
            "work left with no runner"
        );
    });
}

#[test]
fn two_dispatching_threads_and_a_dpc_share_the_core() {
    // Three threads: bound the preemptions so that the search ends (loom's own advice; the
    // races above need at most two).
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let world = Arc::new(World::default());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let world = world.clone();
                loom::thread::spawn(move || world.dispatch())
            })
            .collect();
        // A frame arrives and the DPC runs while both dispatch.
        world.indicate();
        if world.dpc_queued.swap(false, Ordering::SeqCst) {
            world.dpc();
        }
        for thread in threads {
            thread.join().unwrap();
        }
        world.drain_dpcs();
        assert_eq!(
            world.queued.load(Ordering::SeqCst),
            0,
            "work left with no runner"
        );
    });
}
