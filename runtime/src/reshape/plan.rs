//! Where a reshape may write, and how much it may move at once.
//!
//! The new layout's data starts `shift` bytes before the old layout's on
//! every leg (md's modern reshape: the data offset changes, no backup
//! file). Data moves forward in windows of whole new stripes: a window is
//! read through the old layout, written through the new one as full
//! stripes, the legs are flushed, and only then is the position recorded.
//!
//! The rule that makes every crash recoverable: while a window is moved,
//! every chunk the new layout writes for it must end, on its leg, at or
//! before the first byte of every chunk of every old stripe that still
//! holds data at or beyond the window's start. Those old stripes (data,
//! parity and spares alike, so they stay decodable with a leg lost) are
//! what the array is read from after a crash inside the window, and what
//! the rest of the move reads. The rule is checked for any two proven
//! layouts, whatever their shapes, by walking both maps: nothing here
//! assumes that a layout places stripe `s` on row `s`.
//!
//! The smallest shift for which every window of one stripe is safe is
//! [`minimal_shift`]; a larger shift lets windows grow (the new layout runs
//! further ahead of what it may not touch), so fewer positions are
//! recorded.

use crate::layout::map::MapError;
use crate::layout::proven::ProvenLayout;
use std::collections::VecDeque;
use std::ops::Range;

/// Data offsets are 4 KiB aligned (`meta::validate`).
pub const SHIFT_ALIGN: u64 = 4096;

/// Most old stripes an aperiodic old layout may have: its chunks still
/// needed are tracked one entry per stripe and leg in the worst case.
pub const APERIODIC_STRIPES_MAX: u64 = 1 << 22;

/// Why a reshape cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the new layout holds {new} bytes, less than the {old} the array holds now: a reshape may not shrink the array")]
    Shrinks { old: u64, new: u64 },
    #[error("the new layout has no data chunks")]
    NoData,
    #[error("the old layout is aperiodic with {stripes} stripes; a reshape plan tracks at most {APERIODIC_STRIPES_MAX}")]
    TooManyStripes { stripes: u64 },
    #[error(
        "stripe {stripe} of the new layout writes up to byte {end} of leg {leg}'s data, beyond the {limit} that the old layout's unmoved data leaves free with a shift of {shift} bytes"
    )]
    Unsafe { stripe: u64, leg: u32, end: u64, limit: u64, shift: u64 },
    #[error("the new layout's chunk at {what} does not fit 64 bits")]
    Overflow { what: &'static str },
    #[error("{0}")]
    Map(#[from] MapError),
}

/// Per leg, the lowest byte (relative to the old data offset) of any
/// chunk of the old stripes still holding unmoved data: a sliding minimum
/// over the stripes from the first unmoved one. A periodic layout adds
/// its advance to every chunk each period, so one period from the first
/// unmoved stripe holds every leg's minimum; an aperiodic one needs all
/// the stripes to its end.
struct OldFloor<'a> {
    old: &'a ProvenLayout,
    chunk: u64,
    /// Stripes looked at past the first unmoved one.
    horizon: u64,
    /// First unmoved old stripe.
    from: u64,
    /// Old stripes pushed so far (`from..pushed`).
    pushed: u64,
    /// Per leg: (stripe, lowest byte of the leg in that stripe), bytes
    /// increasing from front to back.
    legs: Vec<VecDeque<(u64, u64)>>,
}

impl<'a> OldFloor<'a> {
    fn new(old: &'a ProvenLayout, legs: usize) -> Result<Self, PlanError> {
        let d = &old.descriptor;
        let horizon = if d.is_periodic() && d.period > 0 {
            d.period
        } else {
            if d.stripes > APERIODIC_STRIPES_MAX {
                return Err(PlanError::TooManyStripes { stripes: d.stripes });
            }
            d.stripes
        };
        Ok(OldFloor { old, chunk: old.geometry.chunk_bytes(), horizon, from: 0, pushed: 0, legs: vec![VecDeque::new(); legs] })
    }

    /// Move the first unmoved stripe to `from` (forward only; going back
    /// starts over).
    fn seek(&mut self, from: u64) -> Result<(), PlanError> {
        if from < self.from {
            self.from = from;
            self.pushed = from;
            self.legs.iter_mut().for_each(VecDeque::clear);
        }
        self.from = from;
        for q in &mut self.legs {
            while q.front().is_some_and(|&(s, _)| s < from) {
                q.pop_front();
            }
        }
        self.pushed = self.pushed.max(from);
        let end = from.saturating_add(self.horizon).min(self.old.descriptor.stripes);
        while self.pushed < end {
            let s = self.pushed;
            let view = self.old.stripe(s)?;
            for i in 0..view.shape.slots.len() {
                let p = view.place(i);
                let Some(q) = self.legs.get_mut(p.leg as usize) else { continue };
                let start = p.chunk.checked_mul(self.chunk).ok_or(PlanError::Overflow { what: "old chunk" })?;
                while q.back().is_some_and(|&(_, b)| b >= start) {
                    q.pop_back();
                }
                q.push_back((s, start));
            }
            self.pushed += 1;
        }
        Ok(())
    }

