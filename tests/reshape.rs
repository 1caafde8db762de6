//! `wasmraid reshape` as a user runs it: a raid5 made by `wasmraid create`
//! and filled, refused while served, grown by a leg while stopped, and
//! assembled as the new layout holding what was written.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use wasmraid::array::create::{AssembleOptions, assemble};
use wasmraid::device::BlockDevice;
use wasmraid::device::file::{FileLeg, OpenFlags};
use wasmraid::meta::store;
use wasmraid::reshape::offline::{Target, reshape};
use wasmraid_tests::{BadRange, Served, sandbox, wasmraid_bin};

fn open(paths: &[PathBuf]) -> Vec<Arc<dyn BlockDevice>> {
    paths.iter().map(|p| Arc::new(FileLeg::open(p, OpenFlags::default()).unwrap()) as Arc<dyn BlockDevice>).collect()
}

fn up(paths: &[PathBuf]) -> Arc<wasmraid::array::Array> {
    assemble(open(paths), &sandbox(), &AssembleOptions { name: None, force: false, daemon_sleep: Duration::from_millis(50) }).expect("assemble").array
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",")
}

fn wasmraid(args: &[&str]) -> (bool, String) {
    let out = Command::new(wasmraid_bin()).args(args).output().expect("run wasmraid");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A raid5 over four 24 MiB legs made by `wasmraid create`, filled and
/// stopped, and a fifth blank leg: the five paths and the data.
fn stopped_raid5(dir: &Path) -> (Vec<PathBuf>, Vec<u8>) {
    let legs: Vec<PathBuf> = (0..5).map(|i| dir.join(format!("leg{i}"))).collect();
    let (ok, out) = wasmraid(&["create", "r", "--layout", "raid5", "--legs", &list(&legs[..4]), "--create-legs", "24M", "--chunk", "64K"]);
    assert!(ok, "{out}");
    FileLeg::create(&legs[4], 24 << 20).unwrap();
    let a = up(&legs[..4]);
    let mut data = vec![0u8; a.size() as usize];
    let mut state = 5u64;
    for b in data.iter_mut() {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *b = (state >> 33) as u8;
    }
    a.write(&data, 0, false).unwrap();
    a.shutdown().unwrap();
    (legs, data)
}

/// Every byte of `legs` assembled, and the data it should start with.
fn reads_back(legs: &[PathBuf], data: &[u8]) {
    let b = up(legs);
    let mut got = vec![0u8; b.size() as usize];
    b.read(&mut got, 0).unwrap();
    assert!(got[..data.len()] == data[..], "the data reads back through the new layout");
    assert!(got[data.len()..].iter().all(|&x| x == 0), "the added space reads as zeroes");
    assert_eq!((0..b.layout().descriptor.stripes).map(|s| b.scrub_stripe(s, false).unwrap()).sum::<u64>(), 0, "parity agrees everywhere");
}

#[test]
fn a_stopped_raid5_grows_by_a_leg() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (legs, data) = stopped_raid5(dir.path());

    // Served: refused, the array untouched.
    let served = Served::assemble(&dir, "r", &legs[..4], &[]);
    let run = served.run_dir.display().to_string();
    let (ok, out) = wasmraid(&["reshape", "r", "--legs", &list(&legs[..4]), "--add-legs", &list(&legs[4..]), "--run-dir", &run]);
    assert!(!ok && out.contains("r is being served: stop it first"), "{out}");
    let stopped = served.ctl(&["stop", "r"]);
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    drop(served);

    let (ok, out) = wasmraid(&["reshape", "r", "--legs", &list(&legs[..4]), "--continue", "--run-dir", &run]);
    assert!(!ok && out.contains("'r' has no reshape under way to continue"), "{out}");
    let (ok, out) = wasmraid(&["reshape", "r", "--legs", &list(&legs[..4]), "--abort", "--run-dir", &run]);
    assert!(!ok && out.contains("'r' has no reshape under way to abort"), "{out}");
    // --sync-rate: about 70 MiB at 100 MiB/s takes most of a second.
    let started = std::time::Instant::now();
    let (ok, out) = wasmraid(&["reshape", "r", "--legs", &list(&legs[..4]), "--add-legs", &list(&legs[4..]), "--sync-rate", "100M", "--run-dir", &run]);
    assert!(ok, "{out}");
    assert!(started.elapsed() >= Duration::from_millis(500), "--sync-rate 100M moved {} MiB in {:?}", data.len() >> 20, started.elapsed());
    assert!(out.contains("reshaped r: raid5 over 4 legs -> raid5 over 5 legs"), "{out}");

    assert_eq!(up(&legs).size() * 3, data.len() as u64 * 4, "a fifth leg adds a third");
    reads_back(&legs, &data);
}

/// A leg failing mid-move (its writes refused halfway up its data) stops
/// the reshape before the window it missed is recorded, since the
/// superblocks record every leg in sync; healed, `--continue` finishes
/// with the data intact.
#[test]
fn a_leg_failing_mid_move_stops_the_reshape_before_a_lie_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (legs, data) = stopped_raid5(dir.path());
    let mut devs = open(&legs);
    devs[4] = Arc::new(BadRange { inner: devs[4].clone(), range: (12 << 20)..(13 << 20), writes_too: true });
    let target = Target { component: wasmraid::builtins::find("raid5").unwrap().to_vec(), args: String::new(), chunk_sectors: None };
    let e = reshape(&devs[..4], &devs[4..], &sandbox(), Some(&target), 64 << 10, 0, &mut |_, _| {}).expect_err("the move fails").to_string();
    assert!(e.contains("leg 4 (") && e.contains("failed during the move"), "{e}");
    let position =
        open(&legs[..4]).iter().filter_map(|l| store::read_superblock(&**l).ok()).max_by_key(|sb| sb.generation).and_then(|sb| sb.reshape).map(|r| r.position);
    assert!(position.is_some_and(|p| p > 0), "the windows before the failure stay recorded: {position:?}");
    reshape(&open(&legs), &[], &sandbox(), None, 64 << 10, 0, &mut |_, _| {}).expect("continue on the healed leg");
    reads_back(&legs, &data);
}
