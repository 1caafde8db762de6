//! Hot reload under load: fio (nbd engine, 4k random reads and writes,
//! iodepth 16) runs while the layout component is swapped several times for
//! one proven identical (raid5 parity-n <-> raid4). Reports failed requests
//! (must be 0) and the longest request latency around each swap against the
//! steady-state p99.

mod harness;
mod peers;

use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let dir = tempfile::Builder::new().prefix("wasmraid-reload-bench").tempdir_in("/dev/shm").expect("tmpfs");
    let legs: Vec<String> = (0..5).map(|i| dir.path().join(format!("leg{i}")).display().to_string()).collect();
    for leg in &legs {
        peers::filled_file(std::path::Path::new(leg), 128 << 20);
    }
    let args: Vec<String> = ["--layout", "raid5", "--args", "parity-n", "--chunk", "64K", "--legs", &legs.join(",")].iter().map(|s| s.to_string()).collect();
    let server = peers::wasmraid(dir.path(), &args);
    let log_prefix = dir.path().join("lat");
    let started = Instant::now();
    let fio = Command::new("fio")
        .args(["--name=reload", "--ioengine=nbd", &format!("--uri={}", server.uri), "--rw=randrw", "--bs=4k", "--iodepth=16"])
        .args(["--time_based", "--runtime=6", "--size=256M", "--log_avg_msec=0", "--output-format=json"])
        .arg(format!("--write_lat_log={}", log_prefix.display()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("fio");
    let mut swaps = Vec::new();
    std::thread::sleep(Duration::from_millis(1500));
    for component in ["raid4", "raid5", "raid4", "raid5"] {
        let t0 = started.elapsed();
        let out = Command::new(peers::wasmraid_bin()).args(["reload", "bench", component, "--run-dir"]).arg(dir.path().join("run")).output().expect("reload");
        let t1 = started.elapsed();
        assert!(out.status.success(), "reload failed: {}", String::from_utf8_lossy(&out.stderr));
        swaps.push((t0, t1));
        std::thread::sleep(Duration::from_millis(900));
    }
    let out = fio.wait_with_output().expect("fio");
    let text = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(&text[text.find('{').unwrap_or(0)..]).expect("fio json");
    let errors = json["jobs"][0]["error"].as_i64().unwrap_or(-1);
    let total_ios = json["jobs"][0]["read"]["total_ios"].as_u64().unwrap_or(0) + json["jobs"][0]["write"]["total_ios"].as_u64().unwrap_or(0);

    // Per-I/O latency logs: "time ms, latency ns, direction, size, offset".
    let mut samples: Vec<(u64, u64)> = Vec::new();
    for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("lat_lat") {
            for line in std::fs::read_to_string(entry.path()).unwrap_or_default().lines() {
                let f: Vec<u64> = line.split(',').take(2).filter_map(|x| x.trim().parse().ok()).collect();
                if f.len() == 2 {
                    samples.push((f[0], f[1]));
                }
            }
        }
    }
    // fio's clock starts when it connects, a little after `started`:
    // widen each swap's window by 150 ms on both sides.
    let in_window = |t: u64| swaps.iter().any(|(a, b)| t + 150 >= a.as_millis() as u64 && t <= b.as_millis() as u64 + 150);
    let mut steady: Vec<u64> = samples.iter().filter(|(t, _)| !in_window(*t)).map(|s| s.1).collect();
    steady.sort_unstable();
    let p99 = steady.get(steady.len() * 99 / 100).copied().unwrap_or(0);
    let worst = samples.iter().filter(|(t, _)| in_window(*t)).map(|s| s.1).max().unwrap_or(0);
    println!("== hot reload under fio randrw 4k iodepth 16, 4 swaps (raid5 parity-n <-> raid4)");
    println!("requests: {total_ios}, fio errors: {errors} (must be 0)");
    for (i, (a, b)) in swaps.iter().enumerate() {
        println!("swap {i}: reload command took {:.1} ms", (*b - *a).as_secs_f64() * 1e3);
    }
    harness::row("steady-state p99 latency", p99 as f64 / 1e3, "us", None);
    harness::row("steady-state longest latency (away from swaps)", steady.last().copied().unwrap_or(0) as f64 / 1e3, "us", None);
    harness::row("longest latency within 150 ms of a swap", worst as f64 / 1e3, "us", Some((worst as f64 / p99.max(1) as f64, "of the steady p99")));
    assert_eq!(errors, 0, "requests failed during reload");
    drop(server);
}
