//! One crash state, judged: the legs as a power loss at `at` could leave
//! them, assembled, read, resynced, scrubbed, and read again with each leg
//! failed in turn. The invariants, as the issue names them:
//!
//! - (a) assemble succeeds, or refuses with a reason; it never panics;
//! - (b) what a completed FLUSH or an acknowledged FUA covered reads back,
//!   whole and with each leg failed in turn;
//! - (c) a block written since reads as its old or its new content;
//! - (d) once the resync assemble starts has finished, `check` counts 0;
//! - (e) a leg not in sync is never read as if it were (seen through b/c);
//! - (f) a dirty degraded parity array (the write hole) is refused, and
//!   when forced, returns nothing wrong outside the unsettled stripes.

use crate::history::{Allowed, BLOCK, Oracle, identify};
use crate::rig::assemble_options;
use crate::workload::Recorded;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmraid::array::Array;
use wasmraid::array::create::assemble;
use wasmraid::array::sync::SyncAction;
use wasmraid::device::BlockDevice;
use wasmraid::device::log_writes::{Persist, crash_image};
use wasmraid::device::mem::{Image, MemLeg};
use wasmraid::sandbox::Sandbox;

/// A crash: when, and what each device kept of its unflushed writes.
#[derive(Clone, Debug)]
pub struct Crash {
    pub at: u64,
    pub persist: Vec<Persist>,
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p: Vec<String> = self.persist.iter().map(|p| p.to_string()).collect();
        write!(f, "at {} keeping [{}]", self.at, p.join(", "))
    }
}

/// What a crash state went through, for the campaign's summary (a
/// campaign that never reaches the interesting paths proves little).
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// Assemble refused the dirty degraded parity array (the write hole).
    pub write_hole: bool,
    /// Legs assembled as recovering (an interrupted rebuild resumed).
    pub resumed: usize,
    /// A replacement was resumed.
    pub replacement: bool,
    /// Regions assemble found needing a resync.
    pub needs_sync: usize,
    /// Legs failed in turn and the array read again.
    pub failed_in_turn: usize,
    /// A reshape was under way and was finished by assemble.
    pub reshape_continued: bool,
}

#[derive(Debug)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

fn violation(invariant: &'static str, detail: impl Into<String>) -> Violation {
    Violation { invariant, detail: detail.into() }
}

/// The devices as the crash left them.
pub fn materialize(rec: &Recorded, crash: &Crash) -> Vec<Image> {
    rec.bases.iter().enumerate().map(|(i, base)| crash_image(base, &rec.entries, i as u32, crash.at, crash.persist[i]).0).collect()
}

fn devices(images: &[Image]) -> Vec<Arc<MemLeg>> {
    images.iter().enumerate().map(|(i, img)| Arc::new(MemLeg::from_image(format!("dev{i}"), img.clone()))).collect()
}

fn as_block_devices(mems: &[Arc<MemLeg>], skip: &[usize]) -> Vec<Arc<dyn BlockDevice>> {
    mems.iter().enumerate().filter(|(i, _)| !skip.contains(i)).map(|(_, m)| m.clone() as Arc<dyn BlockDevice>).collect()
}

/// Read every block: which write each holds (None: no write's content).
fn read_all(array: &Array, blocks: u64) -> Result<Vec<Option<u64>>, Violation> {
    let mut buf = vec![0u8; BLOCK];
    (0..blocks)
        .map(|b| {
            array.read_at(&mut buf, b * BLOCK as u64).map_err(|e| violation("b", format!("reading block {b}: {e}")))?;
            Ok(identify(b, &buf))
        })
        .collect()
}

fn judge(what: &str, got: &[Option<u64>], oracle: &Oracle, at: u64, skip: impl Fn(u64) -> bool) -> Result<(), Violation> {
    for (b, id) in got.iter().enumerate() {
        let b = b as u64;
        if skip(b) {
            continue;
        }
        let allowed: Allowed = oracle.allowed(b, at);
        match id {
            Some(id) if allowed.contains(*id) => {}
            other => {
                let held = other.map_or("content no write put there".to_string(), |id| format!("write {id}"));
                let invariant = if allowed.maybe.is_empty() { "b" } else { "c" };
                return Err(violation(
                    invariant,
                    format!("{what}: block {b} holds {held}; durable: write {}, possibly since: {:?}", allowed.durable, allowed.maybe),
                ));
            }
        }
    }
    Ok(())
}

