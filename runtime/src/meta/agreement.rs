//! Whether two superblocks of one array can both be true.
//!
//! Assemble takes the freshest superblock (highest generation) as the
//! array's state, as md takes the freshest event count. That lets one leg
//! that claims a higher generation than it has speak for the array: alone
//! it would have the honest legs refused as stale. Two facts of a real
//! array bound what the freshest may say about the others:
//!
//! - Every leg the array counts in sync gets the superblock of every
//!   generation (`Array::write_superblocks` writes each writable leg, and
//!   a leg whose write fails is recorded failed in the next generation).
//!   Legs are written one after the other, so a crash leaves them at most
//!   one generation apart (the margin assemble accepts). So a slot the
//!   freshest block says is in sync, held by the very leg it names, can
//!   never be two or more generations behind. A legit degraded run makes
//!   the survivors far newer than a lost leg, but their superblocks then
//!   record that leg failed (or, re-added, recovering): no contradiction.
//! - The geometry (chunk size, data offset, leg sizes, component, bitmap
//!   placement and regions) is fixed at `create` and the same on every leg.
//!
//! When the two disagree, one of them is wrong (damaged or forged) and
//! nothing on the legs says which: assemble refuses, naming both, and
//! `--force` trusts the freshest.

use super::superblock::Superblock;

/// One leg's superblock and the name of the device it was read from.
pub struct Claim<'a> {
    pub device: &'a str,
    pub sb: &'a Superblock,
}

/// Why `leg` cannot be true if `freshest` is, as one sentence naming both;
/// None when both can. Both belong to the same array.
pub fn contradiction(freshest: &Claim, leg: &Claim) -> Option<String> {
    let (f, l) = (freshest.sb, leg.sb);
    if finished_reshape_behind(f, l) || aborted_reshape_behind(f, l) {
        return None;
    }
    if let Some(field) = f.geometry_differs(l) {
        return Some(format!(
            "{} (generation {}) and {} (generation {}) disagree on {field}, which is the same on every leg of an array",
            leg.device, l.generation, freshest.device, f.generation
        ));
    }
    let slot = l.leg_index as usize;
    let named = f.legs.get(slot).is_some_and(|u| *u == l.leg_uuid);
    let in_sync = !f.failed.get(slot).copied().unwrap_or(true) && f.recovering.get(slot).is_some_and(|r| r.is_none());
    if named && in_sync && l.generation.saturating_add(1) < f.generation {
        return Some(format!(
            "{} (generation {}) records slot {slot} as in sync, but {}, the leg in slot {slot}, is at generation {}: \
             an array writes every in-sync leg's superblock at each generation",
            freshest.device, f.generation, leg.device, l.generation
        ));
    }
    None
}

/// A crash while a reshape's last superblocks were written: `l`, one
/// generation behind, still records the reshape, at its end, to exactly
/// the geometry `f` now describes alone.
fn finished_reshape_behind(f: &Superblock, l: &Superblock) -> bool {
    l.generation + 1 == f.generation
        && f.reshape.is_none()
        && l.reshape.as_ref().is_some_and(|r| {
            let kept = if r.new_slots == 0 { l.legs.len() } else { r.new_slots as usize };
            l.legs.get(..kept) == Some(&f.legs[..])
                && r.layout_name == f.layout_name
                && r.args == f.args
                && r.chunk_sectors == f.chunk_sectors
                && r.data_offset == f.data_offset
                && r.component_sha256 == f.component_sha256
                && r.component_offset == f.component_offset
        })
}

