//! Every write, FUA write, discard and flush a leg receives, logged in order
//! (device-mapper's log-writes target), and the log replayed to what a
//! power loss could leave on the leg at any point of it.
//!
//! Any leg can be wrapped ([`LoggedLeg`]); all legs of an array share one
//! [`WriteLog`] whose clock orders their events (and whatever else the
//! caller stamps with [`WriteLog::tick`], such as the array's own
//! requests) in one sequence.
//!
//! The persistence model, per leg (legs are separate disks): at crash
//! time `at`, every write that completed before the start of the last flush
//! that completed before `at` is on the medium, and so is every FUA write
//! completed before `at`; of the other writes issued before `at` (not yet
//! flushed, in flight, or failed) any subset may be, each 4 KiB block on
//! its own (a write can tear between blocks). A flush covers only writes
//! that completed before it was issued, as dm-log-writes logs them.

use super::BlockDevice;
use super::mem::{BLOCK, Image};
use parking_lot::Mutex;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a logged request did to its leg.
#[derive(Clone, Debug)]
pub enum Op {
    Write {
        offset: u64,
        data: Arc<[u8]>,
    },
    /// A discard or write-zeroes: the range reads as zeroes afterwards.
    Zero {
        offset: u64,
        len: u64,
    },
    Flush,
}

/// One request on one leg.
#[derive(Clone, Debug)]
pub struct Entry {
    pub leg: u32,
    pub op: Op,
    pub fua: bool,
    /// Clock value when it was issued.
    pub issued: u64,
    /// Clock value when it completed (None: still in flight).
    pub completed: Option<u64>,
    /// It completed without error.
    pub ok: bool,
}

/// The shared log and its clock.
#[derive(Default)]
pub struct WriteLog {
    clock: AtomicU64,
    entries: Mutex<Vec<Entry>>,
}

impl WriteLog {
    pub fn new() -> Arc<WriteLog> {
        Arc::new(WriteLog::default())
    }

    /// Advance the clock: the value stamps one event (the first is 1).
    pub fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The clock's current value.
    pub fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn begin(&self, leg: u32, op: Op, fua: bool) -> usize {
        let mut entries = self.entries.lock();
        let issued = self.tick();
        entries.push(Entry { leg, op, fua, issued, completed: None, ok: false });
        entries.len() - 1
    }

    fn end(&self, index: usize, ok: bool) {
        let mut entries = self.entries.lock();
        let completed = self.tick();
        if let Some(e) = entries.get_mut(index) {
            e.completed = Some(completed);
            e.ok = ok;
        }
    }

    /// A copy of the log so far, in issue order.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().clone()
    }
}

/// A leg whose writes, flushes and discards go into a [`WriteLog`].
pub struct LoggedLeg {
    inner: Arc<dyn BlockDevice>,
    leg: u32,
    log: Arc<WriteLog>,
}

impl LoggedLeg {
    /// Log `inner`'s requests as leg number `leg`.
    pub fn new(inner: Arc<dyn BlockDevice>, leg: u32, log: Arc<WriteLog>) -> LoggedLeg {
        LoggedLeg { inner, leg, log }
    }

    fn logged<T>(&self, op: Op, fua: bool, run: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let index = self.log.begin(self.leg, op, fua);
        let result = run();
        self.log.end(index, result.is_ok());
        result
    }
}

impl BlockDevice for LoggedLeg {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        self.logged(Op::Write { offset, data: buf.into() }, fua, || self.inner.write_at(buf, offset, fua))
    }
    fn flush(&self) -> io::Result<()> {
        self.logged(Op::Flush, false, || self.inner.flush())
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.logged(Op::Zero { offset, len }, false, || self.inner.discard(offset, len))
    }
    fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> io::Result<()> {
        self.logged(Op::Zero { offset, len }, fua, || self.inner.write_zeroes(offset, len, fua))
    }
    /// What the leg holds now (a read: not logged).
    fn block_status(&self, offset: u64, len: u64, out: &mut Vec<super::status::StatusExtent>) -> io::Result<()> {
        self.inner.block_status(offset, len, out)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn link(&self) -> Option<super::LinkState> {
        self.inner.link()
    }
}