/// Run what assemble leaves to do (resync, resumed recoveries) to the
/// end; background work that never converges is a violation too.
fn settle(array: &Arc<Array>) -> Result<(), Violation> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut started = Vec::new();
    while Instant::now() < deadline && started.len() < 8 {
        array.sync.wait();
        match array.start_needed_sync() {
            None => {
                array.sync.wait();
                return Ok(());
            }
            Some(action) => started.push(format!("{action:?}")),
        }
    }
    Err(violation(
        "d",
        format!("background work does not converge: started {} ({}), last: {:?}", started.join(", "), array.health_chars(), array.sync.last_result.lock()),
    ))
}

/// Judge one crash state.
pub fn check(rec: &Recorded, oracle: &Oracle, crash: &Crash, sandbox: &Arc<Sandbox>, outcome: &mut Outcome) -> Result<(), Violation> {
    let images = materialize(rec, crash);
    let mems = devices(&images);
    // A reshape under way is finished by assemble itself.
    outcome.reshape_continued = as_block_devices(&mems, &[])
        .iter()
        .filter_map(|d| wasmraid::meta::store::read_superblock(&**d).ok())
        .max_by_key(|sb| sb.generation)
        .is_some_and(|sb| sb.reshape.is_some());
    let attempt = assemble(as_block_devices(&mems, &[]), sandbox, &assemble_options(false));
    let assembled = match attempt {
        Ok(a) => a,
        Err(e) => {
            let why = e.to_string();
            if !why.contains("write hole") {
                return Err(violation("a", format!("assemble refused: {why}")));
            }
            outcome.write_hole = true;
            return check_forced(rec, oracle, crash, &images, sandbox);
        }
    };
    outcome.needs_sync = assembled.needs_sync;
    let array = assembled.array;
    outcome.resumed = array.legs().iter().filter(|l| l.health() == wasmraid::array::health::Health::Recovering).count();
    outcome.replacement = array.legs().iter().any(|l| l.replacement().is_some());
    array.sync.rate_limit.store(0, std::sync::atomic::Ordering::Relaxed);
    let first = read_all(&array, rec.blocks)?;
    judge("after assemble", &first, oracle, crash.at, |_| false)?;
    settle(&array)?;
    let settled = read_all(&array, rec.blocks)?;
    judge("after resync", &settled, oracle, crash.at, |_| false)?;
    if let Some(b) = first.iter().zip(&settled).position(|(x, y)| x != y) {
        return Err(violation("c", format!("block {b} changed from {:?} to {:?} during the resync", first[b], settled[b])));
    }
    let healthy = array.legs().iter().all(|l| l.is_alive());
    if healthy {
        array.start_sync(SyncAction::Check, None).map_err(|e| violation("d", format!("cannot start check: {e}")))?;
        array.sync.wait();
        let mismatches = array.sync.mismatches.load(std::sync::atomic::Ordering::Relaxed);
        if mismatches > 0 {
            return Err(violation("d", format!("check counts {mismatches} mismatches after the resync ({})", array.health_chars())));
        }
    }
    // Each leg failed in turn, within what the layout can still bear.
    let tolerance = array.layout().descriptor.fault_tolerance as usize;
    let down = array.uncovered_dead_legs() + array.legs().iter().filter(|l| l.health() == wasmraid::array::health::Health::Recovering).count();
    let slots: Vec<Option<usize>> =
        array.legs().iter().map(|l| if l.is_alive() { l.device().describe().strip_prefix("dev").and_then(|n| n.parse().ok()) } else { None }).collect();
    array.shutdown().map_err(|e| violation("a", format!("clean shutdown failed: {e}")))?;
    drop(array);
    if down >= tolerance {
        return Ok(());
    }
    let stopped: Vec<Image> = mems.iter().map(|m| m.image()).collect();
    for (slot, dev) in slots.iter().enumerate() {
        let Some(dev) = dev else { continue };
        let mems = devices(&stopped);
        let degraded = assemble(as_block_devices(&mems, &[*dev]), sandbox, &assemble_options(false))
            .map_err(|e| violation("b", format!("assemble without leg {slot} after a clean stop refused: {e}")))?;
        let got = read_all(&degraded.array, rec.blocks)?;
        outcome.failed_in_turn += 1;
        if let Some(b) = got.iter().zip(&settled).position(|(x, y)| x != y) {
            return Err(violation("b", format!("with leg {slot} failed, block {b} reads {:?} where the whole array read {:?}", got[b], settled[b])));
        }
    }
    Ok(())
}

