#![allow(dead_code)] // each bench binary uses a different part of the harness

//! A small measuring harness shared by the bench binaries: warm up, take
//! several samples, report the median, print ratios against a reference
//! measured in the same run.

use std::time::Instant;

/// Median nanoseconds per iteration of `f` over `samples` samples of
/// `iters` iterations each (after one warm-up sample).
pub fn ns_per_iter(samples: usize, iters: u64, mut f: impl FnMut(u64)) -> f64 {
    let mut results = Vec::with_capacity(samples);
    for round in 0..=samples {
        let started = Instant::now();
        for i in 0..iters {
            f(i);
        }
        if round > 0 {
            results.push(started.elapsed().as_nanos() as f64 / iters as f64);
        }
    }
    results.sort_by(f64::total_cmp);
    results[results.len() / 2]
}

/// Seconds taken by `f`, median of `samples` runs.
pub fn seconds(samples: usize, mut f: impl FnMut()) -> f64 {
    let mut results: Vec<f64> = (0..samples)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64()
        })
        .collect();
    results.sort_by(f64::total_cmp);
    results[results.len() / 2]
}

/// A pseudo-random walk over `0..n` (same sequence for every contender).
pub fn walk(i: u64, n: u64) -> u64 {
    (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) % n
}

/// One printed line: name, value, unit, and a ratio against a reference.
pub fn row(name: &str, value: f64, unit: &str, ratio: Option<(f64, &str)>) {
    match ratio {
        Some((r, against)) => println!("{name:<48} {value:>12.2} {unit:<10} {r:>6.2}x {against}"),
        None => println!("{name:<48} {value:>12.2} {unit:<10}"),
    }
}
