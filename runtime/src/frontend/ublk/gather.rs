//! Requests in flight together on one queue, served as one where that
//! saves leg I/O: md's stripe cache, for what one turn of the queue brings.
//!
//! - **Writes inside one full stripe** of a parity array
//!   (`BlockDevice::gather_unit`): each fetches its data into the group's
//!   stripe-sized buffer at its place, and the first (the leader) writes
//!   the union, as one staged write per contiguous run. Four 64 KiB writes
//!   that cover a 4+1 stripe become one full-stripe write, five leg writes
//!   and no read, instead of four read-modify-writes of four operations
//!   each; two neighbouring 4 KiB writes in one chunk read its parity once.
//! - **Degraded reads inside one chunk** on a failed leg: the leader
//!   rebuilds the span of all of them once, and each reader takes its
//!   part. Without it the second reader of a stripe finds the first one's
//!   stripe lock taken and is served by a worker that waits for it.
//!
//! The wait is bounded. The leader yields once, so the requests that the
//! same wake of the ring brought join it. A write group waits longer only
//! where more is expected and sure to come soon, md's delayed stripes:
//! while the stripe is still being written by an earlier group (its lock
//! is held: alone it would go to the pool and wait there), or while its
//! members are one run from the stripe's start, or from where a recent
//! write ended, that stops short of its end (a sequential writer's next
//! request is on its way). Either wait lasts at most `MAX_TURNS` turns of
//! the queue (`turns.rs`) and `MAX_WAIT`, and only while other I/O of the
//! queue is in flight, so a writer at depth 1 never waits for a request
//! that cannot come. A request that does not fit a
//! group (it overlaps a member, its unit is too large) is served alone, as
//! before. A group that cannot be staged (the device refuses, or abandons)
//! leaves its members to the pool's plain path, which writes their data
//! again: abandoning a staged write is always safe (`device::staged`).
//! A group's write is acknowledged to none of its members before all of
//! it is on the legs, with FUA's `RWF_DSYNC` if any member asked for FUA.

use super::pool::{Piece, Request, deliver, read_result};
use super::queue::run_stages;
use super::turns::Turns;
use super::user_copy::UserCopy;
use crate::array::scratch::{self, Scratch};
use crate::device::{BlockDevice, Gather};
use libublk::io::UblkQueue;
use smol::channel::{Sender, bounded};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The largest unit gathered: a group's buffer is one unit, and the
/// thread's scratch pool may keep a few of them.
const MAX_UNIT: u64 = 1 << 20;

/// How long a write group waits for more members, at most.
const MAX_TURNS: u32 = 16;
const MAX_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

/// Where the last writes ended: a write that starts at one of them
/// continues a sequential stream.
const RECENT_ENDS: usize = 32;

/// The groups open on one queue, by their unit's start. Only the queue's
/// thread touches them (the tag tasks of one executor).
pub struct Gathering {
    writes: RefCell<HashMap<u64, WriteGroup>>,
    reads: RefCell<HashMap<u64, ReadGroup>>,
    /// Units being written by a group now, and by how many.
    writing: RefCell<HashMap<u64, u32>>,
    recent_ends: RefCell<VecDeque<u64>>,
    turns: Rc<Turns>,
    counts: Arc<Counts>,
    /// `WASMRAID_UBLK_GATHER=0` serves every request alone (to measure
    /// what gathering gives).
    enabled: bool,
}

/// What gathering did, for `status`: requests served in a group of two
/// or more, and the groups.
#[derive(Debug, Default)]
pub struct Counts {
    pub writes: AtomicU64,
    pub write_groups: AtomicU64,
    pub reads: AtomicU64,
    pub rebuilds: AtomicU64,
}