/// The write hole refused: forced, nothing outside the unsettled stripes
/// may be wrong.
fn check_forced(rec: &Recorded, oracle: &Oracle, crash: &Crash, images: &[Image], sandbox: &Arc<Sandbox>) -> Result<(), Violation> {
    let mems = devices(images);
    let assembled =
        assemble(as_block_devices(&mems, &[]), sandbox, &assemble_options(true)).map_err(|e| violation("f", format!("forced assemble refused: {e}")))?;
    let array = assembled.array;
    let layout = array.layout();
    let stripe_blocks = layout.descriptor.data_chunks as u64 * layout.geometry.chunk_bytes() / BLOCK as u64;
    let torn = |b: u64| {
        let s = b / stripe_blocks;
        (s * stripe_blocks..(s + 1) * stripe_blocks).any(|x| oracle.unsettled(x, crash.at))
    };
    let got = read_all(&array, rec.blocks)?;
    judge("forced past the write hole", &got, oracle, crash.at, torn).map_err(|v| violation("f", v.detail))
}

/// For a violation: what each device's superblock said in the crash
/// state, the bitmap, and where the block's chunk lives, for a person to
/// read.
pub fn explain(rec: &Recorded, crash: &Crash, block: Option<u64>) -> String {
    use std::fmt::Write;
    let images = materialize(rec, crash);
    let mems = devices(&images);
    let mut out = String::new();
    for (i, m) in mems.iter().enumerate() {
        match wasmraid::meta::store::read_superblock(&**m) {
            Ok(sb) => {
                let _ = writeln!(
                    out,
                    "  dev{i}: slot {} gen {} dirty {} unsynced {} failed {:?} spared {:?} recovering {:?} replacement {:?} legs {:?}",
                    sb.leg_index,
                    sb.generation,
                    sb.dirty,
                    sb.unsynced,
                    sb.failed,
                    sb.spared,
                    sb.recovering,
                    sb.replacement,
                    sb.legs.iter().map(|u| hex_short(u)).collect::<Vec<_>>()
                );
                let _ = writeln!(out, "        uuid {}", hex_short(&sb.leg_uuid));
                for (which, copy) in wasmraid::meta::store::read_bitmap_copies(&**m, &sb).iter().enumerate() {
                    match copy {
                        Ok((serial, states)) => {
                            let _ = writeln!(
                                out,
                                "        bitmap {which}: serial {serial} {:?}",
                                states.iter().map(|s| format!("{s:?}").chars().next().unwrap_or('?')).collect::<String>()
                            );
                        }
                        Err(e) => {
                            let _ = writeln!(out, "        bitmap {which}: {e}");
                        }
                    }
                }
            }
            Err(e) => {
                let _ = writeln!(out, "  dev{i}: {e}");
            }
        }
    }
    if let (Some(b), Ok(assembled)) =
        (block, assemble(as_block_devices(&mems, &[]), &wasmraid::sandbox::Sandbox::new(Default::default()).expect("sandbox"), &assemble_options(true)))
    {
        let a = &assembled.array;
        let layout = a.layout();
        let cb = layout.geometry.chunk_bytes();
        let c = b * BLOCK as u64 / cb;
        let d = u64::from(layout.descriptor.data_chunks);
        if let Ok(view) = layout.stripe(c / d) {
            let _ = writeln!(out, "  block {b}: chunk {c}, stripe {}, data {}; health {}", c / d, c % d, a.health_chars());
            for (i, slot) in view.shape.slots.iter().enumerate() {
                let p = view.place(i);
                let leg = &a.legs()[p.leg as usize];
                let mut buf = vec![0u8; BLOCK];
                let at = leg.offset + p.chunk * cb + (b * BLOCK as u64) % cb;
                let held = leg.device().read_at(&mut buf, at).map(|()| crate::history::identify(b, &buf)).map_err(|e| e.to_string());
                let _ = writeln!(out, "    slot {i}: leg {} ({}) chunk {} {:?}: {:?}", p.leg, leg.device().describe(), p.chunk, slot.role, held);
                // Which logged writes touched that place.
                if let Some(dev) = leg.device().describe().strip_prefix("dev").and_then(|n| n.parse::<u32>().ok()) {
                    for e in rec.entries.iter().filter(|e| e.leg == dev) {
                        if let wasmraid::device::log_writes::Op::Write { offset, data } = &e.op {
                            if *offset <= at && at < offset + data.len() as u64 {
                                let from = (at - offset) as usize;
                                let id = crate::history::identify(b, &data[from..(from + BLOCK).min(data.len())]);
                                let _ = writeln!(out, "        write issued {} done {:?} ok {} fua {}: {:?}", e.issued, e.completed, e.ok, e.fua, id);
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

fn hex_short(u: &[u8; 16]) -> String {
    u[..3].iter().map(|b| format!("{b:02x}")).collect()
}
