//! The write-intent bitmap in memory: one state per region (the table in
//! `meta::bitmap_state`), pending-write counters, and persistence to every
//! writable leg (copy A everywhere, flushed, then copy B, flushed) before a
//! write that needs it may proceed. Clearing is lazy and batched: the
//! daemon marks regions clean once idle for `daemon_sleep`.

use super::{Array, ArrayError};
use crate::meta::bitmap_state::{Action, State, parity_trusted, transition};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Not a state: the daemon is deciding whether to clean the region.
const CLEARING: u8 = 0xff;

pub struct Intent {
    pub region_stripes: u64,
    inner: Mutex<Inner>,
    /// Lock-free copy of the states for the data path's checks.
    mirror: Box<[AtomicU8]>,
    pending: Box<[AtomicU32]>,
    last_write_ms: Box<[AtomicU64]>,
    started: Instant,
    pub daemon_sleep: Duration,
    /// Bitmap writes so far (each is both copies on every leg).
    pub persisted: AtomicU64,
}

struct Inner {
    states: Vec<State>,
    serial: u64,
}

/// Held while a write to a region is in flight.
pub struct WriteGuard<'a> {
    intent: &'a Intent,
    region: usize,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        let i = self.intent;
        i.last_write_ms[self.region].store(i.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        i.pending[self.region].fetch_sub(1, Ordering::AcqRel);
    }
}

impl Intent {
    pub fn new(region_stripes: u64, states: Vec<State>, serial: u64, daemon_sleep: Duration) -> Intent {
        let n = states.len();
        Intent {
            region_stripes,
            mirror: states.iter().map(|s| AtomicU8::new(*s as u8)).collect(),
            inner: Mutex::new(Inner { states, serial }),
            pending: (0..n).map(|_| AtomicU32::new(0)).collect(),
            last_write_ms: (0..n).map(|_| AtomicU64::new(0)).collect(),
            started: Instant::now(),
            daemon_sleep,
            persisted: AtomicU64::new(0),
        }
    }

    pub fn regions(&self) -> usize {
        self.mirror.len()
    }

    pub fn region_of(&self, stripe: u64) -> usize {
        ((stripe / self.region_stripes) as usize).min(self.mirror.len().saturating_sub(1))
    }

    pub fn state(&self, region: usize) -> State {
        State::from_byte(self.mirror[region].load(Ordering::Acquire)).unwrap_or(State::NeedSync)
    }

    pub fn states(&self) -> Vec<State> {
        self.inner.lock().states.clone()
    }

    pub fn serial(&self) -> u64 {
        self.inner.lock().serial
    }

    /// Regions in each state, for status.
    /// Regions per state, from the lock-free mirror: status must not wait
    /// behind a bitmap write stuck on a slow or disconnected leg.
    pub fn counts(&self) -> [(State, usize); 5] {
        let states: Vec<State> = (0..self.regions()).map(|r| self.state(r)).collect();
        State::ALL.map(|s| (s, states.iter().filter(|x| **x == s).count()))
    }
}

impl Array {
    /// Before a write to stripe `s` reaches any leg: count it pending and
    /// make its region's state durable.
    pub(super) fn intent_begin(&self, s: u64) -> Result<Option<WriteGuard<'_>>, ArrayError> {
        let Some(meta) = &self.meta else { return Ok(None) };
        let intent = &meta.intent;
        let region = intent.region_of(s);
        intent.pending[region].fetch_add(1, Ordering::SeqCst);
        let guard = WriteGuard { intent, region };
        let action = if self.dead_legs() > 0 { Action::StartWriteDegraded } else { Action::StartWrite };
        // Fast path, no lock: the region is already in a state this write
        // leaves alone (Dirty, say). Safe against the daemon by Dekker's
        // pattern: we raise `pending` then read the state; the daemon
        // marks the state CLEARING then reads `pending`. Whichever goes
        // second sees the other, so a region is never cleaned under us.
        let now = intent.mirror[region].load(Ordering::SeqCst);
        if State::from_byte(now).is_some_and(|st| !transition(st, action).1) {
            return Ok(Some(guard));
        }
        self.intent_apply(&[region], action)?;
        Ok(Some(guard))
    }

    /// May stripe `s` update parity from its old parity?
    pub(super) fn parity_trusted(&self, s: u64) -> bool {
        match &self.meta {
            Some(meta) => parity_trusted(meta.intent.state(meta.intent.region_of(s))),
            None => true,
        }
    }

    /// Apply `action` to `regions`, persisting the bitmap when a state
    /// changed. Returns the regions that changed.
    pub(super) fn intent_apply(&self, regions: &[usize], action: Action) -> Result<Vec<usize>, ArrayError> {
        let Some(meta) = &self.meta else { return Ok(Vec::new()) };
        let intent = &meta.intent;
        let mut inner = intent.inner.lock();
        let mut changed = Vec::new();
        for &r in regions {
            // Checked under the lock: a writer raises `pending` before it
            // takes the lock, so a region cleaned here was truly idle.
            if action == Action::Daemon {
                let before = intent.mirror[r].swap(CLEARING, Ordering::SeqCst);
                let busy = intent.pending[r].load(Ordering::SeqCst) > 0;
                intent.mirror[r].store(before, Ordering::SeqCst);
                if busy {
                    continue;
                }
            }
            let (next, did) = transition(inner.states[r], action);
            if did {
                inner.states[r] = next;
                intent.mirror[r].store(next as u8, Ordering::Release);
                changed.push(r);
            }
        }
        if !changed.is_empty() {
            inner.serial += 1;
            self.persist_bitmap(&inner.states, inner.serial)?;
            intent.persisted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(changed)
    }

    /// Both copies of the bitmap on every writable leg: all A, then all B.
    fn persist_bitmap(&self, states: &[State], serial: u64) -> Result<(), ArrayError> {
        let Some(meta) = &self.meta else { return Ok(()) };
        let template = meta.template.lock().clone();
        for which in [0u8, 1] {
            let mut written = 0;
            for (i, leg) in self.legs.iter().enumerate() {
                if !leg.is_writable() {
                    continue;
                }
                for dev in std::iter::once(leg.device()).chain(leg.replacement()) {
                    match crate::meta::store::write_bitmap_copy(&*dev, &template, which, states, serial) {
                        Ok(()) => written += 1,
                        Err(e) => {
                            self.mark_dead(i, &format!("bitmap write failed: {e}"));
                        }
                    }
                }
            }
            if written == 0 {
                return Err(ArrayError::Unrecoverable { stripe: 0, detail: "the write-intent bitmap could not be written to any leg".into() });
            }
        }
        Ok(())
    }

    /// The daemon's sweep: regions with no write pending for
    /// `daemon_sleep` go back to clean (never while a leg is dead: the
    /// bits record what it missed).
    pub fn bitmap_daemon(&self) -> Result<usize, ArrayError> {
        let Some(meta) = &self.meta else { return Ok(0) };
        if self.dead_legs() > 0 {
            return Ok(0);
        }
        let intent = &meta.intent;
        let now = intent.started.elapsed().as_millis() as u64;
        let idle = intent.daemon_sleep.as_millis() as u64;
        let candidates: Vec<usize> = (0..intent.regions())
            .filter(|&r| {
                intent.state(r) == State::Dirty
                    && intent.pending[r].load(Ordering::Acquire) == 0
                    && now.saturating_sub(intent.last_write_ms[r].load(Ordering::Relaxed)) >= idle
            })
            .collect();
        if candidates.is_empty() {
            return Ok(0);
        }
        Ok(self.intent_apply(&candidates, Action::Daemon)?.len())
    }
}