impl Counts {
    pub fn json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "writes": get(&self.writes), "write_groups": get(&self.write_groups),
            "reads": get(&self.reads), "rebuilds": get(&self.rebuilds),
        })
    }

    /// A group of `n` requests was served as one.
    fn served(&self, n: usize, requests: &AtomicU64, groups: &AtomicU64) {
        if n > 1 {
            requests.fetch_add(n as u64, Ordering::Relaxed);
            groups.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct WriteGroup {
    unit: Range<u64>,
    /// The unit's bytes, once a second member comes: each member's data
    /// at its place in the unit.
    buf: Option<Scratch>,
    /// Each member's range and FUA, and how it learns the outcome (the
    /// leader, first, needs no telling).
    members: Vec<(Range<u64>, bool, Option<Sender<bool>>)>,
}

impl WriteGroup {
    /// Tell every member the group will not write it.
    fn refuse(&self) {
        for tx in self.members.iter().filter_map(|(_, _, tx)| tx.as_ref()) {
            let _ = tx.try_send(false);
        }
    }
}

/// A rebuilt span, shared by the readers inside it.
struct Rebuilt {
    start: u64,
    data: Scratch,
}

struct ReadGroup {
    unit: Range<u64>,
    members: Vec<(Range<u64>, Option<Sender<Option<Rc<Rebuilt>>>>)>,
}

/// Part of a write request: `range` on the device, its data from byte
/// `from` of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub range: Range<u64>,
    pub from: usize,
    pub fua: bool,
}

/// A large write cut by `Gathering::split`: its partial first and last
/// stripes (each with its unit), and what lies between (possibly nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub head: Option<(Part, Range<u64>)>,
    pub middle: Part,
    pub tail: Option<(Part, Range<u64>)>,
}

/// Where the tag's request stands in a gathered write.
pub enum Outcome {
    /// Not for gathering: serve it as before.
    Alone,
    /// Written with its group: acknowledge it.
    Written,
    /// Its group could not be staged: the pool serves it.
    Refused,
}

/// The unit a request of `range` belongs to, if it lies strictly inside
/// one small enough to gather.
fn unit_of(device: &dyn BlockDevice, range: &Range<u64>, kind: Gather) -> Option<Range<u64>> {
    device.gather_unit(range.start, kind).filter(|unit| gathers(unit, range))
}

/// Whether `range` (not empty) lies strictly inside `unit`, one small
/// enough to gather.
fn gathers(unit: &Range<u64>, range: &Range<u64>) -> bool {
    let inside = unit.start <= range.start && range.start < range.end && range.end <= unit.end && range != unit;
    inside && unit.end - unit.start <= MAX_UNIT
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// The members' ranges (no two overlapping) cut into runs of neighbours,
/// in offset order: each run is the members' indices and the span.
fn contiguous_runs(ranges: &[Range<u64>]) -> Vec<(Vec<usize>, Range<u64>)> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_unstable_by_key(|&i| ranges[i].start);
    let mut runs: Vec<(Vec<usize>, Range<u64>)> = Vec::new();
    for i in order {
        let r = &ranges[i];
        match runs.last_mut() {
            Some((members, span)) if span.end == r.start => {
                members.push(i);
                span.end = r.end;
            }
            _ => runs.push((vec![i], r.clone())),
        }
    }
    runs
}

impl Gathering {
    pub fn new(turns: Rc<Turns>, counts: Arc<Counts>) -> Gathering {
        let enabled = std::env::var_os("WASMRAID_UBLK_GATHER").is_none_or(|v| v != "0");
        Gathering {
            writes: RefCell::default(),
            reads: RefCell::default(),
            writing: RefCell::default(),
            recent_ends: RefCell::default(),
            turns,
            counts,
            enabled,
        }
    }

    fn remember_end(&self, end: u64) {
        let mut ends = self.recent_ends.borrow_mut();
        if ends.len() == RECENT_ENDS {
            ends.pop_front();
        }
        ends.push_back(end);
    }

    /// Whether the group of `unit` should wait for another turn: its
    /// stripe is being written, or its members make one run that a
    /// sequential writer is still extending.
    fn expects_more(&self, unit: &Range<u64>) -> bool {
        if self.writing.borrow().contains_key(&unit.start) {
            return true;
        }
        let groups = self.writes.borrow();
        let Some(g) = groups.get(&unit.start) else { return false };
        let ranges: Vec<Range<u64>> = g.members.iter().map(|(r, _, _)| r.clone()).collect();
        match contiguous_runs(&ranges).as_slice() {
            [(_, span)] => span.end < unit.end && (span.start == unit.start || self.recent_ends.borrow().contains(&span.start)),
            _ => false,
        }
    }

