//! The array's read, write, flush, discard and write-zeroes paths.

use super::batch::LegRead;
use super::scratch::{self, Scratch};
use super::{Array, ArrayError, Counters};
use crate::device::BlockDevice;
use crate::layout::Role;
use crate::layout::map::StripeView;
use crate::layout::proven::ProvenLayout;
use crate::parity::{EncodeMatrix, encode, encode_accumulate};

/// At most this many whole stripes of one request are encoded and written
/// together (their parity is held in scratch buffers meanwhile).
const MAX_STRIPES_TOGETHER: u64 = 16;

impl Array {
    pub(super) fn check_range(&self, layout: &ProvenLayout, offset: u64, len: u64) -> Result<(), ArrayError> {
        let size = layout.capacity_bytes();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(ArrayError::OutOfRange { offset, len, size }),
        }
    }

    /// Read from leg `leg` at chunk `chunk` + `within`; an error marks the
    /// leg dead and returns false.
    pub(super) fn leg_read(&self, leg: u32, chunk: u64, within: u64, buf: &mut [u8]) -> bool {
        let len = buf.len() as u64;
        self.leg_read_with(leg, chunk, within, len, |d, at| d.read_at(buf, at))
    }

    /// `leg_read` of `bufs`, which follow one another on the leg from
    /// `within` of `chunk`: one read where the device makes them one (a
    /// remote leg's request).
    pub(super) fn leg_read_scattered(&self, leg: u32, chunk: u64, within: u64, bufs: &mut [&mut [u8]]) -> bool {
        let len = bufs.iter().map(|b| b.len() as u64).sum();
        self.leg_read_with(leg, chunk, within, len, |d, at| d.read_scattered(bufs, at))
    }

    fn leg_read_with(&self, leg: u32, chunk: u64, within: u64, len: u64, read: impl FnOnce(&dyn BlockDevice, u64) -> std::io::Result<()>) -> bool {
        let Some(l) = self.legs.get(leg as usize) else { return false };
        if !l.is_alive() {
            return false;
        }
        let at = l.offset + chunk * self.chunk_bytes + within;
        l.inflight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = std::time::Instant::now();
        let result = read(&*l.device(), at);
        l.record_read_latency(started.elapsed());
        l.inflight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        l.last_position.store(at + len, std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(()) => {
                Counters::add(&l.reads, 1);
                true
            }
            Err(e) => {
                Counters::add(&l.errors, 1);
                self.fail_leg_on(leg as usize, "read", &e);
                false
            }
        }
    }

    /// Write to a leg (alive or being rebuilt) and to its replacement if one
    /// is being rebuilt; an error marks the leg dead and returns false.
    pub(super) fn leg_write(&self, leg: u32, chunk: u64, within: u64, buf: &[u8], fua: bool) -> bool {
        self.leg_change(leg, chunk, within, "write", |d, at| d.write_at(buf, at, fua))
    }

    /// `leg_write` of `bufs`, which follow one another on the leg from
    /// `within` of `chunk`: one write where the device makes them one (a
    /// remote leg's request), so one round trip rather than one each.
    pub(super) fn leg_write_gathered(&self, leg: u32, chunk: u64, within: u64, bufs: &[&[u8]], fua: bool) -> bool {
        self.leg_change(leg, chunk, within, "write", |d, at| d.write_gathered(bufs, at, fua))
    }

    /// `leg_write` of a whole chunk of zeroes, as write-zeroes (the device
    /// deallocates or zeroes in place; a remote leg sends no data).
    pub(super) fn leg_write_zeroes(&self, leg: u32, chunk: u64) -> bool {
        let cb = self.chunk_bytes;
        self.leg_change(leg, chunk, 0, "write-zeroes", |d, at| d.write_zeroes(at, cb, false))
    }

    /// Apply a change to leg `leg` at `chunk`/`within`: its replacement
    /// first (given up on error), then the leg itself when writable (failed
    /// on error). True when some device took it.
    fn leg_change(&self, leg: u32, chunk: u64, within: u64, what: &str, change: impl Fn(&dyn BlockDevice, u64) -> std::io::Result<()>) -> bool {
        let Some(l) = self.legs.get(leg as usize) else { return false };
        let at = l.offset + chunk * self.chunk_bytes + within;
        // A replacement being rebuilt gets every write, even when the leg
        // it replaces has died meanwhile.
        let mut replaced = false;
        if let Some(r) = l.replacement() {
            match change(&*r, at) {
                Ok(()) => replaced = true,
                Err(e) => self.abandon_replacement(leg as usize, &e),
            }
        }
        if !l.is_writable() {
            return replaced;
        }
        l.inflight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = std::time::Instant::now();
        let result = change(&*l.device(), at);
        l.latency.write.since(started);
        l.inflight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(()) => {
                Counters::add(&l.writes, 1);
                true
            }
            Err(e) => {
                Counters::add(&l.errors, 1);
                self.fail_leg_on(leg as usize, what, &e);
                false
            }
        }
    }

    /// A replacement that fails a write is given up, and that recorded
    /// (see `settle_failures`) before anything it missed is acknowledged:
    /// after a crash it must not resume as if it held every write.
    pub(super) fn abandon_replacement(&self, leg: usize, e: &std::io::Error) {
        let Some(l) = self.legs.get(leg) else { return };
        self.unrecorded_failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(r) = l.replacement() {
            tracing::error!(array = %self.name, leg, "replacement {} failed: {e}; replacement abandoned", r.describe());
        }
        l.set_replacement(None);
    }

    fn leg_writable(&self, leg: u32) -> bool {
        self.legs.get(leg as usize).is_some_and(|l| l.is_writable())
    }

    /// A whole-chunk read for scrubbing.
    pub(super) fn leg_read_pub(&self, leg: u32, chunk: u64, buf: &mut [u8]) -> bool {
        self.leg_read(leg, chunk, 0, buf)
    }

    /// A whole-chunk write for repair.
    pub(super) fn leg_write_pub(&self, leg: u32, chunk: u64, buf: &[u8]) -> bool {
        self.leg_write(leg, chunk, 0, buf, false)
    }

    pub(super) fn leg_alive(&self, leg: u32) -> bool {
        self.legs.get(leg as usize).is_some_and(|l| l.is_alive())
    }

    pub fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), ArrayError> {
        let layout = self.layout.load();
        self.check_range(&layout, offset, buf.len() as u64)?;
        Counters::add(&self.counters.reads, 1);
        Counters::add(&self.counters.read_bytes, buf.len() as u64);
        let cb = self.chunk_bytes;
        if (offset % cb) + buf.len() as u64 > cb {
            return self.read_wide(&layout, buf, offset);
        }
        self.read_piece(&layout, offset / cb, offset % cb, buf)
    }

    /// A read across chunks: every piece from its leg at once on the ring
    /// (one round trip of the slowest leg, not one per chunk in turn); a
    /// piece whose leg is dead or fails is then read the plain way, which
    /// decodes it.
    fn read_wide(&self, layout: &ProvenLayout, buf: &mut [u8], offset: u64) -> Result<(), ArrayError> {
        let cb = self.chunk_bytes;
        let mut reads = Vec::new();
        let mut chunks = Vec::new();
        let (mut rest, mut at) = (buf, offset);
        while !rest.is_empty() {
            let (c, within) = (at / cb, at % cb);
            let n = ((cb - within) as usize).min(rest.len());
            let (piece, tail) = std::mem::take(&mut rest).split_at_mut(n);
            let place = if layout.descriptor.replica_chunks > 0 { self.choose_copy(layout, c)? } else { layout.locate(c)? };
            reads.push(super::batch::LegRead { leg: place.leg, chunk: place.chunk, within, buf: piece });
            chunks.push(c);
            rest = tail;
            at += n as u64;
        }
        let ok = self.leg_read_all(&mut reads);
        for ((r, &c), ok) in reads.iter_mut().zip(&chunks).zip(ok) {
            if !ok {
                self.read_piece(layout, c, r.within, r.buf)?;
            }
        }
        Ok(())
    }

    /// `read_extents` for the array: each piece of the range on the live
    /// leg holding it, when no piece needs decoding or a spare's redirect.
    /// The read is counted here, as `read` counts it.
    pub(super) fn direct_read_extents(&self, offset: u64, len: u64, buf_offset: usize, out: &mut Vec<crate::device::Extent>) -> bool {
        let layout = self.layout.load();
        if self.check_range(&layout, offset, len).is_err() || !self.spares.load().is_empty() {
            return false;
        }
        let first = out.len();
        let cb = self.chunk_bytes;
        let mut done = 0u64;
        while done < len {
            let at = offset + done;
            let (c, within) = (at / cb, at % cb);
            let n = (cb - within).min(len - done);
            let place = match if layout.descriptor.replica_chunks > 0 { self.choose_copy(&layout, c) } else { layout.locate(c).map_err(Into::into) } {
                Ok(p) => p,
                Err(_) => break,
            };
            let Some(leg) = self.legs.get(place.leg as usize).filter(|l| l.is_alive()) else { break };
            if !leg.device().read_extents(leg.offset + place.chunk * cb + within, n, buf_offset + done as usize, out) {
                break;
            }
            Counters::add(&leg.reads, 1);
            done += n;
        }
        if done < len {
            out.truncate(first);
            return false;
        }
        Counters::add(&self.counters.reads, 1);
        Counters::add(&self.counters.read_bytes, len);
        true
    }

    fn read_piece(&self, layout: &ProvenLayout, c: u64, within: u64, buf: &mut [u8]) -> Result<(), ArrayError> {
        let place = if layout.descriptor.replica_chunks > 0 { self.choose_copy(layout, c)? } else { layout.locate(c)? };
        if self.leg_read(place.leg, place.chunk, within, buf) {
            return Ok(());
        }
        let d = u64::from(layout.descriptor.data_chunks);
        let s = c / d;
        let _held = self.locks.lock(s);
        let view = self.view(layout, s)?;
        Counters::add(&self.counters.degraded_reads, 1);
        self.rebuild(layout, &view, s, (c % d) as usize, within, buf)
    }

    /// The live copy of data chunk `c` to read, by the array's policy.
    fn choose_copy(&self, layout: &ProvenLayout, c: u64) -> Result<crate::layout::map::Place, ArrayError> {
        let d = u64::from(layout.descriptor.data_chunks);
        let s = c / d;
        let view = self.view(layout, s)?;
        let k = (c % d) as u32;
        let cb = self.chunk_bytes;
        if !self.stripe_in_sync(s) {
            // Copies may differ until the resync: always read the one the
            // resync copies from (the first live one), so a block never
            // reads as one copy and then as another.
            let first =
                view.shape.slots.iter().enumerate().find(|(_, sl)| matches!(sl.role, Role::Data(j) | Role::Replica(j) if j == k) && self.leg_alive(sl.leg));
            return Ok(match first {
                Some((i, _)) => view.place(i),
                None => layout.locate(c)?,
            });
        }
        let policy = self.read_policy();
        // Ties go round-robin, so idle mirrors share the reads.
        let turn = self.read_turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = self.legs.len() as u64;
        let best = view
            .shape
            .slots
            .iter()
            .enumerate()
            .filter(|(_, sl)| matches!(sl.role, Role::Data(j) | Role::Replica(j) if j == k) && self.leg_alive(sl.leg))
            .min_by_key(|(i, sl)| {
                let leg = &self.legs[sl.leg as usize];
                let tie = (u64::from(sl.leg) + turn) % n;
                match policy {
                    super::ReadPolicy::LeastOutstanding => (u64::from(leg.inflight.load(std::sync::atomic::Ordering::Relaxed)), tie),
                    super::ReadPolicy::Nearest => {
                        let at = leg.offset + view.place(*i).chunk * cb;
                        (at.abs_diff(leg.last_position.load(std::sync::atomic::Ordering::Relaxed)), tie)
                    }
                    super::ReadPolicy::LowestLatency => {
                        // Expected wait: recent latency times the queue ahead
                        // (a leg never read yet counts as fast, so it gets tried).
                        let lat = leg.read_latency_ns.load(std::sync::atomic::Ordering::Relaxed);
                        (lat.saturating_mul(1 + u64::from(leg.inflight.load(std::sync::atomic::Ordering::Relaxed))), tie)
                    }
                }
            })
            .map(|(i, _)| view.place(i));
        Ok(match best {
            Some(p) => p,
            None => layout.locate(c)?,
        })
    }

    /// Bytes `within..within + out.len()` of data chunk `k` of stripe `s`,
    /// from any live copy or solved from the stripe's equations. The caller
    /// holds the stripe's lock.
    pub(super) fn rebuild(&self, layout: &ProvenLayout, view: &StripeView, s: u64, k: usize, within: u64, out: &mut [u8]) -> Result<(), ArrayError> {
        let d = layout.descriptor.data_chunks as usize;
        for _attempt in 0..=self.legs.len() {
            let copies = view.shape.slots.iter().enumerate().filter(|(_, sl)| matches!(sl.role, Role::Data(j) | Role::Replica(j) if j as usize == k));
            for (i, slot) in copies {
                if self.leg_read(slot.leg, view.place(i).chunk, within, out) {
                    return Ok(());
                }
            }
            let Some(plan) = self.plans.plan(&view.shape, d, |leg| self.leg_alive(leg)) else {
                return Err(ArrayError::Unrecoverable { stripe: s, detail: format!("data chunk {k} is lost: legs {} are dead", self.dead_list()) });
            };
            let mut sources = scratch::take(plan.sources.len(), out.len());
            let mut reads: Vec<LegRead> = plan
                .sources
                .iter()
                .zip(sources.iter_mut())
                .map(|(&i, buf)| LegRead { leg: view.shape.slots[i].leg, chunk: view.place(i).chunk, within, buf: &mut **buf })
                .collect();
            let all_read = self.leg_read_all(&mut reads).iter().all(|&r| r);
            drop(reads);
            if !all_read {
                continue; // a source leg just died: plan again without it
            }
            let refs: Vec<&[u8]> = sources.iter().map(|b| &**b).collect();
            encode(&EncodeMatrix::new(&[plan.rebuild[k].clone()]), &refs, &mut [out]);
            drop(refs);
            return Ok(());
        }
        Err(ArrayError::Unrecoverable { stripe: s, detail: format!("data chunk {k}: legs kept failing while rebuilding it") })
    }

    fn dead_list(&self) -> String {
        let dead: Vec<String> = self.legs.iter().enumerate().filter(|(_, l)| !l.is_alive()).map(|(i, _)| i.to_string()).collect();
        dead.join(", ")
    }

    pub fn write(&self, data: &[u8], offset: u64, fua: bool) -> Result<(), ArrayError> {
        let layout = self.layout.load();
        self.check_range(&layout, offset, data.len() as u64)?;
        let _writing = self.write_start()?;
        Counters::add(&self.counters.writes, 1);
        Counters::add(&self.counters.written_bytes, data.len() as u64);
        let stripe_bytes = u64::from(layout.descriptor.data_chunks) * self.chunk_bytes;
        let mut done = 0usize;
        // Regions stay pending until the write is acknowledged: a leg that
        // died under it makes them NeedSync (see `intent_stale`).
        let mut pending = Vec::new();
        while done < data.len() {
            let at = offset + done as u64;
            let (s, a) = (at / stripe_bytes, at % stripe_bytes);
            // Two or more whole stripes: encoded, then written together.
            let whole = ((data.len() - done) as u64 / stripe_bytes).min(MAX_STRIPES_TOGETHER);
            if a == 0 && whole >= 2 {
                let n = (whole * stripe_bytes) as usize;
                pending.extend(self.write_full_stripes(&layout, s..s + whole, &data[done..done + n], fua)?);
                done += n;
                continue;
            }
            let n = ((stripe_bytes - a) as usize).min(data.len() - done);
            pending.extend(self.write_stripe(&layout, s, a, &data[done..done + n], fua)?);
            done += n;
        }
        // A leg that failed under this write (or that it found dead) is
        // on disk as failed before the write is acknowledged.
        self.settle_failures()
    }

    /// Write `src` at byte `a` of stripe `s`'s data; the region stays
    /// pending while the caller holds the guard.
    fn write_stripe(&self, layout: &ProvenLayout, s: u64, a: u64, src: &[u8], fua: bool) -> Result<Option<super::intent::WriteGuard<'_>>, ArrayError> {
        let cb = self.chunk_bytes;
        let d = u64::from(layout.descriptor.data_chunks);
        let intent = self.intent_begin(s)?;
        let _held = self.locks.lock(s);
        // Under the lock: a distributed-spare rebuild may redirect it.
        let view = self.view(layout, s)?;
        let b = a + src.len() as u64;
        // Column runs in which the same data chunks are touched.
        let mut cuts = vec![0, cb, a % cb, b % cb];
        cuts.sort_unstable();
        cuts.dedup();
        for w in cuts.windows(2) {
            let (x0, x1) = (w[0], w[1]);
            let touched: Vec<(usize, &[u8])> = (0..d)
                .filter_map(|k| {
                    let (lo, hi) = (k * cb + x0, k * cb + x1);
                    (lo >= a && hi <= b).then(|| (k as usize, &src[(lo - a) as usize..(hi - a) as usize]))
                })
                .collect();
            if !touched.is_empty() {
                self.write_columns(layout, &view, s, x0, &touched, fua)?;
            }
        }
        self.check_stripe_survives(layout, &view, s)?;
        Ok(intent)
    }

    pub(super) fn check_stripe_survives(&self, layout: &ProvenLayout, view: &StripeView, s: u64) -> Result<(), ArrayError> {
        let d = layout.descriptor.data_chunks as usize;
        if self.plans.plan(&view.shape, d, |leg| self.leg_alive(leg)).is_none() {
            return Err(ArrayError::Unrecoverable { stripe: s, detail: format!("too many dead legs ({}) to keep the stripe's data", self.dead_list()) });
        }
        Ok(())
    }

    /// Update columns `x0..x0 + len` of the touched data chunks and every
    /// live parity covering them.
    fn write_columns(&self, layout: &ProvenLayout, view: &StripeView, s: u64, x0: u64, touched: &[(usize, &[u8])], fua: bool) -> Result<(), ArrayError> {
        let slots = &view.shape.slots;
        let d = layout.descriptor.data_chunks as usize;
        let len = touched[0].1.len();
        let copies_of = |k: usize| slots.iter().enumerate().filter(move |(_, sl)| matches!(sl.role, Role::Data(j) | Role::Replica(j) if j as usize == k));
        let (parity, data_writes) = self.targets(view, touched);
        if parity.is_empty() {
            self.leg_write_all(&data_writes, x0, fua);
            return Ok(());
        }
        if touched.len() == d {
            // A full stripe reads nothing: compute the parity, then write
            // data and parity together.
            Counters::add(&self.counters.full_stripe, 1);
            let out = encode_full(&parity, touched, len);
            let mut writes = data_writes;
            writes.extend(parity_writes(view, &parity, &out));
            self.leg_write_all(&writes, x0, fua);
            drop(writes);
            return Ok(());
        }
        let mut parity_out: Vec<Scratch> = Vec::new();
        let has_live_copy = |k: usize| copies_of(k).any(|(_, sl)| self.leg_alive(sl.leg));
        let rmw_reads = touched.len() + parity.len();
        let rcw_reads = d - touched.len();
        let mut done = false;
        // RMW needs trusted old parity (not in a region awaiting resync) on
        // legs that are in sync.
        let rmw_possible =
            self.parity_trusted(s) && parity.iter().all(|(i, _)| self.leg_alive(slots[*i].leg)) && touched.iter().all(|(k, _)| has_live_copy(*k));
        if rmw_reads < rcw_reads && rmw_possible {
            done = self.read_modify_write(view, x0, touched, &parity, &mut parity_out);
        }
        if done {
            Counters::add(&self.counters.rmw, 1);
        } else {
            self.reconstruct_write(layout, view, s, x0, touched, &parity, &mut parity_out)?;
            Counters::add(&self.counters.rcw, 1);
        }
        let mut writes = data_writes;
        for ((i, _), out) in parity.iter().zip(&parity_out) {
            if out.len() == len {
                writes.push((slots[*i].leg, view.place(*i).chunk, &**out));
            }
        }
        self.leg_write_all(&writes, x0, fua);
        drop(writes);
        Ok(())
    }

    /// The live parities of a stripe (slot, coefficients), and the leg
    /// writes of the touched data chunks' copies.
    #[allow(clippy::type_complexity)]
    fn targets<'v>(&self, view: &'v StripeView, touched: &[(usize, &'v [u8])]) -> (Vec<(usize, &'v [u8])>, Vec<(u32, u64, &'v [u8])>) {
        let slots = &view.shape.slots;
        let parity = slots
            .iter()
            .enumerate()
            .filter_map(|(i, sl)| match &sl.role {
                Role::Parity { coefficients, .. } if self.leg_writable(sl.leg) => Some((i, &coefficients[..])),
                _ => None,
            })
            .collect();
        let mut data_writes = Vec::new();
        for (k, new) in touched {
            for (i, slot) in slots.iter().enumerate() {
                if matches!(slot.role, Role::Data(j) | Role::Replica(j) if j as usize == *k) {
                    data_writes.push((slot.leg, view.place(i).chunk, *new));
                }
            }
        }
        (parity, data_writes)
    }

    /// Whole stripes `stripes`, `src` their data from the first: encoded,
    /// then every stripe's data and parity written together, all under
    /// their locks (taken in one order, see `locks.rs`). The regions stay
    /// pending while the caller holds the guards.
    fn write_full_stripes(
        &self,
        layout: &ProvenLayout,
        stripes: std::ops::Range<u64>,
        src: &[u8],
        fua: bool,
    ) -> Result<Vec<super::intent::WriteGuard<'_>>, ArrayError> {
        let cb = self.chunk_bytes as usize;
        let d = layout.descriptor.data_chunks as usize;
        let mut intents = Vec::new();
        for s in stripes.clone() {
            intents.extend(self.intent_begin(s)?);
        }
        let _held = self.locks.lock_all(stripes.clone());
        let views = stripes.clone().map(|s| self.view(layout, s)).collect::<Result<Vec<_>, _>>()?;
        let mut outs = Vec::with_capacity(views.len());
        let mut writes = Vec::new();
        let mut parities = Vec::with_capacity(views.len());
        for (n, view) in views.iter().enumerate() {
            let data = &src[n * d * cb..(n + 1) * d * cb];
            let touched: Vec<(usize, &[u8])> = (0..d).map(|k| (k, &data[k * cb..(k + 1) * cb])).collect();
            let (parity, data_writes) = self.targets(view, &touched);
            outs.push(if parity.is_empty() { Vec::new() } else { encode_full(&parity, &touched, cb) });
            parities.push(parity);
            writes.extend(data_writes);
            if !parities[n].is_empty() {
                Counters::add(&self.counters.full_stripe, 1);
            }
        }
        for ((view, parity), out) in views.iter().zip(&parities).zip(&outs) {
            writes.extend(parity_writes(view, parity, out));
        }
        self.leg_write_all(&writes, 0, fua);
        drop(writes);
        for (view, s) in views.iter().zip(stripes) {
            self.check_stripe_survives(layout, view, s)?;
        }
        Ok(intents)
    }

    /// New parity = old parity + coefficients x (old data + new data),
    /// the old values read together. False when one could not be read
    /// (the caller reconstructs).
    fn read_modify_write(&self, view: &StripeView, x0: u64, touched: &[(usize, &[u8])], parity: &[(usize, &[u8])], out: &mut Vec<Scratch>) -> bool {
        let len = touched[0].1.len();
        let slots = &view.shape.slots;
        let copies_of = |k: usize| slots.iter().enumerate().filter(move |(_, sl)| matches!(sl.role, Role::Data(j) | Role::Replica(j) if j as usize == k));
        let mut deltas = scratch::take(touched.len(), len);
        out.clear();
        *out = scratch::take(parity.len(), len);
        // The first live copy of each touched chunk, and every parity.
        let first_copy = |k: usize| copies_of(k).find(|(_, sl)| self.leg_alive(sl.leg)).or_else(|| copies_of(k).next()).map(|(i, _)| i);
        let Some(data_slots) = touched.iter().map(|(k, _)| first_copy(*k)).collect::<Option<Vec<usize>>>() else {
            return false;
        };
        let mut reads: Vec<LegRead> = data_slots
            .iter()
            .zip(deltas.iter_mut())
            .chain(parity.iter().map(|(i, _)| i).zip(out.iter_mut()))
            .map(|(&i, buf)| LegRead { leg: slots[i].leg, chunk: view.place(i).chunk, within: x0, buf: &mut **buf })
            .collect();
        let read = self.leg_read_all(&mut reads);
        drop(reads);
        let (data_read, parity_read) = read.split_at(touched.len());
        let mut all = parity_read.iter().all(|&r| r);
        for (n, (k, _)) in touched.iter().enumerate() {
            // Another copy, when the first one failed.
            if all && !data_read[n] {
                all = copies_of(*k).filter(|(i, _)| *i != data_slots[n]).any(|(i, sl)| self.leg_read(sl.leg, view.place(i).chunk, x0, &mut deltas[n]));
            }
        }
        if !all {
            return false;
        }
        let coefficients: Vec<&[u8]> = parity.iter().map(|(_, c)| *c).collect();
        rmw_parity(&coefficients, touched, &mut deltas, out);
        true
    }

    /// Parity from every data chunk: the touched ones new, the others read
    /// (or rebuilt when their leg is dead).
    #[allow(clippy::too_many_arguments)]
    fn reconstruct_write(
        &self,
        layout: &ProvenLayout,
        view: &StripeView,
        s: u64,
        x0: u64,
        touched: &[(usize, &[u8])],
        parity: &[(usize, &[u8])],
        out: &mut Vec<Scratch>,
    ) -> Result<(), ArrayError> {
        let d = layout.descriptor.data_chunks as usize;
        let len = touched[0].1.len();
        let slots = &view.shape.slots;
        let untouched: Vec<usize> = (0..d).filter(|k| !touched.iter().any(|(t, _)| t == k)).collect();
        let mut owned = scratch::take(untouched.len(), len);
        // The untouched chunks read together from a live copy each; any
        // that fails is rebuilt on its own.
        let live_copy = |k: usize| {
            slots.iter().enumerate().find(|(_, sl)| matches!(sl.role, Role::Data(j) | Role::Replica(j) if j as usize == k) && self.leg_alive(sl.leg))
        };
        let mut reads: Vec<LegRead> = Vec::new();
        let mut read_of: Vec<Option<usize>> = vec![None; untouched.len()];
        for (n, (k, buf)) in untouched.iter().zip(owned.iter_mut()).enumerate() {
            if let Some((i, sl)) = live_copy(*k) {
                read_of[n] = Some(reads.len());
                reads.push(LegRead { leg: sl.leg, chunk: view.place(i).chunk, within: x0, buf: &mut **buf });
            }
        }
        let read = self.leg_read_all(&mut reads);
        drop(reads);
        for (n, k) in untouched.iter().enumerate() {
            if !read_of[n].is_some_and(|r| read[r]) {
                self.rebuild(layout, view, s, *k, x0, &mut owned[n])?;
            }
        }
        let values: Vec<&[u8]> = (0..d)
            .map(|k| match touched.iter().find(|(t, _)| *t == k) {
                Some((_, new)) => *new,
                None => untouched.iter().position(|u| *u == k).map_or(&[][..], |n| &*owned[n]),
            })
            .collect();
        let coefficients: Vec<&[u8]> = parity.iter().map(|(_, c)| *c).collect();
        out.clear();
        *out = encode_parity(&coefficients, &values, len);
        drop(values);
        Ok(())
    }

    /// FLUSH reaches every writable leg and replacement; a leg that fails
    /// it is failed. It fails when the legs left cannot hold what the
    /// array promised (more legs lost than the layout bears).
    pub fn flush_legs(&self) -> Result<(), ArrayError> {
        Counters::add(&self.counters.flushes, 1);
        for (i, leg) in self.legs.iter().enumerate() {
            if let Some(r) = leg.replacement() {
                if let Err(e) = r.flush() {
                    self.abandon_replacement(i, &e);
                }
            }
            if leg.is_writable() {
                if let Err(e) = leg.device().flush() {
                    self.fail_leg_on(i, "flush", &e);
                }
            }
        }
        self.settle_failures()?;
        if let Some(s) = self.undecodable_stripe() {
            return Err(ArrayError::Unrecoverable {
                stripe: s,
                detail: format!("legs {} are lost, more than the layout bears: written data is gone", self.dead_list()),
            });
        }
        Ok(())
    }

    /// Whole stripes of a range, and the partial pieces before and after.
    fn split_whole_stripes(&self, layout: &ProvenLayout, offset: u64, len: u64) -> (std::ops::Range<u64>, [(u64, u64); 2]) {
        let sb = u64::from(layout.descriptor.data_chunks) * self.chunk_bytes;
        let end = offset + len;
        let first = offset.div_ceil(sb);
        let last = end / sb;
        if first >= last {
            return (0..0, [(offset, len), (end, 0)]);
        }
        (first..last, [(offset, first * sb - offset), (last * sb, end - last * sb)])
    }

    /// Zero every slot (but spares) of whole stripes `stripes`, and record
    /// any failure before returning.
    fn zero_stripes(&self, layout: &ProvenLayout, stripes: std::ops::Range<u64>, fua: bool) -> Result<(), ArrayError> {
        let cb = self.chunk_bytes;
        let mut pending = Vec::new();
        for s in stripes {
            pending.extend(self.intent_begin(s)?);
            let _held = self.locks.lock(s);
            let view = self.view(layout, s)?;
            for (i, slot) in view.shape.slots.iter().enumerate() {
                if matches!(slot.role, Role::Spare(_)) || !self.leg_writable(slot.leg) {
                    continue;
                }
                let leg = &self.legs[slot.leg as usize];
                let at = leg.offset + view.place(i).chunk * cb;
                if let Some(r) = leg.replacement() {
                    if let Err(e) = r.write_zeroes(at, cb, fua) {
                        self.abandon_replacement(slot.leg as usize, &e);
                    }
                }
                if let Err(e) = leg.device().write_zeroes(at, cb, fua) {
                    self.fail_leg_on(slot.leg as usize, "write-zeroes", &e);
                }
            }
            self.check_stripe_survives(layout, &view, s)?;
        }
        self.settle_failures()
    }

    /// TRIM: whole stripes are zeroed on every leg (so parity stays
    /// consistent whatever each leg does with a discard); partial stripes
    /// are left alone, as the hint allows.
    pub fn discard_range(&self, offset: u64, len: u64) -> Result<(), ArrayError> {
        let layout = self.layout.load();
        self.check_range(&layout, offset, len)?;
        let (whole, _) = self.split_whole_stripes(&layout, offset, len);
        let _writing = self.write_start()?;
        self.zero_stripes(&layout, whole, false)?;
        self.settle_failures()
    }

    /// WRITE_ZEROES: whole stripes zeroed on every leg, the rest written.
    /// Whether `zero_range` would only zero (whole stripes on legs that
    /// zero fast), never write zeroes through the stripes (NBD's FAST_ZERO).
    pub fn zeroes_fast(&self, offset: u64, len: u64) -> bool {
        let layout = self.layout.load();
        if self.check_range(&layout, offset, len).is_err() {
            return false;
        }
        let (_, pieces) = self.split_whole_stripes(&layout, offset, len);
        pieces.iter().all(|&(_, n)| n == 0) && self.legs.iter().all(|l| l.device().zeroes_fast(l.offset, self.chunk_bytes))
    }

    pub fn zero_range(&self, offset: u64, len: u64, fua: bool) -> Result<(), ArrayError> {
        let layout = self.layout.load();
        self.check_range(&layout, offset, len)?;
        let (whole, pieces) = self.split_whole_stripes(&layout, offset, len);
        let _writing = self.write_start()?;
        self.zero_stripes(&layout, whole, fua)?;
        let zeros = vec![0u8; (1 << 20).min(len as usize)];
        for (mut at, mut left) in pieces {
            while left > 0 {
                let n = left.min(zeros.len() as u64);
                self.write(&zeros[..n as usize], at, fua)?;
                at += n;
                left -= n;
            }
        }
        self.settle_failures()
    }
}

