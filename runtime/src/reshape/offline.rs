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
struct Members {
    newest: Superblock,
    slots: Vec<Arc<dyn BlockDevice>>,
}

/// Read every device's superblock; all must be of one array, every slot
/// present once. In a reshape just started (position 0), an added slot
/// whose superblock did not make it is filled, in order, by the devices
/// that hold none.
fn members(devices: &[Arc<dyn BlockDevice>]) -> Result<Members, OfflineError> {
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
        if slot.is_none() {
            match (just_started, blank.next()) {
                (Some(old_slots), Some(dev)) if i >= old_slots => *slot = Some(dev),
                _ => return Err(refused(format!("slot {i} of '{}' ({}) is missing: a reshape needs every leg", newest.name, uuid_text(&newest.legs[i])))),
            }
        }
    }
    if let Some(dev) = blank.next() {
        return Err(refused(format!("{} holds no superblock of '{}': pass legs to add with --add-legs", dev.describe(), newest.name)));
    }
    Ok(Members { newest, slots: slots.into_iter().flatten().collect() })
}

fn prove(sandbox: &Arc<Sandbox>, bytes: &[u8], geometry: Geometry, which: &'static str) -> Result<ProvenLayout, OfflineError> {
    let loaded = Arc::new(component::load(sandbox, bytes)?);
    ProvenLayout::prove(loaded, geometry).map_err(|source| OfflineError::Layout { which, source })
}

/// The new layout's geometry, from the superblock alone (never from device
/// sizes, which may change between a crash and the run that continues).
fn new_geometry(sb: &Superblock, r: &Reshape) -> Geometry {
    let (old, new) = (sb.chunk_bytes(), u64::from(r.chunk_sectors) * 512);
    Geometry { chunk_sectors: r.chunk_sectors, leg_chunks: sb.leg_sizes.iter().map(|&c| c * old / new).collect(), args: r.args.clone() }
}

fn old_geometry(sb: &Superblock, old_slots: usize) -> Geometry {
    Geometry { chunk_sectors: sb.chunk_sectors, leg_chunks: sb.leg_sizes[..old_slots].to_vec(), args: sb.args.clone() }
}