    /// Serve write `request` of tag `tag` with the others of its stripe.
    /// `own` is the tag's buffer: a write alone in its stripe is written
    /// from it, and a group's buffer is taken only when a second member
    /// comes (a unit-sized buffer per random write halved 4k random writes).
    pub async fn write(&self, q: &UblkQueue<'_>, copy: &UserCopy, tag: u16, own: &mut [u8], request: &Request, device: &dyn BlockDevice) -> Outcome {
        if !self.enabled {
            return Outcome::Alone;
        }
        let Some(range) = request.range() else { return Outcome::Alone };
        let Some(unit) = unit_of(device, &range, Gather::Write) else { return Outcome::Alone };
        let part = Part { range, from: 0, fua: request.fua() };
        self.write_part(q, copy, tag, own, &part, unit, device).await
    }

    /// A write too large to gather cut where it covers a stripe only in
    /// part: the partial stripe it starts in and the one it ends in, each
    /// gathered with its neighbours' (a sequential writer's requests end
    /// and start inside the same stripe), and the whole stripes between.
    /// None when it has no partial stripe to gather (or gathering is off).
    pub fn split(&self, request: &Request, device: &dyn BlockDevice) -> Option<Split> {
        if !self.enabled {
            return None;
        }
        let (fua, range) = (request.fua(), request.range()?);
        let first = device.gather_unit(range.start, Gather::Write)?;
        let last = device.gather_unit(range.end.checked_sub(1)?, Gather::Write)?;
        if !first.contains(&range.start) || !last.contains(&(range.end - 1)) || first.end > last.start {
            // One unit holds it all (or the units overlap, or a device
            // answered a unit that is not where it was asked): nothing to cut.
            return None;
        }
        let part = |at: Range<u64>, unit: Range<u64>| gathers(&unit, &at).then(|| (Part { from: (at.start - range.start) as usize, range: at, fua }, unit));
        let head = part(range.start..first.end.min(range.end), first);
        let tail = part(last.start.max(range.start)..range.end, last);
        let middle = head.as_ref().map_or(range.start, |(p, _)| p.range.end)..tail.as_ref().map_or(range.end, |(p, _)| p.range.start);
        (head.is_some() || tail.is_some()).then(|| Split { head, middle: Part { from: (middle.start - range.start) as usize, range: middle, fua }, tail })
    }

