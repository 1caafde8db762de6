//! Background synchronisation, one action at a time (md's `sync_action`):
//! resync (recompute parity and copies in regions that need it), recover
//! (rebuild a leg, or its replacement, whole or from the bitmap), check
//! (count mismatches) and repair (rewrite them), with a rate limit and
//! progress for `status`.

use super::health::Health;
use super::{Array, ArrayError};
use crate::layout::Role;
use crate::meta::bitmap_state::{Action, State};
use crate::parity::{EncodeMatrix, encode};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// md's sync actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncAction {
    Idle,
    Resync,
    Recover,
    Check,
    Repair,
}

impl SyncAction {
    pub fn name(self) -> &'static str {
        match self {
            SyncAction::Idle => "idle",
            SyncAction::Resync => "resync",
            SyncAction::Recover => "recover",
            SyncAction::Check => "check",
            SyncAction::Repair => "repair",
        }
    }
}

/// What a recovery rebuilds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoverScope {
    /// Every stripe.
    Full,
    /// Only regions the bitmap says were written while the leg was away.
    Bitmap,
    /// Into the stripes' spare slot of this ordinal (the leg stays dead).
    DistributedSpare(u32),
}

pub struct SyncState {
    action: Mutex<SyncAction>,
    pub done: AtomicU64,
    pub total: AtomicU64,
    pub mismatches: AtomicU64,
    /// Bytes the last finished action moved (read or written to legs).
    pub last_bytes: AtomicU64,
    /// Bytes per second; 0 is unlimited.
    pub rate_limit: AtomicU64,
    stop: AtomicBool,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub last_result: Mutex<Option<String>>,
}

impl Default for SyncState {
    fn default() -> Self {
        SyncState {
            action: Mutex::new(SyncAction::Idle),
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            mismatches: AtomicU64::new(0),
            last_bytes: AtomicU64::new(0),
            rate_limit: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            worker: Mutex::new(None),
            last_result: Mutex::new(None),
        }
    }
}

impl SyncState {
    pub fn action(&self) -> SyncAction {
        *self.action.lock()
    }

    /// `done/total` in stripes.
    pub fn ratio(&self) -> (u64, u64) {
        (self.done.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed))
    }

    /// Ask a running action to stop, and wait for it.
    pub fn stop_and_wait(&self) {
        self.stop.store(true, Ordering::Release);
        let handle = self.worker.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        self.stop.store(false, Ordering::Release);
    }

    /// Wait for the running action to finish.
    pub fn wait(&self) {
        let handle = self.worker.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// Keeps a worker at or under `rate` bytes per second.
pub(super) struct Throttle {
    started: Instant,
    bytes: u64,
}

impl Throttle {
    pub(super) fn new() -> Throttle {
        Throttle { started: Instant::now(), bytes: 0 }
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(super) fn pace(&mut self, n: u64, rate: u64) {
        self.bytes += n;
        if rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait.min(Duration::from_millis(500)));
        }
    }
}

impl Array {
    /// Start `action` in the background (one at a time).
    pub fn start_sync(self: &Arc<Self>, action: SyncAction, recover: Option<(usize, RecoverScope)>) -> Result<(), ArrayError> {
        let mut current = self.sync.action.lock();
        if *current != SyncAction::Idle {
            return Err(ArrayError::Refused(format!("a {} is already running", current.name())));
        }
        if let Some(h) = self.sync.worker.lock().take() {
            let _ = h.join();
        }
        *current = action;
        self.sync.done.store(0, Ordering::Relaxed);
        self.sync.total.store(self.layout().descriptor.stripes, Ordering::Relaxed);
        if matches!(action, SyncAction::Check | SyncAction::Repair) {
            self.sync.mismatches.store(0, Ordering::Relaxed);
        }
        drop(current);
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name(format!("wasmraid-{}", action.name()))
            .spawn(move || {
                let result = match (action, recover) {
                    (SyncAction::Recover, Some((leg, scope))) => me.run_recover(leg, scope),
                    (SyncAction::Check, _) => me.run_check(false),
                    (SyncAction::Repair, _) => me.run_check(true),
                    _ => me.run_resync(),
                };
                let summary = match &result {
                    Ok(bytes) => {
                        me.sync.last_bytes.store(*bytes, Ordering::Relaxed);
                        format!("{} finished: {bytes} bytes moved", action.name())
                    }
                    Err(e) => format!("{} stopped: {e}", action.name()),
                };
                tracing::info!(array = %me.name, "{summary}");
                *me.sync.last_result.lock() = Some(summary);
                *me.sync.action.lock() = SyncAction::Idle;
            })
            .map_err(|e| ArrayError::Refused(format!("cannot start the {} thread: {e}", action.name())))?;
        *self.sync.worker.lock() = Some(handle);
        Ok(())
    }

