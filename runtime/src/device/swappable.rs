//! A device whose implementation is swapped while it is served: an array,
//! then the same array reshaping, then the reshaped array.
//!
//! A swap first pauses the device: new requests wait, and the swap
//! happens once every request in flight (staged ones included, until
//! their last stage) is done, so no request runs half on one device and
//! half on the next. Devices swapped out stay alive as long as this one
//! (a staged request borrows its device); there are `SLOTS` of them, so a
//! daemon swaps a bounded number of times before it must be restarted.

use super::staged::{StagedRead, StagedWrite, Step};
use super::{BlockDevice, BlockSizes, Extent, status::StatusExtent};
use parking_lot::{Condvar, Mutex};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Devices one `Swappable` holds in its life (the first and every swap).
pub const SLOTS: usize = 16;

/// Why a swap was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0} has been swapped {SLOTS} times already: stop it and start it again to swap it once more")]
pub struct Exhausted(pub String);

pub struct Swappable {
    first: Arc<dyn BlockDevice>,
    /// The devices swapped in, in order (`current` counts them).
    slots: [OnceLock<Arc<dyn BlockDevice>>; SLOTS - 1],
    current: AtomicUsize,
    /// Shared with the extents handed out, which hold it while read.
    gate: Arc<Gate>,
}

/// What counts requests in flight and holds new ones during a swap.
struct Gate {
    inflight: AtomicU64,
    /// True while a swap waits for requests to drain (and holds new ones).
    paused: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn leave(&self) {
        if self.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Maybe the last one a pause waits for; the lock orders the
            // wake after its check.
            let _g = self.paused.lock();
            self.changed.notify_all();
        }
    }
}

/// A request in flight.
struct Entered<'a>(&'a Gate);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// Extents in flight: the frontend reads them after `read_extents`
/// returns, and they point into the device now serving; a swap to a
/// device that moves data (a reshape) waits until they are dropped.
struct ExtentHold(Arc<Gate>);

impl Drop for ExtentHold {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// While alive, the device is paused: nothing is in flight and new
/// requests wait. Dropping it lets them run (on the new device, if
/// `swap` was called).
pub struct Paused<'a>(&'a Swappable);

impl Paused<'_> {
    /// Serve every later request with `device`.
    pub fn swap(&self, device: Arc<dyn BlockDevice>) -> Result<(), Exhausted> {
        let s = self.0;
        let next = s.current.load(Ordering::Acquire);
        let slot = s.slots.get(next).ok_or_else(|| Exhausted(s.describe()))?;
        slot.set(device).map_err(|_| Exhausted(s.describe()))?;
        s.current.store(next + 1, Ordering::Release);
        Ok(())
    }

    pub fn device(&self) -> Arc<dyn BlockDevice> {
        self.0.arc()
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        *self.0.gate.paused.lock() = false;
        self.0.gate.changed.notify_all();
    }
}

impl Swappable {
    pub fn new(device: Arc<dyn BlockDevice>) -> Swappable {
        let gate = Arc::new(Gate { inflight: AtomicU64::new(0), paused: Mutex::new(false), changed: Condvar::new() });
        Swappable { first: device, slots: Default::default(), current: AtomicUsize::new(0), gate }
    }

    /// The device serving now.
    fn now(&self) -> &dyn BlockDevice {
        &**self.slot()
    }

    fn slot(&self) -> &Arc<dyn BlockDevice> {
        // A slot is set before `current` counts it.
        match self.current.load(Ordering::Acquire).checked_sub(1) {
            Some(i) => self.slots.get(i).and_then(|s| s.get()).unwrap_or(&self.first),
            None => &self.first,
        }
    }

    /// How many more swaps it takes.
    pub fn swaps_left(&self) -> usize {
        (SLOTS - 1).saturating_sub(self.current.load(Ordering::Acquire))
    }

    pub fn arc(&self) -> Arc<dyn BlockDevice> {
        self.slot().clone()
    }

