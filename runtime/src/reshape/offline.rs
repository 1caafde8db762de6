//! A reshape of a stopped array, from start to finish, checkpointed in the
//! superblocks so that a crash at any point is finished by running it
//! again (`wasmraid reshape NAME --continue`).
//!
//! 1. Start: the new component is proven for every slot (the old ones and
//!    those added), stored on every leg beside the old one, and every
//!    leg's superblock records the reshape at position 0 (a version 3
//!    block, which `assemble` refuses).
//! 2. Move: `Reshaping::step` window by window; each position is recorded
//!    in every superblock once the window is durable.
//! 3. Finish: bitmap copies for the new layout (every region clean: each
//!    stripe was written whole), then superblocks describing only the new
//!    layout. A crash between legs' writes leaves some legs one generation
//!    behind, still recording the reshape at its end: `meta::agreement`
//!    accepts that, and `assemble` rewrites them.
//!
//! Only an array with every leg present and in sync, cleanly stopped, is
//! started on: a reshape reads each stripe once and trusts what it reads.

use super::device::{ReshapeError, Reshaping};
use super::plan::{SHIFT_ALIGN, Windows, minimal_shift};
use crate::array::Array;
use crate::device::BlockDevice;
use crate::layout::Geometry;
use crate::layout::proven::{LayoutError, ProvenLayout};
use crate::meta::area;
use crate::meta::bitmap_copy::copy_bytes;
use crate::meta::bitmap_state::State;
use crate::meta::store::{self, MetaError};
use crate::meta::superblock::{MAX_LEGS, Reshape, Superblock, new_uuid, now, uuid_text};
use crate::sandbox::{Sandbox, SandboxError, component};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Most the new layout's data is moved before the old one's (it need not
/// be more: windows are then as large as `MAX_WINDOW` anyway). A reshape
/// takes half the room between the metadata and the data, or what it
/// needs if more, so every reshape leaves room for the next but a few
/// (md alternates direction instead, moving the data back up; not built).
pub const MAX_SHIFT: u64 = 64 << 20;
/// Most data one window moves (its buffer).
pub const MAX_WINDOW: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Meta(#[from] MetaError),
    #[error("the {which} layout: {source}")]
    Layout { which: &'static str, source: LayoutError },
    #[error("the new component: {0}")]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Move(#[from] ReshapeError),
}

/// The layout to reshape to.
pub struct Target {
    pub component: Vec<u8>,
    pub args: String,
    /// None keeps the array's chunk.
    pub chunk_sectors: Option<u32>,
    /// Slots to take out of the array: its last ones (md too removes the
    /// highest-numbered devices); their data moves to the others.
    pub remove_slots: Vec<usize>,
}

/// How many slots the new layout of `r` spans.
fn new_slot_count(sb: &Superblock, r: &Reshape) -> usize {
    if r.new_slots == 0 { sb.legs.len() } else { (r.new_slots as usize).min(sb.legs.len()) }
}

/// What a reshape did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub name: String,
    pub from: String,
    pub to: String,
    pub legs_before: usize,
    pub legs_after: usize,
    pub size_before: u64,
    pub size_after: u64,
    /// How far the new layout's data sits before the old one's.
    pub shift: u64,
    /// Where this run started moving (non-zero when it continued one).
    pub resumed_at: u64,
    pub windows: u64,
    /// The move and the finish, without proving the layouts.
    #[serde(serialize_with = "crate::units::as_millis")]
    pub moving: std::time::Duration,
}

fn refused(why: impl Into<String>) -> OfflineError {
    OfflineError::Refused(why.into())
}

/// The legs of one array, by slot, with their freshest superblock.
pub(super) struct Members {
    pub newest: Superblock,
    pub slots: Vec<Arc<dyn BlockDevice>>,
}

/// Read every device's superblock; all must be of one array, every slot
/// present once. In a reshape just started (position 0), an added slot
/// whose superblock did not make it is filled, in order, by the devices
/// that hold none.
pub(super) fn members(devices: &[Arc<dyn BlockDevice>]) -> Result<Members, OfflineError> {
    let mut found = Vec::new();
    let mut blank = Vec::new();
    for dev in devices {
        match store::read_superblock(&**dev) {
            Ok(sb) => found.push((dev.clone(), sb)),
            Err(MetaError::NoSuperblock { .. }) => blank.push(dev.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    let Some(newest) = found.iter().map(|(_, sb)| sb).max_by_key(|sb| sb.generation).cloned() else {
        return Err(refused("none of the legs given holds a wasmraid superblock"));
    };
    let mut slots: Vec<Option<Arc<dyn BlockDevice>>> = vec![None; newest.legs.len()];
    for (dev, sb) in &found {
        let i = sb.leg_index as usize;
        if sb.array_uuid == newest.array_uuid && newest.failed.get(i) == Some(&true) && newest.legs.get(i) == Some(&sb.leg_uuid) {
            // Failed during the move: never read again (below).
            continue;
        }
        if sb.array_uuid != newest.array_uuid {
            return Err(refused(format!("{} belongs to array '{}' ({}), not '{}'", dev.describe(), sb.name, uuid_text(&sb.array_uuid), newest.name)));
        }
        if sb.generation + 1 < newest.generation {
            return Err(refused(format!(
                "{} is at generation {}, behind the array's {}: assemble the array and let it recover first",
                dev.describe(),
                sb.generation,
                newest.generation
            )));
        }
        if newest.legs.get(i) != Some(&sb.leg_uuid) || slots[i].is_some() {
            return Err(refused(format!("{} claims slot {i}, which the array gives to another leg", dev.describe())));
        }
        slots[i] = Some(dev.clone());
    }
    let mut blank = blank.into_iter();
    let just_started = newest.reshape.as_ref().filter(|r| r.position == 0).map(|r| r.old_slots as usize);
    for (i, slot) in slots.iter_mut().enumerate() {
        if slot.is_some() {
            continue;
        }
        if newest.failed.get(i) == Some(&true) {
            // A leg that failed during the move holds nothing the reshape
            // reads: it goes on without it.
            *slot = Some(Arc::new(crate::device::missing::Missing { what: format!("slot {i}, failed during the reshape") }));
            continue;
        }
        match (just_started, blank.next()) {
            (Some(old_slots), Some(dev)) if i >= old_slots => *slot = Some(dev),
            _ => return Err(refused(format!("slot {i} of '{}' ({}) is missing: a reshape needs every leg", newest.name, uuid_text(&newest.legs[i])))),
        }
    }
    if let Some(dev) = blank.next() {
        return Err(refused(format!("{} holds no superblock of '{}': pass legs to add with --add-legs", dev.describe(), newest.name)));
    }
    Ok(Members { newest, slots: slots.into_iter().flatten().collect() })
}

pub(super) fn prove(sandbox: &Arc<Sandbox>, bytes: &[u8], geometry: Geometry, which: &'static str) -> Result<ProvenLayout, OfflineError> {
    let loaded = Arc::new(component::load(sandbox, bytes)?);
    ProvenLayout::prove(loaded, geometry).map_err(|source| OfflineError::Layout { which, source })
}

/// The new layout's geometry, from the superblock alone (never from device
/// sizes, which may change between a crash and the run that continues).
pub(super) fn new_geometry(sb: &Superblock, r: &Reshape) -> Geometry {
    let (old, new) = (sb.chunk_bytes(), u64::from(r.chunk_sectors) * 512);
    let slots = &sb.leg_sizes[..new_slot_count(sb, r)];
    Geometry { chunk_sectors: r.chunk_sectors, leg_chunks: slots.iter().map(|&c| c * old / new).collect(), args: r.args.clone() }
}

pub(super) fn old_geometry(sb: &Superblock, old_slots: usize) -> Geometry {
    Geometry { chunk_sectors: sb.chunk_sectors, leg_chunks: sb.leg_sizes[..old_slots].to_vec(), args: sb.args.clone() }
}

/// Write `sb`, one generation on, to every slot (each its own index and
/// uuid), checked first as assemble will check it.
pub(super) fn write_all(slots: &[Arc<dyn BlockDevice>], sb: &mut Superblock) -> Result<(), OfflineError> {
    write_each(slots, sb).map_err(|(_, e)| e)
}

/// `write_all`, saying which slot's write failed (None: the check).
fn write_each(slots: &[Arc<dyn BlockDevice>], sb: &mut Superblock) -> Result<(), (Option<usize>, OfflineError)> {
    sb.generation += 1;
    sb.updated = now();
    // A failed leg keeps its last superblock: older, it is never taken for
    // in sync (and a missing one has no size to check against).
    let live = |i: usize| !sb.failed.get(i).copied().unwrap_or(false);
    let mut blocks = Vec::new();
    for (i, dev) in slots.iter().enumerate().filter(|(i, _)| live(*i)) {
        let b = sb.for_slot(i);
        b.check_on(dev.size()).map_err(|error| (None, MetaError::Superblock { leg: dev.describe(), error }.into()))?;
        blocks.push((i, dev, b));
    }
    for (i, dev, b) in blocks {
        store::write_superblock(&**dev, &b).map_err(|e| (Some(i), e.into()))?;
    }
    Ok(())
}

/// `write_all` for a reshape's two arrays: a leg whose superblock cannot
/// be written has failed, like any leg that fails a write: it is marked
/// dead in both and recorded failed on the others (md fails a device
/// whose superblock write fails), so the live legs agree.
fn write_recording(old: &Array, new: &Array, slots: &[Arc<dyn BlockDevice>], sb: &mut Superblock) -> Result<(), OfflineError> {
    for _ in 0..=slots.len() {
        note_failures(old, new, sb);
        match write_each(slots, sb) {
            Ok(()) => return Ok(()),
            Err((Some(i), e)) => {
                for a in [old, new] {
                    if a.legs().get(i).is_some_and(|l| l.is_alive()) {
                        a.mark_dead(i, &format!("superblock write failed: {e}"));
                    }
                }
                if let Some(f) = sb.failed.get_mut(i) {
                    *f = true;
                }
            }
            Err((None, e)) => return Err(e),
        }
    }
    Err(refused("no leg could record the reshape"))
}

/// Legs either layout saw fail: dead in both, and failed in `sb` (for the
/// caller to write). True when `sb` changed.
pub(super) fn note_failures(old: &Array, new: &Array, sb: &mut Superblock) -> bool {
    let mut changed = false;
    for (i, failed) in sb.failed.iter_mut().enumerate() {
        let dead = |a: &Array| a.legs().get(i).is_some_and(|l| !l.is_alive());
        if dead(old) || dead(new) || *failed {
            for a in [old, new] {
                if a.legs().get(i).is_some_and(|l| l.is_alive()) {
                    a.mark_dead(i, if *failed { "recorded failed by the reshape" } else { "failed in the reshape's other layout" });
                }
            }
            changed |= !*failed;
            *failed = true;
        }
    }
    changed
}

/// Start (with a target, adding `added`) or continue (without: `devices`
/// then includes the legs added) the reshape of the array whose legs are
/// `devices`, moving at most `max_window` bytes at a time (at most
/// `MAX_WINDOW`) and at most `rate` bytes a second (0: as fast as the legs
/// go); `progress` hears each position and the final size.
pub fn reshape(
    devices: &[Arc<dyn BlockDevice>],
    added: &[Arc<dyn BlockDevice>],
    sandbox: &Arc<Sandbox>,
    target: Option<&Target>,
    max_window: u64,
    rate: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Outcome, OfflineError> {
    let m = members(devices)?;
    let (mut sb, mut slots) = (m.newest, m.slots);
    let old_component = store::read_component(&**first_live(&sb, &slots), &sb)?;
    let started = match (&sb.reshape, target) {
        (None, Some(t)) => {
            check_in_sync(&sb)?;
            let planned = plan_start(&sb, slots.len(), added, sandbox, &old_component, t)?;
            commit_start(&mut sb, &mut slots, added, &planned, &t.component, false)?;
            Some((planned.old, planned.new))
        }
        (None, None) => return Err(refused(format!("'{}' has no reshape under way to continue", sb.name))),
        (Some(r), Some(_)) => {
            return Err(refused(format!(
                "'{}' is in the middle of a reshape to {} ({}) at byte {}: finish it with --continue before starting another",
                sb.name, r.layout_name, r.args, r.position
            )));
        }
        (Some(_), None) => None,
    };
    // A reshape just started has proven both layouts; one continued proves
    // them from what the legs store.
    let (a, b) = match started {
        Some(proven) => proven,
        None => prove_recorded(&sb, &slots, sandbox, &old_component)?,
    };
    let p = Prepared::new(sb, slots, a, b)?;
    let resumed_at = p.recorded();
    let (la, lb) = (p.old.layout(), p.new.layout());
    let mut windows = Windows::new(&la, &lb, p.shift, max_window.min(MAX_WINDOW)).map_err(ReshapeError::from)?;
    let moving = Reshaping::new(p.old.clone(), p.new.clone(), p.stripe_bytes, resumed_at)?;
    let mut count = 0;
    let started = std::time::Instant::now();
    while let Some(at) = moving.step(&mut windows, &mut |at| p.record(at))? {
        count += 1;
        progress(at, p.size_after);
        // At most `rate` bytes a second (md's speed_limit_max).
        if rate > 0 {
            let due = std::time::Duration::from_secs_f64((at - resumed_at) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    p.finish()?;
    Ok(p.outcome(resumed_at, count, started.elapsed()))
}

/// The first slot not recorded failed (`members` leaves a failed one
/// out), where the components are read.
fn first_live<'a>(sb: &Superblock, slots: &'a [Arc<dyn BlockDevice>]) -> &'a Arc<dyn BlockDevice> {
    slots.iter().zip(&sb.failed).find(|(_, f)| !**f).map_or(&slots[0], |(d, _)| d)
}

/// Both layouts of a recorded reshape, proven from what the legs store.
pub(super) fn prove_recorded(
    sb: &Superblock,
    slots: &[Arc<dyn BlockDevice>],
    sandbox: &Arc<Sandbox>,
    old_component: &[u8],
) -> Result<(ProvenLayout, ProvenLayout), OfflineError> {
    let Some(r) = &sb.reshape else { return Err(refused("no reshape recorded")) };
    let a = prove(sandbox, old_component, old_geometry(sb, r.old_slots as usize), "old")?;
    let new_component = store::read_reshape_component(&**first_live(sb, slots), sb)?;
    Ok((a, prove(sandbox, &new_component, new_geometry(sb, r), "new")?))
}

/// A reshape recorded on the legs, ready to move: the arrays of both
/// layouts over them (without metadata of their own: the superblock here
/// records their leg failures, before any request that skipped a dead leg
/// is acknowledged), and what the move records.
pub struct Prepared {
    pub name: String,
    sb: Arc<parking_lot::Mutex<Superblock>>,
    slots: Arc<Vec<Arc<dyn BlockDevice>>>,
    pub old: Arc<Array>,
    pub new: Arc<Array>,
    /// How far the new layout's data sits before the old one's.
    pub shift: u64,
    /// The new layout's data per stripe.
    pub stripe_bytes: u64,
    region_bytes: u64,
    pub from: String,
    pub to: String,
    pub legs_before: usize,
    pub size_before: u64,
    pub size_after: u64,
}

impl Prepared {
    /// Check the recorded position, build both arrays (legs recorded failed
    /// dead in both), and, when the superblocks say the array was served
    /// and not stopped cleanly, resync what the new layout served.
    pub fn new(sb: Superblock, slots: Vec<Arc<dyn BlockDevice>>, a: ProvenLayout, b: ProvenLayout) -> Result<Prepared, OfflineError> {
        let Some(r) = sb.reshape.clone() else { return Err(refused("no reshape recorded")) };
        let old_slots = r.old_slots as usize;
        let stripe_bytes = u64::from(b.descriptor.data_chunks) * b.geometry.chunk_bytes();
        sb.check_reshape_position(stripe_bytes, b.capacity_bytes()).map_err(|error| MetaError::Superblock { leg: slots[0].describe(), error })?;
        let (from, to, size_before, size_after) = (a.name.clone(), b.name.clone(), a.capacity_bytes(), b.capacity_bytes());
        // A bitmap region keeps covering about as much data as it did.
        let region_bytes = sb.region_stripes.saturating_mul(u64::from(a.descriptor.data_chunks) * a.geometry.chunk_bytes());
        let old = Arc::new(Array::new(format!("{}-old", sb.name), slots[..old_slots].iter().map(|d| (d.clone(), sb.data_offset)).collect(), a));
        let new_slots = new_slot_count(&sb, &r);
        let new = Arc::new(Array::new(format!("{}-new", sb.name), slots[..new_slots].iter().map(|d| (d.clone(), r.data_offset)).collect(), b));
        let name = sb.name.clone();
        let dirty = sb.dirty;
        let p = Prepared {
            name,
            shift: sb.data_offset - r.data_offset,
            sb: Arc::new(parking_lot::Mutex::new(sb)),
            slots: Arc::new(slots),
            old,
            new,
            stripe_bytes,
            region_bytes,
            from,
            to,
            legs_before: old_slots,
            size_before,
            size_after,
        };
        for array in [&p.old, &p.new] {
            let (sb, slots) = (p.sb.clone(), p.slots.clone());
            let (old, new) = (Arc::downgrade(&p.old), Arc::downgrade(&p.new));
            array.set_failure_recorder(Box::new(move |_| {
                let (Some(old), Some(new)) = (old.upgrade(), new.upgrade()) else { return Ok(()) };
                let mut sb = sb.lock();
                if note_failures(&old, &new, &mut sb) {
                    write_recording(&old, &new, &slots, &mut sb).map_err(|e| crate::array::ArrayError::Refused(format!("recording a failed leg: {e}")))?;
                }
                Ok(())
            }));
        }
        note_failures(&p.old, &p.new, &mut p.sb.lock());
        if dirty {
            // Served and not stopped cleanly: stripes the new layout served
            // may be torn, and no bitmap says which.
            let below = r.position / stripe_bytes;
            p.new.resync_stripes(0..below).map_err(|e| refused(format!("resyncing the moved part of '{}': {e}", p.name)))?;
        }
        Ok(p)
    }

    /// The position the legs record.
    pub fn recorded(&self) -> u64 {
        self.sb.lock().reshape.as_ref().map_or(0, |r| r.position)
    }

    pub fn legs_after(&self) -> usize {
        self.new.legs().len()
    }

    pub fn slots(&self) -> &[Arc<dyn BlockDevice>] {
        &self.slots
    }

    /// Record `position` (with any leg failed meanwhile) in every live
    /// leg's superblock.
    pub fn record(&self, position: u64) -> std::io::Result<()> {
        let mut sb = self.sb.lock();
        let before = sb.reshape.as_ref().map_or(0, |r| r.position);
        if let Some(rec) = sb.reshape.as_mut() {
            rec.position = position;
        }
        let written = write_recording(&self.old, &self.new, &self.slots, &mut sb);
        if written.is_err() {
            // Not recorded: the window is served by the old layout again,
            // and nothing later may write this position.
            if let Some(rec) = sb.reshape.as_mut() {
                rec.position = before;
            }
        }
        written.map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Record whether the array is served (`dirty`: writes go on that no
    /// bitmap tracks) at the position reached.
    pub fn set_dirty(&self, dirty: bool) -> Result<(), OfflineError> {
        let mut sb = self.sb.lock();
        sb.dirty = dirty;
        write_recording(&self.old, &self.new, &self.slots, &mut sb)
    }

    /// Everything moved: the new layout alone, recorded.
    /// On failure the reshape stays recorded, at its end and dirty, at a
    /// generation past anything the finish wrote.
    pub fn finish(&self) -> Result<(), OfflineError> {
        let mut sb = self.sb.lock();
        note_failures(&self.old, &self.new, &mut sb);
        let mut done = sb.clone();
        done.dirty = false;
        match finish(&mut done, &self.slots, &self.new.layout(), self.region_bytes) {
            Ok(()) => {
                *sb = done;
                Ok(())
            }
            Err(e) => {
                sb.generation = sb.generation.max(done.generation) + 1;
                if let Err(e2) = write_recording(&self.old, &self.new, &self.slots, &mut sb) {
                    return Err(refused(format!("{e}; then recording the reshape again failed: {e2}")));
                }
                Err(e)
            }
        }
    }

    pub fn array_uuid(&self) -> [u8; 16] {
        self.sb.lock().array_uuid
    }

    pub fn outcome(&self, resumed_at: u64, windows: u64, moving: std::time::Duration) -> Outcome {
        Outcome {
            name: self.name.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            legs_before: self.legs_before,
            legs_after: self.legs_after(),
            size_before: self.size_before,
            size_after: self.size_after,
            shift: self.shift,
            resumed_at,
            windows,
            moving,
        }
    }
}

/// A reshape checked and proven, not yet recorded anywhere: what
/// `commit_start` writes.
pub struct Planned {
    record: Reshape,
    /// The chunks each added leg holds, in the old chunk size.
    added_chunks: Vec<u64>,
    pub old: ProvenLayout,
    pub new: ProvenLayout,
}

/// Refuse an array that is not cleanly stopped with every leg in sync.
fn check_in_sync(sb: &Superblock) -> Result<(), OfflineError> {
    let name = &sb.name;
    if sb.dirty || sb.unsynced {
        return Err(refused(format!("'{name}' was not stopped cleanly: assemble it and let its resync finish first")));
    }
    if let Some(i) = (0..sb.legs.len()).find(|&i| sb.failed[i] || sb.recovering[i].is_some() || sb.spared[i].is_some()) {
        return Err(refused(format!("slot {i} of '{name}' is not in sync: a reshape needs every leg in sync")));
    }
    if sb.replacement.is_some() {
        return Err(refused(format!("'{name}' has a replacement under way: let it finish first")));
    }
    Ok(())
}

/// Check the target against the array `sb` describes (over `old_slots`
/// legs, `added` to come) and prove both layouts, writing nothing: a
/// served array does this before it pauses.
pub fn plan_start(
    sb: &Superblock,
    old_slots: usize,
    added: &[Arc<dyn BlockDevice>],
    sandbox: &Arc<Sandbox>,
    old_component: &[u8],
    t: &Target,
) -> Result<Planned, OfflineError> {
    let name = sb.name.clone();
    if old_slots + added.len() > MAX_LEGS {
        return Err(refused(format!("an array has at most {MAX_LEGS} legs")));
    }
    let mut remove = t.remove_slots.clone();
    remove.sort_unstable();
    remove.dedup();
    if !remove.is_empty() {
        if !added.is_empty() {
            return Err(refused("a reshape adds legs or removes them, not both: do one, then the other"));
        }
        let first = old_slots.saturating_sub(remove.len());
        if remove.len() >= old_slots || remove.iter().enumerate().any(|(k, &s)| s != first + k) {
            return Err(refused(format!(
                "only the last slots of '{name}' can be removed (slots {first} to {} of its {old_slots}, and not all): replace a leg to move its data into a last slot first",
                old_slots.saturating_sub(1)
            )));
        }
    }
    for dev in added {
        if let Ok(other) = store::read_superblock(&**dev) {
            return Err(refused(format!(
                "{} already belongs to array '{}' ({}): erase it before adding it",
                dev.describe(),
                other.name,
                uuid_text(&other.array_uuid)
            )));
        }
    }
    let old_chunk = sb.chunk_bytes();
    let chunk_sectors = t.chunk_sectors.unwrap_or(sb.chunk_sectors);
    if chunk_sectors == 0 || chunk_sectors > crate::meta::validate::MAX_CHUNK_SECTORS {
        return Err(refused(format!("a chunk of {chunk_sectors} sectors: use 1 to {} sectors", crate::meta::validate::MAX_CHUNK_SECTORS)));
    }
    // Added legs hold what the old ones do: data from the old offset on.
    let added_chunks: Vec<u64> = added.iter().map(|dev| dev.size().saturating_sub(sb.data_offset) / old_chunk).collect();
    let a = prove(sandbox, old_component, old_geometry(sb, old_slots), "old")?;
    let component_offset = (sb.component_offset + sb.component_len).div_ceil(SHIFT_ALIGN) * SHIFT_ALIGN;
    let mut record = Reshape {
        layout_name: String::new(),
        args: t.args.clone(),
        chunk_sectors,
        data_offset: sb.data_offset,
        component_sha256: Sha256::digest(&t.component).into(),
        component_offset,
        component_len: t.component.len() as u64,
        old_slots: old_slots as u32,
        position: 0,
        new_slots: if remove.is_empty() { 0 } else { (old_slots - remove.len()) as u32 },
    };
    let b = prove(sandbox, &t.component, new_geometry(&grown(sb, &added_chunks), &record), "new")?;
    record.layout_name = b.name.clone();
    let need = minimal_shift(&a, &b).map_err(ReshapeError::from)?;
    let metadata_end = (sb.bitmap_offset + 2 * sb.bitmap_bytes).max(component_offset + record.component_len);
    let room = sb.data_offset.saturating_sub(metadata_end) / SHIFT_ALIGN * SHIFT_ALIGN;
    if need > room {
        return Err(refused(format!(
            "moving '{name}' from {} to {} needs the new layout's data {need} bytes before the old one's on every leg, but only {room} bytes lie between the metadata (with the new component, {} bytes) and the data offset {}",
            a.name, b.name, record.component_len, sb.data_offset
        )));
    }
    // Half the room (but what is needed): windows grow with the shift, and
    // the other half is left for the next reshape.
    record.data_offset = sb.data_offset - (room / 2 / SHIFT_ALIGN * SHIFT_ALIGN).min(MAX_SHIFT).max(need);
    Ok(Planned { record, added_chunks, old: a, new: b })
}

/// `sb` with the slots of the added legs.
fn grown(sb: &Superblock, added_chunks: &[u64]) -> Superblock {
    let mut g = sb.clone();
    for &chunks in added_chunks {
        g.legs.push(new_uuid());
        g.failed.push(false);
        g.spared.push(None);
        g.recovering.push(None);
        g.leg_sizes.push(chunks);
    }
    g
}

/// Record a planned reshape at position 0: the new component stored on
/// every leg (`slots` gains the added ones), then every superblock, with
/// `dirty` as given (a served array's writes go on untracked by a bitmap).
/// `sb` must still describe the array the plan was made for.
pub fn commit_start(
    sb: &mut Superblock,
    slots: &mut Vec<Arc<dyn BlockDevice>>,
    added: &[Arc<dyn BlockDevice>],
    planned: &Planned,
    component: &[u8],
    dirty: bool,
) -> Result<(), OfflineError> {
    check_in_sync(sb)?;
    if old_geometry(sb, slots.len()) != planned.old.geometry || added.len() != planned.added_chunks.len() {
        return Err(refused(format!("'{}' changed while its reshape was being planned: run it again", sb.name)));
    }
    let mut g = grown(sb, &planned.added_chunks);
    g.reshape = Some(planned.record.clone());
    g.dirty = dirty;
    slots.extend(added.iter().cloned());
    for dev in slots.iter() {
        store::write_reshape_component(&**dev, &g, component)?;
    }
    write_all(slots, &mut g)?;
    *sb = g;
    Ok(())
}

/// The new layout alone: bitmap copies first (every region clean), then
/// the superblocks.
pub(super) fn finish(sb: &mut Superblock, slots: &[Arc<dyn BlockDevice>], b: &ProvenLayout, region_bytes: u64) -> Result<(), OfflineError> {
    let Some(r) = sb.reshape.clone() else { return Ok(()) };
    // Removed slots leave the array here.
    let kept = new_slot_count(sb, &r);
    sb.reshape = None;
    sb.legs.truncate(kept);
    sb.failed.truncate(kept);
    sb.spared.truncate(kept);
    sb.recovering.truncate(kept);
    let (slots, removed) = slots.split_at(kept.min(slots.len()));
    let stripe_bytes = u64::from(b.descriptor.data_chunks) * b.geometry.chunk_bytes();
    let mut region_stripes = area::region_stripes(stripe_bytes, region_bytes.max(area::REGION_MIN));
    while copy_bytes(b.descriptor.stripes.div_ceil(region_stripes)) > sb.bitmap_bytes {
        region_stripes *= 2;
    }
    sb.layout_name = r.layout_name;
    sb.args = r.args;
    sb.chunk_sectors = r.chunk_sectors;
    sb.data_offset = r.data_offset;
    sb.component_sha256 = r.component_sha256;
    sb.component_offset = r.component_offset;
    sb.component_len = r.component_len;
    sb.leg_sizes = b.geometry.leg_chunks.clone();
    sb.region_stripes = region_stripes;
    sb.regions = b.descriptor.stripes.div_ceil(region_stripes);
    // The old bitmap's history is gone: no re-add may lean on it.
    sb.events_cleared = sb.generation + 1;
    sb.check_layout(b.descriptor.stripes, b.descriptor.spare_chunks).map_err(|error| MetaError::Superblock { leg: slots[0].describe(), error })?;
    let states = vec![State::Clean; sb.regions as usize];
    for (i, dev) in slots.iter().enumerate() {
        if sb.failed.get(i).copied().unwrap_or(false) {
            continue;
        }
        for which in [0, 1] {
            store::write_bitmap_copy(&**dev, sb, which, &states, sb.generation + 1)?;
        }
    }
    write_all(slots, sb)?;
    for dev in removed {
        // Best effort: a removed leg whose superblock survives claims a
        // slot the array no longer has, and assemble leaves it out.
        if let Err(e) = store::erase_superblock(&**dev) {
            tracing::warn!("{} was removed from '{}' but its superblock could not be erased: {e}", dev.describe(), sb.name);
        }
    }
    Ok(())
}

/// Take back a reshape that has moved nothing yet: superblocks describing
/// the old layout alone on its legs, the added legs' superblocks erased.
/// Once a window is recorded the new layout holds data the old one no
/// longer does (its place may be overwritten): that is the point of no
/// return, and the refusal says so.
pub fn abort(devices: &[Arc<dyn BlockDevice>]) -> Result<String, OfflineError> {
    let m = members(devices)?;
    let (mut sb, slots) = (m.newest, m.slots);
    let Some(r) = sb.reshape.take() else { return Err(refused(format!("'{}' has no reshape under way to abort", sb.name))) };
    if r.position > 0 {
        return Err(refused(format!(
            "the reshape of '{}' to {} is past its point of no return: the new layout holds the first {} bytes; finish it with --continue",
            sb.name, r.layout_name, r.position
        )));
    }
    let old = r.old_slots as usize;
    sb.legs.truncate(old);
    sb.failed.truncate(old);
    sb.spared.truncate(old);
    sb.recovering.truncate(old);
    sb.leg_sizes.truncate(old);
    write_all(&slots[..old], &mut sb)?;
    for dev in &slots[old..] {
        store::erase_superblock(&**dev)?;
    }
    Ok(format!("'{}' stays {} over {} legs; {} added leg(s) released", sb.name, sb.layout_name, old, slots.len() - old))
}
