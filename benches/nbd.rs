//! The NBD export against nbdkit's file plugin and qemu-nbd, same client
//! (fio's nbd engine), all on tmpfs: a 4-leg raid0 for wasmraid, one file of
//! the same total size for the others. 4k random read at iodepth 32 (IOPS)
//! and 1 MiB sequential read at iodepth 8 (MB/s), issue 15's bars: wasmraid >= 1.0x the
//! faster peer; 1 MiB sequential write at iodepth 8 (MB/s), printed, no bar.
//! `WASMRAID_BENCH_ROUNDS` (default 3) sets the rounds.

mod peers;

use std::path::Path;

const TOTAL: u64 = 1 << 30;

fn main() {
    let dir = tempfile::Builder::new().prefix("wasmraid-nbd-bench").tempdir_in("/dev/shm").expect("tmpfs dir");
    let legs: Vec<String> = (0..4).map(|i| dir.path().join(format!("leg{i}")).display().to_string()).collect();
    for leg in &legs {
        peers::filled_file(Path::new(leg), TOTAL / 4);
    }
    let single = dir.path().join("single");
    peers::filled_file(&single, TOTAL);
    let serve_args: Vec<String> = ["--layout", "raid0", "--chunk", "64K", "--legs", &legs.join(",")].iter().map(|s| s.to_string()).collect();

    let workloads: [(&str, Vec<&str>, bool); 3] = [
        ("4k random read, iodepth 32", vec!["--rw=randread", "--bs=4k", "--iodepth=32", "--time_based", "--runtime=4", "--size=1G"], true),
        ("1 MiB sequential read, iodepth 8", vec!["--rw=read", "--bs=1M", "--iodepth=8", "--time_based", "--runtime=4", "--size=1G"], false),
        ("1 MiB sequential write, iodepth 8", vec!["--rw=write", "--bs=1M", "--iodepth=8", "--time_based", "--runtime=4", "--size=1G"], false),
    ];
    let rounds = std::env::var("WASMRAID_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3usize).max(1);
    let servers = ["wasmraid", "nbdkit file", "qemu-nbd"];
    println!("== NBD export on tmpfs, fio nbd engine over a Unix socket; {rounds} rounds, the servers alternated within each; medians");
    for (name, args, iops) in &workloads {
        let mut runs: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
        // The server's own CPU (user + system) per GB it served: what it
        // costs, whoever is the bottleneck (here fio's one thread).
        let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
        for _ in 0..rounds {
            for (i, server) in servers.iter().enumerate() {
                let s = match *server {
                    "wasmraid" => peers::wasmraid(dir.path(), &serve_args),
                    "nbdkit file" => peers::nbdkit(dir.path(), &single),
                    _ => peers::qemu_nbd(dir.path(), &single),
                };
                let before = peers::cpu_seconds(s.pid());
                let write = args.contains(&"--rw=write");
                let job = peers::fio_job(&s.uri, args, write);
                let used = peers::cpu_seconds(s.pid()) - before;
                let (n, bw, bytes) = (job["iops"].as_f64().unwrap_or(0.0), job["bw_bytes"].as_f64().unwrap_or(0.0), job["io_bytes"].as_f64().unwrap_or(0.0));
                runs[i].push(if *iops { n } else { bw / 1e6 });
                cpu[i].push(if bytes > 0.0 { used / (bytes / 1e9) } else { 0.0 });
            }
        }
        let unit = if *iops { "IOPS" } else { "MB/s" };
        let medians: Vec<f64> = runs.iter().map(|r| peers::median(r)).collect();
        let best_peer = medians[1..].iter().copied().fold(0.0, f64::max);
        println!("{name}");
        for (i, server) in servers.iter().enumerate() {
            let every = runs[i].iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" ");
            let bar = if name.contains("write") { "no bar" } else { "bar >= 1.00" };
            let ratio = if i == 0 { format!("   {:.2}x the faster peer ({bar})", medians[0] / best_peer) } else { String::new() };
            println!("  {server:<12} {:>12.0} {unit}{ratio}   (rounds: {every}); server CPU {:.2} s per GB", medians[i], peers::median(&cpu[i]));
        }
    }
}
