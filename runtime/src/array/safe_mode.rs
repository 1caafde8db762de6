//! md's safe mode: the superblocks say the array is clean whenever no
//! write has been in flight for a moment, so a crash (or power loss) of an
//! idle array leaves nothing torn. The first write after that marks the
//! array dirty, durably, before it reaches any leg.
//!
//! Why it matters: a parity array that crashed dirty and lost a leg may
//! hold torn stripes whose missing chunk cannot be rebuilt (the write
//! hole), so assemble refuses it; one that crashed clean is safe to start
//! degraded, and an interrupted rebuild simply resumes.

use super::{Array, ArrayError};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct SafeMode {
    /// What the superblocks say: clean (no write in flight).
    clean: AtomicBool,
    inflight: AtomicU64,
    last_write_ms: AtomicU64,
    started: Instant,
    /// Serializes marking clean and dirty.
    lock: Mutex<()>,
}

impl SafeMode {
    pub fn new(clean: bool) -> SafeMode {
        SafeMode { clean: AtomicBool::new(clean), inflight: AtomicU64::new(0), last_write_ms: AtomicU64::new(0), started: Instant::now(), lock: Mutex::new(()) }
    }
}

/// Held by a request that writes the array.
pub struct Writing<'a> {
    mode: &'a SafeMode,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.mode.last_write_ms.store(self.mode.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.mode.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Array {
    /// A write is starting: make sure the superblocks say dirty first.
    /// `write_start` when the superblocks already say dirty; None when
    /// they must be written first (the caller then takes `write_start`).
    pub(super) fn try_write_start(&self) -> Option<Writing<'_>> {
        let mode = &self.safe_mode;
        mode.inflight.fetch_add(1, Ordering::SeqCst);
        let writing = Writing { mode };
        (self.meta.is_none() || !mode.clean.load(Ordering::SeqCst)).then_some(writing)
    }

    pub(super) fn write_start(&self) -> Result<Writing<'_>, ArrayError> {
        let mode = &self.safe_mode;
        mode.inflight.fetch_add(1, Ordering::SeqCst);
        let writing = Writing { mode };
        if self.meta.is_some() && mode.clean.load(Ordering::SeqCst) {
            let _one = mode.lock.lock();
            if mode.clean.load(Ordering::SeqCst) {
                self.write_superblocks(Some(true))?;
                mode.clean.store(false, Ordering::SeqCst);
            }
        }
        Ok(writing)
    }

    /// Mark the array clean when no write is in flight and none came for
    /// `idle`: flush every leg, then say so in the superblocks. True when
    /// it did.
    pub fn mark_clean_if_idle(&self, idle: Duration) -> Result<bool, ArrayError> {
        let mode = &self.safe_mode;
        if self.meta.is_none() || mode.clean.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let now = mode.started.elapsed().as_millis() as u64;
        if mode.inflight.load(Ordering::SeqCst) > 0 || now.saturating_sub(mode.last_write_ms.load(Ordering::Relaxed)) < idle.as_millis() as u64 {
            return Ok(false);
        }
        let _one = mode.lock.lock();
        // Writers raise `inflight` then read `clean`; we set `clean` then
        // read `inflight`: one of us sees the other. A writer that sees
        // clean waits on the lock until the superblocks say so, then marks
        // the array dirty again.
        mode.clean.store(true, Ordering::SeqCst);
        if mode.inflight.load(Ordering::SeqCst) > 0 {
            mode.clean.store(false, Ordering::SeqCst);
            return Ok(false);
        }
        let result = self.flush_legs().and_then(|()| self.write_superblocks(Some(false)));
        if result.is_err() {
            mode.clean.store(false, Ordering::SeqCst);
        }
        result.map(|()| true)
    }

    /// After a clean stop.
    pub(super) fn set_clean(&self, clean: bool) {
        self.safe_mode.clean.store(clean, Ordering::SeqCst);
    }
}
