//! Redundancy that survives real life: the scenarios md, lvm2 and
//! dm-raid test (see reliability.md), against self-describing arrays on
//! file legs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wasmraid::array::Array;
use wasmraid::array::create::{AssembleOptions, CreateOptions, assemble, create};
use wasmraid::array::sync::{RecoverScope, SyncAction};
use wasmraid::device::BlockDevice;
use wasmraid::device::file::{FileLeg, OpenFlags};
use wasmraid::meta::{store, superblock::BLOCK};
use wasmraid_tests::{BadRange, sandbox};

const CHUNK: u32 = 8; // 4 KiB chunks keep arrays small and stripes many

struct Rig {
    dir: tempfile::TempDir,
    paths: Vec<PathBuf>,
}

fn rig(layout: &str, legs: usize, size: u64, args: &str, assume_clean: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (0..legs).map(|i| dir.path().join(format!("leg{i}"))).collect();
    for p in &paths {
        FileLeg::create(p, size).unwrap();
    }
    let devs = open(&paths);
    let o = CreateOptions {
        name: "t".into(),
        component: wasmraid::builtins::find(layout).unwrap().to_vec(),
        chunk_sectors: CHUNK,
        args: args.into(),
        assume_clean,
        force: false,
        bitmap_chunk: None,
    };
    create(&devs, &sandbox(), &o).unwrap();
    Rig { dir, paths }
}

fn open(paths: &[PathBuf]) -> Vec<Arc<dyn BlockDevice>> {
    paths.iter().map(|p| Arc::new(FileLeg::open(p, OpenFlags::default()).unwrap()) as Arc<dyn BlockDevice>).collect()
}

fn options(force: bool) -> AssembleOptions {
    AssembleOptions { name: None, force, daemon_sleep: Duration::from_millis(50) }
}

fn up(paths: &[PathBuf]) -> Arc<Array> {
    let a = assemble(open(paths), &sandbox(), &options(false)).unwrap();
    a.array
}

/// Deterministic bytes for offset `at`, generation `g`.
fn pattern(at: u64, len: usize, g: u8) -> Vec<u8> {
    (0..len as u64).map(|i| (((at + i) / 512) as u8).wrapping_mul(31).wrapping_add(g).wrapping_add(((at + i) % 512) as u8)).collect()
}

fn fill(a: &Array, g: u8) -> Vec<u8> {
    let size = a.size() as usize;
    let data = pattern(0, size, g);
    a.write(&data, 0, false).unwrap();
    data
}

fn read_all(a: &Array) -> Vec<u8> {
    let mut buf = vec![0u8; a.size() as usize];
    a.read(&mut buf, 0).unwrap();
    buf
}

fn check(a: &Arc<Array>) -> u64 {
    a.start_sync(SyncAction::Check, None).unwrap();
    a.sync.wait();
    a.sync.mismatches.load(Ordering::Relaxed)
}

fn wait_idle(a: &Arc<Array>) {
    a.sync.wait();
    assert_eq!(a.sync.action(), SyncAction::Idle);
}

#[test]
fn fail_during_initial_sync_then_remove_and_readd() {
    // Legs full of garbage, not assumed clean: every region is synced when
    // first written.
    let r = rig("raid5", 4, 8 << 20, "", false);
    for p in &r.paths {
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&vec![0xee; 4 << 20], 3 << 20).unwrap();
    }
    let a = up(&r.paths);
    let data = fill(&a, 1);
    a.start_sync(SyncAction::Resync, None).unwrap();
    a.fail_leg(2, "test: failed during the initial sync");
    wait_idle(&a);
    assert_eq!(read_all(&a), data, "degraded reads after the interrupted sync");
    a.leg_remove(2).unwrap();
    let dev = open(&r.paths[2..3]).remove(0);
    let (slot, _) = a.leg_readd(dev).unwrap();
    assert_eq!(slot, 2);
    wait_idle(&a);
    assert_eq!(a.health_chars(), "AAAA");
    a.start_sync(SyncAction::Resync, None).unwrap();
    wait_idle(&a);
    assert_eq!(check(&a), 0);
    assert_eq!(read_all(&a), data);
}

