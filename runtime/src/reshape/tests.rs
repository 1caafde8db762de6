//! Reshapes between real built-in layouts on legs in memory: the data read
//! back through the new layout, its parity checked, and a power loss at
//! every durable point (and between them) of a logged move, resumed from
//! the position recorded on the legs.

use super::*;
use crate::array::Array;
use crate::device::BlockDevice;
use crate::device::log_writes::{LoggedLeg, Persist, WriteLog, crash_image, durability_points, splitmix64};
use crate::device::mem::{Image, MemLeg};
use crate::layout::Geometry;
use crate::layout::proven::ProvenLayout;
use crate::sandbox::{LoadedComponent, Sandbox, SandboxConfig, component};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

static SANDBOX: LazyLock<Arc<Sandbox>> = LazyLock::new(|| Sandbox::new(SandboxConfig { cache_dir: None, ..SandboxConfig::default() }).expect("sandbox"));

/// Where the old layout's data starts on every leg; what lies before it
/// stands for the metadata area, its first block for the superblock that
/// records the position.
const OLD_OFFSET: u64 = 64 << 10;
/// Each leg's usable bytes after `OLD_OFFSET`.
const LEG_DATA: u64 = 256 << 10;

/// One side of a reshape: a built-in layout, its arguments, its legs and
/// its chunk.
#[derive(Clone, Copy, Debug)]
struct Side {
    layout: &'static str,
    args: &'static str,
    legs: usize,
    chunk: u64,
}

/// Built-in components, each compiled once.
static LOADED: LazyLock<Mutex<HashMap<&'static str, Arc<LoadedComponent>>>> = LazyLock::new(Default::default);

fn prove(side: Side) -> ProvenLayout {
    let loaded = LOADED
        .lock()
        .entry(side.layout)
        .or_insert_with(|| Arc::new(component::load(&SANDBOX, crate::builtins::find(side.layout).expect("built-in")).expect("load")))
        .clone();
    // The new layout is proven for the room after the old data offset, so
    // moving its start back by the shift never takes the legs' end.
    let g = Geometry { chunk_sectors: (side.chunk / 512) as u32, leg_chunks: vec![LEG_DATA / side.chunk; side.legs], args: side.args.into() };
    ProvenLayout::prove(loaded, g).expect("prove")
}

fn array(name: &str, legs: &[Arc<dyn BlockDevice>], side: Side, offset: u64) -> Array {
    let devices = legs[..side.legs].iter().map(|l| (l.clone(), offset)).collect();
    Array::new(name, devices, prove(side))
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len).map(|_| splitmix64(&mut state) as u8).collect()
}

/// Legs holding `old` filled with known data; returns their images and
/// the data.
fn filled(old: Side, legs: usize, seed: u64) -> (Vec<Image>, Vec<u8>) {
    let mem: Vec<Arc<MemLeg>> = (0..legs).map(|i| Arc::new(MemLeg::new(format!("leg{i}"), OLD_OFFSET + LEG_DATA))).collect();
    let devs: Vec<Arc<dyn BlockDevice>> = mem.iter().map(|m| m.clone() as Arc<dyn BlockDevice>).collect();
    let a = array("old", &devs, old, OLD_OFFSET);
    let data = pattern(a.size() as usize, seed);
    a.write(&data, 0, false).expect("fill");
    (mem.iter().map(|m| m.image()).collect(), data)
}

/// The position block: the 8 bytes at the start of a leg, written with
/// FUA to every leg in turn as a superblock would be. The freshest wins.
fn record_position(legs: &[Arc<dyn BlockDevice>], position: u64) -> std::io::Result<()> {
    let mut block = vec![0u8; 4096];
    block[..8].copy_from_slice(&position.to_le_bytes());
    block[8..16].copy_from_slice(b"POSITION");
    for leg in legs {
        leg.write_at(&block, 0, true)?;
    }
    Ok(())
}

