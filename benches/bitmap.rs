//! The write-intent bitmap's cost on 4k random writes: the same legs served
//! twice, side by side in one run, once as a self-describing array with its
//! bitmap (`wasmraid create` + `assemble`) and once as the same layout at the
//! same data offset without metadata (`wasmraid serve --layout`). fio's nbd
//! engine, 4k randwrite, iodepth 32, on tmpfs. Bar: with the bitmap >= 0.90x
//! without.

mod peers;

use std::path::Path;
use std::process::Command;

const LEG_BYTES: &str = "256M";

/// The data offset `wasmraid create` chose, from `wasmraid examine --json`.
fn data_offset(leg: &Path) -> u64 {
    let out = Command::new(peers::wasmraid_bin()).arg("examine").arg(leg).arg("--json").output().expect("examine");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("examine json");
    v["superblock"]["data_offset"].as_u64().expect("data_offset")
}

fn main() {
    peers::require("fio");
    let dir = tempfile::Builder::new().prefix("wasmraid-bitmap-bench").tempdir_in("/dev/shm").expect("tmpfs dir");
    let fio_args = ["--rw=randwrite", "--bs=4k", "--iodepth=32", "--time_based", "--runtime=5", "--size=240M", "--randrepeat=0"];
    println!("== write-intent bitmap overhead: fio nbd 4k randwrite iodepth 32, 5 s, tmpfs legs of {LEG_BYTES}, median of 5 alternating runs");
    for (layout, legs) in [("raid1", 2usize), ("raid5", 4), ("raid6", 5)] {
        let paths: Vec<String> = (0..legs).map(|i| dir.path().join(format!("{layout}-{i}")).display().to_string()).collect();
        let list = paths.join(",");
        let ok = Command::new(peers::wasmraid_bin())
            .args(["create", "bench", "--layout", layout, "--chunk", "64K", "--create-legs", LEG_BYTES, "--legs", &list])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "wasmraid create {layout} failed");
        let offset = data_offset(Path::new(&paths[0]));
        let plain: Vec<String> =
            ["--layout", layout, "--chunk", "64K", "--legs", &list, "--data-offset", &offset.to_string()].iter().map(|s| s.to_string()).collect();
        let with_bitmap: Vec<String> = ["--legs", &list].iter().map(|s| s.to_string()).collect();
        // Warm-up: tmpfs allocates the legs' pages on first write.
        let s = peers::wasmraid(dir.path(), &plain);
        peers::fio(&s.uri, &["--rw=write", "--bs=1M", "--iodepth=4", "--size=240M"], true);
        s.stop(dir.path());
        let (mut without, mut with) = (Vec::new(), Vec::new());
        let mut bitmap_writes = 0;
        for _ in 0..5 {
            let s = peers::wasmraid(dir.path(), &plain);
            without.push(peers::fio(&s.uri, &fio_args, true).0);
            s.stop(dir.path());
            let s = peers::wasmraid_verb(dir.path(), "assemble", &with_bitmap);
            with.push(peers::fio(&s.uri, &fio_args, true).0);
            bitmap_writes = bitmap_writes_of(dir.path());
            s.stop(dir.path());
        }
        let (a, b) = (peers::median(&without), peers::median(&with));
        println!("{layout} ({legs} legs)");
        println!("  without bitmap {a:>10.0} IOPS");
        println!("  with bitmap    {b:>10.0} IOPS   {:.3}x without (bar >= 0.90); {bitmap_writes} bitmap updates in the last run", b / a);
    }
}

/// `status --json`'s count of bitmap writes of the served array.
fn bitmap_writes_of(dir: &Path) -> u64 {
    let out = Command::new(peers::wasmraid_bin()).args(["status", "bench", "--json", "--run-dir"]).arg(dir.join("run")).output().expect("status");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["arrays"][0]["metadata"]["bitmap_writes"].as_u64().unwrap_or(0)
}