    /// Write `part` of tag `tag`'s request with the others of its `unit`
    /// (the unit holds it strictly). `own` holds at least the part: it is
    /// written from there when the part is alone in its unit.
    #[allow(clippy::too_many_arguments)]
    pub async fn write_part(
        &self,
        q: &UblkQueue<'_>,
        copy: &UserCopy,
        tag: u16,
        own: &mut [u8],
        part: &Part,
        unit: Range<u64>,
        device: &dyn BlockDevice,
    ) -> Outcome {
        let (range, fua) = (part.range.clone(), part.fua);
        let at = (range.start - unit.start) as usize..(range.end - unit.start) as usize;
        self.remember_end(range.end);
        {
            let mut groups = self.writes.borrow_mut();
            if let Some(g) = groups.get_mut(&unit.start) {
                if g.unit != unit || g.members.iter().any(|(r, _, _)| overlaps(r, &range)) {
                    return Outcome::Alone;
                }
                if g.buf.is_none() {
                    g.buf = scratch::take(1, (unit.end - unit.start) as usize).pop();
                }
                let Some(dst) = g.buf.as_mut().and_then(|b| b.get_mut(at)) else { return Outcome::Alone };
                if copy.fetch_at(tag, part.from, dst).is_err() {
                    return Outcome::Alone;
                }
                let (tx, rx) = bounded(1);
                g.members.push((range, fua, Some(tx)));
                drop(groups);
                // A leader never drops its group unanswered; if it did, the
                // pool writes the data again.
                return if rx.recv().await.unwrap_or(false) { Outcome::Written } else { Outcome::Refused };
            }
            groups.insert(unit.start, WriteGroup { unit: unit.clone(), buf: None, members: vec![(range.clone(), fua, None)] });
        }
        smol::future::yield_now().await;
        let since = std::time::Instant::now();
        let mut waited = 0;
        while waited < MAX_TURNS && self.turns.in_flight() && since.elapsed() < MAX_WAIT && self.expects_more(&unit) {
            self.turns.wait().await;
            waited += 1;
        }
        let Some(mut group) = self.writes.borrow_mut().remove(&unit.start) else { return Outcome::Refused };
        // The leader's data is fetched last, straight to where it is
        // written from: the group's buffer, or its own when alone (a copy
        // in user space would cost as much again as the kernel's).
        let fetched = match group.buf.as_mut() {
            Some(buf) => buf.get_mut(at.clone()).is_some_and(|dst| copy.fetch_at(tag, part.from, dst).is_ok()),
            None => own.get_mut(..at.len()).is_some_and(|dst| copy.fetch_at(tag, part.from, dst).is_ok()),
        };
        if !fetched {
            group.refuse();
            return Outcome::Refused;
        }
        *self.writing.borrow_mut().entry(unit.start).or_default() += 1;
        let outcome = self.write_group(q, &unit, group, own.get(..at.len()).unwrap_or_default(), device).await;
        let mut writing = self.writing.borrow_mut();
        if let Some(n) = writing.get_mut(&unit.start) {
            *n -= 1;
            if *n == 0 {
                writing.remove(&unit.start);
            }
        }
        outcome
    }

    /// The leader's part: its group written, one staged write per run.
    /// The leader is the first member; `own` its data when it is alone
    /// (else its data is in the group's buffer).
    async fn write_group(&self, q: &UblkQueue<'_>, unit: &Range<u64>, group: WriteGroup, own: &[u8], device: &dyn BlockDevice) -> Outcome {
        let Some((range, fua, _)) = group.members.first().cloned() else { return Outcome::Refused };
        let Some(buf) = group.buf else {
            // Alone in its stripe: written from the tag's buffer.
            return if self.stage_write(q, device, &range, fua, own).await { Outcome::Written } else { Outcome::Refused };
        };
        let ranges: Vec<Range<u64>> = group.members.iter().map(|(r, _, _)| r.clone()).collect();
        let mut leader = false;
        for (members, span) in contiguous_runs(&ranges) {
            let fua = members.iter().any(|&i| group.members[i].1);
            let data = &buf[(span.start - unit.start) as usize..(span.end - unit.start) as usize];
            let written = self.stage_write(q, device, &span, fua, data).await;
            if written {
                self.counts.served(members.len(), &self.counts.writes, &self.counts.write_groups);
            }
            for i in members {
                match &group.members[i].2 {
                    Some(tx) => {
                        let _ = tx.try_send(written);
                    }
                    None => leader = written,
                }
            }
        }
        if leader { Outcome::Written } else { Outcome::Refused }
    }

    /// `data` written at `range` as one staged write on this queue's ring;
    /// false when the device cannot stage it or abandons it.
    async fn stage_write(&self, q: &UblkQueue<'_>, device: &dyn BlockDevice, range: &Range<u64>, fua: bool, data: &[u8]) -> bool {
        match device.stage_write(range.start, range.end - range.start, fua) {
            Some(mut staged) => run_stages(q, &self.turns, |results| staged.advance(data, results)).await,
            None => false,
        }
    }

