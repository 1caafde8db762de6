//! The array's staged degraded read (`device::staged`): a read inside one
//! chunk whose leg has failed, rebuilt on the ublk queue thread's ring. The
//! survivors the decode plan names are read together into scratch buffers
//! with every other request's I/O, then the chunk's bytes are solved from
//! them, exactly as `Array::rebuild` does for the plain path.
//!
//! The stripe's lock is tried, not waited for, and held until the read is
//! over, so no write to the stripe lands between the sources' reads (the
//! plain path holds it the same way). A source that fails to read abandons
//! the read: the plain path reads again, fails that leg, and plans anew.

use super::decode::Plan;
use super::scratch::{self, Scratch};
use super::{Array, Counters};
use crate::device::staged::{FileIo, StagedRead, Step, all_moved};
use crate::layout::Role;
use crate::parity::{EncodeMatrix, encode};
use parking_lot::MutexGuard;
use std::sync::Arc;

pub struct DegradedRead<'a> {
    array: &'a Array,
    /// Which data chunk of the stripe, and the plan that rebuilds it.
    k: usize,
    plan: Arc<Plan>,
    sources: Vec<Scratch>,
    /// The operations of the stage in flight (their lengths), when one is.
    reading: Option<Vec<FileIo>>,
    /// Where the sources are read: (leg, chunk on it).
    places: Vec<(u32, u64)>,
    within: u64,
    len: usize,
    /// When the read was staged, and when its sources were asked for.
    started: std::time::Instant,
    stage_started: std::time::Instant,
    _held: MutexGuard<'a, ()>,
}

impl Array {
    /// A staged read of `len` bytes at `offset` when they lie in one chunk
    /// that no live leg holds and the stripe is free.
    pub(super) fn stage_degraded_read(&self, offset: u64, len: u64) -> Option<DegradedRead<'_>> {
        let layout = self.layout.load_full();
        self.check_range(&layout, offset, len).ok()?;
        let cb = self.chunk_bytes;
        let d = u64::from(layout.descriptor.data_chunks);
        if len == 0 || d == 0 || cb == 0 || !self.spares.load().is_empty() {
            return None;
        }
        let (c, within) = (offset / cb, offset % cb);
        if within + len > cb {
            return None;
        }
        let (s, k) = (c / d, (c % d) as usize);
        let held = self.locks.try_lock(s)?;
        let view = self.view(&layout, s).ok()?;
        let slots = &view.shape.slots;
        // A live copy is read_extents' business (or the plain path's).
        if slots.iter().any(|sl| matches!(sl.role, Role::Data(j) | Role::Replica(j) if j as usize == k) && self.leg_alive(sl.leg)) {
            return None;
        }
        let plan = self.plans.plan(&view.shape, d as usize, |leg| self.leg_alive(leg))?;
        plan.rebuild.get(k)?;
        let places = plan.sources.iter().map(|&i| Some((slots.get(i)?.leg, view.place(i).chunk))).collect::<Option<Vec<_>>>()?;
        let len = usize::try_from(len).ok()?;
        let now = std::time::Instant::now();
        Some(DegradedRead {
            array: self,
            k,
            sources: scratch::take(plan.sources.len(), len),
            plan,
            reading: None,
            places,
            within,
            len,
            started: now,
            stage_started: now,
            _held: held,
        })
    }
}

impl StagedRead for DegradedRead<'_> {
    fn advance(&mut self, buf: &mut [u8], results: &[i32]) -> Step {
        let Some(ops) = self.reading.take() else {
            // Stage one: every source at once.
            let Ok(len) = u32::try_from(self.len) else { return Step::Abandon };
            let mut ops = Vec::with_capacity(self.places.len());
            for (&(leg, chunk), source) in self.places.iter().zip(self.sources.iter_mut()) {
                let Some(direct) = self.array.direct(leg, chunk, self.within, source.as_ptr(), self.len) else { return Step::Abandon };
                ops.push(FileIo { file: direct.file.clone(), offset: direct.offset, buf: source.as_mut_ptr(), len, write: false, dsync: false });
            }
            let step: Vec<FileIo> = ops.iter().map(|op| FileIo { file: op.file.clone(), ..*op }).collect();
            self.reading = Some(ops);
            self.stage_started = std::time::Instant::now();
            return Step::Io(step);
        };
        if !all_moved(&ops, results) || buf.len() != self.len {
            return Step::Abandon;
        }
        let a = self.array;
        let took = self.stage_started.elapsed();
        for &(leg, _) in &self.places {
            if let Some(l) = a.legs.get(leg as usize) {
                Counters::add(&l.reads, 1);
                l.latency.read.record(took);
            }
        }
        let refs: Vec<&[u8]> = self.sources.iter().map(|b| &b[..]).collect();
        encode(&EncodeMatrix::new(&[self.plan.rebuild[self.k].clone()]), &refs, &mut [buf]);
        Counters::add(&a.counters.reads, 1);
        Counters::add(&a.counters.read_bytes, self.len as u64);
        Counters::add(&a.counters.degraded_reads, 1);
        a.latency.read.since(self.started);
        Step::Done
    }
}