    fn enter(&self) -> Entered<'_> {
        let g = &*self.gate;
        loop {
            {
                let mut paused = g.paused.lock();
                while *paused {
                    g.changed.wait(&mut paused);
                }
            }
            g.inflight.fetch_add(1, Ordering::AcqRel);
            // A pause that started meanwhile waits for this one: step back
            // out and wait for it instead.
            if !*g.paused.lock() {
                return Entered(g);
            }
            drop(Entered(g));
        }
    }

    /// For the calls a frontend makes on its own event loop (extents,
    /// staged requests), which must never block it: while paused, None,
    /// and the frontend serves the request the plain way, on a thread that
    /// may wait. (A queue thread blocked here could not complete the staged
    /// requests the pause waits for.)
    fn try_enter(&self) -> Option<Entered<'_>> {
        let g = &*self.gate;
        if *g.paused.lock() {
            return None;
        }
        g.inflight.fetch_add(1, Ordering::AcqRel);
        if *g.paused.lock() {
            drop(Entered(g));
            return None;
        }
        Some(Entered(g))
    }

    /// Hold new requests and wait for those in flight (one pause at a
    /// time: a second waits for the first to end), giving up (and letting
    /// requests go on) when they are not done within `limit`: a leg that
    /// hangs, or a client that takes its time over a read's extents, must
    /// not hold every request back for ever.
    pub fn pause_within(&self, limit: std::time::Duration) -> Option<Paused<'_>> {
        let g = &*self.gate;
        let deadline = std::time::Instant::now() + limit;
        let mut paused = g.paused.lock();
        while *paused {
            if g.changed.wait_until(&mut paused, deadline).timed_out() {
                return None;
            }
        }
        *paused = true;
        while g.inflight.load(Ordering::Acquire) > 0 {
            if std::time::Instant::now() >= deadline {
                *paused = false;
                g.changed.notify_all();
                return None;
            }
            g.changed.wait_for(&mut paused, std::time::Duration::from_millis(10));
        }
        Some(Paused(self))
    }
}

/// A staged request holds its place in flight until its last stage.
struct GatedWrite<'a> {
    inner: Box<dyn StagedWrite + 'a>,
    _in: Entered<'a>,
}

impl StagedWrite for GatedWrite<'_> {
    fn advance(&mut self, data: &[u8], results: &[i32]) -> Step {
        self.inner.advance(data, results)
    }
}

struct GatedRead<'a> {
    inner: Box<dyn StagedRead + 'a>,
    _in: Entered<'a>,
}

impl StagedRead for GatedRead<'_> {
    fn advance(&mut self, buf: &mut [u8], results: &[i32]) -> Step {
        self.inner.advance(buf, results)
    }
}

