//! A request's leg I/O issued together (`device::ring`): the reads a
//! parity write or a degraded read needs, and the writes that follow,
//! each take one round trip of the slowest leg. Any operation the ring
//! cannot do or that fails is done again the plain way (`leg_read`,
//! `leg_write`), which is where a failing leg is failed: the outcome is
//! the same as doing them one by one, only sooner.

use super::{Array, Counters};
use crate::device::ring::{self, Data, Op};
use std::sync::atomic::Ordering;

/// Bytes `within..within + buf.len()` of chunk `chunk` of leg `leg`.
pub(super) struct LegRead<'a> {
    pub leg: u32,
    pub chunk: u64,
    pub within: u64,
    pub buf: &'a mut [u8],
}

/// Where a leg's bytes live, when the ring may move them.
pub(super) struct Direct {
    pub file: std::sync::Arc<std::fs::File>,
    pub offset: u64,
}

impl Array {
    pub(super) fn direct(&self, leg: u32, chunk: u64, within: u64, buf: *const u8, len: usize) -> Option<Direct> {
        let l = self.legs.get(leg as usize)?;
        let at = l.offset + chunk * self.chunk_bytes + within;
        let (file, offset) = l.device().direct_file(at, buf, len)?;
        Some(Direct { file, offset })
    }

