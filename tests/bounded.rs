//! Untrusted means bounded, through the `wasmraid` binary: compiles run in
//! a child process with a deadline and a memory cap, oversized components
//! are refused before compiling, features the contract does not need are
//! off, a serving daemon survives `reload` of any hostile component, and
//! an aperiodic layout's guest instances are pooled, not one per thread.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmraid_tests::{Served, fio, generated, hostile_bytes, require, run, wasmraid_bin};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write component");
    p
}

/// `wasmraid FLAGS... algo check FILE --legs 4`: (success, output, time).
fn check(flags: &[&str], file: &Path) -> (bool, String, Duration) {
    let started = Instant::now();
    let mut cmd = std::process::Command::new(wasmraid_bin());
    cmd.arg("--no-cache").args(flags).args(["algo", "check"]).arg(file).args(["--legs", "4"]);
    let (ok, out) = run(&mut cmd);
    (ok, out, started.elapsed())
}

#[test]
fn a_compile_bomb_is_stopped_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = write(dir.path(), "bomb.wasm", &generated::compile_bomb(1, 10_000, 10_000));
    let (ok, out, took) = check(&["--compile-timeout", "2"], &bomb);
    assert!(!ok, "{out}");
    assert!(out.contains("took longer than 2s (--compile-timeout)"), "{out}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

#[test]
fn a_compile_bomb_is_stopped_at_its_memory_cap() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = write(dir.path(), "bomb.wasm", &generated::compile_bomb(1, 10_000, 10_000));
    let (ok, out, _) = check(&["--compile-timeout", "60", "--compile-memory", "400M"], &bomb);
    assert!(!ok, "{out}");
    assert!(out.contains("needed more than 400 MiB of memory (--compile-memory)"), "{out}");
}

#[test]
fn an_oversized_component_is_refused_before_it_is_compiled() {
    let dir = tempfile::tempdir().unwrap();
    let big = write(dir.path(), "big.wasm", &generated::padded(3 << 20));
    let (ok, out, took) = check(&["--max-component-size", "1M"], &big);
    assert!(!ok && out.contains("more than the 1 MiB allowed (--max-component-size)"), "{out}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// Multi-memory stays on (fused adapters need it); a component of 19
/// memories of 250 MiB is refused without taking that memory (the cap
/// over all of an instance's memories is tested in sandbox::component).
#[test]
fn extra_memories_cost_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let many = write(dir.path(), "mm.wasm", &generated::many_memories(19, 4000));
    let (ok, out, _) = check(&[], &many);
    assert!(!ok, "{out}");
}

#[test]
fn a_serving_daemon_survives_the_reload_of_every_hostile_component() {
    require("fio");
    let served = Served::layout("raid0", 2, "64M", "", "64K");
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = fio(&served.uri(), &["--size=16M"]);
    assert!(ok, "{out}");
    let cases: Vec<(String, PathBuf)> = vec![
        ("compile bomb".into(), write(dir.path(), "bomb.wasm", &generated::compile_bomb(1, 10_000, 10_000))),
        ("extra memories".into(), write(dir.path(), "mm.wasm", &generated::many_memories(19, 4000))),
        ("u64::MAX stripes".into(), write(dir.path(), "huge.wasm", &hostile_bytes("huge_stripes"))),
        ("escape-laden text".into(), write(dir.path(), "text.wasm", &hostile_bytes("hostile_text"))),
        ("infinite loop".into(), write(dir.path(), "loop.wasm", &hostile_bytes("infinite_loop"))),
        ("memory bomb".into(), write(dir.path(), "mem.wasm", &hostile_bytes("memory_bomb"))),
        ("imports".into(), write(dir.path(), "wasi.wasm", &hostile_bytes("imports_wasi"))),
    ];
    for (what, file) in cases {
        let started = Instant::now();
        let out = served.ctl(&["reload", "dev", &file.display().to_string()]);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{what}: reload accepted: {text}");
        assert!(started.elapsed() < Duration::from_secs(30), "{what}: reload took {:?}", started.elapsed());
        assert!(text.len() < 2000 && !text.trim_end().chars().any(|c| c.is_control() && c != '\n'), "{what}: {text:?}");
        // Still alive, still serving the same data.
        let st = served.status();
        assert_eq!(st["arrays"][0]["layout"], "raid0", "{what}: {st}");
        let (ok, out) = fio(&served.uri(), &["--size=16M", "--verify_only"]);
        assert!(ok, "{what}: after the refused reload: {out}");
        println!("{what}: refused in {:?}: {}", started.elapsed(), text.lines().last().unwrap_or(""));
    }
}

/// Resident and peak memory of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0);
    (field("VmRSS:"), field("VmHWM:"))
}

/// The scenario end to end (the pool's bound itself is tested
/// with eight threads in hostile.rs: here the NBD server's threads rarely
/// refill at once, so this shows the daemon stays small, not the bound).
#[test]
fn guest_instances_are_pooled_not_one_per_serving_thread() {
    require("fio");
    let dir = tempfile::tempdir().unwrap();
    let fat = write(dir.path(), "fat.wasm", &hostile_bytes("fat_instances"));
    // Stripes of 4 chunks of 4 KiB over sparse 8 GiB legs: 2M stripes,
    // 8192 blocks of the map cache, twice what it keeps, so random reads
    // keep refilling it from many serving threads at once.
    let served = Served::layout(&fat.display().to_string(), 4, "8G", "", "4K");
    let mut jobs = Vec::new();
    for seed in 0..4 {
        let uri = served.uri();
        jobs.push(std::thread::spawn(move || {
            fio(&uri, &["--rw=randread", "--bs=4k", "--size=32G", "--time_based", "--runtime=6", "--verify=0", "--do_verify=0", &format!("--randseed={seed}")])
        }));
    }
    for j in jobs {
        let (ok, out) = j.join().expect("fio thread");
        assert!(ok, "{out}");
    }
    let (rss, peak) = memory_kib(served.child.id());
    println!("four NBD clients over a 240 MiB-per-instance guest: resident {} MiB, peak {} MiB", rss / 1024, peak / 1024);
    // Two pooled instances (the default) and the proof's: not one per thread.
    assert!(peak < 1200 << 10, "peak {} MiB: instances multiplied", peak / 1024);
}
