//! `wasmraid reshape` as a user runs it: a raid5 made by `wasmraid create`
//! and filled, grown by a leg while stopped, and while served under fio
//! verify, killed -9 in the middle of that and assembled again; each time
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
    let data = pattern(a.size() as usize, 5);
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

    let run = dir.path().join("run").display().to_string();
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

/// A leg failing mid-move (its writes refused halfway up its data) is
/// recorded failed before the window it missed is, and the move goes on
/// degraded, as md's does: the reshaped array assembles without it and
/// reads what was written. (Were the failure not recorded, the leg would
/// be assembled as in sync and read where it missed the move.)
#[test]
fn a_leg_failing_mid_move_is_recorded_failed_and_the_move_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (legs, data) = stopped_raid5(dir.path());
    let mut devs = open(&legs);
    devs[4] = Arc::new(BadRange { inner: devs[4].clone(), range: (12 << 20)..(13 << 20), writes_too: true });
    let target = Target { component: wasmraid::builtins::find("raid5").unwrap().to_vec(), args: String::new(), chunk_sectors: None, remove_slots: Vec::new() };
    reshape(&devs[..4], &devs[4..], &sandbox(), Some(&target), 64 << 10, 0, &mut |_, _| {}).expect("the move goes on degraded");
    let newest = open(&legs[..4]).iter().filter_map(|l| store::read_superblock(&**l).ok()).max_by_key(|sb| sb.generation).unwrap();
    assert_eq!(newest.failed, [false, false, false, false, true], "leg 4 is recorded failed");
    assert!(newest.reshape.is_none(), "the move finished");
    let b = up(&legs);
    assert_eq!(b.health_chars(), "AAAAD");
    let mut got = vec![0u8; data.len()];
    b.read(&mut got, 0).unwrap();
    assert!(got == data, "the data reads back, degraded");
}

/// The same failure, the move then interrupted (a crash): `assemble` goes
/// on with it without the failed leg, which it never reads again, and the
/// reshaped array holds the data.
#[test]
fn a_reshape_with_a_leg_recorded_failed_is_finished_by_assemble() {
    let dir = tempfile::tempdir().unwrap();
    let (legs, data) = stopped_raid5(dir.path());
    let mut devs = open(&legs);
    devs[4] = Arc::new(BadRange { inner: devs[4].clone(), range: (8 << 20)..(9 << 20), writes_too: true });
    let target = Target { component: wasmraid::builtins::find("raid5").unwrap().to_vec(), args: String::new(), chunk_sectors: None, remove_slots: Vec::new() };
    let size = data.len() as u64 * 4 / 3;
    let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        reshape(&devs[..4], &devs[4..], &sandbox(), Some(&target), 64 << 10, 0, &mut |p, _| assert!(p < size * 3 / 4, "interrupted"))
    }));
    assert!(interrupted.is_err(), "the move was interrupted");
    let newest = open(&legs[..4]).iter().filter_map(|l| store::read_superblock(&**l).ok()).max_by_key(|sb| sb.generation).unwrap();
    assert_eq!(newest.failed[4], true, "leg 4 is recorded failed");
    assert!(newest.reshape.as_ref().is_some_and(|r| r.position > 0), "mid-move");
    // All five offered, the failed one among them: left out.
    let b = up(&legs);
    assert_eq!((b.health_chars().as_str(), b.layout().geometry.leg_chunks.len()), ("AAAAD", 5));
    let mut got = vec![0u8; data.len()];
    b.read(&mut got, 0).unwrap();
    assert!(got == data, "the data reads back, degraded");
}

/// A filled raid5 of `wasmraid create`, served by `wasmraid assemble`.
fn served_raid5() -> (Arc<tempfile::TempDir>, Vec<PathBuf>, Vec<u8>, Served) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (legs, data) = stopped_raid5(dir.path());
    let served = Served::assemble(&dir, "r", &legs[..4], &[]);
    (dir, legs, data, served)
}

/// What fio wrote (`fio_bytes` from 0) verified by fio, the rest of
/// `data` and zeroes after it read back, parity right everywhere.
fn tail_reads_back(legs: &[PathBuf], data: &[u8], fio_bytes: u64) {
    let b = up(legs);
    let mut got = vec![0u8; b.size() as usize];
    b.read(&mut got, 0).unwrap();
    let from = fio_bytes as usize;
    assert!(got[from..data.len()] == data[from..], "what fio did not write reads back");
    assert!(got[data.len()..].iter().all(|&x| x == 0), "the added space reads as zeroes");
    assert_eq!((0..b.layout().descriptor.stripes).map(|s| b.scrub_stripe(s, false).unwrap()).sum::<u64>(), 0, "parity agrees everywhere");
}

const FIO_BYTES: u64 = 32 << 20;

fn fio_job(uri: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["--size=32M", "--randrepeat=1", "--randseed=7"];
    args.extend_from_slice(extra);
    wasmraid_tests::fio(uri, &args)
}

