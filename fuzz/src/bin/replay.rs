//! Runs `ingress` (or, for paths naming `control`, `control`) inputs without libFuzzer, with
//! timings, to debug the harness itself, one after the other on the kept world as the fuzzer
//! runs them (`tcpip_fuzz::session`):
//! `cargo run --manifest-path fuzz/Cargo.toml --bin replay -- FILE...`.

use std::time::Instant;

fn main() {
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).expect("input");
        let started = Instant::now();
        if path.contains("control") {
            tcpip_fuzz::control::run(&data);
        } else {
            tcpip_fuzz::ingress::run(&data);
        }
        println!(
            "{path}: ok in {:.1} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    tcpip_fuzz::session::finish();
}
