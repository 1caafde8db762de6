use super::*;
use crate::meta::area;
use crate::meta::superblock::{Recovery, Replacement};

pub(crate) const LEG: u64 = 16 << 20;
const CHUNK_SECTORS: u32 = 8;

/// A superblock as `create` writes it for slot 1 of three 16 MiB legs.
pub(crate) fn honest() -> Superblock {
    let a = area::plan(&[LEG; 3], 30_000, area::REGION_TARGET);
    let chunks = (LEG - a.data_offset) / 4096;
    Superblock {
        array_uuid: [1; 16],
        name: "tank".into(),
        leg_uuid: [3; 16],
        leg_index: 1,
        legs: vec![[2; 16], [3; 16], [4; 16]],
        failed: vec![false; 3],
        spared: vec![None; 3],
        recovering: vec![None; 3],
        replacement: None,
        leg_sizes: vec![chunks; 3],
        generation: 7,
        dirty: false,
        unsynced: false,
        events_cleared: 1,
        chunk_sectors: CHUNK_SECTORS,
        data_offset: a.data_offset,
        leg_chunks: chunks,
        layout_name: "raid5".into(),
        args: String::new(),
        component_sha256: [9; 32],
        component_offset: a.component_offset,
        component_len: a.component_len,
        bitmap_offset: area::BITMAP_OFFSET,
        bitmap_bytes: a.bitmap_bytes,
        region_stripes: 8192,
        regions: 1,
        created: 1,
        updated: 2,
        reshape: None,
    }
}

/// `honest` in the middle of a reshape to raid6 over one more leg: the new
/// component after the old one, the new data 256 KiB before the old.
pub(crate) fn reshaping() -> Superblock {
    let mut sb = honest();
    sb.legs.push([5; 16]);
    sb.failed.push(false);
    sb.spared.push(None);
    sb.recovering.push(None);
    sb.leg_sizes.push(sb.leg_chunks);
    let component_offset = (sb.component_offset + sb.component_len).div_ceil(4096) * 4096;
    sb.reshape = Some(crate::meta::superblock::Reshape {
        layout_name: "raid6".into(),
        args: "left-symmetric".into(),
        chunk_sectors: 128,
        data_offset: sb.data_offset - (256 << 10),
        component_sha256: [8; 32],
        component_offset,
        component_len: 40_000,
        old_slots: 3,
        position: 6 << 20,
        new_slots: 0,
    });
    sb
}