/// Which of a leg's not-yet-durable writes a crash keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persist {
    /// None of them.
    Nothing,
    /// All of them, whole.
    Everything,
    /// The first `n` of them (in issue order), whole.
    Prefix(usize),
    /// Each block of each with probability `percent`%, from `seed`.
    Random { seed: u64, percent: u8 },
}

impl std::fmt::Display for Persist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Persist::Nothing => write!(f, "nothing"),
            Persist::Everything => write!(f, "everything"),
            Persist::Prefix(n) => write!(f, "prefix:{n}"),
            Persist::Random { seed, percent } => write!(f, "random:{seed}:{percent}"),
        }
    }
}

impl std::str::FromStr for Persist {
    type Err = String;
    fn from_str(s: &str) -> Result<Persist, String> {
        let bad = || format!("'{s}' is not a persistence choice (nothing, everything, prefix:N, random:SEED:PERCENT)");
        let parts: Vec<&str> = s.split(':').collect();
        match parts[..] {
            ["nothing"] => Ok(Persist::Nothing),
            ["everything"] => Ok(Persist::Everything),
            ["prefix", n] => n.parse().map(Persist::Prefix).map_err(|_| bad()),
            ["random", seed, percent] => Ok(Persist::Random { seed: seed.parse().map_err(|_| bad())?, percent: percent.parse().map_err(|_| bad())? }),
            _ => Err(bad()),
        }
    }
}

/// splitmix64: small, seedable, good enough to pick subsets.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a crash at `at` leaves on leg `leg`, which held `base` when the
/// log began. Returns the image and how many writes were not yet durable.
pub fn crash_image(base: &Image, entries: &[Entry], leg: u32, at: u64, persist: Persist) -> (Image, usize) {
    let mine: Vec<&Entry> = entries.iter().filter(|e| e.leg == leg && e.issued < at).collect();
    // The start of the last flush that completed before the crash.
    let flushed_before = mine.iter().filter(|e| matches!(e.op, Op::Flush) && e.ok && e.completed.is_some_and(|c| c < at)).map(|e| e.issued).max().unwrap_or(0);
    let mut image = base.clone();
    let mut rng = match persist {
        Persist::Random { seed, .. } => seed ^ u64::from(leg).wrapping_mul(0x2545_f491_4f6c_dd1d),
        _ => 0,
    };
    let mut undecided = 0usize;
    for e in mine {
        if matches!(e.op, Op::Flush) {
            continue;
        }
        let completed = e.completed.filter(|c| *c < at && e.ok);
        let durable = completed.is_some_and(|c| c < flushed_before || e.fua);
        if durable {
            apply(&mut image, &e.op, |_| true);
            continue;
        }
        undecided += 1;
        match persist {
            Persist::Nothing => {}
            Persist::Everything => apply(&mut image, &e.op, |_| true),
            Persist::Prefix(n) => {
                if undecided <= n {
                    apply(&mut image, &e.op, |_| true);
                }
            }
            Persist::Random { percent, .. } => apply(&mut image, &e.op, |_| splitmix64(&mut rng) % 100 < u64::from(percent)),
        }
    }
    (image, undecided)
}

/// Apply a write-like op, block by block where `keep` says so.
fn apply(image: &mut Image, op: &Op, mut keep: impl FnMut(u64) -> bool) {
    let (offset, len) = match op {
        Op::Write { offset, data } => (*offset, data.len() as u64),
        Op::Zero { offset, len } => (*offset, *len),
        Op::Flush => return,
    };
    let mut done = 0u64;
    while done < len {
        let at = offset + done;
        let n = (BLOCK as u64 - at % BLOCK as u64).min(len - done);
        if keep(at / BLOCK as u64) {
            match op {
                Op::Write { data, .. } => image.write(&data[done as usize..(done + n) as usize], at),
                _ => image.zero(at, n),
            }
        }
        done += n;
    }
}

