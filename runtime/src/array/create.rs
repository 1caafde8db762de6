//! Self-describing arrays: `create` writes superblocks, the component and
//! the bitmap onto every leg; `assemble` finds legs by uuid, refuses stale
//! and foreign ones with a reason, and never assembles silently wrong.
//! What it reads from legs is untrusted: every superblock is checked
//! against its device (`meta::validate`), the superblocks against each
//! other (`meta::agreement`), and the freshest against the proven layout.

use super::health::Health;
use super::intent::Intent;
use super::{Array, Meta};
use crate::device::BlockDevice;
use crate::device::missing::Missing;
use crate::layout::Geometry;
use crate::layout::proven::ProvenLayout;
use crate::meta::agreement::{Claim, contradiction};
use crate::meta::bitmap_state::{Action, State};
use crate::meta::superblock::{MAX_LEGS, Superblock, new_uuid, now, uuid_text};
use crate::meta::validate::MAX_CHUNK_SECTORS;
use crate::meta::{area, store};
use crate::sandbox::Sandbox;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Meta(#[from] store::MetaError),
    #[error("layout: {0}")]
    Layout(#[from] crate::layout::proven::LayoutError),
    #[error("{0}")]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error("{0}")]
    Array(#[from] super::ArrayError),
}

/// How to create an array.
pub struct CreateOptions {
    pub name: String,
    pub component: Vec<u8>,
    pub chunk_sectors: u32,
    pub args: String,
    /// The legs hold zeroes (new sparse files): parity is already right.
    pub assume_clean: bool,
    /// Overwrite legs that belong to another array.
    pub force: bool,
    /// Data per write-intent bitmap region (mdadm's `--bitmap-chunk`);
    /// None for the default, `area::REGION_TARGET`.
    pub bitmap_chunk: Option<u64>,
}

/// What `create` wrote.
pub struct Created {
    pub uuid: [u8; 16],
    pub layout: ProvenLayout,
    pub data_offset: u64,
    pub regions: u64,
}

pub fn create(legs: &[Arc<dyn BlockDevice>], sandbox: &Arc<Sandbox>, o: &CreateOptions) -> Result<Created, CreateError> {
    if legs.is_empty() || legs.len() > MAX_LEGS {
        return Err(CreateError::Refused(format!("an array has 1 to {MAX_LEGS} legs, got {}", legs.len())));
    }
    crate::control::valid_name(&o.name).map_err(CreateError::Refused)?;
    if o.chunk_sectors == 0 || o.chunk_sectors > MAX_CHUNK_SECTORS {
        return Err(CreateError::Refused(format!("a chunk of {} sectors: use 1 to {MAX_CHUNK_SECTORS} sectors", o.chunk_sectors)));
    }
    for leg in legs.iter().filter(|_| !o.force) {
        match store::read_superblock(&**leg) {
            Ok(sb) => {
                return Err(CreateError::Refused(format!(
                    "{} already belongs to array '{}' ({}), leg {}: pass --force to overwrite it",
                    leg.describe(),
                    sb.name,
                    uuid_text(&sb.array_uuid),
                    sb.leg_index
                )));
            }
            // Whole, but not true of this leg: still someone's metadata.
            Err(e @ store::MetaError::Superblock { .. }) => {
                return Err(CreateError::Refused(format!("{e}: the leg holds a wasmraid superblock; pass --force to overwrite it")));
            }
            Err(_) => {}
        }
    }
    let sizes: Vec<u64> = legs.iter().map(|l| l.size()).collect();
    let region_bytes = o.bitmap_chunk.unwrap_or(area::REGION_TARGET);
    if region_bytes < area::REGION_MIN {
        return Err(CreateError::Refused(format!("a bitmap chunk of {region_bytes} bytes is too small (at least {} bytes)", area::REGION_MIN)));
    }
    let area = area::plan(&sizes, o.component.len() as u64, region_bytes);
    if area.max_regions > area::MAX_REGIONS {
        return Err(CreateError::Refused(format!(
            "a bitmap chunk of {region_bytes} bytes makes up to {} regions over these legs (at most {}): pass a larger --bitmap-chunk",
            area.max_regions,
            area::MAX_REGIONS
        )));
    }
    let chunk_bytes = u64::from(o.chunk_sectors) * 512;
    let leg_chunks: Vec<u64> = sizes.iter().map(|s| s.saturating_sub(area.data_offset) / chunk_bytes).collect();
    let loaded = Arc::new(crate::sandbox::component::load(sandbox, &o.component)?);
    let layout = ProvenLayout::prove(loaded, Geometry { chunk_sectors: o.chunk_sectors, leg_chunks: leg_chunks.clone(), args: o.args.clone() })?;
    let d = &layout.descriptor;
    let region_stripes = area::region_stripes(u64::from(d.data_chunks) * chunk_bytes, region_bytes);
    let regions = d.stripes.div_ceil(region_stripes);
    let uuid = new_uuid();
    let leg_uuids: Vec<[u8; 16]> = legs.iter().map(|_| new_uuid()).collect();
    let template = Superblock {
        array_uuid: uuid,
        name: o.name.clone(),
        leg_uuid: [0; 16],
        leg_index: 0,
        legs: leg_uuids.clone(),
        failed: vec![false; legs.len()],
        spared: vec![None; legs.len()],
        recovering: vec![None; legs.len()],
        replacement: None,
        leg_sizes: leg_chunks,
        generation: 1,
        dirty: false,
        unsynced: false,
        events_cleared: 1,
        chunk_sectors: o.chunk_sectors,
        data_offset: area.data_offset,
        leg_chunks: 0,
        layout_name: layout.name.clone(),
        args: o.args.clone(),
        component_sha256: Sha256::digest(&o.component).into(),
        component_offset: area.component_offset,
        component_len: o.component.len() as u64,
        bitmap_offset: area::BITMAP_OFFSET,
        bitmap_bytes: area.bitmap_bytes,
        region_stripes,
        regions,
        created: now(),
        updated: now(),
        reshape: None,
    };
    // Every leg's block passes the checks assemble makes, before any is
    // written: what create writes, assemble accepts.
    let blocks: Vec<Superblock> = legs
        .iter()
        .enumerate()
        .map(|(i, leg)| {
            let sb = template.for_slot(i);
            sb.check_on(leg.size())
                .and_then(|()| sb.check_layout(d.stripes, d.spare_chunks))
                .map(|()| sb)
                .map_err(|error| store::MetaError::Superblock { leg: leg.describe(), error })
        })
        .collect::<Result<_, _>>()?;
    let states = vec![if o.assume_clean { State::Clean } else { State::Unwritten }; regions as usize];
    for (leg, sb) in legs.iter().zip(&blocks) {
        store::write_component(&**leg, sb, &o.component)?;
        for which in [0, 1] {
            store::write_bitmap_copy(&**leg, sb, which, &states, 1)?;
        }
        store::write_superblock(&**leg, sb)?;
    }
    Ok(Created { uuid, layout, data_offset: area.data_offset, regions })
}

/// How to assemble.
pub struct AssembleOptions {
    /// Only legs of the array with this name (or uuid text); None takes the
    /// array most legs belong to.
    pub name: Option<String>,
    /// Start a parity array that is both dirty and degraded (the write
    /// hole: rebuilt data may be wrong where a crash tore a stripe), or
    /// whose superblocks contradict each other (the freshest is trusted).
    pub force: bool,
    pub daemon_sleep: Duration,
}

/// One leg's verdict, for the operator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LegReport {
    pub device: String,
    pub slot: Option<u32>,
    pub accepted: bool,
    pub reason: String,
}

/// An assembled array and what happened to every leg offered.
pub struct Assembled {
    pub array: Arc<Array>,
    pub report: Vec<LegReport>,
    /// Regions found needing a resync (after an unclean stop).
    pub needs_sync: usize,
    pub bitmap_note: Option<String>,
}

pub fn assemble(devices: Vec<Arc<dyn BlockDevice>>, sandbox: &Arc<Sandbox>, o: &AssembleOptions) -> Result<Assembled, CreateError> {
    let mut report = Vec::new();
    let mut found: Vec<(Arc<dyn BlockDevice>, Superblock)> = Vec::new();
    // Devices with no superblock: an added leg of a reshape just begun may
    // be one.
    let mut blank: Vec<Arc<dyn BlockDevice>> = Vec::new();
    for dev in devices {
        match store::read_superblock(&*dev) {
            Ok(sb) => found.push((dev, sb)),
            Err(e) => {
                report.push(LegReport { device: dev.describe(), slot: None, accepted: false, reason: e.to_string() });
                if matches!(e, crate::meta::store::MetaError::NoSuperblock { .. }) {
                    blank.push(dev);
                }
            }
        }
    }
    // Which array: the one named, else the one most legs belong to.
    let wanted = match &o.name {
        Some(n) => found.iter().find(|(_, sb)| &sb.name == n || &uuid_text(&sb.array_uuid) == n).map(|(_, sb)| sb.array_uuid),
        None => {
            let mut counts: Vec<([u8; 16], usize)> = Vec::new();
            for (_, sb) in &found {
                match counts.iter_mut().find(|(u, _)| *u == sb.array_uuid) {
                    Some(c) => c.1 += 1,
                    None => counts.push((sb.array_uuid, 1)),
                }
            }
            counts.into_iter().max_by_key(|c| c.1).map(|c| c.0)
        }
    };
    let Some(uuid) = wanted else {
        let reasons: Vec<String> = report.iter().map(|r| format!("{}: {}", r.device, r.reason)).collect();
        return Err(CreateError::Refused(format!("no leg of the requested array was found ({})", reasons.join("; "))));
    };
    let (members, foreign): (Vec<_>, Vec<_>) = found.into_iter().partition(|(_, sb)| sb.array_uuid == uuid);
    for (dev, sb) in foreign {
        report.push(LegReport {
            device: dev.describe(),
            slot: Some(sb.leg_index),
            accepted: false,
            reason: format!("foreign: belongs to array '{}' ({})", sb.name, uuid_text(&sb.array_uuid)),
        });
    }
    let (newest_dev, newest) = members
        .iter()
        .max_by_key(|(_, sb)| sb.generation)
        .map(|(dev, sb)| (dev.describe(), sb.clone()))
        .ok_or_else(|| CreateError::Refused("no member legs".into()))?;
    if let Some(r) = &newest.reshape {
        // Read through one layout, half the data would be wrong: finish
        // the move first (a crash or a stop interrupted it), then assemble.
        tracing::info!(array = %newest.name, to = %r.layout_name, position = r.position, "{newest_dev} records a reshape under way: going on with it before assembling");
        // Devices without a superblock only stand in for added legs whose
        // superblock did not make it, at the very start (`members`); any
        // other (a scan's unrelated devices) stays out of the reshape.
        let short = newest.legs.len().saturating_sub(members.len());
        let blank: Vec<_> = if r.position == 0 { blank.into_iter().take(short).collect() } else { Vec::new() };
        let legs: Vec<Arc<dyn BlockDevice>> = members.iter().map(|(d, _)| d.clone()).chain(blank).collect();
        let done = crate::reshape::offline::reshape(&legs, &[], sandbox, None, crate::reshape::offline::MAX_WINDOW, 0, &mut |_, _| {}).map_err(|e| {
            CreateError::Refused(format!(
                "{newest_dev} records a reshape of '{}' to {} ({}) under way at byte {}; going on with it failed: {e}",
                newest.name, r.layout_name, r.args, r.position
            ))
        })?;
        tracing::info!(array = %done.name, from = %done.from, to = %done.to, resumed_at = done.resumed_at, "reshape finished");
        return assemble(legs, sandbox, o);
    }
    let freshest = Claim { device: &newest_dev, sb: &newest };
    // A leg the array recorded failed is left out below whatever it holds
    // (one that failed during a reshape still describes the old layout).
    let recorded_failed = |sb: &Superblock| {
        let i = sb.leg_index as usize;
        newest.failed.get(i) == Some(&true) && newest.legs.get(i) == Some(&sb.leg_uuid) && sb.generation < newest.generation
    };
    let contradictions: Vec<String> = members
        .iter()
        .filter(|(_, sb)| !recorded_failed(sb))
        .filter_map(|(dev, sb)| contradiction(&freshest, &Claim { device: &dev.describe(), sb }))
        .collect();
    if !contradictions.is_empty() && !o.force {
        return Err(CreateError::Refused(format!(
            "the superblocks contradict each other: {}; one of them is damaged or forged. Check the legs with `wasmraid examine`; \
             --force trusts the freshest ({newest_dev}) and leaves out the legs that contradict it",
            contradictions.join("; ")
        )));
    }
    let n = newest.legs.len();
    let mut slots: Vec<Option<(Arc<dyn BlockDevice>, Superblock)>> = (0..n).map(|_| None).collect();
    let mut replacement: Option<(Arc<dyn BlockDevice>, Superblock)> = None;
    for (dev, sb) in members {
        let i = sb.leg_index as usize;
        let is_replacement = newest.replacement.is_some_and(|r| r.slot as usize == i && r.uuid == sb.leg_uuid);
        // Superblocks are written leg by leg: a crash in between leaves
        // generations one apart, and the older legs missed only that last
        // change, which the newest superblock describes (mdadm's margin).
        let reason = if i >= n {
            Some(format!("slot {i} does not exist in an array of {n} legs"))
        } else if newest.legs[i] != sb.leg_uuid && !is_replacement {
            Some(format!("slot {i} now belongs to leg {} (this leg, {}, was replaced)", uuid_text(&newest.legs[i]), uuid_text(&sb.leg_uuid)))
        } else if let Some(c) = Some(&sb).filter(|sb| !recorded_failed(sb)).and_then(|sb| contradiction(&freshest, &Claim { device: &dev.describe(), sb })) {
            Some(format!("left out by --force, which trusts the freshest superblock: {c}"))
        } else if sb.generation + 1 < newest.generation {
            Some(format!("stale: generation {} is older than the array's {} (it missed changes; re-add it to recover it)", sb.generation, newest.generation))
        } else if !is_replacement && newest.failed.get(i).copied().unwrap_or(false) {
            Some(format!("the array recorded slot {i} as failed (re-add it to recover it)"))
        } else if (is_replacement && replacement.is_some()) || (!is_replacement && slots[i].is_some()) {
            Some(format!("a second leg claims slot {i}"))
        } else {
            None
        };
        match reason {
            Some(reason) => report.push(LegReport { device: dev.describe(), slot: Some(sb.leg_index), accepted: false, reason }),
            None => {
                let role = if is_replacement {
                    "replacement being rebuilt".to_string()
                } else {
                    match newest.recovering.get(i).copied().flatten() {
                        Some(r) => format!("recovering, rebuilt below stripe {}", r.offset),
                        None => "in sync".to_string(),
                    }
                };
                report.push(LegReport {
                    device: dev.describe(),
                    slot: Some(sb.leg_index),
                    accepted: true,
                    reason: format!("slot {i}, generation {}, {role}", sb.generation),
                });
                if is_replacement {
                    replacement = Some((dev, sb));
                } else {
                    slots[i] = Some((dev, sb));
                }
            }
        }
    }
    let source = slots.iter().flatten().next().ok_or_else(|| CreateError::Refused("no usable leg".into()))?;
    let component = store::read_component(&*source.0, &source.1)?;
    let loaded = Arc::new(crate::sandbox::component::load(sandbox, &component)?);
    let geometry = Geometry { chunk_sectors: newest.chunk_sectors, leg_chunks: newest.leg_sizes.clone(), args: newest.args.clone() };
    let layout = ProvenLayout::prove(loaded, geometry)?;
    // Regions, rebuild checkpoints and spare ordinals index the bitmap,
    // stripes and spare slots: only the proven layout bounds them.
    newest
        .check_layout(layout.descriptor.stripes, layout.descriptor.spare_chunks)
        .map_err(|error| store::MetaError::Superblock { leg: newest_dev.clone(), error })?;

    // The bitmap: the highest valid serial of any copy on any member.
    let mut best: Option<(u64, Vec<State>)> = None;
    let mut bad_copies = 0;
    for (dev, sb) in slots.iter().flatten() {
        for copy in store::read_bitmap_copies(&**dev, sb) {
            match copy {
                // Members agree on the regions (`agreement`): a copy of
                // another length is damage, never the intent log.
                Ok((_, states)) if states.len() as u64 != newest.regions => bad_copies += 1,
                Ok((serial, states)) if best.as_ref().is_none_or(|b| serial > b.0) => best = Some((serial, states)),
                Ok(_) => {}
                Err(_) => bad_copies += 1,
            }
        }
    }
    let (serial, mut states, bitmap_note) = match best {
        Some((serial, states)) => {
            (serial, states, (bad_copies > 0).then(|| format!("{bad_copies} damaged bitmap copies ignored; the newest valid copy (serial {serial}) was used")))
        }
        None => {
            tracing::error!("every copy of the write-intent bitmap is invalid: the whole array will be resynced");
            (0, vec![State::NeedSync; newest.regions as usize], Some("EVERY BITMAP COPY IS INVALID: full resync".to_string()))
        }
    };
    // After an unclean stop, writes may have been in flight anywhere the
    // bitmap did not say Clean: those regions resync, and until that has
    // finished the array may hold torn stripes.
    let crashed = newest.dirty;
    let torn_risk = crashed && states.iter().any(|s| matches!(s, State::Dirty | State::NeedSync | State::Syncing));
    for s in &mut states {
        let action = if crashed { Action::Reload } else { Action::AbortSync };
        *s = crate::meta::bitmap_state::transition(*s, action).0;
    }
    let unsynced = newest.unsynced || torn_risk;
    let needs_sync = states.iter().filter(|s| crate::meta::bitmap_state::needs_sync(**s)).count();
    // Slots whose chunks must be decoded: missing (unless rebuilt into
    // distributed spares) or still being rebuilt.
    let not_in_sync: Vec<String> = (0..n)
        .filter_map(|i| match (&slots[i], newest.recovering.get(i).copied().flatten()) {
            (None, _) if newest.spared.get(i).copied().flatten().is_none() => Some(format!("leg {i} missing")),
            (Some(_), Some(r)) => Some(format!("leg {i} recovering (rebuilt below stripe {} of {})", r.offset, layout.descriptor.stripes)),
            _ => None,
        })
        .collect();
    if unsynced && needs_sync > 0 && !not_in_sync.is_empty() && layout.descriptor.parity_chunks > 0 && !o.force {
        return Err(CreateError::Refused(format!(
            "the array was not shut down cleanly ({needs_sync} regions may hold torn stripes) and {}: \
             rebuilding their data from possibly stale parity could return wrong data (the write hole). \
             Bring the missing legs back, or pass --force to start anyway",
            not_in_sync.join(", ")
        )));
    }

    // Legs a generation behind (a crash between two legs' writes) get the
    // freshest block first, so that a crash while the next generation is
    // written leaves no leg two behind (which would read as a
    // contradiction). A leg that cannot take it is failed by that write.
    let lagging: Vec<(Arc<dyn BlockDevice>, Superblock)> = slots
        .iter()
        .flatten()
        .chain(&replacement)
        .filter(|(_, sb)| sb.generation < newest.generation)
        .map(|(dev, sb)| (dev.clone(), Superblock { leg_index: sb.leg_index, leg_uuid: sb.leg_uuid, ..newest.clone() }))
        .collect();

    let legs: Vec<(Arc<dyn BlockDevice>, u64)> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            Some((dev, _)) => (dev.clone(), newest.data_offset),
            None => (Arc::new(Missing { what: format!("slot {i}") }) as Arc<dyn BlockDevice>, newest.data_offset),
        })
        .collect();
    let intent = Intent::new(newest.region_stripes, states, serial, o.daemon_sleep);
    let mut template = newest.clone();
    template.unsynced = unsynced;
    let meta = Meta { template: Mutex::new(template), intent, component };
    let array = Arc::new(Array::build(newest.name.clone(), legs, layout, Some(meta)));
    for (i, s) in slots.iter().enumerate() {
        let leg = &array.legs[i];
        *leg.uuid.lock() = newest.legs[i];
        if s.is_none() {
            leg.set_health(Health::Dead);
        } else if let Some(r) = newest.recovering.get(i).copied().flatten() {
            leg.start_recovery(r.offset, r.bitmap_only);
            leg.redo_torn_below_checkpoint.store(crashed, std::sync::atomic::Ordering::Release);
        }
    }
    if let (Some((dev, _)), Some(r)) = (replacement, newest.replacement) {
        let leg = &array.legs[r.slot as usize];
        leg.redo_torn_below_checkpoint.store(crashed, std::sync::atomic::Ordering::Release);
        *leg.replacement_uuid.lock() = r.uuid;
        leg.replacement_offset.store(r.offset, std::sync::atomic::Ordering::Release);
        leg.set_replacement(Some(dev));
    }
    array.restore_spares(&newest.spared);
    if let Some(s) = array.undecodable_stripe() {
        return Err(CreateError::Refused(format!(
            "not enough legs to start the array: stripe {s} cannot be read with legs {} missing or not in sync",
            array.legs.iter().enumerate().filter(|(_, l)| !l.is_alive()).map(|(i, _)| i.to_string()).collect::<Vec<_>>().join(", ")
        )));
    }
    array.set_clean(!newest.dirty);
    for (dev, sb) in &lagging {
        if let Err(e) = store::write_superblock(&**dev, sb) {
            tracing::warn!(array = %newest.name, "{e}: catching up to generation {} failed", newest.generation);
        }
    }
    array.write_superblocks(None)?;
    // Every member gets the reloaded states (Dirty became NeedSync).
    array.intent_persist_all()?;
    Ok(Assembled { array, report, needs_sync, bitmap_note })
}
