//! What recording one latency costs (`latency.rs`): the clock read and the
//! record together, the record alone, and the record from two threads into
//! one histogram at once (an array's, shared by every worker thread).

mod harness;

use harness::{ns_per_iter, row};
use std::time::{Duration, Instant};
use wasmraid::latency::Histogram;

const ITERS: u64 = 2_000_000;

fn main() {
    let h = Histogram::default();
    row("Instant::now() alone", ns_per_iter(7, ITERS, |_| drop(std::hint::black_box(Instant::now()))), "ns", None);
    row("record(took)", ns_per_iter(7, ITERS, |i| h.record(std::hint::black_box(Duration::from_nanos(i * 37)))), "ns", None);
    row("since(Instant::now()): clock + record", ns_per_iter(7, ITERS, |_| h.since(std::hint::black_box(Instant::now()))), "ns", None);
    let shared: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(|| ns_per_iter(7, ITERS, |i| h.record(std::hint::black_box(Duration::from_nanos(i * 37)))))).collect();
        handles.into_iter().map(|t| t.join().expect("thread")).collect()
    });
    row("record(took), 2 threads, one histogram", shared.iter().sum::<f64>() / 2.0, "ns", None);
    std::hint::black_box(h.snapshot());
}