#[test]
fn a_new_leg_of_a_mostly_empty_array_is_rebuilt_sparsely() {
    let r = rig("raid5", 4, 64 << 20, "", true);
    let a = up(&r.paths);
    let size = a.size();
    // 6 MiB written of a 192 MiB array; the rest never written (holes).
    let written = pattern(8 << 20, 6 << 20, 9);
    a.write(&written, 8 << 20, false).unwrap();
    a.fail_leg(2, "test: gone for good");
    a.leg_remove(2).unwrap();
    let new = r.dir.path().join("new");
    FileLeg::create(&new, 64 << 20).unwrap();
    a.leg_add(Some(2), open(&[new]).remove(0)).unwrap();
    wait_idle(&a);
    assert_eq!(a.health_chars(), "AAAA");
    let moved = a.sync.last_bytes.load(Ordering::Relaxed);
    println!("rebuild of a leg of a {size}-byte array with 6 MiB written moved {moved} bytes");
    assert!(moved < size / 10, "stripes whose sources are all holes are zeroed in place, not computed: moved {moved} of {size}");
    let mut expected = vec![0u8; size as usize];
    expected[8 << 20..14 << 20].copy_from_slice(&written);
    assert_eq!(read_all(&a), expected);
    assert_eq!(check(&a), 0, "parity agrees everywhere after the sparse rebuild");
    // The new leg alone (another one failed) still gives the data back.
    a.fail_leg(0, "test");
    assert_eq!(read_all(&a), expected);
}

#[test]
fn replace_while_another_leg_fails() {
    let r = rig("raid6", 6, 16 << 20, "", true);
    let a = up(&r.paths);
    a.sync.rate_limit.store(16 << 20, Ordering::Relaxed);
    let data = fill(&a, 2);
    let new = r.dir.path().join("new");
    FileLeg::create(&new, 16 << 20).unwrap();
    a.leg_replace(0, open(&[new.clone()]).remove(0)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    a.fail_leg(3, "test: failed during the replacement");
    wait_idle(&a);
    assert!(a.legs()[0].device().describe().ends_with("new"), "replacement swapped in: {}", a.legs()[0].device().describe());
    assert_eq!(a.health_chars(), "AAADAA");
    assert_eq!(read_all(&a), data);
}

#[test]
fn readd_with_no_writes_does_not_resync() {
    let r = rig("raid1", 2, 16 << 20, "", true);
    let a = up(&r.paths);
    let data = fill(&a, 3);
    a.flush_legs().unwrap();
    a.fail_leg(1, "test");
    let (_, scope) = a.leg_readd(open(&r.paths[1..2]).remove(0)).unwrap();
    wait_idle(&a);
    assert_eq!(scope, RecoverScope::Bitmap);
    assert_eq!(a.sync.last_bytes.load(Ordering::Relaxed), 0, "nothing was written while away: nothing to move");
    assert_eq!(read_all(&a), data);
}

#[test]
fn readd_after_degraded_writes_syncs_only_those_regions_and_legs_compare_equal() {
    let r = rig("raid1", 2, 1 << 30, "", true);
    let a = up(&r.paths);
    a.write(&pattern(0, 8 << 20, 4), 0, false).unwrap();
    a.fail_leg(1, "test");
    // Writes while away: 1 MiB in one 64 MiB region.
    a.write(&pattern(70 << 20, 1 << 20, 9), 70 << 20, false).unwrap();
    let (_, scope) = a.leg_readd(open(&r.paths[1..2]).remove(0)).unwrap();
    wait_idle(&a);
    assert_eq!(scope, RecoverScope::Bitmap);
    let moved = a.sync.last_bytes.load(Ordering::Relaxed);
    let region = 64 << 20;
    assert!(moved > 0 && moved <= 2 * region, "moved {moved} bytes for one region of {region}");
    assert!(moved < a.size() / 2, "bitmap recovery must not copy the whole array");
    a.flush_legs().unwrap();
    let (l0, l1) = (std::fs::read(&r.paths[0]).unwrap(), std::fs::read(&r.paths[1]).unwrap());
    let offset = store::read_superblock(&*open(&r.paths[..1])[0]).unwrap().data_offset as usize;
    assert!(l0[offset..] == l1[offset..], "the two mirrors differ after recovery");
}

#[test]
fn stop_and_assemble_with_the_bitmap() {
    let r = rig("raid5", 4, 16 << 20, "", true);
    let a = up(&r.paths);
    let data = fill(&a, 5);
    a.shutdown().unwrap();
    drop(a);
    let again = assemble(open(&r.paths), &sandbox(), &options(false)).unwrap();
    assert_eq!(again.needs_sync, 0, "a clean stop leaves nothing to resync");
    assert_eq!(read_all(&again.array), data);
}

#[test]
fn unclean_stop_resyncs_only_dirty_regions() {
    let r = rig("raid5", 4, 200 << 20, "", true);
    let a = up(&r.paths);
    // Two writes in two 64 MiB regions, then the process "dies" (no
    // shutdown), with parity torn in one of them.
    a.write(&pattern(1 << 20, 1 << 20, 6), 1 << 20, false).unwrap();
    a.write(&pattern(300 << 20, 1 << 20, 6), 300 << 20, false).unwrap();
    let size = a.size();
    drop(a);
    let sb = store::read_superblock(&*open(&r.paths[..1])[0]).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&r.paths[3]).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[0x77; 4096], sb.data_offset + (1 << 20) / 3).unwrap();
    let again = assemble(open(&r.paths), &sandbox(), &options(false)).unwrap();
    assert_eq!(again.needs_sync, 2, "exactly the two dirty regions");
    let a = again.array;
    a.start_sync(SyncAction::Resync, None).unwrap();
    wait_idle(&a);
    let moved = a.sync.last_bytes.load(Ordering::Relaxed);
    println!("resync after a crash: {moved} bytes moved for 2 MiB written, array of {size} bytes");
    assert!(moved < size / 2, "resync moved {moved} of {size}");
    assert_eq!(check(&a), 0);
}

