//! The write-intent bitmap in memory: one state per region (the table in
//! `meta::bitmap_state`), pending-write counters, and persistence to every
//! writable leg (copy A everywhere, flushed, then copy B, flushed) before a
//! write that needs it may proceed. Clearing is lazy and batched: the
//! daemon marks regions clean once idle for `daemon_sleep`.
//!
//! The ordering rules, each one a bug the power-loss simulator found:
//! - the lock-free mirror the data path reads shows a new state only once
//!   it is durable: while a change is written it shows `TRANSIT`, which
//!   sends writers to the lock (so none reaches a leg before its region's
//!   Dirty is on disk);
//! - a region goes Clean only with no write pending (checked after the
//!   mirror shows `TRANSIT`, Dekker's pattern against writers raising
//!   `pending`), no leg dead, and every leg flushed first (so the data the
//!   bitmap stops tracking is durable everywhere);
//! - when a leg dies, every region with a write in flight becomes NeedSync
//!   (`Stale`) before any of those writes is acknowledged, so a
//!   bitmap-only re-add rebuilds them.

use super::{Array, ArrayError};
use crate::meta::bitmap_state::{Action, State, parity_trusted, transition};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Not a state: the region's state is being changed on disk.
const TRANSIT: u8 = 0xff;

pub struct Intent {
    pub region_stripes: u64,
    inner: Mutex<Inner>,
    /// Lock-free copy of the durable states for the data path's checks.
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

    /// The region's state as the data path sees it: a region whose state
    /// is being written counts as needing a sync (the safe answer).
    pub fn state(&self, region: usize) -> State {
        State::from_byte(self.mirror[region].load(Ordering::Acquire)).unwrap_or(State::NeedSync)
    }

    /// Every region's state (what is on disk, or about to be).
    pub fn states(&self) -> Vec<State> {
        self.inner.lock().states.clone()
    }

