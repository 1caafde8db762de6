//! The NBD export against nbdkit's file plugin and qemu-nbd, same client
//! (fio's nbd engine), all on tmpfs: a 4-leg raid0 for wasmraid, one file of
//! the same total size for the others. 4k random read at iodepth 32 (IOPS)
//! and 1 MiB sequential read (MB/s). Bar: wasmraid >= 1.0x the faster peer.

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

    let workloads: [(&str, Vec<&str>, bool); 2] = [
        ("4k random read, iodepth 32", vec!["--rw=randread", "--bs=4k", "--iodepth=32", "--time_based", "--runtime=4", "--size=1G"], true),
        ("1 MiB sequential read, iodepth 4", vec!["--rw=read", "--bs=1M", "--iodepth=4", "--time_based", "--runtime=4", "--size=1G"], false),
    ];
    println!("== NBD export on tmpfs, fio nbd engine over a Unix socket, median of 3 runs");
    for (name, args, iops) in &workloads {
        let mut results: Vec<(&str, f64)> = Vec::new();
        for server in ["wasmraid", "nbdkit file", "qemu-nbd"] {
            let mut runs = Vec::new();
            for _ in 0..3 {
                let s = match server {
                    "wasmraid" => peers::wasmraid(dir.path(), &serve_args),
                    "nbdkit file" => peers::nbdkit(dir.path(), &single),
                    _ => peers::qemu_nbd(dir.path(), &single),
                };
                let (i, bw) = peers::fio(&s.uri, args, false);
                runs.push(if *iops { i } else { bw / 1e6 });
            }
            results.push((server, peers::median(&runs)));
        }
        let unit = if *iops { "IOPS" } else { "MB/s" };
        let best_peer = results[1..].iter().map(|r| r.1).fold(0.0, f64::max);
        println!("{name}");
        for (server, v) in &results {
            if *server == "wasmraid" {
                println!("  {server:<12} {v:>12.0} {unit}   {:.2}x the faster peer (bar >= 1.00)", v / best_peer);
            } else {
                println!("  {server:<12} {v:>12.0} {unit}");
            }
        }
    }
}
