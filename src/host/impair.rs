//! A lossy, slow, reordering wire for the TAP adapter, for kernels without netem
//! (`CONFIG_NET_SCH_NETEM`): [`Impairment`] says what to do to the frames, a [`DelayLine`]
//! does it to the frames of one direction.
//!
//! The semantics are netem's `loss P reorder R delay D J`: each frame is dropped with
//! probability `loss`; of the rest, a fraction `reorder` is sent at once, overtaking the frames
//! still waiting, and the others wait `delay ± jitter` (uniform). Jitter alone does not reorder
//! (as with netem's default FIFO child): a frame never leaves before one that entered the line
//! before it unless it was picked for reordering. The decisions come from a seeded generator,
//! so a run's pattern of drops depends only on the seed and the sequence of frames.
//!
//! A line holds at most [`MAX_QUEUED`] frames; a frame past that is dropped and counted apart
//! ([`LineStats::overflowed`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most frames one line holds.
pub const MAX_QUEUED: usize = 8192;

/// What to do to the frames of each direction. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    /// The probability that a frame is dropped (0.02 for netem's `loss 2%`).
    pub loss: f64,
    /// The probability that a frame that is not dropped skips the delay.
    pub reorder: f64,
    pub delay: Duration,
    /// The delay varies uniformly within `delay ± jitter` (at most `delay`).
    pub jitter: Duration,
    /// Seeds the decisions; each direction derives its own generator from it.
    pub seed: u64,
}

impl Impairment {
    /// netem's `loss 2% reorder 5% delay 20ms 5ms`, with `seed`.
    pub fn lossy_wan(seed: u64) -> Impairment {
        Impairment {
            loss: 0.02,
            reorder: 0.05,
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            seed,
        }
    }
}

/// What a line did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineStats {
    /// Frames dropped by the loss probability.
    pub dropped: u64,
    /// Frames sent at once, ahead of the waiting ones.
    pub reordered: u64,
    /// Frames dropped because [`MAX_QUEUED`] were waiting.
    pub overflowed: u64,
}

/// splitmix64: a small seeded generator for the decisions.
struct Generator(u64);

impl Generator {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `true` with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Uniform in `0..=max`.
    fn up_to(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.next() % nanos.saturating_add(1))
    }
}

/// A frame waiting in a line; ordered by due time, then by arrival.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Waiting {
    due: Instant,
    order: u64,
    frame: Vec<u8>,
}

struct State {
    queue: BinaryHeap<Reverse<Waiting>>,
    generator: Generator,
    /// The latest due time given to a frame that was not reordered.
    last_due: Instant,
    arrivals: u64,
    stop: bool,
    stats: LineStats,
}

struct Shared {
    impairment: Impairment,
    state: Mutex<State>,
    wake: Condvar,
}

/// One direction of the impaired wire: frames go in by [`DelayInput::push`] and come out, on
/// the line's own thread, through the sink it was started with. Stopping it (or dropping it)
/// discards the frames still waiting.
pub struct DelayLine {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// The entry of a [`DelayLine`], for the thread that feeds it.
#[derive(Clone)]
pub struct DelayInput(Arc<Shared>);

impl DelayLine {
    /// Starts a line named `name` whose generator is seeded with `impairment.seed ^ salt`. On
    /// the line's thread, `make_sink` runs first and returns the sink every frame leaves
    /// through (so the sink can hold what must live on that thread).
    pub fn start<S, F>(
        name: String,
        impairment: Impairment,
        salt: u64,
        make_sink: F,
    ) -> io::Result<DelayLine>
    where
        F: FnOnce() -> S + Send + 'static,
        S: FnMut(&[u8]),
    {
        let shared = Arc::new(Shared {
            impairment,
            state: Mutex::new(State {
                queue: BinaryHeap::new(),
                generator: Generator(impairment.seed ^ salt),
                last_due: Instant::now(),
                arrivals: 0,
                stop: false,
                stats: LineStats::default(),
            }),
            wake: Condvar::new(),
        });
        let line = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || deliver(&line, make_sink()))?;
        Ok(DelayLine {
            shared,
            thread: Some(thread),
        })
    }

    /// The line's entry.
    pub fn input(&self) -> DelayInput {
        DelayInput(self.shared.clone())
    }

    /// What the line did so far.
    pub fn stats(&self) -> LineStats {
        lock(&self.shared.state).stats
    }