    pub fn serial(&self) -> u64 {
        self.inner.lock().serial
    }

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
        if let Some(fast) = self.intent_try_begin(s) {
            return Ok(fast);
        }
        let Some(meta) = &self.meta else { return Ok(None) };
        let intent = &meta.intent;
        let region = intent.region_of(s);
        intent.pending[region].fetch_add(1, Ordering::SeqCst);
        let guard = WriteGuard { intent, region };
        self.intent_apply(&[region], self.start_action())?;
        Ok(Some(guard))
    }

    /// `intent_begin` without a lock or a metadata write: None when the
    /// region's durable state must change first (the caller then takes
    /// `intent_begin`, which waits for that write).
    pub(super) fn intent_try_begin(&self, s: u64) -> Option<Option<WriteGuard<'_>>> {
        let Some(meta) = &self.meta else { return Some(None) };
        let intent = &meta.intent;
        let region = intent.region_of(s);
        intent.pending[region].fetch_add(1, Ordering::SeqCst);
        let guard = WriteGuard { intent, region };
        // The region's durable state already is one this write leaves
        // alone (Dirty, say).
        let now = intent.mirror[region].load(Ordering::SeqCst);
        State::from_byte(now).is_some_and(|st| !transition(st, self.start_action()).1).then_some(Some(guard))
    }

    fn start_action(&self) -> Action {
        if self.dead_legs() > 0 { Action::StartWriteDegraded } else { Action::StartWrite }
    }

    /// May stripe `s` update parity from its old parity?
    pub(super) fn parity_trusted(&self, s: u64) -> bool {
        match &self.meta {
            Some(meta) => parity_trusted(meta.intent.state(meta.intent.region_of(s))),
            None => true,
        }
    }

    /// Is stripe `s`'s redundancy known to agree with its data (no resync
    /// pending)? Without metadata, nothing says otherwise.
    pub(super) fn stripe_in_sync(&self, s: u64) -> bool {
        match &self.meta {
            Some(meta) => !crate::meta::bitmap_state::needs_sync(meta.intent.state(meta.intent.region_of(s))),
            None => true,
        }
    }

    /// Apply `action` to `regions`, persisting the bitmap when a state
    /// changed; the data path sees the new states once they are durable.
    /// Returns the regions that changed.
    pub(super) fn intent_apply(&self, regions: &[usize], action: Action) -> Result<Vec<usize>, ArrayError> {
        let Some(meta) = &self.meta else { return Ok(Vec::new()) };
        let intent = &meta.intent;
        let mut inner = intent.inner.lock();
        let mut changed: Vec<(usize, State)> = Vec::new();
        for &r in regions {
            let mut act = action;
            if matches!(action, Action::Daemon | Action::EndSync) {
                // Writers raise `pending` then read the mirror; we show
                // TRANSIT then read `pending`: one of us sees the other.
                intent.mirror[r].store(TRANSIT, Ordering::SeqCst);
                let busy = intent.pending[r].load(Ordering::SeqCst) > 0;
                let degraded = self.clearing_blocked(action);
                if busy || degraded {
                    match action {
                        Action::Daemon => {
                            intent.mirror[r].store(inner.states[r] as u8, Ordering::SeqCst);
                            continue;
                        }
                        _ => act = if degraded { Action::AbortSync } else { Action::EndSyncBusy },
                    }
                }
            }
            let before = inner.states[r];
            let (next, did) = transition(before, act);
            if did {
                inner.states[r] = next;
                intent.mirror[r].store(TRANSIT, Ordering::SeqCst);
                changed.push((r, before));
            } else {
                intent.mirror[r].store(before as u8, Ordering::SeqCst);
            }
        }
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        let result = self.persist_changes(&mut inner, &changed);
        let restore = |inner: &mut Inner| {
            for &(r, before) in &changed {
                inner.states[r] = before;
            }
        };
        if let Err(e) = result {
            restore(&mut inner);
            for &(r, _) in &changed {
                intent.mirror[r].store(inner.states[r] as u8, Ordering::SeqCst);
            }
            return Err(e);
        }
        for &(r, _) in &changed {
            intent.mirror[r].store(inner.states[r] as u8, Ordering::SeqCst);
        }
        intent.persisted.fetch_add(1, Ordering::Relaxed);
        Ok(changed.into_iter().map(|(r, _)| r).collect())
    }

    /// May regions go Clean now? The daemon clears nothing while a leg is
    /// dead (the bits record what it missed, for a bitmap-only re-add); a
    /// resync may finish a region while a dead leg's chunks live in
    /// distributed spares (it rewrote them there; `run_resync` made any
    /// re-add of that leg a full one first).
    fn clearing_blocked(&self, action: Action) -> bool {
        let blocked = match action {
            Action::EndSync => self.uncovered_dead_legs() > 0,
            _ => self.dead_legs() > 0,
        };
        self.dead_before_clearing.store(self.dead_legs(), Ordering::SeqCst);
        blocked
    }

    /// Write the changed states. A region going Clean needs the data it
    /// stops tracking durable on every leg first, and no leg lost since.
    fn persist_changes(&self, inner: &mut Inner, changed: &[(usize, State)]) -> Result<(), ArrayError> {
        let cleaning: Vec<usize> = changed.iter().filter(|(r, _)| inner.states[*r] == State::Clean).map(|(r, _)| *r).collect();
        if !cleaning.is_empty() {
            for (i, leg) in self.legs.iter().enumerate() {
                if !leg.is_writable() {
                    continue;
                }
                for dev in std::iter::once(leg.device()).chain(leg.replacement()) {
                    if let Err(e) = dev.flush() {
                        self.mark_dead_on(i, "flush before clearing the bitmap", &e);
                    }
                }
            }
            if self.dead_legs() > self.dead_before_clearing.load(Ordering::SeqCst) {
                // A leg died: what it missed must stay recorded.
                for r in cleaning {
                    inner.states[r] = State::NeedSync;
                }
            }
        }
        inner.serial += 1;
        self.persist_bitmap(&inner.states, inner.serial)
    }

    /// Both copies of the bitmap on every writable leg: all A, then all B.
    fn persist_bitmap(&self, states: &[State], serial: u64) -> Result<(), ArrayError> {
        let Some(meta) = &self.meta else { return Ok(()) };
        self.check_not_retired()?;
        let template = meta.template.lock().clone();
        for which in [0u8, 1] {
            let mut written = 0;
            for (i, leg) in self.legs.iter().enumerate() {
                if !leg.is_writable() && leg.replacement().is_none() {
                    continue;
                }
                let devices = leg.is_writable().then(|| leg.device()).into_iter().chain(leg.replacement());
                for dev in devices {
                    match crate::meta::store::write_bitmap_copy(&*dev, &template, which, states, serial) {
                        Ok(()) => written += 1,
                        Err(e) => {
                            self.mark_dead_on_meta(i, "bitmap write", &e);
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

    /// Write the bitmap as it stands (at assembly, where states were
    /// reloaded from another leg's copy or changed by the reload).
    pub(super) fn intent_persist_all(&self) -> Result<(), ArrayError> {
        let Some(meta) = &self.meta else { return Ok(()) };
        let mut inner = meta.intent.inner.lock();
        inner.serial += 1;
        self.persist_bitmap(&inner.states, inner.serial)
    }

    /// A leg died: every region it may have missed a write in becomes
    /// NeedSync. Those are the regions with a write in flight (a write
    /// keeps its regions pending until it is acknowledged, and its
    /// acknowledgement waits for this) and those being resynced; a write
    /// that starts later sees the leg dead and marks its region itself.
    pub(super) fn intent_stale(&self) -> Result<(), ArrayError> {
        let Some(meta) = &self.meta else { return Ok(()) };
        let intent = &meta.intent;
        let states = intent.states();
        let regions: Vec<usize> = (0..intent.regions()).filter(|&r| intent.pending[r].load(Ordering::SeqCst) > 0 || states[r] == State::Syncing).collect();
        self.intent_apply(&regions, Action::Stale).map(drop)
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
