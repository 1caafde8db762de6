//! An array: legs laid out by a proven layout, with real parity.
//!
//! Reads split at chunk boundaries and go straight to the legs; a chunk on a
//! failed leg is rebuilt from the stripe's equations. Writes lock their
//! stripe and, for every run of columns touched by the same data chunks,
//! compute parity by read-modify-write or reconstruct-write, whichever reads
//! less. A leg that returns an I/O error is marked dead and the array goes
//! on degraded; it never returns wrong data. With metadata (`wasmraid
//! create`), every leg carries a superblock and the write-intent bitmap.

mod batch;
mod block_status;
pub mod create;
mod decode;
pub mod health;
pub mod intent;
mod io;
mod locks;
pub mod members;
pub mod reload;
mod remote;
mod safe_mode;
pub(crate) mod scratch;
mod scrub;
pub mod spare;
mod staged;
mod staged_read;
pub mod sync;

use crate::device::BlockDevice;
use crate::layout::map::MapError;
use crate::layout::proven::ProvenLayout;
use crate::meta::superblock::Superblock;
use arc_swap::ArcSwap;
use health::{ArrayLeg, Health};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Why an array request failed.
#[derive(Debug, thiserror::Error)]
pub enum ArrayError {
    #[error("{0}")]
    Map(#[from] MapError),
    #[error("stripe {stripe}: {detail}")]
    Unrecoverable { stripe: u64, detail: String },
    #[error("{len} bytes at {offset} go beyond the array's {size} bytes")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("{0}")]
    Refused(String),
}

impl From<ArrayError> for std::io::Error {
    fn from(e: ArrayError) -> Self {
        match e {
            ArrayError::OutOfRange { .. } => std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
            other => std::io::Error::other(other.to_string()),
        }
    }
}

/// I/O counters, as `status` shows them.
#[derive(Default)]
pub struct Counters {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub read_bytes: AtomicU64,
    pub written_bytes: AtomicU64,
    pub degraded_reads: AtomicU64,
    pub rmw: AtomicU64,
    pub rcw: AtomicU64,
    pub full_stripe: AtomicU64,
    pub flushes: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Which copy a mirror read goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadPolicy {
    /// The copy whose leg has the fewest requests in flight (default).
    LeastOutstanding,
    /// The copy whose leg last worked closest to it (DST's mirror policy).
    Nearest,
    /// The copy whose leg answered fastest recently (remote mirrors), with
    /// requests in flight counted against it.
    LowestLatency,
}

impl std::str::FromStr for ReadPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "least-outstanding" | "lo" => Ok(ReadPolicy::LeastOutstanding),
            "nearest" => Ok(ReadPolicy::Nearest),
            "lowest-latency" | "latency" => Ok(ReadPolicy::LowestLatency),
            other => Err(format!("unknown read policy '{other}' (least-outstanding, nearest, lowest-latency)")),
        }
    }
}

/// What the metadata keeps for a self-describing array.
pub struct Meta {
    /// The array-level superblock fields; each leg's copy differs only in
    /// its index and uuid.
    pub template: Mutex<Superblock>,
    pub intent: intent::Intent,
    /// The layout component, written onto every leg added later.
    pub component: Vec<u8>,
}

pub struct Array {
    name: String,
    legs: Vec<ArrayLeg>,
    layout: ArcSwap<ProvenLayout>,
    chunk_bytes: u64,
    locks: locks::StripeLocks,
    plans: decode::Plans,
    /// Dead legs rebuilt (or being rebuilt) into distributed spare slots.
    spares: ArcSwap<Vec<Arc<spare::SpareUse>>>,
    /// Legs (bit per slot) whose spare rebuild failed: not retried by
    /// itself until the slot gets a device again.
    spare_gave_up: AtomicU64,
    pub meta: Option<Meta>,
    pub sync: sync::SyncState,
    read_policy: AtomicU8,
    read_turn: AtomicU64,
    pub counters: Counters,
    /// How long requests took, start to answer (`latency.rs`).
    pub latency: crate::latency::IoLatency,
    /// Legs marked dead whose failure is not yet on disk (see
    /// `settle_failures`).
    unrecorded_failures: AtomicU64,
    /// One recording of failures at a time.
    recording: Mutex<()>,
    /// Held by a membership change (add, re-add, replace, remove) from its
    /// checks to the start of its rebuild, and by `start_needed_sync`: the
    /// daemon must not start a spare rebuild of a slot that is being given
    /// a device in between.
    membership: Mutex<()>,
    safe_mode: safe_mode::SafeMode,
    /// Dead legs when a bitmap clearing was decided (a leg dying before
    /// it is written cancels it).
    dead_before_clearing: std::sync::atomic::AtomicUsize,
    /// The last answer of `undecodable_stripe`, for the legs then alive.
    beyond_tolerance: Mutex<Option<(Vec<bool>, Option<u64>)>>,
    /// For an array without metadata of its own (the two layouts of a
    /// served reshape): what records its leg failures on disk.
    failure_recorder: std::sync::OnceLock<FailureRecorder>,
    /// Its legs were handed to a reshape (`retire`): it writes no more
    /// metadata.
    retired: std::sync::atomic::AtomicBool,
}