    pub(super) fn stopping(&self) -> bool {
        self.sync.stop.load(Ordering::Acquire)
    }

    /// Regions in `states` (all of them when None) as stripe ranges.
    fn region_stripes(&self, wanted: Option<&[State]>) -> Vec<(usize, std::ops::Range<u64>)> {
        let stripes = self.layout().descriptor.stripes;
        match &self.meta {
            Some(meta) => {
                let rs = meta.intent.region_stripes;
                (0..meta.intent.regions())
                    .filter(|&r| wanted.is_none_or(|w| w.contains(&meta.intent.state(r))))
                    .map(|r| (r, (r as u64 * rs).min(stripes)..((r as u64 + 1) * rs).min(stripes)))
                    .filter(|(_, range)| !range.is_empty())
                    .collect()
            }
            None if wanted.is_none() => vec![(0, 0..stripes)],
            None => Vec::new(),
        }
    }

    /// Recompute parity and copies from the data in every region that
    /// needs it. Needs every leg: a dead leg's missed writes stay recorded.
    fn run_resync(&self) -> Result<u64, ArrayError> {
        if self.uncovered_dead_legs() > 0 {
            return Err(ArrayError::Refused("resync needs every leg (recover the dead ones first)".into()));
        }
        let regions = self.region_stripes(Some(&[State::NeedSync, State::Syncing]));
        self.sync.total.store(regions.iter().map(|(_, r)| r.end - r.start).sum(), Ordering::Relaxed);
        let mut throttle = Throttle::new();
        for (r, range) in regions {
            self.intent_apply(&[r], Action::StartSync)?;
            for s in range {
                if self.stopping() {
                    self.intent_apply(&[r], Action::AbortSync)?;
                    return Err(ArrayError::Refused("stopped".into()));
                }
                let n = self.rewrite_redundancy(s, None)?;
                self.sync.done.fetch_add(1, Ordering::Relaxed);
                throttle.pace(n, self.sync.rate_limit.load(Ordering::Relaxed));
            }
            self.intent_apply(&[r], Action::EndSync)?;
        }
        Ok(throttle.bytes)
    }

    /// Read every live data chunk of stripe `s` and write its parity and
    /// copies (only those on `only_leg`, when given). Bytes moved.
    pub(super) fn rewrite_redundancy(&self, s: u64, only_leg: Option<u32>) -> Result<u64, ArrayError> {
        let layout = self.layout();
        let _held = self.locks.lock(s);
        let view = self.view(&layout, s)?;
        let cb = self.chunk_bytes as usize;
        let d = layout.descriptor.data_chunks as usize;
        let mut data = Vec::with_capacity(d);
        for k in 0..d {
            let mut buf = vec![0u8; cb];
            self.rebuild(&layout, &view, s, k, 0, &mut buf)?;
            data.push(buf);
        }
        let mut moved = (d * cb) as u64;
        let values: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        for (i, slot) in view.shape.slots.iter().enumerate() {
            if only_leg.is_some_and(|l| l != slot.leg) {
                continue;
            }
            let content = match &slot.role {
                Role::Data(k) if only_leg.is_some() => data[*k as usize].clone(),
                Role::Replica(k) => data[*k as usize].clone(),
                Role::Parity { coefficients, .. } => {
                    let mut out = vec![0u8; cb];
                    encode(&EncodeMatrix::new(&[coefficients.to_vec()]), &values, &mut [&mut out]);
                    out
                }
                _ => continue,
            };
            if self.leg_write(slot.leg, view.place(i).chunk, 0, &content, false) {
                moved += cb as u64;
            }
        }
        Ok(moved)
    }

