//! The array's staged write (`device::staged`): a write inside one stripe
//! that touches the same columns of every chunk it touches (a 4 KiB write,
//! a whole chunk, whole chunks side by side), on an array whose legs are
//! all in sync, with no rebuild or spare in play, and whose metadata needs
//! no write first. Stage one reads what the parity needs (read-modify-write:
//! the old data and old parity; reconstruct-write: the untouched chunks);
//! stage two writes the data to every copy and the new parity. The choice
//! between the two and the arithmetic are the plain path's (`io.rs`); only
//! who waits for the legs differs.
//!
//! Everything that could block is tried, not waited for: the stripe's lock,
//! the write-intent region, the superblocks' dirty mark. Anything else
//! (a leg dies between the stages, a buffer O_DIRECT cannot take) abandons
//! the write before a byte of it is written, except a failed write of
//! stage two: its leg is failed first, exactly as the plain path would
//! fail it, so the plain write that follows sees a stripe that agrees with
//! its live legs.

use super::intent::WriteGuard;
use super::safe_mode::Writing;
use super::scratch::{self, Scratch};
use super::{Array, Counters};
use crate::device::staged::{FileIo, StagedWrite, Step};
use crate::layout::Role;
use crate::layout::map::StripeView;
use crate::layout::proven::ProvenLayout;
use parking_lot::MutexGuard;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// How the parity of the stripe is brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parity {
    /// The layout keeps none (raid0, mirrors).
    Without,
    /// Every data chunk is written: parity from the new data alone.
    Full,
    ReadModifyWrite,
    ReconstructWrite,
}

/// Where the write is between stages.
enum Stage {
    Start,
    /// Stage one is in flight: the legs read, in operation order.
    Reading(Vec<u32>),
    /// Stage two is in flight: the legs written, in operation order.
    Writing(Vec<u32>),
    Over,
}

pub struct ArrayWrite<'a> {
    array: &'a Array,
    layout: Arc<ProvenLayout>,
    s: u64,
    view: StripeView,
    /// The column run: bytes `x0..x0 + len` of each touched chunk.
    x0: u64,
    len: usize,
    /// Each touched data chunk, and where its bytes start in the data.
    touched: Vec<(usize, usize)>,
    /// The stripe's parity slots and their coefficients.
    parity: Vec<(usize, Vec<u8>)>,
    how: Parity,
    /// Slots read in stage one, one buffer each.
    read_slots: Vec<usize>,
    bufs: Vec<Scratch>,
    /// The new parities, when computed apart from `bufs`.
    out: Vec<Scratch>,
    fua: bool,
    stage: Stage,
    /// When the write was staged, and when its stage in flight was handed
    /// out (the request's and the legs' latency).
    started: Instant,
    stage_started: Instant,
    // Released in this order when the write is over, as the plain path
    // releases them: the stripe, its region, the array's write count.
    _held: MutexGuard<'a, ()>,
    _intent: Option<WriteGuard<'a>>,
    _writing: Writing<'a>,
}