/// `wasmraid reshape r --add-legs L --wait` while the array is served and
/// fio writes and verifies across it: 0 errors, the new layout serves
/// afterwards (bigger), and everything reads back once stopped.
#[test]
fn a_served_raid5_grows_by_a_leg_under_fio_verify() {
    wasmraid_tests::require("fio");
    let (_dir, legs, data, served) = served_raid5();
    let uri = served.uri();
    let before = served.status()["size_bytes"].as_u64().unwrap();
    let fio = std::thread::spawn(move || fio_job(&uri, &["--loops=3"]));
    std::thread::sleep(Duration::from_millis(300));
    let run = served.run_dir.display().to_string();
    let (ok, out) = wasmraid(&["reshape", "r", "--add-legs", &list(&legs[4..]), "--sync-rate", "40M", "--wait", "--run-dir", &run]);
    assert!(ok, "{out}\n{}", served.log());
    assert!(out.contains("reshaped to raid5 over 5 legs"), "{out}");
    let (clean, text) = fio.join().unwrap();
    assert!(clean, "fio verify across the reshape: {text}");
    let status = served.status();
    assert_eq!(status["reshape"]["state"], "finished", "{status}");
    assert_eq!(status["arrays"][0]["legs"].as_array().map(Vec::len), Some(5), "{status}");
    assert_eq!(status["size_bytes"].as_u64().unwrap() * 3, before * 4, "a fifth leg adds a third, served at once");
    // Served as the new array: membership works again.
    let out = served.ctl(&["tune", "r", "--sync-rate", "50M"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stopped = served.ctl(&["stop", "r"]);
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    drop(served);
    tail_reads_back(&legs, &data, FIO_BYTES);
}

/// One reshape of issue 18's list, served: created with `wasmraid
/// create` over `legs` legs (chunk 64K), filled, served, reshaped with
/// `extra` (adding `add` legs) at 8 MiB/s while fio writes across the
/// moving position, the daemon killed -9 in the middle; `wasmraid
/// assemble` resyncs what the new layout served, moves the rest and serves
/// `to`, and fio verifies every block it wrote.
fn served_reshape_killed_mid_move(layout: &str, legs: usize, add: usize, extra: &[&str], to: &str) {
    let after = if extra.contains(&"--remove-legs") { legs - 1 } else { legs + add };
    wasmraid_tests::require("fio");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let paths: Vec<PathBuf> = (0..legs + add).map(|i| dir.path().join(format!("leg{i}"))).collect();
    let (ok, out) = wasmraid(&["create", "r", "--layout", layout, "--legs", &list(&paths[..legs]), "--create-legs", "24M", "--chunk", "64K"]);
    assert!(ok, "{out}");
    for p in &paths[legs..] {
        FileLeg::create(p, 24 << 20).unwrap();
    }
    let data = {
        let a = up(&paths[..legs]);
        let data = pattern(a.size() as usize, legs as u64);
        a.write(&data, 0, false).unwrap();
        a.shutdown().unwrap();
        data
    };
    let fio_bytes = (data.len() as u64 / 2).min(FIO_BYTES) >> 20 << 20;
    let size = format!("--size={}M", fio_bytes >> 20);
    let mut served = Served::assemble(&dir, "r", &paths[..legs], &[]);
    let run = served.run_dir.display().to_string();
    let added = list(&paths[legs..]);
    let mut args = vec!["reshape", "r", "--sync-rate", "8M", "--run-dir", &run];
    if add > 0 {
        args.extend(["--add-legs", &added]);
    }
    args.extend(extra);
    let (ok, out) = wasmraid(&args);
    assert!(ok, "{out}");
    let (clean, text) = fio_job(&served.uri(), &[&size, "--do_verify=0"]);
    assert!(clean, "fio writes across the reshape: {text}");
    let status = served.status();
    assert_eq!(status["reshape"]["state"], "moving", "still moving when killed: {status}");
    assert!(status["reshape"]["position"].as_u64().unwrap() > 0, "{status}");
    // Membership waits for the move.
    let out = served.ctl(&["leg", "fail", "r", "1"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("is reshaping"), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, out) = wasmraid(&["reshape", "r", "--abort", "--run-dir", &run]);
    assert!(!ok && out.contains("past its point of no return"), "{out}");
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    drop(served);
    let again = Served::assemble(&dir, "r", &paths, &[]);
    assert!(again.log_says("going on with it before assembling"), "{}", again.log());
    let (clean, text) = fio_job(&again.uri(), &[&size, "--verify_only"]);
    assert!(clean, "fio verifies what it wrote before the kill: {text}");
    let status = again.status();
    assert_eq!(status["arrays"][0]["layout"], to, "{status}");
    assert_eq!(status["arrays"][0]["legs"].as_array().map(Vec::len), Some(after), "{status}");
    let stopped = again.ctl(&["stop", "r"]);
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    drop(again);
    tail_reads_back(&paths[..after], &data, fio_bytes);
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

#[test]
fn served_raid5_to_raid6_adding_a_leg_killed_mid_move() {
    served_reshape_killed_mid_move("raid5", 4, 1, &["--layout", "raid6"], "raid6");
}

#[test]
fn served_raid1_to_raid5_killed_mid_move() {
    served_reshape_killed_mid_move("raid1", 2, 1, &["--layout", "raid5"], "raid5");
}

#[test]
fn served_chunk_64k_to_256k_killed_mid_move() {
    served_reshape_killed_mid_move("raid5", 4, 0, &["--chunk", "256K"], "raid5");
}

#[test]
fn served_raid6_to_pyramid_on_more_legs_killed_mid_move() {
    served_reshape_killed_mid_move("raid6", 6, 3, &["--layout", "pyramid", "--args", "111s1222s2g"], "pyramid");
}

/// Another component over the same legs: raid5's rotation to raid4's
/// dedicated parity leg.
#[test]
fn served_raid5_to_another_component_killed_mid_move() {
    served_reshape_killed_mid_move("raid5", 4, 0, &["--layout", "raid4"], "raid4");
}

/// The last leg taken out: raid6 over 6 to raid5 over the first 5 (the
/// same capacity), `--remove-legs 5`.
#[test]
fn served_raid6_to_raid5_removing_a_leg_killed_mid_move() {
    served_reshape_killed_mid_move("raid6", 6, 0, &["--layout", "raid5", "--remove-legs", "5"], "raid5");
}

#[test]
fn served_raid5_4_to_5_legs_killed_mid_move() {
    served_reshape_killed_mid_move("raid5", 4, 1, &[], "raid5");
}
