//! Latency histograms kept in the data path. Fixed log2 buckets of
//! microseconds (at most 16 µs, 32 µs, ... 2^24 µs ≈ 16.8 s, then the rest),
//! one `AtomicU64` per bucket and one for the sum: recording is a clock read,
//! a few integer operations and two relaxed adds, with no lock and no
//! allocation, so every request and every leg I/O can afford one. The
//! bucket of a duration is found by counting leading zeros, not by
//! searching a table of bounds.
//!
//! A histogram is read (`snapshot`) into `status --json`, and `metrics.rs`
//! encodes that as a Prometheus histogram: the two agree by construction.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// log2 of the first bucket's bound, in microseconds (16 µs: below what a
/// leg I/O through the kernel takes, so the first bucket says "very fast").
const FIRST_LOG2: u32 = 4;
/// Buckets with a bound; one more holds what is slower than the last.
pub const BOUNDED: usize = 21;

/// The bound of bucket `i` (`i < BOUNDED`) in microseconds.
pub const fn bound_us(i: usize) -> u64 {
    1 << (FIRST_LOG2 as usize + i)
}

/// The bucket of a duration of `ns` nanoseconds: the first whose bound
/// is at least it (Prometheus's `le`), or `BOUNDED` when none is.
#[inline]
pub fn bucket(ns: u64) -> usize {
    // Rounded up, so that `ns <= bound * 1000` exactly when `us <= bound`.
    let us = ns.div_ceil(1000);
    if us <= 1 << FIRST_LOG2 {
        return 0;
    }
    // ceil(log2(us)) for us >= 2.
    let log2 = u64::BITS - (us - 1).leading_zeros();
    ((log2 - FIRST_LOG2) as usize).min(BOUNDED)
}

/// One histogram: counts per bucket and the sum of what was recorded.
pub struct Histogram {
    buckets: [AtomicU64; BOUNDED + 1],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum_ns: AtomicU64::new(0) }
    }
}

impl Histogram {
    #[inline]
    pub fn record(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket(ns)].fetch_add(1, Ordering::Relaxed);
        // Wraps only after 584 years of summed latency.
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Record the time since `started`.
    #[inline]
    pub fn since(&self, started: Instant) {
        self.record(started.elapsed())
    }

    /// The counts so far. Taken bucket by bucket while I/O goes on, so the
    /// sum may include a sample a bucket does not yet show, never more.
    pub fn snapshot(&self) -> Snapshot {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        Snapshot { count: counts.iter().sum(), sum_ns: self.sum_ns.load(Ordering::Relaxed), le_us: (0..BOUNDED).map(bound_us).collect(), counts }
    }
}

/// A histogram as `status --json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Samples recorded (the sum of `counts`).
    pub count: u64,
    /// Their summed duration, nanoseconds.
    pub sum_ns: u64,
    /// The bucket bounds, microseconds (inclusive).
    pub le_us: Vec<u64>,
    /// Samples per bucket, not cumulative: `counts[i]` took more than
    /// `le_us[i - 1]` and at most `le_us[i]`; the last one, more than the
    /// largest bound.
    pub counts: Vec<u64>,
}

/// Reads and writes, timed apart.
#[derive(Default)]
pub struct IoLatency {
    pub read: Histogram,
    pub write: Histogram,
}

impl IoLatency {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({"read": self.read.snapshot(), "write": self.write.snapshot()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_lands_in_the_first_bucket_whose_bound_holds_it() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(16_000), 0, "a bound is inclusive");
        assert_eq!(bucket(16_001), 1);
        assert_eq!(bucket(32_000), 1);
        assert_eq!(bucket(32_001), 2);
        assert_eq!(bucket(1_000_000), 6, "1 ms: at most 1024 µs");
        assert_eq!(bucket(bound_us(BOUNDED - 1) * 1000), BOUNDED - 1);
        assert_eq!(bucket(bound_us(BOUNDED - 1) * 1000 + 1), BOUNDED);
        assert_eq!(bucket(u64::MAX), BOUNDED);
        // Against the plain definition, around every bound.
        for i in 0..BOUNDED {
            for ns in [bound_us(i) * 1000 - 1, bound_us(i) * 1000, bound_us(i) * 1000 + 1] {
                let want = (0..BOUNDED).find(|&j| ns <= bound_us(j) * 1000).unwrap_or(BOUNDED);
                assert_eq!(bucket(ns), want, "{ns} ns");
            }
        }
    }

    #[test]
    fn bounds_run_from_16_us_to_about_17_s() {
        assert_eq!(bound_us(0), 16);
        assert_eq!(bound_us(BOUNDED - 1), 16_777_216);
    }

    #[test]
    fn a_snapshot_counts_and_sums_what_was_recorded() {
        let h = Histogram::default();
        h.record(Duration::from_micros(10));
        h.record(Duration::from_micros(100));
        h.record(Duration::from_micros(100));
        h.record(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.sum_ns, 60_000_210_000);
        assert_eq!(s.counts.len(), BOUNDED + 1);
        assert_eq!(s.le_us.len(), BOUNDED);
        assert_eq!(s.counts[0], 1);
        assert_eq!(s.counts[3], 2, "100 µs: over 64, at most 128");
        assert_eq!(s.counts[BOUNDED], 1);
    }
}