/// A crash while an aborted reshape's superblocks were written: `l`, one
/// generation behind, still records the reshape, at position 0, from
/// exactly the geometry `f` describes, over the same first slots.
fn aborted_reshape_behind(f: &Superblock, l: &Superblock) -> bool {
    let Some(r) = &l.reshape else { return false };
    let old = r.old_slots as usize;
    l.generation + 1 == f.generation
        && f.reshape.is_none()
        && r.position == 0
        && l.legs.get(..old) == Some(&f.legs[..])
        && Superblock { legs: l.legs[..old].to_vec(), leg_sizes: l.leg_sizes[..old].to_vec(), reshape: None, ..l.clone() }.geometry_differs(f).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::validate::tests::honest;

    fn leg(slot: u32, generation: u64) -> Superblock {
        let sb = honest();
        Superblock { leg_index: slot, leg_uuid: sb.legs[slot as usize], generation, ..sb }
    }

    fn says(freshest: &Superblock, other: &Superblock) -> Option<String> {
        contradiction(&Claim { device: "/dev/new", sb: freshest }, &Claim { device: "/dev/old", sb: other })
    }

    #[test]
    fn one_generation_behind_is_a_crash_between_two_legs_writes() {
        assert_eq!(says(&leg(0, 8), &leg(1, 7)), None);
        assert_eq!(says(&leg(0, 8), &leg(1, 8)), None);
    }

    #[test]
    fn an_in_sync_slot_far_behind_contradicts_the_freshest() {
        let e = says(&leg(0, 50), &leg(1, 7)).unwrap();
        assert!(e.starts_with("/dev/new (generation 50) records slot 1 as in sync, but /dev/old, the leg in slot 1, is at generation 7"), "{e}");
    }

    #[test]
    fn a_legit_degraded_run_records_the_lost_leg() {
        // The survivor ran on for 43 generations and says slot 1 failed.
        let mut survivor = leg(0, 50);
        survivor.failed[1] = true;
        assert_eq!(says(&survivor, &leg(1, 7)), None);
        // Re-added later: recovering, its superblock not yet rewritten.
        survivor.failed[1] = false;
        survivor.recovering[1] = Some(crate::meta::superblock::Recovery { offset: 0, bitmap_only: true });
        assert_eq!(says(&survivor, &leg(1, 7)), None);
        // Slot 1 now belongs to another leg: this one was replaced.
        let mut replaced = leg(0, 50);
        replaced.legs[1] = [8; 16];
        assert_eq!(says(&replaced, &leg(1, 7)), None);
    }

    /// `reshaping()` (raid5 over 3 slots to raid6 over 4) at `generation`.
    fn mid_reshape(position: u64, generation: u64) -> Superblock {
        let mut sb = crate::meta::validate::tests::reshaping();
        sb.reshape.as_mut().unwrap().position = position;
        sb.generation = generation;
        sb
    }

    /// What the finish writes: the new geometry alone.
    fn finished(generation: u64) -> Superblock {
        let mut sb = mid_reshape(0, generation);
        let r = sb.reshape.take().unwrap();
        (sb.layout_name, sb.args, sb.chunk_sectors, sb.data_offset) = (r.layout_name, r.args, r.chunk_sectors, r.data_offset);
        (sb.component_sha256, sb.component_offset, sb.component_len) = (r.component_sha256, r.component_offset, r.component_len);
        sb
    }

    #[test]
    fn a_crash_in_a_reshapes_last_write_is_not_a_contradiction() {
        assert_eq!(says(&finished(20), &mid_reshape(1 << 20, 19)), None);
        // Two generations behind, or a reshape to something else, is one.
        assert!(says(&finished(21), &mid_reshape(1 << 20, 19)).is_some());
        let mut other = mid_reshape(1 << 20, 19);
        other.reshape.as_mut().unwrap().chunk_sectors *= 2;
        assert!(says(&finished(20), &other).unwrap().contains("disagree on chunk_sectors"));
    }

    #[test]
    fn a_crash_in_an_abort_is_not_a_contradiction() {
        let mut aborted = crate::meta::validate::tests::honest();
        aborted.generation = 20;
        assert_eq!(says(&aborted, &mid_reshape(0, 19)), None);
        // Past the first window there is nothing to abort: a contradiction.
        assert!(says(&aborted, &mid_reshape(65536, 19)).is_some());
    }

    #[test]
    fn geometry_never_differs_between_legs() {
        let mut other = leg(1, 8);
        other.data_offset += 4096;
        let e = says(&leg(0, 8), &other).unwrap();
        assert!(e.contains("/dev/old (generation 8) and /dev/new (generation 8) disagree on data_offset"), "{e}");
    }
}