    /// Serve a read that `read_extents` could not map (a chunk on a failed
    /// leg) with the others of its chunk: Some(result for the kernel) when
    /// delivered, None when the caller is to serve it alone (alone in its
    /// chunk, or the group could not be staged).
    pub async fn rebuild(&self, q: &UblkQueue<'_>, copy: &UserCopy, tag: u16, request: &Request, device: &dyn BlockDevice) -> Option<i32> {
        if !self.enabled {
            return None;
        }
        let range = request.range()?;
        let unit = unit_of(device, &range, Gather::Rebuild)?;
        {
            let mut groups = self.reads.borrow_mut();
            if let Some(g) = groups.get_mut(&unit.start) {
                if g.unit != unit {
                    return None;
                }
                let (tx, rx) = bounded(1);
                g.members.push((range.clone(), Some(tx)));
                drop(groups);
                let rebuilt = rx.recv().await.ok().flatten()?;
                return Some(hand_over(copy, tag, request, &rebuilt, &range));
            }
            groups.insert(unit.start, ReadGroup { unit: unit.clone(), members: vec![(range.clone(), None)] });
        }
        smol::future::yield_now().await;
        let group = self.reads.borrow_mut().remove(&unit.start)?;
        if group.members.len() == 1 {
            // Alone in its chunk: the caller rebuilds it into the tag's buffer.
            return None;
        }
        let span = group.members.iter().map(|(r, _)| r.start).min().unwrap_or(range.start)..group.members.iter().map(|(r, _)| r.end).max().unwrap_or(range.end);
        let rebuilt = match device.stage_read(span.start, span.end - span.start) {
            Some(mut staged) => {
                let mut data = scratch::take(1, (span.end - span.start) as usize).pop()?;
                run_stages(q, &self.turns, |results| staged.advance(&mut data, results)).await.then(|| Rc::new(Rebuilt { start: span.start, data }))
            }
            None => None,
        };
        if rebuilt.is_some() {
            self.counts.served(group.members.len(), &self.counts.reads, &self.counts.rebuilds);
        }
        for (_, tx) in &group.members {
            if let Some(tx) = tx {
                let _ = tx.try_send(rebuilt.clone());
            }
        }
        rebuilt.map(|r| hand_over(copy, tag, request, &r, &range))
    }
}