/// The parities (slot, coefficients) of a run of columns whose every data
/// chunk is `touched`: one buffer each.
fn encode_full(parity: &[(usize, &[u8])], touched: &[(usize, &[u8])], len: usize) -> Vec<Scratch> {
    let values: Vec<&[u8]> = touched.iter().map(|(_, new)| *new).collect();
    let coefficients: Vec<&[u8]> = parity.iter().map(|(_, c)| *c).collect();
    encode_parity(&coefficients, &values, len)
}

/// Each parity (its coefficients over the stripe's data chunks) of
/// `values`, every data chunk's columns in order: one buffer each.
pub(super) fn encode_parity(coefficients: &[&[u8]], values: &[&[u8]], len: usize) -> Vec<Scratch> {
    let rows: Vec<Vec<u8>> = coefficients.iter().map(|c| c.to_vec()).collect();
    let mut out = scratch::take(coefficients.len(), len);
    let mut outs: Vec<&mut [u8]> = out.iter_mut().map(|b| &mut **b).collect();
    encode(&EncodeMatrix::new(&rows), values, &mut outs);
    drop(outs);
    out
}

/// Read-modify-write's arithmetic: `old` holds the touched chunks' old
/// columns (it is overwritten with old + new), `parity` the old parities,
/// which become the new ones: parity + coefficient x (old + new data).
pub(super) fn rmw_parity(coefficients: &[&[u8]], touched: &[(usize, &[u8])], old: &mut [Scratch], parity: &mut [Scratch]) {
    for ((_, new), old) in touched.iter().zip(old.iter_mut()) {
        old.iter_mut().zip(new.iter()).for_each(|(o, n)| *o ^= n);
    }
    let rows: Vec<Vec<u8>> = coefficients.iter().map(|c| touched.iter().map(|(k, _)| c[*k]).collect()).collect();
    let refs: Vec<&[u8]> = old.iter().map(|b| &**b).collect();
    let mut outs: Vec<&mut [u8]> = parity.iter_mut().map(|b| &mut **b).collect();
    encode_accumulate(&EncodeMatrix::new(&rows), &refs, &mut outs);
}

/// The leg writes of encoded parities.
fn parity_writes<'a>(view: &StripeView, parity: &[(usize, &[u8])], out: &'a [Scratch]) -> impl Iterator<Item = (u32, u64, &'a [u8])> {
    let places: Vec<(u32, u64)> = parity.iter().map(|(i, _)| (view.shape.slots[*i].leg, view.place(*i).chunk)).collect();
    places.into_iter().zip(out).map(|((leg, chunk), buf)| (leg, chunk, &**buf))
}
