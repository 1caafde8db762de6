//! Workloads through the real array: writer threads issuing random writes
//! of mixed sizes with flushes, FUA and write-zeroes; a daemon thread
//! doing what the serving daemon does (bitmap clearing, re-adding legs
//! whose link came back, starting resyncs, recoveries and spare rebuilds);
//! and, per workload, the event under test: a leg failing mid-write, a
//! rebuild, a re-add, a replacement, a distributed-spare rebuild, check
//! and repair, a remote leg's link lost and back, a resync.

use crate::faults::Mode;
use crate::history::Op;
use crate::rig::{LayoutSpec, Rig, RigOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmraid::array::health::Health;
use wasmraid::array::sync::SyncAction;
use wasmraid::device::BlockDevice;
use wasmraid::device::log_writes::{Entry, splitmix64};
use wasmraid::device::mem::Image;
use wasmraid::reshape::offline::{Target, reshape};
use wasmraid::sandbox::Sandbox;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Random writes, flushes, FUA and write-zeroes, two writers at times.
    Writes,
    /// A leg starts failing its writes in the middle of the workload.
    FailMidWrite,
    /// A leg is failed, removed, and a new one added and rebuilt.
    Rebuild,
    /// A leg is failed and later re-added (bitmap-only recovery).
    ReAdd,
    /// A live leg is replaced by a new device.
    Replace,
    /// A leg dies and is rebuilt into the layout's distributed spares.
    Spare,
    /// `repair` then `check` run under writes.
    CheckRepair,
    /// A remote leg's link goes down past its timeout and comes back.
    Remote,
    /// The array starts with every region unwritten and resyncs as written.
    Resync,
    /// After the writes, the array is stopped and reshaped offline to the
    /// same layout over one more leg (`wasmraid reshape --add-legs`).
    Reshape,
    /// The same reshape of the array while it is served, the writes going
    /// on across it (`reshape::online`).
    ReshapeOnline,
}

pub const KINDS: [Kind; 11] = [
    Kind::Writes,
    Kind::FailMidWrite,
    Kind::Rebuild,
    Kind::ReAdd,
    Kind::Replace,
    Kind::Spare,
    Kind::CheckRepair,
    Kind::Remote,
    Kind::Resync,
    Kind::Reshape,
    Kind::ReshapeOnline,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Writes => "writes",
            Kind::FailMidWrite => "fail-mid-write",
            Kind::Rebuild => "rebuild",
            Kind::ReAdd => "re-add",
            Kind::Replace => "replace",
            Kind::Spare => "spare",
            Kind::CheckRepair => "check-repair",
            Kind::Remote => "remote",
            Kind::Resync => "resync",
            Kind::Reshape => "reshape",
            Kind::ReshapeOnline => "reshape-online",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        KINDS.iter().copied().find(|k| k.name() == s)
    }

    /// Whether the workload applies to a layout.
    pub fn fits(self, spec: &LayoutSpec, spare_chunks: u32) -> bool {
        match self {
            Kind::Spare => spare_chunks > 0,
            // Layouts that take any number of legs (pyramid's scheme and
            // draid's groups are made for theirs).
            Kind::Reshape | Kind::ReshapeOnline => matches!(spec.name, "raid1" | "raid5" | "raid6"),
            _ => spec.legs > 0,
        }
    }
}

/// A finished run: everything a crash state is built and judged from.
pub struct Recorded {
    pub seed: u64,
    /// Each device's contents when the log began.
    pub bases: Vec<Image>,
    pub entries: Vec<Entry>,
    pub ops: Vec<Op>,
    pub blocks: u64,
    /// The log's clock when the run ended.
    pub end: u64,
    /// What happened, for the report.
    pub events: Vec<String>,
}

/// Background work runs slowly enough that writes and crash points land
/// in the middle of it.
const SYNC_RATE: u64 = 6 << 20;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