/// Deliver `range` of a rebuilt span to the tag's request.
fn hand_over(copy: &UserCopy, tag: u16, request: &Request, rebuilt: &Rebuilt, range: &Range<u64>) -> i32 {
    let at = (range.start - rebuilt.start) as usize;
    let piece = [Piece { request_offset: 0, buf_offset: at, len: (range.end - range.start) as usize }];
    read_result(request, deliver(copy, tag, &rebuilt.data, &piece))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_make_one_run_and_gaps_split_runs_in_offset_order() {
        // Four 64 KiB writes of a 256 KiB stripe, arrived out of order.
        let k = 64 << 10;
        let ranges = vec![2 * k..3 * k, 0..k, 3 * k..4 * k, k..2 * k];
        assert_eq!(contiguous_runs(&ranges), vec![(vec![1, 3, 0, 2], 0..4 * k)]);
        // A gap: two runs, the lower first.
        let ranges = vec![3 * k..4 * k, 0..k, k..2 * k];
        assert_eq!(contiguous_runs(&ranges), vec![(vec![1, 2], 0..2 * k), (vec![0], 3 * k..4 * k)]);
        assert_eq!(contiguous_runs(&[]), vec![]);
    }

    #[test]
    fn a_group_expects_more_only_from_a_sequential_writer_short_of_its_stripe_or_while_its_stripe_is_written() {
        let k = 64 << 10;
        let unit = 0..3 * k;
        let g = Gathering::new(Rc::default(), Arc::default());
        let open = |members: Vec<Range<u64>>| {
            let members = members.into_iter().map(|r| (r, false, None)).collect();
            g.writes.borrow_mut().insert(0, WriteGroup { unit: unit.clone(), buf: None, members });
        };
        // From the stripe's start, short of its end: the rest is on its way.
        open(vec![0..k, k..2 * k]);
        assert!(g.expects_more(&unit));
        // The whole stripe: nothing more to wait for.
        open(vec![0..k, k..2 * k, 2 * k..3 * k]);
        assert!(!g.expects_more(&unit));
        // From the middle: only if a recent write ended where it starts.
        open(vec![k..2 * k]);
        assert!(!g.expects_more(&unit));
        g.remember_end(k);
        assert!(g.expects_more(&unit));
        // Two runs (a random writer): no.
        open(vec![0..4096, 2 * k..2 * k + 4096]);
        assert!(!g.expects_more(&unit));
        // Its stripe still being written by an earlier group: yes.
        g.writing.borrow_mut().insert(0, 1);
        assert!(g.expects_more(&unit));
    }

    /// A 4 MiB device whose gather units the closure answers, for `split`.
    struct Units(Box<dyn Fn(u64) -> Option<Range<u64>> + Send + Sync>);

    /// Stripes of `unit` bytes.
    fn stripes(unit: u64) -> Units {
        Units(Box::new(move |offset| Some(offset / unit * unit..(offset / unit + 1) * unit)))
    }

    impl BlockDevice for Units {
        fn size(&self) -> u64 {
            4 << 20
        }
        fn read_at(&self, _: &mut [u8], _: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn write_at(&self, _: &[u8], _: u64, _: bool) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn discard(&self, _: u64, _: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn write_zeroes(&self, _: u64, _: u64, _: bool) -> std::io::Result<()> {
            Ok(())
        }
        fn describe(&self) -> String {
            "units".into()
        }
        fn gather_unit(&self, offset: u64, _: Gather) -> Option<Range<u64>> {
            (self.0)(offset)
        }
    }

    fn write(offset: u64, len: u64) -> Request {
        Request { op: libublk::sys::UBLK_IO_OP_WRITE, flags: 0, offset, len }
    }

    #[test]
    fn a_large_write_splits_into_its_partial_first_and_last_stripes_and_the_whole_ones_between() {
        let k = 64 << 10;
        let raid5 = stripes(3 * k);
        let g = Gathering::new(Rc::default(), Arc::default());
        // The second 1 MiB of a sequential writer: 1 MiB is 5 1/3 stripes
        // of 192 KiB, so it starts 1/3 into stripe 5 and ends 2/3 into 10.
        let split = g.split(&write(16 * k, 16 * k), &raid5).unwrap();
        let (head, head_unit) = split.head.clone().unwrap();
        assert_eq!((head.range.clone(), head.from, head_unit), (16 * k..18 * k, 0, 15 * k..18 * k));
        assert_eq!((split.middle.range.clone(), split.middle.from), (18 * k..30 * k, 2 * k as usize));
        let (tail, tail_unit) = split.tail.clone().unwrap();
        assert_eq!((tail.range.clone(), tail.from, tail_unit), (30 * k..32 * k, 14 * k as usize, 30 * k..33 * k));
        // The first 1 MiB starts on a stripe: a tail only.
        let split = g.split(&write(0, 16 * k), &raid5).unwrap();
        assert!(split.head.is_none());
        assert_eq!(split.middle.range, 0..15 * k);
        assert_eq!(split.tail.unwrap().0.range, 15 * k..16 * k);
        // Whole stripes only (raid6 over 6 legs, 1 MiB aligned): nothing to cut.
        assert_eq!(g.split(&write(0, 16 * k), &stripes(4 * k)), None);
        // Inside one stripe: nothing to cut either (the whole write gathers).
        assert_eq!(g.split(&write(k, k), &raid5), None);
        // Two partial stripes and nothing between.
        let split = g.split(&write(2 * k, 2 * k), &raid5).unwrap();
        assert!(split.middle.range.is_empty());
        assert_eq!((split.head.unwrap().0.range, split.tail.unwrap().0.range), (2 * k..3 * k, 3 * k..4 * k));
        // Nothing to write, nothing to cut.
        assert_eq!(g.split(&write(2 * k, 0), &raid5), None);
        // A device whose units are not where it was asked: not cut (an
        // inverted part would be a huge buffer).
        assert_eq!(g.split(&write(16 * k, 16 * k), &Units(Box::new(|o| Some(o.saturating_sub(1 << 20)..o.saturating_sub(1 << 20) + 3 * (64 << 10))))), None);
    }
}
