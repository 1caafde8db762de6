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
        // A retired array's legs belong to a reshape now.
        self.check_not_retired()?;
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

    /// Start what the array needs, as md's recovery thread does: a resync
    /// of the regions that need one once every leg is present, else the
    /// rebuild of a dead leg into a free distributed spare. Returns what
    /// was started (None when nothing is needed or an action runs).
    pub fn start_needed_sync(self: &Arc<Self>) -> Option<SyncAction> {
        // A membership change decides what runs next itself.
        let _no_change = self.membership.try_lock()?;
        if self.sync.action() != SyncAction::Idle {
            return None;
        }
        // An interrupted rebuild or replacement resumes from its checkpoint.
        for (i, l) in self.legs.iter().enumerate() {
            let scope = if l.replacement().is_some() {
                Some(RecoverScope::Full)
            } else if l.health() == Health::Recovering {
                Some(if l.recovery_bitmap_only.load(Ordering::Acquire) { RecoverScope::Bitmap } else { RecoverScope::Full })
            } else {
                None
            };
            if let Some(scope) = scope {
                return self.start_sync(SyncAction::Recover, Some((i, scope))).ok().map(|()| SyncAction::Recover);
            }
        }
        if let Some(meta) = &self.meta {
            let needed = (0..meta.intent.regions()).any(|r| crate::meta::bitmap_state::needs_sync(meta.intent.state(r)));
            if needed && self.uncovered_dead_legs() == 0 && self.start_sync(SyncAction::Resync, None).is_ok() {
                return Some(SyncAction::Resync);
            }
        }
        self.start_spare_rebuild_if_needed().map(|_| SyncAction::Recover)
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
                let states = meta.intent.states();
                (0..meta.intent.regions())
                    .filter(|&r| wanted.is_none_or(|w| w.contains(&states[r])))
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
        // Without metadata nothing says where: everything.
        let regions = if self.meta.is_none() { self.region_stripes(None) } else { self.region_stripes(Some(&[State::NeedSync, State::Syncing])) };
        if self.dead_legs() > 0 && !regions.is_empty() {
            // Dead legs rebuilt into distributed spares: clearing their
            // regions forgets what those legs missed, so any later re-add
            // of one must rebuild it whole. Said on disk first.
            if let Some(meta) = &self.meta {
                let mut template = meta.template.lock();
                template.events_cleared = template.generation + 1;
            }
            self.write_superblocks(None)?;
        }
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
        self.resync_finished()?;
        Ok(throttle.bytes)
    }

    /// Every region in sync and no leg dead: no torn stripe is left, and
    /// the bitmap has forgotten what any leg that left had missed.
    fn resync_finished(&self) -> Result<(), ArrayError> {
        let Some(meta) = &self.meta else { return Ok(()) };
        let pending = self.region_stripes(Some(&[State::NeedSync, State::Syncing]));
        if !pending.is_empty() || self.dead_legs() > 0 {
            return Ok(());
        }
        {
            let mut template = meta.template.lock();
            template.unsynced = false;
            template.events_cleared = template.generation + 1;
        }
        self.write_superblocks(None)
    }

    /// Recompute the redundancy of the stripes in `stripes`, then flush:
    /// a reshape continued after a crash does this for the stripes the new
    /// layout served untracked by any bitmap.
    pub fn resync_stripes(&self, stripes: std::ops::Range<u64>) -> Result<(), ArrayError> {
        for s in stripes {
            self.rewrite_redundancy(s, None)?;
        }
        self.flush_legs()
    }

    /// Read every live data chunk of stripe `s` and write its parity and
    /// copies (only those on `only_leg`, when given). Bytes moved.
    pub(super) fn rewrite_redundancy(&self, s: u64, only_leg: Option<u32>) -> Result<u64, ArrayError> {
        let layout = self.layout();
        let _held = self.locks.lock(s);
        let view = self.view(&layout, s)?;
        let cb = self.chunk_bytes as usize;
        let d = layout.descriptor.data_chunks as usize;
        if let Some(target) = only_leg {
            if self.sources_read_as_zero(&view, d, target) {
                // A sparse rebuild: whatever the code, zero in gives zero
                // out, so the target's chunks are zeroed in place (a hole
                // punched, or a 28-byte request to a remote leg), not
                // computed and written.
                for (i, slot) in view.shape.slots.iter().enumerate() {
                    if slot.leg == target && !matches!(slot.role, Role::Spare(_)) {
                        self.leg_write_zeroes(slot.leg, view.place(i).chunk);
                    }
                }
                return Ok(0);
            }
        }
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

    /// Whether every live source of the stripe (all slots but spares and
    /// the leg being rebuilt) reads as zeroes, per its leg's block status,
    /// with at least `d` of them: then the stripe's code gives zero for
    /// any chunk, the rebuilt one included.
    fn sources_read_as_zero(&self, view: &crate::layout::map::StripeView, d: usize, target: u32) -> bool {
        use crate::device::status::ZERO;
        let cb = self.chunk_bytes;
        let mut sources = 0;
        for (i, slot) in view.shape.slots.iter().enumerate() {
            if matches!(slot.role, Role::Spare(_)) {
                continue;
            }
            let Some(l) = self.legs.get(slot.leg as usize) else { return false };
            // A leg being recovered is no source; a leg being replaced
            // (alive, its replacement the target) is.
            if !l.is_alive() || (slot.leg == target && l.replacement().is_none()) {
                continue;
            }
            let mut status = Vec::new();
            if l.device().block_status(l.offset + view.place(i).chunk * cb, cb, &mut status).is_err() {
                return false;
            }
            if !status.iter().all(|e| e.allocation & ZERO != 0) {
                return false;
            }
            sources += 1;
        }
        sources >= d
    }

    /// Rebuild leg `leg` (or its replacement): every stripe, or only the
    /// regions the bitmap marks, from where its last checkpoint left it.
    /// The leg is written, not read, meanwhile. After each region the leg
    /// is flushed and then its progress is checkpointed in the
    /// superblocks, so a crash resumes there and never trusts more.
    fn run_recover(&self, leg: usize, scope: RecoverScope) -> Result<u64, ArrayError> {
        let regions = match scope {
            RecoverScope::Full => self.region_stripes(None),
            RecoverScope::Bitmap => self.region_stripes(Some(&[State::NeedSync, State::Syncing])),
            RecoverScope::DistributedSpare(ordinal) => return self.run_spare_rebuild(leg, ordinal),
        };
        let l = &self.legs[leg];
        if self.spare_of(leg).is_some() {
            return Err(ArrayError::Refused(format!("leg {leg} lives in distributed spares: give its slot a device with `leg add` first")));
        }
        let replacing = l.replacement().is_some();
        let progress = if replacing { &l.replacement_offset } else { &l.recovery_offset };
        let from = progress.load(Ordering::Acquire);
        // After an unclean stop, regions the crash may have torn are
        // rebuilt again below the checkpoint too.
        let torn: Vec<usize> = if l.redo_torn_below_checkpoint.load(Ordering::Acquire) {
            self.region_stripes(Some(&[State::NeedSync, State::Syncing])).into_iter().map(|(r, _)| r).collect()
        } else {
            Vec::new()
        };
        let start_of = |r: usize, range: &std::ops::Range<u64>| if torn.contains(&r) { range.start } else { range.start.max(from) };
        let regions: Vec<(usize, std::ops::Range<u64>)> = if torn.is_empty() {
            regions
        } else {
            // Whole-array scope already lists every region.
            let mut all = regions;
            for (r, range) in self.region_stripes(Some(&[State::NeedSync, State::Syncing])) {
                if !all.iter().any(|(x, _)| *x == r) {
                    all.push((r, range));
                }
            }
            all.sort_by_key(|(r, _)| *r);
            all
        };
        self.sync.total.store(regions.iter().map(|(r, range)| range.end - start_of(*r, range).min(range.end)).sum(), Ordering::Relaxed);
        self.sync.done.store(0, Ordering::Relaxed);
        let mut throttle = Throttle::new();
        for (r, range) in &regions {
            let first = start_of(*r, range);
            if first >= range.end {
                continue;
            }
            for s in first..range.end {
                if self.stopping() {
                    return Err(ArrayError::Refused("stopped".into()));
                }
                if replacing && l.replacement().is_none() {
                    return Err(ArrayError::Refused(format!("the replacement of leg {leg} failed")));
                }
                if !replacing && l.health() != Health::Recovering {
                    return Err(ArrayError::Refused(format!("leg {leg} failed during its recovery")));
                }
                let n = self.rewrite_redundancy_onto(s, leg as u32)?;
                self.sync.done.fetch_add(1, Ordering::Relaxed);
                throttle.pace(n, self.sync.rate_limit.load(Ordering::Relaxed));
            }
            self.checkpoint_recovery(leg, replacing, range.end.max(from))?;
        }
        l.redo_torn_below_checkpoint.store(false, Ordering::Release);
        self.finish_recovery(leg, replacing)?;
        Ok(throttle.bytes)
    }

    /// Stripes below `reached` are rebuilt on leg `leg` (or its
    /// replacement): make them durable there, then say so on disk.
    fn checkpoint_recovery(&self, leg: usize, replacing: bool, reached: u64) -> Result<(), ArrayError> {
        let l = &self.legs[leg];
        let target = if replacing { l.replacement() } else { Some(l.device()) };
        let Some(target) = target else { return Err(ArrayError::Refused(format!("the replacement of leg {leg} failed"))) };
        if let Err(e) = target.flush() {
            if replacing {
                self.abandon_replacement(leg, &e);
            } else {
                self.fail_leg_on(leg, "flush", &e);
            }
            self.settle_failures()?;
            return Err(ArrayError::Refused(format!("leg {leg} failed during its recovery")));
        }
        let progress = if replacing { &l.replacement_offset } else { &l.recovery_offset };
        progress.store(reached, Ordering::Release);
        self.write_superblocks(None)
    }

    /// Every slot of stripe `s` on `leg`, rebuilt from the others.
    fn rewrite_redundancy_onto(&self, s: u64, leg: u32) -> Result<u64, ArrayError> {
        self.rewrite_redundancy(s, Some(leg))
    }

    /// Bring a rebuilt leg (or its finished replacement) into service.
    /// Regions still marked NeedSync stay so: the resync that follows
    /// recomputes their redundancy from all the data, which a rebuild of
    /// one leg does not do.
    fn finish_recovery(&self, leg: usize, replacing: bool) -> Result<(), ArrayError> {
        let l = &self.legs[leg];
        if replacing {
            if let Some(new) = l.replacement() {
                l.set_device(new);
                l.set_replacement(None);
                *l.uuid.lock() = *l.replacement_uuid.lock();
                l.replacement_offset.store(0, Ordering::Release);
            }
        }
        l.set_health(Health::Alive);
        l.recovery_offset.store(0, Ordering::Release);
        tracing::info!(array = %self.name, leg, "leg recovered");
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
