//! Distributed spares (dRAID's idea, insane_striping's `e_blocks`): a
//! layout that declares spare slots keeps, in every stripe, chunks that hold
//! nothing. When a leg dies, its chunks are rebuilt into those slots —
//! stripe by stripe, several stripes at once, so every surviving leg is read
//! and written in parallel instead of one new disk being the bottleneck —
//! and an overlay sends that leg's chunks to their spare slots from then on.
//!
//! The overlay is exact per stripe: a stripe is redirected only once its
//! chunk has been rebuilt (under the stripe's lock), so a write racing the
//! rebuild lands either before it (and is rebuilt) or after it (and goes to
//! the spare). A finished rebuild is recorded in the superblocks and comes
//! back at assemble. Dropping the overlay is always safe while parity is
//! consistent: the spare held exactly what decoding the stripe yields.

use super::sync::Throttle;
use super::{Array, ArrayError};
use crate::layout::map::{MapError, StripeView};
use crate::layout::proven::ProvenLayout;
use crate::layout::{Role, Stripe};
use crate::parity::{EncodeMatrix, encode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Stripes rebuilt at once: enough to keep every leg busy.
const PARALLEL_STRIPES: usize = 4;

/// Leg `leg`'s chunks living in spare slot `ordinal` of each stripe.
pub struct SpareUse {
    pub leg: u32,
    pub ordinal: u32,
    complete: AtomicBool,
    /// Being given up: still redirected in memory, no longer recorded on
    /// disk (see `retire_spare`).
    retiring: AtomicBool,
    /// One bit per stripe rebuilt so far (empty once complete).
    rebuilt: Vec<AtomicU64>,
}

impl SpareUse {
    fn new(leg: u32, ordinal: u32, stripes: u64, complete: bool) -> SpareUse {
        let words = if complete { 0 } else { stripes.div_ceil(64) as usize };
        SpareUse {
            leg,
            ordinal,
            complete: AtomicBool::new(complete),
            retiring: AtomicBool::new(false),
            rebuilt: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn covers(&self, s: u64) -> bool {
        self.complete.load(Ordering::Acquire) || self.rebuilt.get((s / 64) as usize).is_some_and(|w| w.load(Ordering::Acquire) & (1 << (s % 64)) != 0)
    }

    fn mark(&self, s: u64) {
        if let Some(w) = self.rebuilt.get((s / 64) as usize) {
            w.fetch_or(1 << (s % 64), Ordering::Release);
        }
    }

    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }
}

/// Stripe `shape` with every covering use's leg moved to its spare slot;
/// None when no use covers stripe `s` here.
fn redirect(shape: &Stripe, uses: &[Arc<SpareUse>], s: u64) -> Option<Stripe> {
    let mut out: Option<Stripe> = None;
    for u in uses.iter().filter(|u| u.covers(s)) {
        let current = out.as_ref().unwrap_or(shape);
        let from = current.slots.iter().position(|sl| sl.leg == u.leg && !matches!(sl.role, Role::Spare(_)));
        let to = current.slots.iter().position(|sl| sl.role == Role::Spare(u.ordinal));
        if let (Some(from), Some(to)) = (from, to) {
            let next = out.get_or_insert_with(|| shape.clone());
            let (leg, chunk) = (next.slots[from].leg, next.slots[from].chunk);
            next.slots[from].leg = next.slots[to].leg;
            next.slots[from].chunk = next.slots[to].chunk;
            next.slots[to].leg = leg;
            next.slots[to].chunk = chunk;
        }
    }
    out
}

impl Array {
    /// Stripe `s` as I/O must see it: the layout's, with legs rebuilt into
    /// distributed spares redirected there.
    pub(super) fn view(&self, layout: &ProvenLayout, s: u64) -> Result<StripeView, MapError> {
        let view = layout.stripe(s)?;
        let uses = self.spares.load();
        if uses.is_empty() {
            return Ok(view);
        }
        Ok(match redirect(&view.shape, &uses, s) {
            Some(shape) => StripeView { shape: Arc::new(shape), advance: view.advance },
            None => view,
        })
    }

    /// The spare ordinal holding leg `i`, when a rebuild into it finished
    /// (and is not being given up).
    pub fn spare_of(&self, i: usize) -> Option<u32> {
        self.spares.load().iter().find(|u| u.leg as usize == i && u.is_complete() && !u.retiring.load(Ordering::Acquire)).map(|u| u.ordinal)
    }

    /// Dead legs whose chunks are not all in spare slots.
    pub fn uncovered_dead_legs(&self) -> usize {
        (0..self.legs.len()).filter(|&i| !self.legs[i].is_alive() && self.spare_of(i).is_none()).count()
    }

    /// A dead leg that a free spare ordinal could take, and that ordinal.
    pub fn spare_candidate(&self) -> Option<(usize, u32)> {
        let spares = self.layout().descriptor.spare_chunks;
        let uses = self.spares.load();
        let ordinal = (0..spares).find(|o| uses.iter().all(|u| u.ordinal != *o))?;
        let gave_up = self.spare_gave_up.load(Ordering::Relaxed);
        let leg = (0..self.legs.len())
            .find(|&i| self.legs[i].health() == super::health::Health::Dead && uses.iter().all(|u| u.leg as usize != i) && gave_up & (1 << (i % 64)) == 0)?;
        Some((leg, ordinal))
    }

    /// Start rebuilding a dead leg into a free spare ordinal, when there
    /// is one and nothing else runs. Returns what was started.
    pub fn start_spare_rebuild_if_needed(self: &Arc<Self>) -> Option<(usize, u32)> {
        if self.sync.action() != super::sync::SyncAction::Idle {
            return None;
        }
        let (leg, ordinal) = self.spare_candidate()?;
        match self.start_sync(super::sync::SyncAction::Recover, Some((leg, super::sync::RecoverScope::DistributedSpare(ordinal)))) {
            Ok(()) => {
                tracing::info!(array = %self.name, leg, ordinal, "rebuilding the dead leg into the distributed spare");
                Some((leg, ordinal))
            }
            Err(e) => {
                tracing::warn!(array = %self.name, leg, "cannot start the distributed-spare rebuild: {e}");
                None
            }
        }
    }

    /// Give up leg `leg`'s spare use because its slot is getting a device
    /// again (recovery rebuilds it from the stripes as they decode). The
    /// superblocks first stop saying the chunks live in the spare slots,
    /// while writes still go there (parity covers them either way); only
    /// then do writes go to the slot's own place. In the other order a
    /// crash could bring the old overlay back over writes it never saw.
    pub(super) fn retire_spare(&self, leg: u32) -> Result<(), ArrayError> {
        let uses = self.spares.load();
        let Some(use_) = uses.iter().find(|u| u.leg == leg) else { return Ok(()) };
        if use_.is_complete() {
            use_.retiring.store(true, Ordering::Release);
            self.write_superblocks(None)?;
        }
        self.drop_spare(leg);
        Ok(())
    }

    /// Forget leg `leg`'s spare use, in memory.
    pub(super) fn drop_spare(&self, leg: u32) {
        self.spare_gave_up.fetch_and(!(1 << (leg % 64)), Ordering::Relaxed);
        let kept: Vec<Arc<SpareUse>> = self.spares.load().iter().filter(|u| u.leg != leg).cloned().collect();
        self.spares.store(Arc::new(kept));
    }

    /// At assemble: legs the superblock records as rebuilt into spares.
    pub(crate) fn restore_spares(&self, spared: &[Option<u32>]) {
        let stripes = self.layout().descriptor.stripes;
        let uses: Vec<Arc<SpareUse>> =
            spared.iter().enumerate().filter_map(|(leg, o)| o.map(|o| Arc::new(SpareUse::new(leg as u32, o, stripes, true)))).collect();
        self.spares.store(Arc::new(uses));
    }

    /// Rebuild dead leg `leg` into spare slot `ordinal` of every stripe.
    /// Bytes moved.
    pub(super) fn run_spare_rebuild(&self, leg: usize, ordinal: u32) -> Result<u64, ArrayError> {
        let layout = self.layout();
        let stripes = layout.descriptor.stripes;
        let use_ = Arc::new(SpareUse::new(leg as u32, ordinal, stripes, false));
        let mut uses: Vec<Arc<SpareUse>> = self.spares.load().iter().cloned().collect();
        uses.push(use_.clone());
        self.spares.store(Arc::new(uses));
        self.sync.total.store(stripes, Ordering::Relaxed);
        let next = AtomicU64::new(0);
        let throttle = parking_lot::Mutex::new(Throttle::new());
        let failure: parking_lot::Mutex<Option<ArrayError>> = parking_lot::Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..PARALLEL_STRIPES {
                scope.spawn(|| {
                    loop {
                        let s = next.fetch_add(1, Ordering::Relaxed);
                        if s >= stripes || failure.lock().is_some() {
                            return;
                        }
                        if self.stopping() {
                            *failure.lock() = Some(ArrayError::Refused("stopped".into()));
                            return;
                        }
                        if self.legs[leg].health() != super::health::Health::Dead {
                            *failure.lock() = Some(ArrayError::Refused(format!("leg {leg} is no longer dead")));
                            return;
                        }
                        match self.spare_rebuild_stripe(&layout, &use_, s) {
                            Ok(n) => {
                                self.sync.done.fetch_add(1, Ordering::Relaxed);
                                let rate = self.sync.rate_limit.load(Ordering::Relaxed);
                                throttle.lock().pace(n, rate);
                            }
                            Err(e) => {
                                *failure.lock() = Some(e);
                                return;
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner() {
            // Half a rebuild is still exact per stripe, but is not recorded:
            // forget it, and decode as before.
            self.drop_spare(leg as u32);
            if !matches!(&e, ArrayError::Refused(why) if why == "stopped") {
                self.spare_gave_up.fetch_or(1 << (leg % 64), Ordering::Relaxed);
            }
            return Err(e);
        }
        // What the spare slots hold must be durable before the superblocks
        // say to read it there.
        if let Err(e) = self.flush_legs() {
            self.drop_spare(leg as u32);
            return Err(e);
        }
        use_.complete.store(true, Ordering::Release);
        tracing::info!(array = %self.name, leg, ordinal, "leg rebuilt into the distributed spare");
        self.write_superblocks(None)?;
        Ok(throttle.into_inner().bytes())
    }

    /// One stripe: the dead leg's chunk, decoded, written to the spare
    /// slot; then the stripe is redirected. Bytes moved.
    fn spare_rebuild_stripe(&self, layout: &ProvenLayout, use_: &SpareUse, s: u64) -> Result<u64, ArrayError> {
        let _held = self.locks.lock(s);
        let view = self.view(layout, s)?;
        let slots = &view.shape.slots;
        let Some(from) = slots.iter().position(|sl| sl.leg == use_.leg && !matches!(sl.role, Role::Spare(_))) else {
            use_.mark(s); // the leg holds only a spare (or nothing) here
            return Ok(0);
        };
        let to = slots
            .iter()
            .position(|sl| sl.role == Role::Spare(use_.ordinal))
            .ok_or_else(|| ArrayError::Unrecoverable { stripe: s, detail: format!("no spare slot {}", use_.ordinal) })?;
        if !self.legs.get(slots[to].leg as usize).is_some_and(|l| l.is_alive()) {
            return Err(ArrayError::Unrecoverable { stripe: s, detail: format!("spare slot {} is on dead leg {}", use_.ordinal, slots[to].leg) });
        }
        let cb = self.chunk_bytes as usize;
        let d = layout.descriptor.data_chunks as usize;
        let mut content = vec![0u8; cb];
        let mut moved = cb as u64;
        match &slots[from].role {
            Role::Data(k) | Role::Replica(k) => {
                self.rebuild(layout, &view, s, *k as usize, 0, &mut content)?;
                moved += cb as u64;
            }
            Role::Parity { coefficients, .. } => {
                let mut data = vec![vec![0u8; cb]; d];
                for (k, buf) in data.iter_mut().enumerate() {
                    self.rebuild(layout, &view, s, k, 0, buf)?;
                }
                moved += (d * cb) as u64;
                let values: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
                encode(&EncodeMatrix::new(&[coefficients.to_vec()]), &values, &mut [&mut content]);
            }
            // `from` was chosen among the other roles.
            Role::Spare(_) => return Ok(0),
        }
        if !self.leg_write(slots[to].leg, view.place(to).chunk, 0, &content, false) {
            return Err(ArrayError::Unrecoverable { stripe: s, detail: format!("writing spare slot {} on leg {} failed", use_.ordinal, slots[to].leg) });
        }
        use_.mark(s);
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Slot;

    fn slot(leg: u32, chunk: u64, role: Role) -> Slot {
        Slot { leg, chunk, role }
    }

    #[test]
    fn redirect_swaps_only_covered_stripes_and_chains_uses() {
        let shape = Stripe { slots: vec![slot(0, 10, Role::Data(0)), slot(1, 11, Role::Spare(0)), slot(2, 12, Role::Spare(1)), slot(3, 13, Role::Data(1))] };
        let first = Arc::new(SpareUse::new(0, 0, 128, false));
        assert!(redirect(&shape, std::slice::from_ref(&first), 5).is_none(), "not rebuilt yet: untouched");
        first.mark(5);
        let moved = redirect(&shape, std::slice::from_ref(&first), 5).unwrap();
        assert_eq!((moved.slots[0].leg, moved.slots[0].chunk, &moved.slots[0].role), (1, 11, &Role::Data(0)));
        assert_eq!((moved.slots[1].leg, &moved.slots[1].role), (0, &Role::Spare(0)));
        // Leg 1 then dies: its chunk here is data 0 (from leg 0), rebuilt into spare 1.
        let second = Arc::new(SpareUse::new(1, 1, 128, true));
        let both = redirect(&shape, &[first.clone(), second], 5).unwrap();
        assert_eq!((both.slots[0].leg, both.slots[0].chunk), (2, 12));
        assert!(redirect(&shape, &[first], 6).is_none());
    }
}