/// The health flags (`wasmraid:health`) covering byte `at` of the array.
fn health_at(a: &Array, at: u64) -> u32 {
    let mut out = Vec::new();
    a.block_status(at, 4096, &mut out).expect("block status");
    out.first().map_or(0, |e| e.health)
}

#[test]
fn a_crash_leaves_its_dirty_regions_reported_as_needing_resync_until_the_resync() {
    use wasmraid::device::status::NEEDS_RESYNC;
    let r = rig("raid5", 4, 200 << 20, "", true);
    let a = up(&r.paths);
    a.write(&pattern(1 << 20, 1 << 20, 6), 1 << 20, false).unwrap();
    a.write(&pattern(300 << 20, 1 << 20, 6), 300 << 20, false).unwrap();
    drop(a);
    let again = assemble(open(&r.paths), &sandbox(), &options(false)).unwrap();
    assert_eq!(again.needs_sync, 2);
    let a = again.array;
    // 1 MiB and 300 MiB sit in the two dirty regions (64 MiB of each leg:
    // stripes of 192 KiB); 450 MiB is in the third, never written.
    assert_ne!(health_at(&a, 1 << 20) & NEEDS_RESYNC, 0, "a dirty region needs a resync");
    assert_ne!(health_at(&a, 300 << 20) & NEEDS_RESYNC, 0, "a dirty region needs a resync");
    assert_eq!(health_at(&a, 450 << 20), 0, "a region nobody wrote is in sync");
    a.start_sync(SyncAction::Resync, None).unwrap();
    wait_idle(&a);
    for at in [1 << 20, 300 << 20, 450 << 20] {
        assert_eq!(health_at(&a, at), 0, "after the resync, {at} is in sync");
    }
}