fn recorded_position(images: &[Image]) -> u64 {
    images
        .iter()
        .filter_map(|img| {
            let mut block = [0u8; 16];
            img.read(&mut block, 0);
            (&block[8..16] == b"POSITION").then(|| u64::from_le_bytes(block[..8].try_into().unwrap()))
        })
        .max()
        .unwrap_or(0)
}

/// The device of a reshape from `old` to `new` over `legs`, from `from`.
fn reshaping(legs: &[Arc<dyn BlockDevice>], old: Side, new: Side, shift: u64, from: u64) -> (Arc<ProvenLayout>, Arc<ProvenLayout>, Reshaping) {
    let a = array("old", legs, old, OLD_OFFSET);
    let b = array("new", legs, new, OLD_OFFSET - shift);
    let (la, lb) = (a.layout(), b.layout());
    let sb = u64::from(lb.descriptor.data_chunks) * lb.geometry.chunk_bytes();
    let r = Reshaping::new(Arc::new(a), Arc::new(b), sb, from).expect("reshaping");
    (la, lb, r)
}

/// Move from `old` to `new` over `legs`, from `from`, recording positions.
fn run_move(legs: &[Arc<dyn BlockDevice>], old: Side, new: Side, shift: u64, from: u64, max_window: u64) -> Result<u64, ReshapeError> {
    let (la, lb, r) = reshaping(legs, old, new, shift, from);
    let mut windows = Windows::new(&la, &lb, shift, max_window)?;
    while r.step(&mut windows, &mut |p| record_position(legs, p))?.is_some() {}
    assert!(r.finished());
    Ok(r.recorded())
}

/// The new layout over `legs` reads `data` then zeroes, and every stripe's
/// parity agrees with its data.
fn check_new(legs: &[Arc<dyn BlockDevice>], new: Side, shift: u64, data: &[u8]) -> Result<(), String> {
    let b = array("new", legs, new, OLD_OFFSET - shift);
    let mut got = vec![0u8; b.size() as usize];
    b.read(&mut got, 0).map_err(|e| e.to_string())?;
    if let Some(at) = (0..data.len()).find(|&i| got[i] != data[i]) {
        return Err(format!("byte {at} reads {:#04x}, was written {:#04x}", got[at], data[at]));
    }
    if let Some(at) = (data.len()..got.len()).find(|&i| got[i] != 0) {
        return Err(format!("added byte {at} reads {:#04x}, not zero", got[at]));
    }
    for s in 0..b.layout().descriptor.stripes {
        let bad = b.scrub_stripe(s, false).map_err(|e| e.to_string())?;
        if bad != 0 {
            return Err(format!("stripe {s}: {bad} slots disagree with its data"));
        }
    }
    Ok(())
}

/// Legs holding `images`, every write and flush into one log.
fn logged(images: &[Image]) -> (Arc<WriteLog>, Vec<Arc<dyn BlockDevice>>) {
    let log = WriteLog::new();
    let legs = images
        .iter()
        .enumerate()
        .map(|(i, img)| Arc::new(LoggedLeg::new(Arc::new(MemLeg::from_image(format!("leg{i}"), img.clone())), i as u32, log.clone())) as Arc<dyn BlockDevice>)
        .collect();
    (log, legs)
}

/// At most `n` of `points`, spread evenly, plus `random` points between.
fn sample(points: Vec<u64>, n: usize, random: usize, last: u64, rng: &mut u64) -> Vec<u64> {
    let step = points.len().div_ceil(n.max(1)).max(1);
    let mut chosen: Vec<u64> = points.into_iter().step_by(step).collect();
    chosen.extend((0..random).map(|_| splitmix64(rng) % last.max(1)));
    chosen
}

fn devices(images: &[Image]) -> Vec<Arc<dyn BlockDevice>> {
    images.iter().enumerate().map(|(i, img)| Arc::new(MemLeg::from_image(format!("leg{i}"), img.clone())) as Arc<dyn BlockDevice>).collect()
}

const RAID5_4: Side = Side { layout: "raid5", args: "left-symmetric", legs: 4, chunk: 4096 };
const RAID5_5: Side = Side { layout: "raid5", args: "left-symmetric", legs: 5, chunk: 4096 };

