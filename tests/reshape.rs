//! `wasmraid reshape` as a user runs it: a raid5 made by `wasmraid create`
//! and filled, refused while served, grown by a leg while stopped, and
//! assembled as the new layout holding what was written.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use wasmraid::array::create::{AssembleOptions, assemble};
use wasmraid::device::BlockDevice;
use wasmraid::device::file::{FileLeg, OpenFlags};
use wasmraid_tests::{Served, sandbox, wasmraid_bin};

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

#[test]
fn a_stopped_raid5_grows_by_a_leg() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let legs: Vec<PathBuf> = (0..5).map(|i| dir.path().join(format!("leg{i}"))).collect();
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
    drop(a);

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

    let b = up(&legs);
    assert_eq!(b.size() * 3, data.len() as u64 * 4, "a fifth leg adds a third");
    let mut got = vec![0u8; b.size() as usize];
    b.read(&mut got, 0).unwrap();
    assert!(got[..data.len()] == data[..], "the data reads back through the new layout");
    assert!(got[data.len()..].iter().all(|&x| x == 0), "the added space reads as zeroes");
    assert_eq!((0..b.layout().descriptor.stripes).map(|s| b.scrub_stripe(s, false).unwrap()).sum::<u64>(), 0, "parity agrees everywhere");
}