#[test]
fn a_bad_sector_range_is_served_from_the_others() {
    let r = rig("raid5", 4, 32 << 20, "", true);
    let a = up(&r.paths);
    let data = fill(&a, 7);
    a.shutdown().unwrap();
    drop(a);
    let mut devs = open(&r.paths);
    devs[1] = Arc::new(BadRange { inner: devs[1].clone(), range: (4 << 20)..(6 << 20), writes_too: false });
    let a = assemble(devs, &sandbox(), &options(false)).unwrap().array;
    assert_eq!(read_all(&a), data, "the bad range is read from the other copy");
    assert_eq!(&a.health_chars()[1..2], "D");
}

#[test]
fn corrupt_parity_is_counted_by_check_and_fixed_by_repair() {
    let r = rig("raid6", 5, 16 << 20, "", true);
    let a = up(&r.paths);
    let data = fill(&a, 8);
    a.flush_legs().unwrap();
    let sb = store::read_superblock(&*open(&r.paths[..1])[0]).unwrap();
    // Stripe 0 of md's left-symmetric raid6 on 5 legs keeps P on leg 4 and
    // Q on leg 0; stripe 1 keeps P on leg 3.
    use std::os::unix::fs::FileExt;
    for (leg, chunk) in [(4usize, 0u64), (0, 0), (3, 1)] {
        let f = std::fs::OpenOptions::new().write(true).open(&r.paths[leg]).unwrap();
        f.write_all_at(&[0x5a; 4096], sb.data_offset + chunk * 4096).unwrap();
    }
    assert_eq!(check(&a), 3);
    a.start_sync(SyncAction::Repair, None).unwrap();
    wait_idle(&a);
    assert_eq!(check(&a), 0);
    assert_eq!(read_all(&a), data);
}

fn corrupt(path: &Path, offset: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(&vec![0xa5; len], offset).unwrap();
}

#[test]
fn one_corrupt_bitmap_copy_is_survived() {
    let r = rig("raid5", 3, 16 << 20, "", true);
    let a = up(&r.paths);
    a.write(&pattern(0, 65536, 1), 0, false).unwrap();
    drop(a);
    let sb = store::read_superblock(&*open(&r.paths[..1])[0]).unwrap();
    for p in &r.paths {
        corrupt(p, sb.bitmap_offset + 20, 12); // copy A of every leg: serial and checksum
    }
    let got = assemble(open(&r.paths), &sandbox(), &options(false)).unwrap();
    assert!(got.bitmap_note.as_deref().is_some_and(|n| n.contains("damaged bitmap copies ignored")), "{:?}", got.bitmap_note);
    assert_eq!(got.needs_sync, 1, "copy B still says which region was dirty");
}

#[test]
fn both_bitmap_copies_corrupt_means_a_full_resync_said_loudly() {
    let r = rig("raid5", 3, 16 << 20, "", true);
    let a = up(&r.paths);
    drop(a);
    let sb = store::read_superblock(&*open(&r.paths[..1])[0]).unwrap();
    for p in &r.paths {
        corrupt(p, sb.bitmap_offset + 20, 12);
        corrupt(p, sb.bitmap_offset + sb.bitmap_bytes + 20, 12);
    }
    let got = assemble(open(&r.paths), &sandbox(), &options(false)).unwrap();
    assert!(got.bitmap_note.as_deref().is_some_and(|n| n.contains("EVERY BITMAP COPY IS INVALID")));
    assert_eq!(got.needs_sync as u64, sb.regions);
}

#[test]
fn a_stale_leg_is_refused_with_a_reason() {
    let r = rig("raid5", 3, 16 << 20, "", true);
    let a = up(&r.paths);
    a.fail_leg(1, "test");
    a.shutdown().unwrap();
    drop(a);
    let got = assemble(open(&r.paths), &sandbox(), &options(false)).unwrap();
    let leg1 = got.report.iter().find(|x| x.device.ends_with("leg1")).unwrap();
    assert!(!leg1.accepted);
    assert!(leg1.reason.contains("stale") || leg1.reason.contains("recorded slot 1 as failed"), "{}", leg1.reason);
    assert_eq!(got.array.health_chars(), "ADA");
}