fn reshape_refused(field: &str, change: impl FnOnce(&mut crate::meta::superblock::Reshape)) {
    let mut sb = reshaping();
    change(sb.reshape.as_mut().unwrap());
    match sb.check_on(LEG) {
        Err(SuperblockError::Invalid { field: f, .. }) => assert_eq!(f, field),
        other => panic!("{field}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_reshape_record_is_bounded_like_the_geometry_it_leads_to() {
    reshaping().check_on(LEG).unwrap();
    reshape_refused("reshape.layout_name", |r| r.layout_name.clear());
    reshape_refused("reshape.chunk_sectors", |r| r.chunk_sectors = 0);
    reshape_refused("reshape.chunk_sectors", |r| r.chunk_sectors = MAX_CHUNK_SECTORS + 1);
    reshape_refused("reshape.old_slots", |r| r.old_slots = 0);
    reshape_refused("reshape.old_slots", |r| r.old_slots = 5);
    // Removing legs while adding them, or all of them.
    reshape_refused("reshape.new_slots", |r| r.new_slots = 2);
    reshape_refused("reshape.new_slots", |r| {
        r.old_slots = 4;
        r.new_slots = 4;
    });
    // Data moves towards the start, never into the metadata.
    reshape_refused("reshape.data_offset", |r| r.data_offset += 512 << 10);
    reshape_refused("reshape.data_offset", |r| r.data_offset -= 1);
    reshape_refused("reshape.data_offset", |r| r.data_offset = 8192);
    reshape_refused("reshape.component_len", |r| r.component_len = 0);
    reshape_refused("reshape.component_len", |r| r.component_len = MAX_COMPONENT_BYTES + 1);
    // The new component overlapping the old one, the bitmap, or the new data.
    let old = honest();
    reshape_refused("reshape.component_offset", |r| r.component_offset = old.component_offset + 4096);
    reshape_refused("reshape.component_offset", |r| r.component_offset = area::BITMAP_OFFSET);
    reshape_refused("reshape.component_offset", |r| r.component_offset = r.data_offset - 4096);
    reshape_refused("reshape.component_offset", |r| r.component_offset = u64::MAX - 10);
    // Its position is judged against the new layout once proven.
    let sb = reshaping();
    sb.check_reshape_position(3 * 65536, 1 << 30).unwrap();
    assert!(sb.check_reshape_position(5 * 65536, 1 << 30).is_err());
    assert!(sb.check_reshape_position(3 * 65536, 1 << 20).is_err());
}

/// `change` makes the block refused by `check_on(device)`, naming `field`.
fn refused(field: &str, device: u64, change: impl FnOnce(&mut Superblock)) {
    let mut sb = honest();
    change(&mut sb);
    match sb.check_on(device) {
        Err(e @ SuperblockError::Invalid { field: f, .. }) => {
            assert_eq!(f, field, "{e}");
            assert!(e.to_string().starts_with(&format!("superblock field {field}: ")), "{e}");
        }
        other => panic!("{field}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn what_create_writes_passes() {
    honest().check_on(LEG).unwrap();
    let mut spared = honest();
    spared.failed[0] = true;
    spared.spared[0] = Some(0);
    spared.recovering[2] = Some(Recovery { offset: 5, bitmap_only: true });
    spared.replacement = Some(Replacement { slot: 1, uuid: [5; 16], offset: 3 });
    spared.check_on(LEG).unwrap();
}

#[test]
fn a_slot_claiming_more_than_the_device_holds_is_refused() {
    // The device shrank (or the block lies) by one chunk.
    refused("leg_sizes", LEG - 4096, |_| {});
    refused("leg_sizes", LEG, |sb| sb.leg_sizes[1] += 1);
    // Only this leg's own slot is measured against this device.
    let mut other = honest();
    other.leg_sizes[2] += 1;
    other.check_on(LEG).unwrap();
}

#[test]
fn sizes_that_overflow_are_refused() {
    refused("leg_sizes", LEG, |sb| sb.leg_sizes[0] = u64::MAX / 4096);
    refused("leg_chunks", LEG, |sb| sb.leg_chunks = sb.leg_sizes[0] + 1);
}

#[test]
fn data_offset_is_bounded_by_the_device_and_the_metadata() {
    refused("data_offset", LEG, |sb| sb.data_offset = LEG + 4096);
    refused("data_offset", LEG, |sb| sb.data_offset += 512);
    refused("data_offset", LEG, |sb| sb.data_offset = 4096);
}

#[test]
fn chunk_size_is_bounded() {
    refused("chunk_sectors", LEG, |sb| sb.chunk_sectors = 0);
    refused("chunk_sectors", LEG, |sb| sb.chunk_sectors = MAX_CHUNK_SECTORS + 1);
}

#[test]
fn the_bitmap_fits_its_regions_and_the_metadata_area() {
    refused("regions", LEG, |sb| sb.regions = MAX_REGIONS + 1);
    refused("bitmap_bytes", LEG, |sb| sb.regions = 4096 * 4);
    // Past the bound though the metadata area would hold it.
    refused("bitmap_bytes", 1 << 30, |sb| {
        sb.bitmap_bytes = copy_bytes(MAX_REGIONS) + 4096;
        sb.data_offset = 512 << 20;
    });
    refused("bitmap_bytes", LEG, |sb| sb.bitmap_bytes += 100);
    refused("bitmap_bytes", LEG, |sb| sb.bitmap_offset = sb.data_offset - 4096);
    refused("bitmap_offset", LEG, |sb| sb.bitmap_offset = 4096);
    refused("bitmap_offset", LEG, |sb| sb.bitmap_offset += 1);
    refused("region_stripes", LEG, |sb| sb.region_stripes = 0);
}

#[test]
fn the_component_lies_between_the_bitmap_and_the_data() {
    refused("component_len", LEG, |sb| sb.component_len = 0);
    refused("component_len", LEG, |sb| sb.component_len = MAX_COMPONENT_BYTES + 1);
    refused("component_offset", LEG, |sb| sb.component_offset = sb.data_offset - 100);
    refused("component_offset", LEG, |sb| sb.component_offset = u64::MAX - 10);
    refused("component_offset", LEG, |sb| sb.component_offset = 0);
    refused("component_offset", LEG, |sb| sb.component_offset = sb.bitmap_offset + 4096);
}

#[test]
fn slot_tables_are_consistent() {
    refused("leg_index", LEG, |sb| sb.leg_index = 3);
    refused("legs", LEG, |sb| {
        sb.leg_sizes.pop();
    });
    refused("legs", LEG, |sb| {
        for _ in 0..MAX_LEGS {
            sb.legs.push([7; 16]);
            sb.failed.push(false);
            sb.spared.push(None);
            sb.recovering.push(None);
            sb.leg_sizes.push(1);
        }
    });
    refused("recovering", LEG, |sb| {
        sb.failed[0] = true;
        sb.recovering[0] = Some(Recovery { offset: 0, bitmap_only: false });
    });
    refused("spared", LEG, |sb| sb.spared[0] = Some(0));
    refused("spared", LEG, |sb| {
        sb.failed = vec![true, false, true];
        sb.spared = vec![Some(1), None, Some(1)];
    });
    refused("replacement", LEG, |sb| sb.replacement = Some(Replacement { slot: 3, uuid: [5; 16], offset: 0 }));
    refused("replacement", LEG, |sb| sb.replacement = Some(Replacement { slot: 0, uuid: [2; 16], offset: 0 }));
    refused("replacement", LEG, |sb| sb.replacement = Some(Replacement { slot: 0, uuid: [0; 16], offset: 0 }));
}

#[test]
fn names_are_bounded_and_printable() {
    refused("name", LEG, |sb| sb.name = "x".repeat(NAME_MAX + 1));
    refused("name", LEG, |sb| sb.name = "tank\u{1b}[2J".into());
    refused("layout_name", LEG, |sb| sb.layout_name = "l".repeat(NAME_MAX + 1));
    refused("args", LEG, |sb| sb.args = "a".repeat(ARGS_MAX + 1));
}

#[test]
fn the_proven_layout_bounds_regions_checkpoints_and_spares() {
    let sb = honest();
    sb.check_layout(8192, 0).unwrap();
    let field = |sb: &Superblock, stripes, spares| match sb.check_layout(stripes, spares) {
        Err(SuperblockError::Invalid { field, .. }) => field,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(field(&sb, 8193, 0), "regions");
    let mut r = honest();
    r.recovering[0] = Some(Recovery { offset: 8193, bitmap_only: false });
    assert_eq!(field(&r, 8192, 0), "recovering");
    r = honest();
    r.replacement = Some(Replacement { slot: 0, uuid: [5; 16], offset: 9000 });
    assert_eq!(field(&r, 8192, 0), "replacement");
    r = honest();
    r.failed[2] = true;
    r.spared[2] = Some(1);
    assert_eq!(field(&r, 8192, 1), "spared");
    r.check_layout(8192, 2).unwrap();
}

#[test]
fn geometry_is_the_same_on_every_leg() {
    let a = honest();
    let mut b = Superblock { leg_index: 2, leg_uuid: [4; 16], generation: 99, dirty: true, ..honest() };
    assert_eq!(a.geometry_differs(&b), None, "per-leg and per-generation fields may differ");
    b.leg_sizes[0] -= 1;
    assert_eq!(a.geometry_differs(&b), Some("leg_sizes"));
    let c = Superblock { component_sha256: [0; 32], ..honest() };
    assert_eq!(a.geometry_differs(&c), Some("component_sha256"));
    // A reshape's position moves with generations; its target does not.
    let (d, mut e) = (reshaping(), reshaping());
    e.reshape.as_mut().unwrap().position += 65536;
    assert_eq!(d.geometry_differs(&e), None);
    e.reshape.as_mut().unwrap().chunk_sectors = 256;
    assert_eq!(d.geometry_differs(&e), Some("reshape"));
}