/// Write `sb`, one generation on, to every slot (each its own index and
/// uuid), checked first as assemble will check it.
fn write_all(slots: &[Arc<dyn BlockDevice>], sb: &mut Superblock) -> Result<(), OfflineError> {
    sb.generation += 1;
    sb.updated = now();
    let blocks: Vec<Superblock> = slots
        .iter()
        .enumerate()
        .map(|(i, dev)| {
            let b = sb.for_slot(i);
            b.check_on(dev.size()).map(|()| b).map_err(|error| MetaError::Superblock { leg: dev.describe(), error })
        })
        .collect::<Result<_, _>>()?;
    for (dev, b) in slots.iter().zip(&blocks) {
        store::write_superblock(&**dev, b)?;
    }
    Ok(())
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
    let old_component = store::read_component(&*slots[0], &sb)?;
    let started = match (&sb.reshape, target) {
        (None, Some(t)) => Some(start(&mut sb, &mut slots, added, sandbox, &old_component, t)?),
        (None, None) => return Err(refused(format!("'{}' has no reshape under way to continue", sb.name))),
        (Some(r), Some(_)) => {
            return Err(refused(format!(
                "'{}' is in the middle of a reshape to {} ({}) at byte {}: finish it with --continue before starting another",
                sb.name, r.layout_name, r.args, r.position
            )));
        }
        (Some(_), None) => None,
    };
    let Some(r) = sb.reshape.clone() else { return Err(refused("no reshape recorded")) };
    let old_slots = r.old_slots as usize;
    // A reshape just started has proven both layouts; one continued proves
    // them from what the legs store.
    let (a, b) = match started {
        Some(proven) => proven,
        None => {
            let a = prove(sandbox, &old_component, old_geometry(&sb, old_slots), "old")?;
            let new_component = store::read_reshape_component(&*slots[0], &sb)?;
            (a, prove(sandbox, &new_component, new_geometry(&sb, &r), "new")?)
        }
    };
    let sb_bytes = u64::from(b.descriptor.data_chunks) * b.geometry.chunk_bytes();
    sb.check_reshape_position(sb_bytes, b.capacity_bytes()).map_err(|error| MetaError::Superblock { leg: slots[0].describe(), error })?;
    let shift = sb.data_offset - r.data_offset;
    let (from, to, size_before, size_after) = (a.name.clone(), b.name.clone(), a.capacity_bytes(), b.capacity_bytes());
    let old = Arc::new(Array::new(format!("{}-old", sb.name), slots[..old_slots].iter().map(|d| (d.clone(), sb.data_offset)).collect(), a));
    let new = Arc::new(Array::new(format!("{}-new", sb.name), slots.iter().map(|d| (d.clone(), r.data_offset)).collect(), b));
    let (la, lb) = (old.layout(), new.layout());
    // A bitmap region keeps covering about as much data as it did.
    let region_bytes = sb.region_stripes.saturating_mul(u64::from(la.descriptor.data_chunks) * la.geometry.chunk_bytes());
    let mut windows = Windows::new(&la, &lb, shift, max_window.min(MAX_WINDOW)).map_err(ReshapeError::from)?;
    let moving = Reshaping::new(old.clone(), new.clone(), sb_bytes, r.position)?;
    let mut count = 0;
    let started = std::time::Instant::now();
    loop {
        let mut record = |p: u64| -> std::io::Result<()> {
            // The superblocks say every leg is in sync: a window a leg
            // missed (it failed while read or written, the array going on
            // degraded) must not be recorded as moved.
            if let Some(why) = failed_leg(&old).or_else(|| failed_leg(&new)) {
                return Err(std::io::Error::other(format!("{why}; the reshape stops here: find out why, then run it again with --continue")));
            }
            if let Some(rec) = sb.reshape.as_mut() {
                rec.position = p;
            }
            write_all(&slots, &mut sb).map_err(|e| std::io::Error::other(e.to_string()))
        };
        match moving.step(&mut windows, &mut record)? {
            Some(p) => {
                count += 1;
                progress(p, size_after);
                // At most `rate` bytes a second (md's speed_limit_max).
                if rate > 0 {
                    let due = std::time::Duration::from_secs_f64((p - r.position) as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            None => break,
        }
    }
    finish(&mut sb, &slots, &lb, region_bytes)?;
    let moving = started.elapsed();
    Ok(Outcome {
        name: sb.name.clone(),
        from,
        to,
        legs_before: old_slots,
        legs_after: slots.len(),
        size_before,
        size_after,
        shift,
        resumed_at: r.position,
        windows: count,
        moving,
    })
}

/// The first leg `array` saw fail, and why.
fn failed_leg(array: &Array) -> Option<String> {
    array
        .legs()
        .iter()
        .enumerate()
        .find(|(_, l)| !l.is_alive())
        .map(|(i, l)| format!("leg {i} ({}) failed during the move: {}", l.device().describe(), l.last_error().unwrap_or_else(|| "no error recorded".into())))
}

/// Check the array and the target, store the new component on every leg
/// and record the reshape at position 0. Returns both layouts, proven.
fn start(
    sb: &mut Superblock,
    slots: &mut Vec<Arc<dyn BlockDevice>>,
    added: &[Arc<dyn BlockDevice>],
    sandbox: &Arc<Sandbox>,
    old_component: &[u8],
    t: &Target,
) -> Result<(ProvenLayout, ProvenLayout), OfflineError> {
    let name = sb.name.clone();
    if sb.dirty || sb.unsynced {
        return Err(refused(format!("'{name}' was not stopped cleanly: assemble it and let its resync finish first")));
    }
    if let Some(i) = (0..sb.legs.len()).find(|&i| sb.failed[i] || sb.recovering[i].is_some() || sb.spared[i].is_some()) {
        return Err(refused(format!("slot {i} of '{name}' is not in sync: a reshape needs every leg in sync")));
    }
    if sb.replacement.is_some() {
        return Err(refused(format!("'{name}' has a replacement under way: let it finish first")));
    }
    if slots.len() + added.len() > MAX_LEGS {
        return Err(refused(format!("an array has at most {MAX_LEGS} legs")));
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
    let mut grown = sb.clone();
    for dev in added {
        grown.legs.push(new_uuid());
        grown.failed.push(false);
        grown.spared.push(None);
        grown.recovering.push(None);
        grown.leg_sizes.push(dev.size().saturating_sub(sb.data_offset) / old_chunk);
    }
    let old_slots = slots.len();
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
    };
    let b = prove(sandbox, &t.component, new_geometry(&grown, &record), "new")?;
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
    slots.extend(added.iter().cloned());
    grown.reshape = Some(record);
    for dev in slots.iter() {
        store::write_reshape_component(&**dev, &grown, &t.component)?;
    }
    write_all(slots, &mut grown)?;
    *sb = grown;
    Ok((a, b))
}

/// The new layout alone: bitmap copies first (every region clean), then
/// the superblocks.
fn finish(sb: &mut Superblock, slots: &[Arc<dyn BlockDevice>], b: &ProvenLayout, region_bytes: u64) -> Result<(), OfflineError> {
    let Some(r) = sb.reshape.take() else { return Ok(()) };
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
    for dev in slots {
        for which in [0, 1] {
            store::write_bitmap_copy(&**dev, sb, which, &states, sb.generation + 1)?;
        }
    }
    write_all(slots, sb)
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