impl BlockDevice for Swappable {
    fn size(&self) -> u64 {
        self.now().size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let _in = self.enter();
        self.now().read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        let _in = self.enter();
        self.now().write_at(buf, offset, fua)
    }
    fn flush(&self) -> io::Result<()> {
        let _in = self.enter();
        self.now().flush()
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let _in = self.enter();
        self.now().discard(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> io::Result<()> {
        let _in = self.enter();
        self.now().write_zeroes(offset, len, fua)
    }
    fn describe(&self) -> String {
        self.now().describe()
    }
    fn link(&self) -> Option<super::LinkState> {
        self.now().link()
    }
    /// Extents are read after this returns: they carry a hold that counts
    /// as a request in flight until the frontend drops them, so a swap
    /// waits for the reads (`Reshaping`, which moves data, hands none out).
    fn read_extents(&self, offset: u64, len: u64, buf_offset: usize, out: &mut Vec<Extent>) -> bool {
        let Some(entered) = self.try_enter() else { return false };
        let from = out.len();
        if !self.now().read_extents(offset, len, buf_offset, out) {
            return false;
        }
        // The request's place in flight passes to its extents (the hold
        // leaves the gate when the last of them is dropped).
        std::mem::forget(entered);
        let hold: Arc<dyn std::any::Any + Send + Sync> = Arc::new(ExtentHold(self.gate.clone()));
        for e in &mut out[from..] {
            e.hold = Some(hold.clone());
        }
        true
    }
    fn direct_file(&self, offset: u64, buf: *const u8, len: usize) -> Option<(Arc<std::fs::File>, u64)> {
        let _in = self.try_enter()?;
        self.now().direct_file(offset, buf, len)
    }
    fn stage_write(&self, offset: u64, len: u64, fua: bool) -> Option<Box<dyn StagedWrite + '_>> {
        let entered = self.try_enter()?;
        let inner = self.now().stage_write(offset, len, fua)?;
        Some(Box::new(GatedWrite { inner, _in: entered }))
    }
    fn stage_read(&self, offset: u64, len: u64) -> Option<Box<dyn StagedRead + '_>> {
        let entered = self.try_enter()?;
        let inner = self.now().stage_read(offset, len)?;
        Some(Box::new(GatedRead { inner, _in: entered }))
    }
    fn gather_unit(&self, offset: u64, kind: super::Gather) -> Option<std::ops::Range<u64>> {
        self.now().gather_unit(offset, kind)
    }
    fn zeroes_fast(&self, offset: u64, len: u64) -> bool {
        self.now().zeroes_fast(offset, len)
    }
    fn block_sizes(&self) -> BlockSizes {
        self.now().block_sizes()
    }
    fn block_status(&self, offset: u64, len: u64, out: &mut Vec<StatusExtent>) -> io::Result<()> {
        let _in = self.enter();
        self.now().block_status(offset, len, out)
    }
    fn arrays(&self) -> Vec<Arc<crate::array::Array>> {
        self.now().arrays()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::mem::MemLeg;

    #[test]
    fn a_swap_waits_for_requests_in_flight_and_holds_new_ones() {
        let a: Arc<dyn BlockDevice> = Arc::new(MemLeg::new("m", 1 << 20));
        let b: Arc<dyn BlockDevice> = Arc::new(MemLeg::new("m", 2 << 20));
        let s = Arc::new(Swappable::new(a.clone()));
        s.write_at(&[1; 512], 0, false).unwrap();
        let staged = s.stage_write(0, 512, false);
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = s.clone();
        let b2 = b.clone();
        let swapper = std::thread::spawn(move || {
            let p = s2.pause_within(std::time::Duration::from_secs(10)).unwrap();
            tx.send(()).unwrap();
            p.swap(b2).unwrap();
        });
        // A staged request (if the device stages) holds the swap back.
        if staged.is_some() {
            assert!(rx.recv_timeout(std::time::Duration::from_millis(100)).is_err());
        }
        drop(staged);
        swapper.join().unwrap();
        assert_eq!(s.size(), 2 << 20);
        s.write_at(&[2; 512], 0, false).unwrap();
        let mut back = [0u8; 512];
        a.read_at(&mut back, 0).unwrap();
        assert_eq!(back, [1; 512]);
        b.read_at(&mut back, 0).unwrap();
        assert_eq!(back, [2; 512]);
    }

    #[test]
    fn a_pause_turns_staged_requests_away_rather_than_blocking() {
        let s = Swappable::new(Arc::new(MemLeg::new("m", 1 << 20)));
        let p = s.pause_within(std::time::Duration::from_secs(10)).unwrap();
        // On a frontend's event loop: answered at once, never waited on.
        assert!(s.stage_write(0, 512, false).is_none());
        assert!(s.stage_read(0, 512).is_none());
        assert!(!s.read_extents(0, 512, 0, &mut Vec::new()));
        drop(p);
    }

    #[test]
    fn a_pause_gives_up_when_requests_in_flight_do_not_finish() {
        let s = Swappable::new(Arc::new(MemLeg::new("m", 1 << 20)));
        let held = s.enter();
        assert!(s.pause_within(std::time::Duration::from_millis(50)).is_none());
        drop(held);
        // Not left paused: requests go on, and a pause works again.
        s.write_at(&[1; 512], 0, false).unwrap();
        assert!(s.pause_within(std::time::Duration::from_millis(50)).is_some());
    }

    #[test]
    fn extents_handed_out_hold_a_swap_until_they_are_dropped() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("leg");
        crate::device::file::FileLeg::create(&path, 1 << 20).unwrap();
        let leg = crate::device::file::FileLeg::open(&path, Default::default()).unwrap();
        let s = Swappable::new(Arc::new(leg));
        let mut extents = Vec::new();
        assert!(s.read_extents(0, 8192, 0, &mut extents));
        assert!(!extents.is_empty());
        // Read by the frontend after the call: no swap while they are.
        assert!(s.pause_within(std::time::Duration::from_millis(50)).is_none());
        extents.clear();
        assert!(s.pause_within(std::time::Duration::from_millis(50)).is_some());
    }

    #[test]
    fn swaps_are_bounded() {
        let s = Swappable::new(Arc::new(MemLeg::new("m", 4096)));
        for _ in 1..SLOTS {
            s.pause_within(std::time::Duration::from_secs(10)).unwrap().swap(Arc::new(MemLeg::new("m", 4096))).unwrap();
        }
        assert!(s.pause_within(std::time::Duration::from_secs(10)).unwrap().swap(Arc::new(MemLeg::new("m", 4096))).is_err());
        // Still serving.
        s.write_at(&[0; 512], 0, false).unwrap();
    }
}
