//! An array: legs laid out by a proven layout, with real parity.
//!
//! Reads split at chunk boundaries and go straight to the legs; a chunk on a
//! failed leg is rebuilt from the stripe's equations. Writes lock their
//! stripe and, for every run of columns touched by the same data chunks,
//! compute parity by read-modify-write or reconstruct-write, whichever reads
//! less. A leg that returns an I/O error is marked dead and the array goes
//! on degraded; it never returns wrong data.

mod decode;
pub mod health;
mod io;
mod locks;
pub mod reload;
mod scrub;

use crate::device::BlockDevice;
use crate::layout::map::MapError;
use crate::layout::proven::ProvenLayout;
use arc_swap::ArcSwap;
use health::{ArrayLeg, Health};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The threads that spread a large stripe's leg I/O, apart from rayon's
/// global pool so nothing else (a compile, say) can hold them up.
pub(crate) fn io_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("wasmraid-io-{i}"))
            .build()
            .unwrap_or_else(|_| {
                // Without threads of its own the pool runs on the caller.
                rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap_or_else(|e| panic!("no I/O thread pool: {e}"))
            })
    })
}

/// Why an array request failed.
#[derive(Debug, thiserror::Error)]
pub enum ArrayError {
    #[error("{0}")]
    Map(#[from] MapError),
    #[error("stripe {stripe}: {detail}")]
    Unrecoverable { stripe: u64, detail: String },
    #[error("{len} bytes at {offset} go beyond the array's {size} bytes")]
    OutOfRange { offset: u64, len: u64, size: u64 },
}

impl From<ArrayError> for std::io::Error {
    fn from(e: ArrayError) -> Self {
        match e {
            ArrayError::OutOfRange { .. } => std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
            other => std::io::Error::other(other.to_string()),
        }
    }
}

/// I/O counters, as `status` shows them.
#[derive(Default)]
pub struct Counters {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub read_bytes: AtomicU64,
    pub written_bytes: AtomicU64,
    pub degraded_reads: AtomicU64,
    pub rmw: AtomicU64,
    pub rcw: AtomicU64,
    pub full_stripe: AtomicU64,
    pub flushes: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

pub struct Array {
    name: String,
    legs: Vec<ArrayLeg>,
    layout: ArcSwap<ProvenLayout>,
    chunk_bytes: u64,
    locks: locks::StripeLocks,
    plans: decode::Plans,
    pub counters: Counters,
}

impl Array {
    /// An array over `legs` (device, data offset in bytes) laid out by a
    /// layout proven for exactly these legs.
    pub fn new(name: impl Into<String>, legs: Vec<(Arc<dyn BlockDevice>, u64)>, layout: ProvenLayout) -> Self {
        let chunk_bytes = layout.geometry.chunk_bytes();
        Array {
            name: name.into(),
            legs: legs.into_iter().map(|(d, off)| ArrayLeg::new(d, off)).collect(),
            layout: ArcSwap::from_pointee(layout),
            chunk_bytes,
            locks: locks::StripeLocks::new(4096),
            plans: decode::Plans::default(),
            counters: Counters::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn layout(&self) -> Arc<ProvenLayout> {
        self.layout.load_full()
    }

    pub fn legs(&self) -> &[ArrayLeg] {
        &self.legs
    }

    /// Mark leg `i` failed (the operator's `leg fail`).
    pub fn fail_leg(&self, i: usize, why: &str) -> bool {
        match self.legs.get(i) {
            Some(leg) => {
                let newly = leg.fail(why);
                if newly {
                    tracing::error!(array = %self.name, leg = i, device = %leg.device.describe(), "leg failed: {why}");
                }
                true
            }
            None => false,
        }
    }

    /// dm-raid style health string, e.g. `AAD`.
    pub fn health_chars(&self) -> String {
        self.legs.iter().map(|l| l.health().char()).collect()
    }

    /// Legs that are dead.
    pub fn dead_legs(&self) -> usize {
        self.legs.iter().filter(|l| l.health() == Health::Dead).count()
    }
}

impl BlockDevice for Array {
    fn size(&self) -> u64 {
        self.layout.load().capacity_bytes()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.read(buf, offset).map_err(|e| {
            Counters::add(&self.counters.errors, 1);
            e.into()
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> std::io::Result<()> {
        self.write(buf, offset, fua).map_err(|e| {
            Counters::add(&self.counters.errors, 1);
            e.into()
        })
    }

    fn flush(&self) -> std::io::Result<()> {
        self.flush_legs().map_err(Into::into)
    }

    fn discard(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.discard_range(offset, len).map_err(Into::into)
    }

    fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> std::io::Result<()> {
        self.zero_range(offset, len, fua).map_err(Into::into)
    }

    fn describe(&self) -> String {
        let l = self.layout.load();
        format!("{} ({} over {} legs)", self.name, l.name, self.legs.len())
    }
}

#[cfg(test)]
mod tests;