#[test]
fn a_foreign_leg_is_refused_and_create_will_not_overwrite_it() {
    let a = rig("raid5", 3, 16 << 20, "", true);
    let b = rig("raid5", 3, 16 << 20, "", true);
    let mut mixed = a.paths.clone();
    mixed[2] = b.paths[0].clone();
    let got = assemble(open(&mixed), &sandbox(), &options(false)).unwrap();
    let foreign = got.report.iter().find(|x| !x.accepted).unwrap();
    assert!(foreign.reason.starts_with("foreign"), "{}", foreign.reason);
    let o = CreateOptions {
        name: "u".into(),
        component: wasmraid::builtins::find("raid0").unwrap().to_vec(),
        chunk_sectors: 8,
        args: String::new(),
        assume_clean: true,
        force: false,
        bitmap_chunk: None,
    };
    let e = create(&open(&b.paths), &sandbox(), &o).err().unwrap().to_string();
    assert!(e.contains("already belongs to array 't'"), "{e}");
}

#[test]
fn dirty_and_degraded_parity_array_refuses_to_start_unless_forced() {
    let r = rig("raid5", 3, 16 << 20, "", true);
    let a = up(&r.paths);
    a.write(&pattern(0, 65536, 1), 0, false).unwrap();
    drop(a); // crash: dirty
    let mut devs = open(&r.paths);
    devs.remove(2); // and a leg is missing
    let e = assemble(devs.clone(), &sandbox(), &options(false)).err().unwrap().to_string();
    assert!(e.contains("write hole") && e.contains("--force"), "{e}");
    let forced = assemble(devs, &sandbox(), &options(true)).unwrap();
    assert_eq!(forced.array.health_chars(), "AAD");
}

#[test]
fn a_superblock_copy_torn_mid_write_falls_back_to_the_other() {
    let r = rig("raid1", 2, 8 << 20, "", true);
    corrupt(&r.paths[0], 100, 8); // copy A of leg 0
    let sb = store::read_superblock(&*open(&r.paths[..1])[0]).unwrap();
    assert_eq!(sb.name, "t");
    corrupt(&r.paths[0], BLOCK as u64 + 100, 8); // and copy B
    let e = store::read_superblock(&*open(&r.paths[..1])[0]).unwrap_err().to_string();
    assert!(e.contains("copy A") && e.contains("copy B"), "{e}");
}

#[test]
fn mirror_reads_follow_the_policy() {
    let r = rig("raid1", 3, 16 << 20, "", true);
    let a = up(&r.paths);
    let data = fill(&a, 9);
    let before: Vec<u64> = a.legs().iter().map(|l| l.reads.load(Ordering::Relaxed)).collect();
    std::thread::scope(|s| {
        for t in 0..6 {
            let a = &a;
            let data = &data;
            s.spawn(move || {
                for i in 0..200u64 {
                    let at = ((i * 7 + t * 13) % 2000) * 4096;
                    let mut buf = vec![0u8; 4096];
                    a.read(&mut buf, at).unwrap();
                    assert_eq!(&buf[..], &data[at as usize..at as usize + 4096]);
                }
            });
        }
    });
    let used = a.legs().iter().zip(&before).filter(|(l, b)| l.reads.load(Ordering::Relaxed) > **b).count();
    assert!(used >= 2, "least-outstanding reads should spread over the mirrors");
    a.set_read_policy(wasmraid::array::ReadPolicy::Nearest);
    let mut buf = vec![0u8; 4096];
    for i in 0..50u64 {
        a.read(&mut buf, i * 4096).unwrap();
    }
    assert_eq!(read_all(&a), data);
}