/// Records an array's dead legs on disk (`Array::set_failure_recorder`).
pub type FailureRecorder = Box<dyn Fn(&Array) -> Result<(), ArrayError> + Send + Sync>;

impl Array {
    /// An array over `legs` (device, data offset in bytes) laid out by a
    /// layout proven for exactly these legs, without metadata.
    pub fn new(name: impl Into<String>, legs: Vec<(Arc<dyn BlockDevice>, u64)>, layout: ProvenLayout) -> Self {
        Array::build(name.into(), legs, layout, None)
    }

    pub(crate) fn build(name: String, legs: Vec<(Arc<dyn BlockDevice>, u64)>, layout: ProvenLayout, meta: Option<Meta>) -> Self {
        let chunk_bytes = layout.geometry.chunk_bytes();
        Array {
            name,
            legs: legs.into_iter().map(|(d, off)| ArrayLeg::new(d, off)).collect(),
            layout: ArcSwap::from_pointee(layout),
            chunk_bytes,
            locks: locks::StripeLocks::new(4096),
            plans: decode::Plans::default(),
            spares: ArcSwap::from_pointee(Vec::new()),
            spare_gave_up: AtomicU64::new(0),
            meta,
            sync: sync::SyncState::default(),
            read_policy: AtomicU8::new(0),
            read_turn: AtomicU64::new(0),
            counters: Counters::default(),
            latency: Default::default(),
            unrecorded_failures: AtomicU64::new(0),
            recording: Mutex::new(()),
            membership: Mutex::new(()),
            safe_mode: safe_mode::SafeMode::new(true),
            beyond_tolerance: Mutex::new(None),
            dead_before_clearing: std::sync::atomic::AtomicUsize::new(0),
            failure_recorder: std::sync::OnceLock::new(),
            retired: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn layout(&self) -> Arc<ProvenLayout> {
        self.layout.load_full()
    }

    pub fn legs(&self) -> &[ArrayLeg] {
        &self.legs
    }

    pub fn read_policy(&self) -> ReadPolicy {
        match self.read_policy.load(Ordering::Relaxed) {
            1 => ReadPolicy::Nearest,
            2 => ReadPolicy::LowestLatency,
            _ => ReadPolicy::LeastOutstanding,
        }
    }

    pub fn set_read_policy(&self, p: ReadPolicy) {
        let code = match p {
            ReadPolicy::LeastOutstanding => 0,
            ReadPolicy::Nearest => 1,
            ReadPolicy::LowestLatency => 2,
        };
        self.read_policy.store(code, Ordering::Relaxed);
    }

    /// Mark leg `i` dead, in memory. Whoever then acknowledges a request
    /// that skipped it calls `settle_failures` first (the one way to fail
    /// a leg is `fail_leg`, which does both).
    pub(crate) fn mark_dead(&self, i: usize, why: &str) -> bool {
        let Some(leg) = self.legs.get(i) else { return false };
        // Counted before the leg reads as dead: whoever sees it dead sees
        // the count, and waits for the failure to be recorded.
        self.unrecorded_failures.fetch_add(1, Ordering::SeqCst);
        let newly = leg.fail(why);
        if newly {
            tracing::error!(array = %self.name, leg = i, device = %leg.device().describe(), "leg failed: {why}");
        } else {
            self.unrecorded_failures.fetch_sub(1, Ordering::SeqCst);
        }
        newly
    }

    /// Mark leg `i` failed (an I/O error, or the operator's `leg fail`) and
    /// record it on disk before returning.
    pub fn fail_leg(&self, i: usize, why: &str) -> bool {
        if i >= self.legs.len() {
            return false;
        }
        self.mark_dead(i, why);
        if let Err(e) = self.settle_failures() {
            tracing::error!(array = %self.name, "recording the failure of leg {i}: {e}");
        }
        true
    }

    /// Make every leg failure durable before anything that skipped the
    /// leg is acknowledged: regions dirty or with writes in flight become
    /// NeedSync (what the leg missed), and the superblocks record it as
    /// failed. Returns once that is done, by this thread or another.
    pub fn settle_failures(&self) -> Result<(), ArrayError> {
        if self.unrecorded_failures.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        let _one = self.recording.lock();
        loop {
            let n = self.unrecorded_failures.load(Ordering::SeqCst);
            if n == 0 {
                return Ok(());
            }
            self.intent_stale()?;
            self.write_superblocks_raw(None)?;
            self.unrecorded_failures.fetch_sub(n, Ordering::SeqCst);
        }
    }

    /// Bump the generation and write every writable leg's superblock (and
    /// a replacement's), with `dirty` changed when given; then record any
    /// leg that failed meanwhile.
    pub fn write_superblocks(&self, dirty: Option<bool>) -> Result<(), ArrayError> {
        self.write_superblocks_raw(dirty)?;
        self.settle_failures()
    }

    /// Have `record` make this array's leg failures durable (it has no
    /// metadata of its own): called, like a superblock write, before a
    /// request that skipped a dead leg is acknowledged. Set once.
    pub fn set_failure_recorder(&self, record: FailureRecorder) {
        let _ = self.failure_recorder.set(record);
    }

    /// Hand the legs over (to a reshape, once this array stopped cleanly
    /// and no request is in flight): from now on it writes no superblock
    /// and no bitmap, whoever still holds it (a daemon tick under way);
    /// `false` takes it back (a reshape that could not be recorded).
    pub fn retire(&self, retired: bool) {
        self.retired.store(retired, Ordering::SeqCst);
    }

    pub(crate) fn check_not_retired(&self) -> Result<(), ArrayError> {
        if self.retired.load(Ordering::SeqCst) {
            return Err(ArrayError::Refused(format!("{} handed its legs to a reshape: it records nothing more on them", self.name)));
        }
        Ok(())
    }

    fn write_superblocks_raw(&self, dirty: Option<bool>) -> Result<(), ArrayError> {
        let Some(meta) = &self.meta else {
            return match self.failure_recorder.get() {
                Some(record) => record(self),
                None => Ok(()),
            };
        };
        self.check_not_retired()?;
        let mut template = meta.template.lock();
        if let Some(d) = dirty {
            template.dirty = d;
        }
        for _ in 0..=self.legs.len() {
            template.generation += 1;
            template.updated = crate::meta::superblock::now();
            template.failed = self.legs.iter().map(|l| l.health() == Health::Dead).collect();
            template.spared = (0..self.legs.len()).map(|i| self.spare_of(i)).collect();
            template.recovering = self.legs.iter().map(|l| l.recovery()).collect();
            template.legs = self.legs.iter().map(|l| *l.uuid.lock()).collect();
            template.replacement = self.legs.iter().enumerate().find_map(|(i, l)| {
                l.replacement().map(|_| crate::meta::superblock::Replacement {
                    slot: i as u32,
                    uuid: *l.replacement_uuid.lock(),
                    offset: l.replacement_offset.load(Ordering::Acquire),
                })
            });
            let mut newly_dead = false;
            let mut written = 0;
            for (i, leg) in self.legs.iter().enumerate() {
                let mut targets: Vec<(Arc<dyn BlockDevice>, [u8; 16])> = Vec::new();
                if leg.is_writable() {
                    targets.push((leg.device(), *leg.uuid.lock()));
                }
                if let Some(r) = leg.replacement() {
                    targets.push((r, *leg.replacement_uuid.lock()));
                }
                for (k, (dev, uuid)) in targets.into_iter().enumerate() {
                    let mut sb = template.clone();
                    sb.leg_index = i as u32;
                    sb.leg_uuid = uuid;
                    match crate::meta::store::write_superblock(&*dev, &sb) {
                        Ok(()) => written += 1,
                        Err(e) if k == 0 && leg.is_writable() => newly_dead |= self.mark_dead_on_meta(i, "superblock write", &e),
                        Err(e) => {
                            tracing::error!(array = %self.name, leg = i, "replacement {}: superblock write failed: {e}; replacement abandoned", dev.describe());
                            leg.set_replacement(None);
                            newly_dead = true;
                        }
                    }
                }
            }
            if !newly_dead {
                return if written == 0 { Err(ArrayError::Refused("no leg could record the array's state".into())) } else { Ok(()) };
            }
        }
        Ok(())
    }

    /// A stripe the legs now alive cannot decode (None: every stripe
    /// can). The proof guarantees it within the layout's fault tolerance;
    /// beyond it, every stripe shape is checked.
    pub fn undecodable_stripe(&self) -> Option<u64> {
        let alive: Vec<bool> = self.legs.iter().map(|l| l.is_alive()).collect();
        let layout = self.layout();
        let down = (0..self.legs.len()).filter(|&i| !alive[i] && self.spare_of(i).is_none()).count();
        if down <= layout.descriptor.fault_tolerance as usize {
            return None;
        }
        if let Some((key, answer)) = &*self.beyond_tolerance.lock() {
            if *key == alive {
                return *answer;
            }
        }
        let d = layout.descriptor.data_chunks as usize;
        // A periodic layout repeats its first period's shapes.
        let span = if layout.descriptor.is_periodic() { layout.descriptor.period.min(layout.descriptor.stripes) } else { layout.descriptor.stripes };
        let answer = (0..span).find(|&s| match self.view(&layout, s) {
            Ok(view) => self.plans.plan(&view.shape, d, |leg| alive.get(leg as usize).copied().unwrap_or(false)).is_none(),
            Err(_) => true,
        });
        *self.beyond_tolerance.lock() = Some((alive, answer));
        answer
    }

    /// dm-raid style health string, e.g. `AAD`.
    pub fn health_chars(&self) -> String {
        self.legs.iter().map(|l| l.health().char()).collect()
    }

    /// Legs that are dead.
    pub fn dead_legs(&self) -> usize {
        self.legs.iter().filter(|l| l.health() == Health::Dead).count()
    }

    /// A clean stop: flush, mark every region clean that can be, and
    /// record the array as cleanly shut down.
    pub fn shutdown(&self) -> Result<(), ArrayError> {
        self.sync.stop_and_wait();
        self.flush_legs()?;
        if let Some(meta) = &self.meta {
            if self.dead_legs() == 0 {
                let regions: Vec<usize> = (0..meta.intent.regions()).collect();
                self.intent_apply(&regions, crate::meta::bitmap_state::Action::Daemon)?;
            }
            self.write_superblocks(Some(false))?;
            self.set_clean(true);
        }
        Ok(())
    }
}

impl BlockDevice for Array {
    fn size(&self) -> u64 {
        self.layout.load().capacity_bytes()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let started = std::time::Instant::now();
        let result = self.read(buf, offset);
        self.latency.read.since(started);
        result.map_err(|e| {
            Counters::add(&self.counters.errors, 1);
            e.into()
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> std::io::Result<()> {
        let started = std::time::Instant::now();
        let result = self.write(buf, offset, fua);
        self.latency.write.since(started);
        result.map_err(|e| {
            Counters::add(&self.counters.errors, 1);
            e.into()
        })
    }

    fn flush(&self) -> std::io::Result<()> {
        self.flush_legs().map_err(Into::into)
    }

    fn discard(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.discard_range(offset, len).map_err(Into::into)
    }

    fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> std::io::Result<()> {
        self.zero_range(offset, len, fua).map_err(Into::into)
    }

    fn describe(&self) -> String {
        let l = self.layout.load();
        format!("{} ({} over {} legs)", self.name, l.name, self.legs.len())
    }

    fn read_extents(&self, offset: u64, len: u64, buf_offset: usize, out: &mut Vec<crate::device::Extent>) -> bool {
        self.direct_read_extents(offset, len, buf_offset, out)
    }

    fn stage_read(&self, offset: u64, len: u64) -> Option<Box<dyn crate::device::staged::StagedRead + '_>> {
        self.stage_degraded_read(offset, len).map(|r| Box::new(r) as Box<dyn crate::device::staged::StagedRead + '_>)
    }

    fn stage_write(&self, offset: u64, len: u64, fua: bool) -> Option<Box<dyn crate::device::staged::StagedWrite + '_>> {
        self.stage(offset, len, fua).map(|w| Box::new(w) as Box<dyn crate::device::staged::StagedWrite + '_>)
    }

    /// Writes: the full stripe of a layout with parity (a layout without
    /// has no read to save). Rebuilt reads: the chunk.
    fn gather_unit(&self, offset: u64, kind: crate::device::Gather) -> Option<std::ops::Range<u64>> {
        let layout = self.layout.load();
        let unit = match kind {
            crate::device::Gather::Write if layout.descriptor.parity_chunks > 0 => self.chunk_bytes.checked_mul(u64::from(layout.descriptor.data_chunks))?,
            crate::device::Gather::Write => return None,
            crate::device::Gather::Rebuild => self.chunk_bytes,
        };
        let size = self.size();
        if unit == 0 || offset >= size {
            return None;
        }
        let start = offset / unit * unit;
        Some(start..start.checked_add(unit)?.min(size))
    }

    fn block_status(&self, offset: u64, len: u64, out: &mut Vec<crate::device::status::StatusExtent>) -> std::io::Result<()> {
        self.status_of(offset, len, out)
    }

    fn zeroes_fast(&self, offset: u64, len: u64) -> bool {
        Array::zeroes_fast(self, offset, len)
    }

    /// The legs' minimum; a full stripe's data preferred (no parity to read).
    fn block_sizes(&self) -> crate::device::BlockSizes {
        let layout = self.layout.load();
        let minimum = self.legs.iter().map(|l| l.device().block_sizes().minimum).max().unwrap_or(1);
        let stripe = self.chunk_bytes.saturating_mul(u64::from(layout.descriptor.data_chunks.max(1)));
        crate::device::BlockSizes::normalized(u64::from(minimum), stripe)
    }
}

#[cfg(test)]
pub(crate) mod tests;