impl Array {
    /// A staged write of `len` bytes at `offset`, when it qualifies (see
    /// the module documentation) and nothing it needs is held.
    pub(super) fn stage(&self, offset: u64, len: u64, fua: bool) -> Option<ArrayWrite<'_>> {
        let layout = self.layout.load_full();
        self.check_range(&layout, offset, len).ok()?;
        let cb = self.chunk_bytes;
        let d = u64::from(layout.descriptor.data_chunks);
        if len == 0 || d == 0 || cb == 0 {
            return None;
        }
        let stripe_bytes = d * cb;
        let (s, a) = (offset / stripe_bytes, offset % stripe_bytes);
        let b = a + len;
        if b > stripe_bytes {
            return None;
        }
        let (k0, k1) = (a / cb, (b - 1) / cb);
        let (x0, run) = match (k0 == k1, a % cb == 0 && b % cb == 0) {
            (true, _) => (a % cb, len),
            (false, true) => (0, cb),
            (false, false) => return None,
        };
        if self.unrecorded_failures.load(Ordering::SeqCst) != 0 || !self.spares.load().is_empty() || !self.all_legs_plain() {
            return None;
        }
        let writing = self.try_write_start()?;
        let intent = self.intent_try_begin(s)?;
        let held = self.locks.try_lock(s)?;
        let view = self.view(&layout, s).ok()?;
        let touched: Vec<(usize, usize)> = (k0..=k1).map(|k| (k as usize, (k * cb + x0 - a) as usize)).collect();
        let slots = &view.shape.slots;
        let parity: Vec<(usize, Vec<u8>)> = slots
            .iter()
            .enumerate()
            .filter_map(|(i, sl)| match &sl.role {
                Role::Parity { coefficients, .. } => Some((i, coefficients.to_vec())),
                _ => None,
            })
            .collect();
        let first_copy = |k: usize| slots.iter().position(|sl| matches!(sl.role, Role::Data(j) | Role::Replica(j) if j as usize == k));
        let (t, p, d) = (touched.len(), parity.len(), d as usize);
        let how = if p == 0 {
            Parity::Without
        } else if t == d {
            Parity::Full
        } else if t + p < d - t && self.parity_trusted(s) {
            Parity::ReadModifyWrite
        } else {
            Parity::ReconstructWrite
        };
        let read_slots: Vec<usize> = match how {
            Parity::Without | Parity::Full => Vec::new(),
            Parity::ReadModifyWrite => touched.iter().map(|&(k, _)| first_copy(k)).chain(parity.iter().map(|&(i, _)| Some(i))).collect::<Option<_>>()?,
            Parity::ReconstructWrite => (0..d).filter(|k| !touched.iter().any(|&(t, _)| t == *k)).map(first_copy).collect::<Option<_>>()?,
        };
        let run = usize::try_from(run).ok()?;
        let bufs = scratch::take(read_slots.len(), run);
        let now = Instant::now();
        Some(ArrayWrite {
            array: self,
            layout,
            s,
            view,
            x0,
            len: run,
            touched,
            parity,
            how,
            read_slots,
            bufs,
            out: Vec::new(),
            fua,
            stage: Stage::Start,
            started: now,
            stage_started: now,
            _held: held,
            _intent: intent,
            _writing: writing,
        })
    }

    /// Every leg in sync, none being rebuilt into a replacement.
    fn all_legs_plain(&self) -> bool {
        self.legs.iter().all(|l| l.is_alive() && l.replacement().is_none())
    }
}