    /// The lowest byte leg `leg` must keep (None: it holds nothing unmoved).
    fn floor(&self, leg: usize) -> Option<u64> {
        self.legs.get(leg).and_then(|q| q.front()).map(|&(_, b)| b)
    }
}

/// The windows of a reshape from `old` to `new` with a given shift.
pub struct Windows<'a> {
    new: &'a ProvenLayout,
    floor: OldFloor<'a>,
    shift: u64,
    /// Bytes of data in one stripe, old and new.
    old_stripe_bytes: u64,
    new_stripe_bytes: u64,
    new_chunk: u64,
    /// Most bytes of data one window moves.
    max_window: u64,
}

impl<'a> Windows<'a> {
    /// Windows of at most `max_window` bytes (at least one stripe), for
    /// the new layout's data starting `shift` bytes before the old's.
    pub fn new(old: &'a ProvenLayout, new: &'a ProvenLayout, shift: u64, max_window: u64) -> Result<Self, PlanError> {
        if new.capacity_bytes() < old.capacity_bytes() {
            return Err(PlanError::Shrinks { old: old.capacity_bytes(), new: new.capacity_bytes() });
        }
        let new_stripe_bytes = u64::from(new.descriptor.data_chunks) * new.geometry.chunk_bytes();
        if new_stripe_bytes == 0 {
            return Err(PlanError::NoData);
        }
        let legs = old.geometry.legs().max(new.geometry.legs()) as usize;
        Ok(Windows {
            new,
            floor: OldFloor::new(old, legs)?,
            shift,
            old_stripe_bytes: (u64::from(old.descriptor.data_chunks) * old.geometry.chunk_bytes()).max(1),
            new_stripe_bytes,
            new_chunk: new.geometry.chunk_bytes(),
            max_window: max_window.max(new_stripe_bytes),
        })
    }

    /// Bytes of data in one new stripe: positions are multiples of it.
    pub fn stripe_bytes(&self) -> u64 {
        self.new_stripe_bytes
    }

    /// The new layout's stripes.
    pub fn stripes(&self) -> u64 {
        self.new.descriptor.stripes
    }

    /// The first old stripe holding data at or beyond new stripe `t`.
    fn first_unmoved(&self, t: u64) -> u64 {
        let bytes = u128::from(t) * u128::from(self.new_stripe_bytes);
        u64::try_from(bytes / u128::from(self.old_stripe_bytes)).unwrap_or(u64::MAX)
    }

    /// Per leg, the highest byte end (relative to the new data offset) of
    /// new stripe `t`'s chunks.
    fn ends(&self, t: u64, out: &mut [u64]) -> Result<(), PlanError> {
        let view = self.new.stripe(t)?;
        for i in 0..view.shape.slots.len() {
            let p = view.place(i);
            let end = p.chunk.checked_add(1).and_then(|c| c.checked_mul(self.new_chunk)).ok_or(PlanError::Overflow { what: "new chunk" })?;
            if let Some(e) = out.get_mut(p.leg as usize) {
                *e = (*e).max(end);
            }
        }
        Ok(())
    }

    /// The window starting at new stripe `from`: the most stripes, up to
    /// the window size, that are safe together. Refused when not even
    /// stripe `from` alone is safe with this shift.
    pub fn next(&mut self, from: u64) -> Result<Range<u64>, PlanError> {
        let total = self.new.descriptor.stripes;
        if from >= total {
            return Ok(total..total);
        }
        self.floor.seek(self.first_unmoved(from))?;
        let legs = self.floor.legs.len();
        let limits: Vec<Option<u64>> = (0..legs).map(|l| self.floor.floor(l).map(|b| b.saturating_add(self.shift))).collect();
        let most = (self.max_window / self.new_stripe_bytes).max(1);
        // The old stripes from the window's start stay whole until the
        // whole window is durable: one set of limits for all its stripes.
        let mut t = from;
        while t < total && t - from < most {
            let mut mine = vec![0u64; legs];
            self.ends(t, &mut mine)?;
            let breach = (0..legs).find(|&l| limits[l].is_some_and(|limit| mine[l] > limit));
            if let Some(l) = breach {
                if t == from {
                    return Err(PlanError::Unsafe { stripe: t, leg: l as u32, end: mine[l], limit: limits[l].unwrap_or(0), shift: self.shift });
                }
                break;
            }
            t += 1;
        }
        Ok(from..t)
    }
}

/// The smallest shift (4 KiB aligned) for which every window of one new
/// stripe is safe: the furthest any new stripe's chunk reaches past the
/// old layout's unmoved data on its leg.
pub fn minimal_shift(old: &ProvenLayout, new: &ProvenLayout) -> Result<u64, PlanError> {
    // A shift so large nothing is ever refused: the walk then measures.
    let mut w = Windows::new(old, new, u64::MAX / 2, 0)?;
    let legs = w.floor.legs.len();
    let mut need = 0u64;
    for t in 0..w.stripes() {
        w.floor.seek(w.first_unmoved(t))?;
        let mut mine = vec![0u64; legs];
        w.ends(t, &mut mine)?;
        for (l, end) in mine.iter().enumerate() {
            if let Some(floor) = w.floor.floor(l) {
                need = need.max(end.saturating_sub(floor));
            }
        }
    }
    Ok(need.div_ceil(SHIFT_ALIGN) * SHIFT_ALIGN)
}