/// The reshapes issue 18 names, on small legs.
fn reshapes() -> Vec<(&'static str, Side, Side)> {
    vec![
        ("raid5 4 to 5 legs", RAID5_4, RAID5_5),
        ("raid5 to raid6 adding a leg", RAID5_4, Side { layout: "raid6", args: "", legs: 5, chunk: 4096 }),
        ("raid1 to raid5", Side { layout: "raid1", args: "", legs: 2, chunk: 4096 }, Side { layout: "raid5", args: "", legs: 3, chunk: 4096 }),
        ("chunk 4K to 16K", RAID5_4, Side { chunk: 16384, ..RAID5_4 }),
        (
            "raid6 to pyramid on more legs",
            Side { layout: "raid6", args: "", legs: 6, chunk: 4096 },
            Side { layout: "pyramid", args: "111s1222s2g", legs: 9, chunk: 4096 },
        ),
        ("a new rotation of the same legs", RAID5_4, Side { args: "left-asymmetric", ..RAID5_4 }),
    ]
}

#[test]
fn the_shift_is_what_the_layouts_need() {
    let shift = |old, new| minimal_shift(&prove(old), &prove(new)).expect("plan");
    // One more data chunk per row: only the first row needs room.
    assert_eq!(shift(RAID5_4, RAID5_5), 4096);
    // The same density (3 data chunks a row): one chunk, all the way.
    assert_eq!(shift(RAID5_4, Side { layout: "raid6", args: "", legs: 5, chunk: 4096 }), 4096);
    // A chunk 4 times larger: one new chunk.
    assert_eq!(shift(RAID5_4, Side { chunk: 16384, ..RAID5_4 }), 16384);
}

#[test]
fn unsafe_shifts_and_shrinks_are_refused() {
    let (a, b) = (prove(RAID5_4), prove(RAID5_5));
    let mut w = Windows::new(&a, &b, 0, 1 << 20).expect("windows");
    let e = w.next(0).expect_err("no room");
    assert!(matches!(e, PlanError::Unsafe { stripe: 0, .. }), "{e}");
    assert!(e.to_string().contains("shift of 0 bytes"), "{e}");
    let e = Windows::new(&b, &a, 1 << 20, 1 << 20).err().expect("shrinks");
    assert!(matches!(e, PlanError::Shrinks { .. }), "{e}");
}

#[test]
fn windows_grow_as_the_new_layout_pulls_ahead() {
    let (a, b) = (prove(RAID5_4), prove(RAID5_5));
    let mut w = Windows::new(&a, &b, 4096, 1 << 30).expect("windows");
    let (mut t, mut sizes) = (0, Vec::new());
    while t < w.stripes() {
        let r = w.next(t).expect("window");
        sizes.push(r.end - r.start);
        t = r.end;
    }
    // The last window is what is left.
    let grown = &sizes[..sizes.len() - 1];
    assert_eq!(grown[0], 1);
    assert!(grown.windows(2).all(|p| p[1] >= p[0]), "{sizes:?}");
    assert!(*grown.last().unwrap() > 4, "{sizes:?}");
}

#[test]
fn every_reshape_reads_back_what_was_written() {
    for (what, old, new) in reshapes() {
        let (images, data) = filled(old, new.legs.max(old.legs), 7);
        let shift = minimal_shift(&prove(old), &prove(new)).expect("plan");
        for max_window in [0, 64 << 10] {
            let legs: Vec<_> = devices(&images);
            let end = run_move(&legs, old, new, shift, 0, max_window).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(end, array("new", &legs, new, OLD_OFFSET - shift).size(), "{what}");
            check_new(&legs, new, shift, &data).unwrap_or_else(|e| panic!("{what}, windows of {max_window}: {e}"));
        }
    }
}