#[test]
fn bitmap_clears_lazily_and_batches_sequential_writes() {
    let r = rig("raid5", 3, 64 << 20, "", true);
    let a = up(&r.paths);
    let persisted = |a: &Array| a.meta.as_ref().unwrap().intent.persisted.load(Ordering::Relaxed);
    let start = persisted(&a);
    for i in 0..256u64 {
        a.write(&pattern(i * 4096, 4096, 1), i * 4096, false).unwrap();
    }
    assert_eq!(persisted(&a) - start, 1, "256 writes in one region cost one bitmap update");
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(a.bitmap_daemon().unwrap(), 1, "the idle region is cleared by the daemon");
    assert_eq!(a.bitmap_daemon().unwrap(), 0);
}

#[test]
fn a_dead_leg_is_rebuilt_into_distributed_spares_by_every_leg_and_survives_assemble() {
    // draid p=2 s=1 and pyramid "elegant" (2 losses, 1 spare): after the
    // spare rebuild the array again survives two more losses.
    for (layout, legs, args, more) in [("draid", 8usize, "p=2 s=1", [5usize, 6]), ("pyramid", 14, "", [7, 12])] {
        let r = rig(layout, legs, 4 << 20, args, true);
        let a = up(&r.paths);
        let data = fill(&a, 5);
        a.fail_leg(2, "test");
        let before: Vec<(u64, u64)> = a.legs().iter().map(|l| (l.reads.load(Ordering::Relaxed), l.writes.load(Ordering::Relaxed))).collect();
        assert_eq!(a.start_spare_rebuild_if_needed(), Some((2, 0)), "{layout}");
        wait_idle(&a);
        let last = a.sync.last_result.lock().clone().unwrap_or_default();
        assert!(last.starts_with("recover finished"), "{layout}: {last}");
        assert_eq!(a.spare_of(2), Some(0));
        for (i, l) in a.legs().iter().enumerate().filter(|(i, _)| *i != 2) {
            assert!(l.reads.load(Ordering::Relaxed) > before[i].0, "{layout}: leg {i} was not read by the rebuild");
            assert!(l.writes.load(Ordering::Relaxed) > before[i].1, "{layout}: leg {i} took no spare chunk");
        }
        assert_eq!(a.start_spare_rebuild_if_needed(), None, "{layout}: the only spare is in use");
        assert_eq!(read_all(&a), data, "{layout}: data after the spare rebuild");
        assert_eq!(check(&a), 0, "{layout}");
        // Writes now land in the spares.
        let half = pattern(0, a.size() as usize / 2, 9);
        a.write(&half, 0, false).unwrap();
        let mut expect = data.clone();
        expect[..half.len()].copy_from_slice(&half);
        a.shutdown().unwrap();
        drop(a);

        // Assembled without leg 2 and two more legs: the superblocks
        // remember the spare, and the array survives two more losses.
        let rest: Vec<PathBuf> = r.paths.iter().enumerate().filter(|(i, _)| *i != 2 && !more.contains(i)).map(|(_, p)| p.clone()).collect();
        let b = up(&rest);
        assert_eq!(b.spare_of(2), Some(0), "{layout}: spare use lost at assemble");
        assert_eq!(b.dead_legs(), 3);
        assert_eq!(read_all(&b), expect, "{layout}: two more losses after the spare rebuild");
        b.shutdown().unwrap();
        drop(b);
        // The two come back (re-added: they missed nothing), then a new
        // leg in slot 2 takes its chunks back from the stripes.
        let c = up(&r.paths);
        for leg in more {
            let dev: Arc<dyn BlockDevice> = Arc::new(FileLeg::open(&r.paths[leg], OpenFlags::default()).unwrap());
            c.leg_readd(dev).unwrap();
            wait_idle(&c);
        }
        assert_eq!(c.spare_of(2), Some(0));
        let new = r.dir.path().join("new2");
        FileLeg::create(&new, 4 << 20).unwrap();
        let dev: Arc<dyn BlockDevice> = Arc::new(FileLeg::open(&new, OpenFlags::default()).unwrap());
        c.leg_add(Some(2), dev).unwrap();
        wait_idle(&c);
        assert_eq!(c.spare_of(2), None);
        assert_eq!(c.health_chars(), "A".repeat(legs));
        assert_eq!(read_all(&c), expect);
        assert_eq!(check(&c), 0, "{layout} after the new leg");
    }
}