impl ArrayWrite<'_> {
    /// The file operation for `len` bytes of slot `i`'s chunk at the run's
    /// columns, from or into `buf`.
    fn file_io(&self, i: usize, buf: *mut u8, write: bool) -> Option<(FileIo, u32)> {
        let leg = self.view.shape.slots.get(i)?.leg;
        let direct = self.array.direct(leg, self.view.place(i).chunk, self.x0, buf, self.len)?;
        let len = u32::try_from(self.len).ok()?;
        Some((FileIo { file: direct.file, offset: direct.offset, buf, len, write, dsync: write && self.fua }, leg))
    }

    fn reads(&mut self) -> Option<(Vec<FileIo>, Vec<u32>)> {
        let targets: Vec<(usize, *mut u8)> = self.read_slots.iter().zip(self.bufs.iter_mut()).map(|(&i, b)| (i, b.as_mut_ptr())).collect();
        targets.into_iter().map(|(i, buf)| self.file_io(i, buf, false)).collect::<Option<Vec<_>>>().map(|v| v.into_iter().unzip())
    }

    /// The new parity, from what stage one read (if anything) and `data`.
    fn compute(&mut self, data: &[u8]) {
        let new: Vec<(usize, &[u8])> = self.touched.iter().map(|&(k, at)| (k, &data[at..at + self.len])).collect();
        let coefficients: Vec<&[u8]> = self.parity.iter().map(|(_, c)| &c[..]).collect();
        match self.how {
            Parity::Without => {}
            Parity::Full => {
                let values: Vec<&[u8]> = new.iter().map(|(_, v)| *v).collect();
                self.out = super::io::encode_parity(&coefficients, &values, self.len);
            }
            Parity::ReadModifyWrite => {
                let (old, parity) = self.bufs.split_at_mut(new.len());
                super::io::rmw_parity(&coefficients, &new, old, parity);
            }
            Parity::ReconstructWrite => {
                let d = self.layout.descriptor.data_chunks as usize;
                let mut read = self.bufs.iter();
                let values: Vec<&[u8]> = (0..d)
                    .map(|k| match new.iter().find(|(t, _)| *t == k) {
                        Some((_, v)) => *v,
                        None => read.next().map_or(&[][..], |b| &b[..]),
                    })
                    .collect();
                self.out = super::io::encode_parity(&coefficients, &values, self.len);
            }
        }
    }

    /// Stage two: every copy of the touched data, then every parity.
    fn writes(&mut self, data: &[u8]) -> Option<(Vec<FileIo>, Vec<u32>)> {
        // Under the stripe's lock since the start, but legs can die or gain
        // a replacement meanwhile: then the plain path, nothing written yet.
        if !self.array.all_legs_plain() {
            return None;
        }
        let slots = &self.view.shape.slots;
        let mut targets: Vec<(usize, *mut u8)> = Vec::new();
        for &(k, at) in &self.touched {
            for (i, sl) in slots.iter().enumerate() {
                if matches!(sl.role, Role::Data(j) | Role::Replica(j) if j as usize == k) {
                    targets.push((i, data[at..].as_ptr().cast_mut()));
                }
            }
        }
        let parity_bufs = match self.how {
            Parity::ReadModifyWrite => &mut self.bufs[self.touched.len()..],
            _ => &mut self.out[..],
        };
        targets.extend(self.parity.iter().zip(parity_bufs.iter_mut()).map(|(&(i, _), b)| (i, b.as_mut_ptr())));
        targets.into_iter().map(|(i, buf)| self.file_io(i, buf, true)).collect::<Option<Vec<_>>>().map(|v| v.into_iter().unzip())
    }

    /// The write went through: count it, and make sure nothing it relies on
    /// is still to be recorded.
    fn finish(&self) -> Step {
        let a = self.array;
        if a.check_stripe_survives(&self.layout, &self.view, self.s).is_err() || a.unrecorded_failures.load(Ordering::SeqCst) != 0 {
            return Step::Abandon;
        }
        Counters::add(&a.counters.writes, 1);
        Counters::add(&a.counters.written_bytes, (self.len * self.touched.len()) as u64);
        a.latency.write.since(self.started);
        match self.how {
            Parity::Without => {}
            Parity::Full => Counters::add(&a.counters.full_stripe, 1),
            Parity::ReadModifyWrite => Counters::add(&a.counters.rmw, 1),
            Parity::ReconstructWrite => Counters::add(&a.counters.rcw, 1),
        }
        Step::Done
    }

    /// Count each leg's operations; false if any failed.
    fn settle(&self, legs: &[u32], results: &[i32], write: bool) -> bool {
        let mut all = legs.len() == results.len();
        let took = self.stage_started.elapsed();
        for (&leg, &r) in legs.iter().zip(results) {
            let Some(l) = self.array.legs.get(leg as usize) else { continue };
            if usize::try_from(r).ok() == Some(self.len) {
                Counters::add(if write { &l.writes } else { &l.reads }, 1);
                // The stage's operations went together: each took its time.
                if write { &l.latency.write } else { &l.latency.read }.record(took);
                continue;
            }
            all = false;
            if write {
                // As `leg_write` would: the leg holds neither the old nor
                // the new data for sure, so it is failed before anything
                // else reads the stripe through it.
                Counters::add(&l.errors, 1);
                let e = if r < 0 { std::io::Error::from_raw_os_error(-r) } else { std::io::Error::other(format!("short write: {r} of {} bytes", self.len)) };
                self.array.mark_dead_on(leg as usize, "write", &e);
            }
        }
        all
    }

    fn io(&mut self, planned: Option<(Vec<FileIo>, Vec<u32>)>, write: bool) -> Step {
        match planned {
            Some((ops, legs)) => {
                self.stage = if write { Stage::Writing(legs) } else { Stage::Reading(legs) };
                self.stage_started = Instant::now();
                Step::Io(ops)
            }
            None => Step::Abandon,
        }
    }
}

impl StagedWrite for ArrayWrite<'_> {
    fn advance(&mut self, data: &[u8], results: &[i32]) -> Step {
        match std::mem::replace(&mut self.stage, Stage::Over) {
            Stage::Start => {
                if self.touched.iter().any(|&(_, at)| at + self.len > data.len()) {
                    return Step::Abandon;
                }
                if self.read_slots.is_empty() {
                    self.compute(data);
                    let planned = self.writes(data);
                    return self.io(planned, true);
                }
                let planned = self.reads();
                self.io(planned, false)
            }
            Stage::Reading(legs) => {
                // A failed read changed nothing: the plain path reads again
                // and fails the leg if it fails again.
                if !self.settle(&legs, results, false) {
                    return Step::Abandon;
                }
                self.compute(data);
                let planned = self.writes(data);
                self.io(planned, true)
            }
            Stage::Writing(legs) => {
                if !self.settle(&legs, results, true) {
                    return Step::Abandon;
                }
                self.finish()
            }
            Stage::Over => Step::Abandon,
        }
    }
}