pub fn run(kind: Kind, spec: LayoutSpec, seed: u64, sandbox: &Arc<Sandbox>) -> anyhow::Result<Recorded> {
    let mut rng = Rng(seed ^ 0x5eed);
    let victim = rng.below(spec.legs as u64) as usize;
    let rig = Arc::new(Rig::new(spec, sandbox, RigOptions { assume_clean: kind != Kind::Resync, remote: (kind == Kind::Remote).then_some(victim) })?);
    rig.array.sync.rate_limit.store(SYNC_RATE, Ordering::Relaxed);
    let writers = 1 + rng.below(2) as usize;
    // A served reshape moves while many writes go on.
    let per_writer = (40 + rng.below(50)) * if kind == Kind::ReshapeOnline { 4 } else { 1 };
    let progress = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut events = Vec::new();
    let mut reshaping = None;

    let daemon = {
        let (rig, stop) = (rig.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                // What the table serves now (nothing while a reshape moves).
                for a in &rig.table.arrays() {
                    let _ = a.bitmap_daemon();
                    let _ = a.mark_clean_if_idle(Duration::from_millis(1));
                    a.readd_reconnected_legs();
                    a.start_needed_sync();
                }
                std::thread::sleep(Duration::from_micros(300));
            }
        })
    };
    let handles: Vec<_> = (0..writers)
        .map(|t| {
            let (rig, progress) = (rig.clone(), progress.clone());
            let seed = rng.next();
            std::thread::spawn(move || writer(&rig, t, writers, per_writer, seed, &progress))
        })
        .collect();
    let total = per_writer * writers as u64;
    let at = |frac: u64| total * frac / 100;
    match kind {
        Kind::Writes | Kind::Resync | Kind::Reshape => {}
        Kind::ReshapeOnline => {
            wait_for(&progress, at(10 + rng.below(30)));
            let target = Target {
                component: wasmraid::builtins::find(spec.name).unwrap_or_default().to_vec(),
                args: spec.args.into(),
                chunk_sectors: None,
                remove_slots: Vec::new(),
            };
            let added: Vec<Arc<dyn BlockDevice>> = vec![rig.new_device()];
            // Slow enough that the writes left land on both sides of the
            // position as it moves (the array is about 600 KiB).
            let o = || wasmraid::reshape::online::Options { rate: 8 << 20, max_window: 48 << 10, ..Default::default() };
            let mut started = None;
            retry(|| {
                started = Some(wasmraid::reshape::online::start(&rig.table, sandbox, &added, &target, o()).map_err(|e| e.to_string())?);
                Ok(())
            });
            let online = started.ok_or_else(|| anyhow::anyhow!("the served reshape never started (the array stayed busy)"))?;
            events.push(format!("reshape started while served at {} writes", progress.load(Ordering::Relaxed)));
            reshaping = Some(online);
        }
        Kind::FailMidWrite => {
            let p1 = at(20 + rng.below(40));
            wait_for(&progress, p1);
            let after = rng.below(6) as i64;
            rig.fault(victim).arm(Mode::FailWrites, after);
            events.push(format!("leg {victim} fails its writes after {after} more"));
            // Soon after (so the regions it missed may see no other
            // degraded write), the leg heals and, if it died, is re-added.
            // Healing first disarms it, so it cannot die after the look.
            wait_for(&progress, p1 + rng.below(10));
            rig.fault(victim).set(Mode::Healthy);
            if rig.array.legs()[victim].health() == wasmraid::array::health::Health::Dead {
                let dev = rig.fault(victim);
                retry(|| rig.array.leg_readd(dev.clone()).map(drop).map_err(|e| e.to_string()));
                events.push(format!("leg {victim} re-added"));
            }
        }
        Kind::Rebuild => {
            wait_for(&progress, at(10 + rng.below(30)));
            rig.array.fail_leg(victim, "simulated failure");
            retry(|| rig.array.leg_remove(victim).map_err(|e| e.to_string()));
            let dev = rig.new_device();
            retry(|| rig.array.leg_add(Some(victim), dev.clone()).map(drop).map_err(|e| e.to_string()));
            events.push(format!("leg {victim} failed, removed, a new device added"));
        }
        Kind::ReAdd => {
            let p1 = at(10 + rng.below(30));
            wait_for(&progress, p1);
            rig.array.fail_leg(victim, "simulated transient failure");
            wait_for(&progress, p1 + rng.below(at(40)));
            let dev = rig.fault(victim);
            retry(|| rig.array.leg_readd(dev.clone()).map(drop).map_err(|e| e.to_string()));
            events.push(format!("leg {victim} failed and re-added"));
        }
        Kind::Replace => {
            wait_for(&progress, at(10 + rng.below(30)));
            let dev = rig.new_device();
            retry(|| rig.array.leg_replace(victim, dev.clone()).map_err(|e| e.to_string()));
            events.push(format!("leg {victim} replaced by a new device"));
        }
        Kind::Spare => {
            wait_for(&progress, at(10 + rng.below(30)));
            rig.fault(victim).set(Mode::FailAll);
            rig.array.fail_leg(victim, "simulated failure");
            events.push(format!("leg {victim} died; rebuilt into the distributed spare"));
        }
        Kind::CheckRepair => {
            wait_for(&progress, at(10 + rng.below(30)));
            retry(|| rig.array.start_sync(SyncAction::Repair, None).map_err(|e| e.to_string()));
            rig.array.sync.wait();
            retry(|| rig.array.start_sync(SyncAction::Check, None).map_err(|e| e.to_string()));
            events.push("repair, then check, under writes".into());
        }
        Kind::Remote => {
            let p1 = at(10 + rng.below(30));
            wait_for(&progress, p1);
            rig.fault(victim).set(Mode::LinkDown);
            wait_for(&progress, p1 + rng.below(at(40)));
            rig.fault(victim).set(Mode::Healthy);
            events.push(format!("remote leg {victim}: link down, then back"));
        }
    }
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("a writer thread panicked"))?;
    }
    if let Some(online) = &reshaping {
        let deadline = Instant::now() + Duration::from_secs(60);
        while online.moving() && Instant::now() < deadline {
            if let wasmraid::reshape::online::State::Failed(e) = online.state() {
                anyhow::bail!("the served reshape failed: {e}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        events.push(format!("served reshape: {:?}", online.state()));
        if online.state() != wasmraid::reshape::online::State::Finished {
            anyhow::bail!("the served reshape did not finish: {}", online.status());
        }
    }
    // The array served now (the reshaped one after a served reshape).
    let array = rig.table.arrays().first().cloned().unwrap_or_else(|| rig.array.clone());
    // Let background work finish, as the daemon would: nothing running,
    // nothing to start, no leg mid-rebuild and none waiting to be re-added
    // (the daemon thread may be inside a re-add, holding the membership
    // lock, which makes start_needed_sync say None too: a failure seen
    // during a link-down window can be settled after the first re-add, and
    // its leg is re-added once more).
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        array.sync.wait();
        std::thread::sleep(Duration::from_millis(2));
        let pending = array.legs().iter().any(|l| l.health() == Health::Recovering || (l.health() == Health::Dead && l.lost_link.load(Ordering::Acquire)));
        if !pending && array.sync.action() == SyncAction::Idle && array.start_needed_sync().is_none() {
            break;
        }
    }
    array.sync.wait();
    rig.flush();
    stop.store(true, Ordering::Release);
    daemon.join().map_err(|_| anyhow::anyhow!("the daemon thread panicked"))?;
    if let Some(r) = array.sync.last_result.lock().clone() {
        events.push(r);
    }
    let health = array.health_chars();
    events.push(format!("health {health}"));
    // Liveness: what the workload did must have healed the array (a lost
    // link re-added by itself, a rebuild finished), except a leg that
    // now lives in distributed spares.
    if kind != Kind::Spare && health.chars().any(|c| c != 'A') {
        let why: Vec<String> = array.legs().iter().enumerate().filter_map(|(i, l)| l.last_error().map(|e| format!("leg {i}: {e}"))).collect();
        anyhow::bail!("the array did not heal: {health} after {} ({})", events.join("; "), why.join("; "));
    }
    if kind == Kind::Reshape {
        rig.array.shutdown().map_err(|e| anyhow::anyhow!("stopping the array before the reshape: {e}"))?;
        let legs: Vec<Arc<dyn BlockDevice>> = rig.devices.lock().iter().map(|d| d.fault.clone() as Arc<dyn BlockDevice>).collect();
        let added: Vec<Arc<dyn BlockDevice>> = vec![rig.new_device()];
        let target = Target {
            component: wasmraid::builtins::find(spec.name).unwrap_or_default().to_vec(),
            args: spec.args.into(),
            chunk_sectors: None,
            remove_slots: Vec::new(),
        };
        // Small windows: many positions recorded, crash points between them.
        let out = reshape(&legs, &added, sandbox, Some(&target), 48 << 10, 0, &mut |_, _| {}).map_err(|e| anyhow::anyhow!("the reshape: {e}"))?;
        events.push(format!("reshaped offline: {} over {} legs to {} over {} ({} windows)", out.from, out.legs_before, out.to, out.legs_after, out.windows));
    }
    let bases = rig.devices.lock().iter().map(|d| d.base.clone()).collect();
    Ok(Recorded { seed, bases, entries: rig.log.entries(), ops: rig.history.ops(), blocks: rig.blocks, end: rig.log.now() + 1, events })
}

fn writer(rig: &Rig, me: usize, writers: usize, ops: u64, seed: u64, progress: &AtomicU64) {
    let mut rng = Rng(seed);
    // With two writers, each owns alternate groups of blocks, so the
    // oracle's per-block order stays total while both race for stripes
    // and bitmap regions.
    const GROUP: u64 = 3;
    let stripe_blocks = (rig.array.layout().descriptor.data_chunks as u64 * u64::from(crate::rig::CHUNK_SECTORS) * 512) / crate::history::BLOCK as u64;
    for _ in 0..ops {
        let roll = rng.below(100);
        let (first, blocks) = if writers == 1 {
            let blocks = 1 + rng.below(2 * stripe_blocks);
            let first = rng.below(rig.blocks.saturating_sub(blocks) + 1);
            (first, blocks.min(rig.blocks - first))
        } else {
            let groups = rig.blocks / GROUP;
            let mine = (groups.saturating_sub(me as u64)).div_ceil(writers as u64).max(1);
            let g = rng.below(mine) * writers as u64 + me as u64;
            let start = rng.below(GROUP);
            let blocks = 1 + rng.below(GROUP - start);
            (g * GROUP + start, blocks)
        };
        if first + blocks > rig.blocks {
            continue;
        }
        match roll {
            0..10 => {
                rig.flush();
            }
            10..14 => {
                rig.zero(first, blocks, rng.below(4) == 0);
            }
            _ => {
                rig.write(first, blocks, rng.below(8) == 0);
            }
        }
        progress.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_micros(100 + rng.below(300)));
    }
}

fn wait_for(progress: &AtomicU64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while progress.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// An operator command refused because a sync runs is tried again.
fn retry(mut f: impl FnMut() -> Result<(), String>) {
    for _ in 0..500 {
        match f() {
            Ok(()) => return,
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}