/// Rewrite a leg's superblock (both copies) as `change` makes it.
fn rewrite_superblock(path: &Path, change: impl FnOnce(&mut wasmraid::meta::superblock::Superblock)) {
    let dev = open(&[path.to_path_buf()]).remove(0);
    let mut sb = store::read_superblock(&*dev).unwrap();
    change(&mut sb);
    store::write_superblock(&*dev, &sb).unwrap();
}

fn generation(path: &Path) -> u64 {
    store::read_superblock(&*open(&[path.to_path_buf()])[0]).unwrap().generation
}

#[test]
fn a_leg_lying_about_its_generation_is_a_contradiction_not_the_truth() {
    let r = rig("raid1", 3, 16 << 20, "", true);
    let a = up(&r.paths);
    let data = fill(&a, 3);
    a.shutdown().unwrap();
    drop(a);
    let honest = generation(&r.paths[1]);
    // Leg 0 claims a hundred generations nobody else saw, and still says
    // legs 1 and 2 are in sync: an array writes every in-sync leg's
    // superblock at each generation, so that cannot be.
    rewrite_superblock(&r.paths[0], |sb| sb.generation += 100);
    let e = assemble(open(&r.paths), &sandbox(), &options(false)).err().expect("refused").to_string();
    let (liar, leg1) = (r.paths[0].display().to_string(), r.paths[1].display().to_string());
    assert!(e.contains("contradict"), "{e}");
    assert!(
        e.contains(&format!("{liar} (generation {}) records slot 1 as in sync, but {leg1}, the leg in slot 1, is at generation {honest}", honest + 100)),
        "{e}"
    );
    assert!(e.contains("--force"), "{e}");
    // --force trusts the freshest and says what it left out.
    let forced = assemble(open(&r.paths), &sandbox(), &options(true)).unwrap();
    assert_eq!(forced.array.health_chars(), "ADD");
    let out = forced.report.iter().find(|x| x.device.ends_with("leg1")).unwrap();
    assert!(!out.accepted && out.reason.contains("left out by --force"), "{}", out.reason);
    assert_eq!(read_all(&forced.array), data);
}

#[test]
fn a_legit_degraded_run_leaves_the_lost_leg_far_behind_and_assembles() {
    let r = rig("raid1", 3, 16 << 20, "", true);
    let a = up(&r.paths);
    let data = fill(&a, 4);
    a.fail_leg(2, "test: lost");
    for _ in 0..5 {
        a.write_superblocks(None).unwrap();
    }
    a.shutdown().unwrap();
    drop(a);
    assert!(generation(&r.paths[2]) + 1 < generation(&r.paths[0]), "the survivors are far newer");
    let got = assemble(open(&r.paths), &sandbox(), &options(false)).unwrap();
    assert_eq!(got.array.health_chars(), "AAD");
    let lost = got.report.iter().find(|x| x.device.ends_with("leg2")).unwrap();
    // Left out as any stale leg is (re-add brings it back), not as a
    // contradiction: the survivors' superblocks record it failed.
    assert!(!lost.accepted && lost.reason.starts_with("stale"), "{}", lost.reason);
    assert_eq!(read_all(&got.array), data);
}

/// A power cut shared by legs: superblock writes (the first 8 KiB) pass
/// until `left` runs out, then vanish as a crash would lose them.
struct PowerCut {
    inner: Arc<dyn BlockDevice>,
    left: Arc<std::sync::atomic::AtomicI64>,
}