/// The crash points that matter most: just after every completed flush
/// and FUA write, of any leg.
pub fn durability_points(entries: &[Entry]) -> Vec<u64> {
    let mut points: Vec<u64> = entries.iter().filter(|e| e.ok && (e.fua || matches!(e.op, Op::Flush))).filter_map(|e| e.completed.map(|c| c + 1)).collect();
    points.sort_unstable();
    points.dedup();
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::mem::MemLeg;

    fn logged() -> (Arc<MemLeg>, LoggedLeg, Arc<WriteLog>) {
        let mem = Arc::new(MemLeg::new("m", 16 * BLOCK as u64));
        let log = WriteLog::new();
        let leg = LoggedLeg::new(mem.clone(), 0, log.clone());
        (mem, leg, log)
    }

    fn byte_at(img: &Image, block: u64) -> u8 {
        let mut b = [0u8; 1];
        img.read(&mut b, block * BLOCK as u64);
        b[0]
    }

    #[test]
    fn a_flush_makes_earlier_writes_durable_and_later_ones_optional() {
        let (mem, leg, log) = logged();
        let base = mem.image();
        leg.write_at(&[1u8; BLOCK], 0, false).unwrap();
        leg.flush().unwrap();
        leg.write_at(&[2u8; BLOCK], 0, false).unwrap();
        leg.write_at(&[3u8; 2 * BLOCK], 4 * BLOCK as u64, false).unwrap();
        let end = log.now() + 1;
        let entries = log.entries();
        let (none, undecided) = crash_image(&base, &entries, 0, end, Persist::Nothing);
        assert_eq!(undecided, 2);
        assert_eq!((byte_at(&none, 0), byte_at(&none, 4)), (1, 0), "only what the flush covered");
        let (all, _) = crash_image(&base, &entries, 0, end, Persist::Everything);
        assert_eq!((byte_at(&all, 0), byte_at(&all, 4), byte_at(&all, 5)), (2, 3, 3));
        let (first, _) = crash_image(&base, &entries, 0, end, Persist::Prefix(1));
        assert_eq!((byte_at(&first, 0), byte_at(&first, 4)), (2, 0));
        // Before the flush completed, even the first write is optional.
        let flush_done = entries.iter().find(|e| matches!(e.op, Op::Flush)).unwrap().completed.unwrap();
        let (early, _) = crash_image(&base, &entries, 0, flush_done, Persist::Nothing);
        assert_eq!(byte_at(&early, 0), 0);
        assert_eq!(durability_points(&entries), vec![flush_done + 1]);
    }

    #[test]
    fn fua_is_durable_at_completion_and_random_subsets_tear_blocks() {
        let (mem, leg, log) = logged();
        let base = mem.image();
        leg.write_at(&[7u8; BLOCK], BLOCK as u64, true).unwrap();
        leg.write_at(&[9u8; 8 * BLOCK], 8 * BLOCK as u64, false).unwrap();
        let end = log.now() + 1;
        let entries = log.entries();
        let (img, _) = crash_image(&base, &entries, 0, end, Persist::Nothing);
        assert_eq!(byte_at(&img, 1), 7);
        let torn = (0..32u64).any(|seed| {
            let (img, _) = crash_image(&base, &entries, 0, end, Persist::Random { seed, percent: 50 });
            let kept: Vec<u8> = (8..16).map(|b| byte_at(&img, b)).collect();
            kept.contains(&9) && kept.contains(&0)
        });
        assert!(torn, "some random subset keeps part of a multi-block write");
        assert_eq!("random:5:30".parse::<Persist>().unwrap(), Persist::Random { seed: 5, percent: 30 });
    }
}