/// Crash states of a logged move: after every durable point and at
/// points between, each with nothing, everything and a random half of
/// what was not yet durable kept; each resumed from its recorded position.
/// Returns the first state whose resumed array is wrong.
fn crash_states(old: Side, new: Side, shift: u64, seed: u64, mover: impl Fn(&[Arc<dyn BlockDevice>]) -> Result<(), String>) -> (usize, Option<String>) {
    let legs_n = new.legs.max(old.legs);
    let (images, data) = filled(old, legs_n, seed);
    let (log, logged) = logged(&images);
    mover(&logged).expect("the move itself");
    let entries = log.entries();
    let last = log.now();
    let mut rng = seed;
    let mut points = sample(durability_points(&entries), 64, 16, last, &mut rng);
    points.push(last + 1);
    let mut states = 0;
    for &at in &points {
        for persist in [Persist::Nothing, Persist::Everything, Persist::Random { seed: at ^ seed, percent: 50 }] {
            let crashed: Vec<Image> = (0..legs_n).map(|i| crash_image(&images[i], &entries, i as u32, at, persist).0).collect();
            let position = recorded_position(&crashed);
            let legs = devices(&crashed);
            states += 1;
            if let Err(e) = run_move(&legs, old, new, shift, position, 0).map_err(|e| e.to_string()).and_then(|_| check_new(&legs, new, shift, &data)) {
                return (states, Some(format!("crash at {at} keeping {persist}, resumed at {position}: {e}")));
            }
        }
    }
    (states, None)
}

#[test]
fn a_power_loss_anywhere_in_a_move_resumes_to_the_same_array() {
    for (i, (what, old, new)) in reshapes().into_iter().enumerate() {
        let shift = minimal_shift(&prove(old), &prove(new)).expect("plan");
        let (states, failure) =
            crash_states(old, new, shift, 11 + i as u64, |legs| run_move(legs, old, new, shift, 0, 32 << 10).map(|_| ()).map_err(|e| e.to_string()));
        assert!(failure.is_none(), "{what}: {}", failure.unwrap_or_default());
        assert!(states > 30, "{what}: only {states} crash states");
    }
}