impl BlockDevice for PowerCut {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> std::io::Result<()> {
        if offset < 2 * BLOCK as u64 && self.left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Ok(());
        }
        self.inner.write_at(buf, offset, fua)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.inner.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.inner.discard(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> std::io::Result<()> {
        self.inner.write_zeroes(offset, len, fua)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[test]
fn a_crash_while_assembling_after_a_crash_leaves_every_leg_within_the_margin() {
    let r = rig("raid1", 3, 16 << 20, "", true);
    let a = up(&r.paths);
    a.shutdown().unwrap();
    drop(a);
    // A crash while generation G was written: legs 0 and 1 have it, leg 2
    // is one behind (accepted: the margin of one).
    let g = generation(&r.paths[0]);
    rewrite_superblock(&r.paths[2], |sb| sb.generation = g - 1);
    // Assemble, and the power fails after four superblock copies (two
    // legs' worth): caught up first, leg 2 has G and leg 0 alone G + 1;
    // without that, legs 0 and 1 would have G + 1 and leg 2 be left two
    // behind, which reads as a contradiction.
    let left = Arc::new(std::sync::atomic::AtomicI64::new(4));
    let devs: Vec<Arc<dyn BlockDevice>> =
        open(&r.paths).into_iter().map(|inner| Arc::new(PowerCut { inner, left: left.clone() }) as Arc<dyn BlockDevice>).collect();
    drop(assemble(devs, &sandbox(), &options(false)).unwrap());
    let got = assemble(open(&r.paths), &sandbox(), &options(false)).unwrap();
    assert!(got.report.iter().all(|x| x.accepted), "{:?}", got.report);
    assert_eq!(got.array.health_chars(), "AAA");
}

#[test]
fn a_superblock_claiming_a_leg_larger_than_its_device_is_refused() {
    let r = rig("raid5", 3, 16 << 20, "", true);
    let a = up(&r.paths);
    let data = fill(&a, 6);
    a.shutdown().unwrap();
    drop(a);
    // Leg 2's device lost its last MiB (a smaller disk, a truncated image):
    // its superblock still claims the old size.
    std::fs::OpenOptions::new().write(true).open(&r.paths[2]).unwrap().set_len(15 << 20).unwrap();
    let got = assemble(open(&r.paths), &sandbox(), &options(false)).unwrap();
    let leg2 = got.report.iter().find(|x| x.device.ends_with("leg2")).unwrap();
    assert!(!leg2.accepted, "{}", leg2.reason);
    assert!(
        leg2.reason.starts_with(&format!("{}: superblock field leg_sizes: slot 2 claims", r.paths[2].display()))
            && leg2.reason.contains("the device holds 15728640"),
        "{}",
        leg2.reason
    );
    assert_eq!(got.array.health_chars(), "AAD");
    assert_eq!(read_all(&got.array), data);
}

/// Legs whose superblocks record a reshape under way are not assembled
/// through the old layout alone (half the data would read wrong): the
/// move goes on first, and here, the new component being forged, fails
/// saying where the reshape stands.
#[test]
fn legs_recording_a_reshape_are_not_read_through_one_layout() {
    let r = rig("raid5", 4, 16 << 20, "", true);
    for dev in open(&r.paths) {
        let mut sb = store::read_superblock(&*dev).unwrap();
        let component_offset = (sb.component_offset + sb.component_len).div_ceil(4096) * 4096;
        sb.generation += 1;
        sb.reshape = Some(wasmraid::meta::superblock::Reshape {
            layout_name: "raid6".into(),
            args: String::new(),
            chunk_sectors: CHUNK,
            data_offset: sb.data_offset - 4096,
            component_sha256: [1; 32],
            component_offset,
            component_len: 4096,
            old_slots: 4,
            position: 1 << 20,
            new_slots: 0,
        });
        store::write_superblock(&*dev, &sb).unwrap();
    }
    let e = assemble(open(&r.paths), &sandbox(), &options(true)).err().expect("refused");
    let text = e.to_string();
    assert!(text.contains("records a reshape of 't' to raid6") && text.contains("at byte 1048576"), "{text}");
}
