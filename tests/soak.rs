//! The crash soak: `kill -9` of the server while fio writes with
//! `verify=crc32c`, again and again, over self-describing arrays with a
//! write-intent bitmap. Each round:
//!
//! 1. assemble the array (after the previous round's kill it is dirty: the
//!    bitmap's dirty regions are resynced in the background);
//! 2. wait for the resync, run `check`: mismatch_cnt must be 0;
//! 3. fio `--verify_only` over the committed region written (and flushed)
//!    by the previous round: every block must verify;
//! 4. write the committed region again with a new seed, verified and
//!    flushed;
//! 5. start a random-write fio job on the rest of the array and `kill -9`
//!    the server at a random moment inside it.
//!
//! Rounds rotate over raid6, raid1 and raid5 (parity recompute and mirror
//! copy). `WASMRAID_SOAK_ROUNDS` sets the number of rounds (CI: 6;
//! `scripts/soak.sh`: 60).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmraid_tests::{Served, fio, require, run, wasmraid_bin};

const COMMITTED: &str = "16M";
const SCRATCH_OFFSET: &str = "16M";
const SCRATCH: &str = "32M";

struct Rig {
    layout: &'static str,
    dir: Arc<tempfile::TempDir>,
    legs: Vec<PathBuf>,
    /// The seed the committed region was last written with.
    seed: Option<u64>,
}

impl Rig {
    fn create(layout: &'static str, legs: usize) -> Rig {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let paths: Vec<PathBuf> = (0..legs).map(|i| dir.path().join(format!("leg{i}"))).collect();
        let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let (ok, out) = run(std::process::Command::new(wasmraid_bin()).args([
            "--no-cache",
            "create",
            layout,
            "--layout",
            layout,
            "--chunk",
            "64K",
            "--create-legs",
            "64M",
            "--legs",
            &list.join(","),
        ]));
        assert!(ok, "create {layout}: {out}");
        Rig { layout, dir, legs: paths, seed: None }
    }

    fn up(&self) -> Served {
        Served::assemble(&self.dir, self.layout, &self.legs, &["--daemon-sleep", "0.3"])
    }
}

fn committed_job(seed: u64) -> Vec<String> {
    ["--rw=randwrite", "--bs=8k", "--iodepth=16", &format!("--size={COMMITTED}"), "--offset=0", &format!("--randseed={seed}"), "--end_fsync=1"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Wait until the array has no background action; returns its status.
fn idle(s: &Served, within: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let st = s.status();
        let a = st["arrays"][0].clone();
        if a["sync_action"] == "idle" {
            return a;
        }
        assert!(start.elapsed() < within, "{} still busy after {within:?}: {a}\n{}", s.name, s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `check` must count 0 mismatches, and the committed region written with
/// `seed` (when any) must verify; `when` names the moment in failures.
fn assert_check_clean_and_committed_verified(served: &Served, layout: &str, seed: Option<u64>, when: &str) {
    let out = served.ctl(&["check", layout, "--wait"]);
    assert!(out.status.success(), "{when} check: {}", String::from_utf8_lossy(&out.stderr));
    let checked = idle(served, Duration::from_secs(120));
    assert_eq!(checked["mismatch_cnt"], 0, "{when} ({layout}): check after crash resync found mismatches: {checked}");
    if let Some(seed) = seed {
        let mut args = committed_job(seed);
        args.push("--verify_only".into());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (clean, out) = fio(&served.uri(), &refs);
        assert!(clean, "{when} ({layout}): committed data lost or torn after kill -9:\n{out}\n{}", served.log());
    }
}

/// A small deterministic generator (xorshift), seeded per run, for the kill
/// moments: enough to spread kills over the job without a dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn kill_nine_during_fio_verify_writes() {
    require("fio");
    let rounds: usize = std::env::var("WASMRAID_SOAK_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let mut rigs = [Rig::create("raid6", 5), Rig::create("raid1", 2), Rig::create("raid5", 4)];
    let mut random = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
    let (mut resynced, mut capacity) = (0u64, 0u64);
    for round in 0..rounds {
        let rig = &mut rigs[round % 3];
        let served = rig.up();

        // 2. Whatever the kill left half-written is resynced: check = 0.
        let after_resync = idle(&served, Duration::from_secs(120));
        let last = after_resync["sync_last"].as_str().unwrap_or("");
        assert!(!last.contains("stopped"), "round {round}: {last}");
        if round >= 3 {
            // Every array has been killed once by now: a resync must have run.
            assert!(last.starts_with("resync finished"), "round {round} ({}): no resync after kill -9: {last:?}", rig.layout);
            resynced += last.split_whitespace().nth(2).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
            capacity += after_resync["size_bytes"].as_u64().unwrap_or(0);
        }

        // 3. Every flushed write of the previous round is there.
        assert_check_clean_and_committed_verified(&served, rig.layout, rig.seed, &format!("round {round}"));

        // 4. Commit a new generation of the committed region.
        let seed = 1000 + round as u64;
        let args = committed_job(seed);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (clean, out) = fio(&served.uri(), &refs);
        assert!(clean, "round {round} ({}): committed write failed:\n{out}", rig.layout);
        rig.seed = Some(seed);

        // 5. Random writes elsewhere, and kill -9 in the middle of them.
        let mut writer = std::process::Command::new("fio")
            .args(["--name=scratch", "--ioengine=nbd", &format!("--uri={}", served.uri()), "--rw=randwrite", "--bs=8k", "--iodepth=32"])
            .args([
                &format!("--offset={SCRATCH_OFFSET}"),
                &format!("--size={SCRATCH}"),
                "--time_based",
                "--runtime=30",
                "--verify=crc32c",
                "--verify_state_save=0",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn fio");
        std::thread::sleep(Duration::from_millis(300 + next(&mut random) % 1200));
        let mut served = served;
        served.child.kill().expect("kill -9 the server");
        served.child.wait().expect("reap the server");
        let start = Instant::now();
        while writer.try_wait().expect("fio").is_none() {
            assert!(start.elapsed() < Duration::from_secs(60), "fio did not notice the server's death");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(served);
    }
    // The last kill too is resynced and checked.
    for rig in &rigs {
        if rig.seed.is_none() {
            continue;
        }
        let served = rig.up();
        idle(&served, Duration::from_secs(120));
        assert_check_clean_and_committed_verified(&served, rig.layout, rig.seed, "final");
    }
    println!("{rounds} kill -9 rounds: check 0 and fio verify clean every time; resyncs moved {} MiB against {} MiB of arrays", resynced >> 20, capacity >> 20);
}