/// The harness has teeth: a move that ignores the plan (the new layout
/// written over the old one in place, a stripe at a time) loses data.
#[test]
fn a_move_in_place_is_caught_losing_data() {
    let (old, new) = (RAID5_4, RAID5_5);
    let in_place = |legs: &[Arc<dyn BlockDevice>]| -> Result<(), String> {
        let a = array("old", legs, old, OLD_OFFSET);
        let b = array("new", legs, new, OLD_OFFSET);
        let sb = 4 * 4096u64;
        let old_end = a.size();
        let mut p = 0;
        while p < b.size() {
            let mut buf = vec![0u8; sb as usize];
            if p < old_end {
                a.read(&mut buf[..(old_end.min(p + sb) - p) as usize], p).map_err(|e| e.to_string())?;
            }
            b.write(&buf, p, false).map_err(|e| e.to_string())?;
            b.flush().map_err(|e| e.to_string())?;
            p += sb;
            record_position(legs, p).map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    let (_, failure) = crash_states(old, new, 0, 5, in_place);
    assert!(failure.is_some(), "an in-place move survived every crash state");
}

/// Requests while the data moves: one thread writes and reads at random
/// (every read checked against what it wrote), another moves windows;
/// afterwards the new layout alone reads it all back.
#[test]
fn requests_during_a_move_see_their_own_writes() {
    for (what, old, new) in reshapes() {
        let (images, mut shadow) = filled(old, new.legs.max(old.legs), 3);
        let legs = devices(&images);
        let shift = minimal_shift(&prove(old), &prove(new)).expect("plan");
        let (la, lb, r) = reshaping(&legs, old, new, shift, 0);
        let size = r.size();
        std::thread::scope(|scope| {
            let mover = scope.spawn(|| {
                let mut windows = Windows::new(&la, &lb, shift, 16 << 10).expect("windows");
                while r.step(&mut windows, &mut |p| record_position(&legs, p)).expect("step").is_some() {
                    std::thread::yield_now();
                }
            });
            let mut rng = 99u64;
            let mut n = 0;
            while !mover.is_finished() || n < 200 {
                let at = splitmix64(&mut rng) % size;
                let len = (1 + splitmix64(&mut rng) % 40_000).min(size - at) as usize;
                if splitmix64(&mut rng).is_multiple_of(2) {
                    let data = pattern(len, splitmix64(&mut rng));
                    r.write_at(&data, at, splitmix64(&mut rng).is_multiple_of(4)).unwrap_or_else(|e| panic!("{what}: write: {e}"));
                    shadow[at as usize..at as usize + len].copy_from_slice(&data);
                } else {
                    let mut got = vec![0u8; len];
                    r.read_at(&mut got, at).unwrap_or_else(|e| panic!("{what}: read: {e}"));
                    assert!(got == shadow[at as usize..at as usize + len], "{what}: {len} bytes at {at} read back wrong at position {}", r.recorded());
                }
                n += 1;
            }
        });
        assert!(r.finished(), "{what}");
        assert_eq!(r.size(), array("new", &legs, new, OLD_OFFSET - shift).size(), "{what}: the added space appears");
        check_new(&legs, new, shift, &shadow).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

/// A write the workload made, between two ticks of the log's clock.
struct UserWrite {
    started: u64,
    done: u64,
    at: u64,
    data: Vec<u8>,
}

/// A power loss while requests run: FUA writes between windows, each
/// acknowledged one on the legs whatever the crash keeps, the one in
/// flight either old or new sector by sector; resumed from the recorded
/// position and moved to the end.
#[test]
fn a_power_loss_with_writes_during_a_move_keeps_every_acknowledged_one() {
    for (i, (what, old, new)) in reshapes().into_iter().enumerate() {
        let seed = 40 + i as u64;
        let shift = minimal_shift(&prove(old), &prove(new)).expect("plan");
        let legs_n = new.legs.max(old.legs);
        let (images, data) = filled(old, legs_n, seed);
        let (log, logged) = logged(&images);
        let (la, lb, r) = reshaping(&logged, old, new, shift, 0);
        let mut windows = Windows::new(&la, &lb, shift, 32 << 10).expect("windows");
        let size = r.size();
        let mut rng = seed;
        let mut writes = Vec::new();
        loop {
            // Requests come in whole sectors, as a block device takes them.
            for _ in 0..2 {
                let at = splitmix64(&mut rng) % size / 512 * 512;
                let len = ((1 + splitmix64(&mut rng) % 40) * 512).min(size - at) as usize;
                let bytes = pattern(len, splitmix64(&mut rng));
                let started = log.tick();
                r.write_at(&bytes, at, true).expect("write");
                writes.push(UserWrite { started, done: log.tick(), at, data: bytes });
            }
            if r.step(&mut windows, &mut |p| record_position(&logged, p)).expect("step").is_none() {
                break;
            }
        }
        let entries = log.entries();
        let points = sample(durability_points(&entries), 40, 12, log.now(), &mut rng);
        for &at in &points {
            // What the array held when the crash came, and the write in flight.
            let mut expected = data.clone();
            let mut in_flight = None;
            for w in &writes {
                if w.done < at {
                    expected[w.at as usize..w.at as usize + w.data.len()].copy_from_slice(&w.data);
                } else if w.started < at {
                    in_flight = Some(w);
                }
            }
            for persist in [Persist::Nothing, Persist::Everything, Persist::Random { seed: at, percent: 50 }] {
                let crashed: Vec<Image> = (0..legs_n).map(|l| crash_image(&images[l], &entries, l as u32, at, persist).0).collect();
                let position = recorded_position(&crashed);
                let legs = devices(&crashed);
                run_move(&legs, old, new, shift, position, 0).unwrap_or_else(|e| panic!("{what}: resume at {position}: {e}"));
                let b = array("new", &legs, new, OLD_OFFSET - shift);
                let mut got = vec![0u8; data.len()];
                b.read(&mut got, 0).expect("read");
                // A write in flight may leave each sector old or new (the
                // array may split a leg's block between two writes).
                for block in (0..got.len()).step_by(512) {
                    let end = (block + 512).min(got.len());
                    if got[block..end] == expected[block..end] {
                        continue;
                    }
                    // The write in flight may have reached this block.
                    let newer = in_flight.is_some_and(|w| {
                        let (ws, we) = (w.at as usize, w.at as usize + w.data.len());
                        let mut maybe = expected[block..end].to_vec();
                        for (k, byte) in maybe.iter_mut().enumerate() {
                            if (ws..we).contains(&(block + k)) {
                                *byte = w.data[block + k - ws];
                            }
                        }
                        got[block..end] == maybe[..]
                    });
                    assert!(
                        newer,
                        "{what}: crash at {at} keeping {persist}, resumed at {position}: the sector at byte {block} holds neither what was acknowledged nor the write in flight ({:?})",
                        in_flight.map(|w| (w.at, w.data.len()))
                    );
                }
            }
        }
    }
}

mod offline_runs {
    //! The whole reshape of a stopped array through its superblocks, and
    //! a power loss anywhere in it, finished by `assemble` or `--continue`.
    use super::*;
    use crate::array::create::{AssembleOptions, CreateOptions, assemble, create};
    use crate::meta::store;
    use crate::reshape::offline::{OfflineError, Target, abort, reshape};

    /// Each leg: a 1 MiB metadata area, then 256 KiB of data.
    const LEG: u64 = (1 << 20) + (256 << 10);

    fn options() -> AssembleOptions {
        AssembleOptions { name: None, force: false, daemon_sleep: std::time::Duration::from_millis(50) }
    }

    /// Legs of a cleanly stopped `layout` array holding known data, and
    /// `added` blank legs; their images and the data.
    fn stopped(layout: &str, legs: usize, added: usize) -> (Vec<Image>, Vec<u8>) {
        let mem: Vec<Arc<MemLeg>> = (0..legs + added).map(|i| Arc::new(MemLeg::new(format!("leg{i}"), LEG))).collect();
        let devs: Vec<Arc<dyn BlockDevice>> = mem.iter().map(|m| m.clone() as Arc<dyn BlockDevice>).collect();
        let o = CreateOptions {
            name: "grow".into(),
            component: crate::builtins::find(layout).expect("built-in").to_vec(),
            chunk_sectors: 8,
            args: String::new(),
            assume_clean: true,
            force: false,
            bitmap_chunk: Some(32 << 10),
        };
        create(&devs[..legs], &SANDBOX, &o).expect("create");
        let a = assemble(devs[..legs].to_vec(), &SANDBOX, &options()).expect("assemble").array;
        let data = pattern(a.size() as usize, 21);
        a.write(&data, 0, false).expect("fill");
        a.shutdown().expect("stop");
        drop(a);
        (mem.iter().map(|m| m.image()).collect(), data)
    }

    fn target(layout: &str) -> Target {
        Target { component: crate::builtins::find(layout).expect("built-in").to_vec(), args: String::new(), chunk_sectors: None, remove_slots: Vec::new() }
    }

    /// Assemble `legs` and check they read `data`, then zeroes, with every
    /// stripe's parity right; returns the size.
    fn reads_back(legs: &[Arc<dyn BlockDevice>], data: &[u8]) -> Result<u64, String> {
        let a = assemble(legs.to_vec(), &SANDBOX, &options()).map_err(|e| e.to_string())?.array;
        let mut got = vec![0u8; a.size() as usize];
        a.read(&mut got, 0).map_err(|e| e.to_string())?;
        if let Some(at) = (0..data.len()).find(|&i| got[i] != data[i]) {
            return Err(format!("byte {at} reads wrong"));
        }
        if got[data.len()..].iter().any(|&b| b != 0) {
            return Err("added space is not zero".into());
        }
        for s in 0..a.layout().descriptor.stripes {
            if a.scrub_stripe(s, false).map_err(|e| e.to_string())? != 0 {
                return Err(format!("stripe {s}'s parity disagrees"));
            }
        }
        Ok(a.size())
    }

    #[test]
    fn raid5_grows_a_leg_and_assembles_as_the_new_layout() {
        let (images, data) = stopped("raid5", 4, 1);
        let legs = devices(&images);
        let out = reshape(&legs[..4], &legs[4..], &SANDBOX, Some(&target("raid5")), 64 << 10, 0, &mut |_, _| {}).expect("reshape");
        assert_eq!((out.legs_before, out.legs_after, out.size_after * 3), (4, 5, out.size_before * 4), "{out:?}");
        assert_eq!(reads_back(&legs, &data).expect("reads back"), out.size_after);
        // A second reshape of the result: raid5 on 5 legs to raid6 on them.
        let again = reshape(&legs, &[], &SANDBOX, Some(&target("raid6")), 64 << 10, 0, &mut |_, _| {});
        match again {
            // Growing the same legs' parity shrinks the array: refused.
            Err(OfflineError::Move(ReshapeError::Plan(PlanError::Shrinks { .. }))) => {}
            other => panic!("expected a refusal to shrink, got {other:?}"),
        }
    }

    #[test]
    fn raid6_over_6_to_raid5_over_5_removes_the_last_leg() {
        let (images, data) = stopped("raid6", 6, 0);
        let legs = devices(&images);
        let mut t = target("raid5");
        t.remove_slots = vec![5];
        let out = reshape(&legs, &[], &SANDBOX, Some(&t), 64 << 10, 0, &mut |_, _| {}).expect("reshape");
        assert_eq!((out.legs_before, out.legs_after, out.size_after), (6, 5, out.size_before), "{out:?}");
        assert!(store::read_superblock(&*legs[5]).is_err(), "the removed leg's superblock is erased");
        // Offered with the others, the removed leg is left out.
        let a = assemble(legs.clone(), &SANDBOX, &options()).expect("assemble").array;
        assert_eq!((a.legs().len(), a.layout().name.as_str(), a.health_chars().as_str()), (5, "raid5", "AAAAA"));
        drop(a);
        reads_back(&legs[..5], &data).expect("reads back");
    }

    #[test]
    fn only_the_last_legs_are_removed_and_never_while_adding() {
        let (images, _) = stopped("raid6", 6, 1);
        let legs = devices(&images);
        for (remove, added, why) in [
            (vec![2], 0, "only the last slots"),
            (vec![4], 0, "only the last slots"),
            (vec![0, 1, 2, 3, 4, 5], 0, "only the last slots"),
            (vec![5], 1, "adds legs or removes them, not both"),
        ] {
            let mut t = target("raid5");
            t.remove_slots = remove.clone();
            let e = reshape(&legs[..6], &legs[6..6 + added], &SANDBOX, Some(&t), 64 << 10, 0, &mut |_, _| {}).expect_err("refused").to_string();
            assert!(e.contains(why), "{remove:?}: {e}");
        }
        // raid5 over 4 from raid6 over 6: fewer data legs, refused as a shrink.
        let mut t = target("raid5");
        t.remove_slots = vec![4, 5];
        let e = reshape(&legs[..6], &[], &SANDBOX, Some(&t), 64 << 10, 0, &mut |_, _| {}).expect_err("refused").to_string();
        assert!(e.contains("may not shrink"), "{e}");
    }

    #[test]
    fn an_array_mid_reshape_continues_when_assembled() {
        let (images, data) = stopped("raid5", 4, 1);
        let legs = devices(&images);
        // Stop the move after two windows by failing the third record.
        let mut windows = 0;
        let stopped_early = {
            let target = target("raid6");
            let logged = legs.clone();
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                reshape(&logged[..4], &logged[4..], &SANDBOX, Some(&target), 64 << 10, 0, &mut |_, _| {
                    windows += 1;
                    assert!(windows < 2, "stop");
                })
            }))
        };
        assert!(stopped_early.is_err());
        let position =
            legs.iter().filter_map(|l| store::read_superblock(&**l).ok()).max_by_key(|sb| sb.generation).and_then(|sb| sb.reshape).map(|r| r.position);
        assert!(position.is_some_and(|p| p > 0), "stopped mid-move: {position:?}");
        // Assembling goes on with the move, then serves the new layout.
        let a = assemble(legs.clone(), &SANDBOX, &options()).expect("assembled after finishing the move").array;
        assert_eq!((a.legs().len(), a.layout().name.as_str()), (5, "raid6"));
        drop(a);
        let e = reshape(&legs, &[], &SANDBOX, None, 64 << 10, 0, &mut |_, _| {}).expect_err("nothing left to continue").to_string();
        assert!(e.contains("no reshape under way"), "{e}");
        reads_back(&legs, &data).expect("reads back");
    }

    /// Power lost anywhere in a logged reshape (raid5 on 4 legs to raid6
    /// on 5): the legs assemble as either layout (before the start is
    /// recorded, or after it finished) or are finished by `--continue`,
    /// and read back what was written.
    #[test]
    fn a_power_loss_anywhere_in_an_offline_reshape_loses_nothing() {
        let (images, data) = stopped("raid5", 4, 1);
        let (log, logged) = logged(&images);
        reshape(&logged[..4], &logged[4..], &SANDBOX, Some(&target("raid6")), 64 << 10, 0, &mut |_, _| {}).expect("reshape");
        let entries = log.entries();
        let mut rng = 77;
        let mut points = sample(durability_points(&entries), 60, 20, log.now(), &mut rng);
        points.push(log.now() + 1);
        let (mut continued, mut aborted) = (0, 0);
        for &at in &points {
            for persist in [Persist::Nothing, Persist::Everything, Persist::Random { seed: at, percent: 50 }] {
                let crashed: Vec<Image> = (0..5).map(|l| crash_image(&images[l], &entries, l as u32, at, persist).0).collect();
                let legs = devices(&crashed);
                let recorded = legs.iter().filter_map(|l| store::read_superblock(&**l).ok()).max_by_key(|sb| sb.generation).and_then(|sb| sb.reshape);
                let outcome = match recorded.map(|r| r.position) {
                    Some(moved) => {
                        continued += 1;
                        // Every other state that moved nothing is aborted
                        // instead; once something moved, abort refuses. The
                        // rest: assembling goes on with the move (the odd
                        // ones by `--continue` first).
                        if at % 2 == 0 || moved != 0 {
                            if moved != 0 {
                                let e = abort(&legs).err().map(|e| e.to_string()).unwrap_or_default();
                                assert!(e.contains("past its point of no return"), "abort at {moved}: {e}");
                            }
                            let continued_first = if at % 4 == 1 {
                                reshape(&legs, &[], &SANDBOX, None, 64 << 10, 0, &mut |_, _| {}).map(|_| ()).map_err(|e| e.to_string())
                            } else {
                                Ok(())
                            };
                            continued_first.and_then(|()| reads_back(&legs, &data).map(|_| ()))
                        } else {
                            aborted += 1;
                            abort(&legs)
                                .map_err(|e| e.to_string())
                                .and_then(|_| reads_back(&legs, &data))
                                .and_then(|size| if size == data.len() as u64 { Ok(()) } else { Err(format!("aborted, the array holds {size} bytes")) })
                        }
                    }
                    None => match assemble(legs.clone(), &SANDBOX, &options()) {
                        Ok(a) if a.array.legs().len() == 4 => {
                            // The start was not recorded: the old layout, whole.
                            drop(a);
                            reads_back(&legs[..4], &data).map(|_| ())
                        }
                        Ok(a) => {
                            drop(a);
                            reads_back(&legs, &data).map(|_| ())
                        }
                        Err(e) => Err(e.to_string()),
                    },
                };
                if let Err(e) = outcome {
                    panic!("crash at {at} keeping {persist}: {e}");
                }
            }
        }
        assert!(continued > 20, "only {continued} crash states were mid-reshape");
        assert!(aborted > 0, "no crash state was aborted");
    }
}