    /// Rebuild leg `leg` (or its replacement): every stripe, or only the
    /// regions the bitmap marks. The leg is written, not read, meanwhile.
    fn run_recover(&self, leg: usize, scope: RecoverScope) -> Result<u64, ArrayError> {
        let regions = match scope {
            RecoverScope::Full => self.region_stripes(None),
            RecoverScope::Bitmap => self.region_stripes(Some(&[State::NeedSync, State::Syncing])),
            RecoverScope::DistributedSpare(ordinal) => return self.run_spare_rebuild(leg, ordinal),
        };
        self.sync.total.store(regions.iter().map(|(_, r)| r.end - r.start).sum(), Ordering::Relaxed);
        let mut throttle = Throttle::new();
        let replacing = self.legs[leg].replacement().is_some();
        for (_, range) in &regions {
            for s in range.clone() {
                if self.stopping() {
                    return Err(ArrayError::Refused("stopped".into()));
                }
                if !replacing && self.legs[leg].health() != Health::Recovering {
                    return Err(ArrayError::Refused(format!("leg {leg} failed during its recovery")));
                }
                let n = self.rewrite_redundancy_onto(s, leg as u32)?;
                self.sync.done.fetch_add(1, Ordering::Relaxed);
                throttle.pace(n, self.sync.rate_limit.load(Ordering::Relaxed));
            }
        }
        self.finish_recovery(leg, replacing)?;
        Ok(throttle.bytes)
    }

    /// Every slot of stripe `s` on `leg`, rebuilt from the others.
    fn rewrite_redundancy_onto(&self, s: u64, leg: u32) -> Result<u64, ArrayError> {
        self.rewrite_redundancy(s, Some(leg))
    }

    /// Bring a rebuilt leg (or its finished replacement) into service and,
    /// when no leg is left dead, forget what the bitmap kept for it.
    fn finish_recovery(&self, leg: usize, replacing: bool) -> Result<(), ArrayError> {
        let l = &self.legs[leg];
        if replacing {
            if let Some(new) = l.replacement() {
                l.set_device(new);
                l.set_replacement(None);
                *l.uuid.lock() = *l.replacement_uuid.lock();
            }
        }
        l.set_health(Health::Alive);
        tracing::info!(array = %self.name, leg, "leg recovered");
        if self.dead_legs() == 0 {
            if let Some(meta) = &self.meta {
                let generation = meta.template.lock().generation;
                meta.template.lock().events_cleared = generation + 1;
            }
            let pending = self.region_stripes(Some(&[State::NeedSync, State::Syncing]));
            let regions: Vec<usize> = pending.iter().map(|(r, _)| *r).collect();
            self.intent_apply(&regions, Action::StartSync)?;
            self.intent_apply(&regions, Action::EndSync)?;
        }
        self.write_superblocks(None)
    }

    /// Scrub every stripe, counting (and with `repair`, fixing) slots that
    /// disagree with the data: md's `mismatch_cnt`.
    fn run_check(&self, repair: bool) -> Result<u64, ArrayError> {
        let stripes = self.layout().descriptor.stripes;
        let mut throttle = Throttle::new();
        let per_stripe = self.layout().descriptor.slots() * self.chunk_bytes;
        for s in 0..stripes {
            if self.stopping() {
                return Err(ArrayError::Refused("stopped".into()));
            }
            let m = self.scrub_stripe(s, repair)?;
            self.sync.mismatches.fetch_add(m, Ordering::Relaxed);
            self.sync.done.fetch_add(1, Ordering::Relaxed);
            throttle.pace(per_stripe, self.sync.rate_limit.load(Ordering::Relaxed));
        }
        Ok(throttle.bytes)
    }
}