    /// Read every one of `reads` at once; true where it was read. A false
    /// one's leg was dead or has been failed, as `leg_read` does.
    pub(super) fn leg_read_all(&self, reads: &mut [LegRead<'_>]) -> Vec<bool> {
        let mut ok = vec![false; reads.len()];
        let alive: Vec<bool> = reads.iter().map(|r| self.legs.get(r.leg as usize).is_some_and(|l| l.is_alive())).collect();
        let direct: Vec<Option<Direct>> =
            reads.iter().zip(&alive).map(|(r, &live)| if live { self.direct(r.leg, r.chunk, r.within, r.buf.as_ptr(), r.buf.len()) } else { None }).collect();
        if direct.iter().filter(|d| d.is_some()).count() > 1 {
            let started = std::time::Instant::now();
            let which: Vec<usize> = (0..reads.len()).filter(|&i| direct[i].is_some()).collect();
            for &i in &which {
                self.legs[reads[i].leg as usize].inflight.fetch_add(1, Ordering::Relaxed);
            }
            let mut ops = Vec::new();
            for (r, d) in reads.iter_mut().zip(&direct) {
                if let Some(d) = d {
                    ops.push(Op { file: &d.file, offset: d.offset, data: Data::Read(&mut *r.buf), dsync: false });
                }
            }
            let results = ring::run(&mut ops);
            drop(ops);
            let took = started.elapsed();
            for (n, &i) in which.iter().enumerate() {
                let l = &self.legs[reads[i].leg as usize];
                l.inflight.fetch_sub(1, Ordering::Relaxed);
                if results.as_ref().is_some_and(|r| r[n].is_ok()) {
                    // Each took the ring's round trip: the slowest leg's.
                    l.record_read_latency(took);
                    l.last_position.store(direct[i].as_ref().map_or(0, |d| d.offset) + reads[i].buf.len() as u64, Ordering::Relaxed);
                    Counters::add(&l.reads, 1);
                    ok[i] = true;
                }
            }
        }
        // The rest the plain way, those that follow one another on a leg
        // as one read (as `leg_write_all` does its writes).
        let cb = self.chunk_bytes;
        let places: Vec<(u32, u64, usize)> = reads.iter().map(|r| (r.leg, r.chunk.saturating_mul(cb).saturating_add(r.within), r.buf.len())).collect();
        let starts: Vec<(u64, u64)> = reads.iter().map(|r| (r.chunk, r.within)).collect();
        let rest: Vec<usize> = (0..reads.len()).filter(|&i| !ok[i] && alive[i]).collect();
        let mut bufs: Vec<Option<&mut [u8]>> = reads.iter_mut().map(|r| Some(&mut *r.buf)).collect();
        for run in runs_on_legs(&places, rest) {
            let (leg, (chunk, within)) = (places[run[0]].0, starts[run[0]]);
            let mut run_bufs: Vec<&mut [u8]> = run.iter().filter_map(|&i| bufs[i].take()).collect();
            let done = self.leg_read_scattered(leg, chunk, within, &mut run_bufs);
            for &i in &run {
                ok[i] = done;
            }
        }
        ok
    }

    /// Write every one of `writes` (leg, chunk, data) at `within` of its
    /// chunk at once, to a leg being rebuilt too and to a replacement (those
    /// the plain way). True where some device took it, as `leg_write`.
    pub(super) fn leg_write_all(&self, writes: &[(u32, u64, &[u8])], within: u64, fua: bool) -> Vec<bool> {
        let mut ok = vec![false; writes.len()];
        let ringable = |&(leg, chunk, buf): &(u32, u64, &[u8])| {
            let l = self.legs.get(leg as usize)?;
            if !l.is_writable() || l.replacement().is_some() {
                return None;
            }
            self.direct(leg, chunk, within, buf.as_ptr(), buf.len())
        };
        let direct: Vec<Option<Direct>> = writes.iter().map(ringable).collect();
        if direct.iter().filter(|d| d.is_some()).count() > 1 {
            let mut ops = Vec::new();
            let mut which = Vec::new();
            for (i, (w, d)) in writes.iter().zip(&direct).enumerate() {
                if let Some(d) = d {
                    ops.push(Op { file: &d.file, offset: d.offset, data: Data::Write(w.2), dsync: fua });
                    which.push(i);
                }
            }
            for &i in &which {
                self.legs[writes[i].0 as usize].inflight.fetch_add(1, Ordering::Relaxed);
            }
            let started = std::time::Instant::now();
            let results = ring::run(&mut ops);
            let took = started.elapsed();
            drop(ops);
            for (n, &i) in which.iter().enumerate() {
                let l = &self.legs[writes[i].0 as usize];
                l.inflight.fetch_sub(1, Ordering::Relaxed);
                if results.as_ref().is_some_and(|r| r[n].is_ok()) {
                    l.latency.write.record(took);
                    Counters::add(&l.writes, 1);
                    ok[i] = true;
                }
            }
        }
        // The rest the plain way, those that follow one another on a leg
        // as one write: over a remote leg a 1 MiB raid1 write of 64 KiB
        // chunks was 16 round trips per leg, one after the other.
        let cb = self.chunk_bytes;
        let places: Vec<(u32, u64, usize)> =
            writes.iter().map(|&(leg, chunk, buf)| (leg, chunk.saturating_mul(cb).saturating_add(within), buf.len())).collect();
        let rest: Vec<usize> = (0..writes.len()).filter(|&i| !ok[i]).collect();
        for run in runs_on_legs(&places, rest) {
            let (leg, chunk, _) = writes[run[0]];
            let bufs: Vec<&[u8]> = run.iter().map(|&i| writes[i].2).collect();
            let done = self.leg_write_gathered(leg, chunk, within, &bufs, fua);
            for &i in &run {
                ok[i] = done;
            }
        }
        ok
    }
}

/// `which` of `places` (leg, byte on the leg, length) cut into runs that
/// follow one another on one leg (each the next bytes of the leg after the
/// one before), in leg and offset order; a run holds at most `RUN_BYTES`
/// and `RUN_PIECES`.
fn runs_on_legs(places: &[(u32, u64, usize)], mut which: Vec<usize>) -> Vec<Vec<usize>> {
    which.sort_unstable_by_key(|&i| (places[i].0, places[i].1));
    let mut runs: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0usize;
    for i in which {
        let (leg, at, len) = places[i];
        let follows = runs.last().and_then(|r| r.last()).is_some_and(|&p| {
            let (p_leg, p_at, p_len) = places[p];
            p_leg == leg && p_at.checked_add(p_len as u64) == Some(at) && bytes + len <= RUN_BYTES
        });
        match runs.last_mut() {
            Some(run) if follows && run.len() < RUN_PIECES => {
                run.push(i);
                bytes += len;
            }
            _ => {
                runs.push(vec![i]);
                bytes = len;
            }
        }
    }
    runs
}

/// The most one gathered read or write carries: a remote leg's largest
/// request (`NbdLeg::MAX_CHUNK`), and few enough buffers for one `writev`.
const RUN_BYTES: usize = 4 << 20;
const RUN_PIECES: usize = 256;