    /// Stops the thread and discards the waiting frames. Returns whether the sink panicked.
    /// Idempotent.
    pub fn stop(&mut self) -> bool {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_all();
        self.thread.take().is_some_and(|t| t.join().is_err())
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop();
    }
}

impl DelayInput {
    /// Hands a frame (copied) to the line, which drops, delays or reorders it; a stopped line
    /// discards it uncounted.
    pub fn push(&self, frame: &[u8]) {
        let impairment = &self.0.impairment;
        let mut state = lock(&self.0.state);
        if state.stop {
            return;
        }
        if state.generator.chance(impairment.loss) {
            state.stats.dropped += 1;
            return;
        }
        if state.queue.len() >= MAX_QUEUED {
            state.stats.overflowed += 1;
            return;
        }
        let now = Instant::now();
        let due = if state.generator.chance(impairment.reorder) {
            state.stats.reordered += 1;
            now
        } else {
            let jitter = impairment.jitter.min(impairment.delay);
            let delay = impairment.delay - jitter + state.generator.up_to(jitter * 2);
            let due = (now + delay).max(state.last_due);
            state.last_due = due;
            due
        };
        let order = state.arrivals;
        state.arrivals += 1;
        state.queue.push(Reverse(Waiting {
            due,
            order,
            frame: frame.to_vec(),
        }));
        drop(state);
        self.0.wake.notify_one();
    }
}

/// The line's thread: hands each frame to `sink` when it is due, until stopped.
fn deliver(shared: &Shared, mut sink: impl FnMut(&[u8])) {
    let mut state = lock(&shared.state);
    while !state.stop {
        let now = Instant::now();
        state = match state.queue.peek().map(|Reverse(next)| next.due) {
            Some(due) if due <= now => {
                let next = state.queue.pop();
                drop(state);
                if let Some(Reverse(next)) = next {
                    sink(&next.frame);
                }
                lock(&shared.state)
            }
            Some(due) => {
                shared
                    .wake
                    .wait_timeout(state, due - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => shared.wake.wait(state).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn line(impairment: Impairment) -> (DelayLine, mpsc::Receiver<(Instant, Vec<u8>)>) {
        let (tx, rx) = mpsc::channel();
        let line = DelayLine::start("test-line".into(), impairment, 0, move || {
            move |frame: &[u8]| {
                let _ = tx.send((Instant::now(), frame.to_vec()));
            }
        })
        .expect("start a line");
        (line, rx)
    }

    fn none(seed: u64) -> Impairment {
        Impairment {
            loss: 0.0,
            reorder: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            seed,
        }
    }

    #[test]
    fn delays_in_order_within_the_jitter() {
        let impairment = Impairment {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            ..none(1)
        };
        let (mut line, rx) = line(impairment);
        let input = line.input();
        let mut sent = Vec::new();
        for i in 0..50u8 {
            sent.push(Instant::now());
            input.push(&[i]);
        }
        for (i, at) in sent.into_iter().enumerate() {
            let (out, frame) = rx.recv_timeout(Duration::from_secs(5)).expect("a frame");
            assert_eq!(frame, [i as u8], "FIFO without reordering");
            assert!(out - at >= Duration::from_millis(15), "{:?}", out - at);
        }
        assert!(!line.stop());
        assert_eq!(line.stats(), LineStats::default());
    }

    #[test]
    fn drops_and_reorders_about_as_often_as_asked() {
        let impairment = Impairment {
            loss: 0.1,
            reorder: 0.2,
            delay: Duration::from_millis(2),
            ..none(7)
        };
        let (mut line, rx) = line(impairment);
        let input = line.input();
        let total = 2000u32;
        for i in 0..total {
            input.push(&i.to_le_bytes());
        }
        let stats = line.stats();
        let delivered = u64::from(total) - stats.dropped;
        let mut received = Vec::new();
        for _ in 0..delivered {
            let (_, frame) = rx.recv_timeout(Duration::from_secs(5)).expect("a frame");
            received.push(u32::from_le_bytes(frame.try_into().expect("4 bytes")));
        }
        assert!(!line.stop());
        assert!((140..=260).contains(&stats.dropped), "{stats:?}");
        assert!((250..=470).contains(&stats.reordered), "{stats:?}");
        assert_eq!(stats.overflowed, 0);
        let out_of_order = received.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(out_of_order > 0, "some frames overtook others");
        received.sort_unstable();
        received.dedup();
        assert_eq!(received.len() as u64, delivered, "nothing duplicated");
    }
}
