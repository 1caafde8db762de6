//! A raid1 of two remote legs against the same raid1 of the same two files
//! as local legs, side by side in one run: the remote legs are nbdkit file
//! exports (multi-threaded, the fastest peer in `--bench nbd`) over TCP on
//! loopback (127.0.0.1), the local ones the files themselves. fio's nbd engine against wasmraid's export (Unix socket),
//! median of 3 alternating runs each: 4k random read and write at depth 32,
//! 1 MiB sequential write and read at depth 8. The ratio is the figure (no bar).

mod peers;

use std::process::Child;

const LEG_BYTES: u64 = 512 << 20;

fn main() {
    peers::require("nbdkit");
    peers::require("fio");
    let dir = tempfile::Builder::new().prefix("wasmraid-remote-bench").tempdir_in("/dev/shm").expect("tmpfs dir");
    let files: Vec<_> = (0..2).map(|i| dir.path().join(format!("leg{i}"))).collect();
    for f in &files {
        peers::filled_file(f, LEG_BYTES);
    }
    let ports = [10931u16, 10932];
    let mut exports: Vec<Child> = files.iter().zip(ports).map(|(f, p)| peers::nbdkit_tcp(f, p, None)).collect();
    let local: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let remote: Vec<String> = ports.iter().map(|p| format!("nbd://127.0.0.1:{p}/leg")).collect();
    let serve = |legs: &[String]| {
        let args: Vec<String> = ["--layout", "raid1", "--legs", &legs.join(",")].iter().map(|s| s.to_string()).collect();
        peers::wasmraid(dir.path(), &args)
    };
    let workloads: [(&str, &[&str], bool); 4] = [
        ("4k random read, depth 32", &["--rw=randread", "--bs=4k", "--iodepth=32", "--time_based", "--runtime=5", "--size=400M"], false),
        ("4k random write, depth 32", &["--rw=randwrite", "--bs=4k", "--iodepth=32", "--time_based", "--runtime=5", "--size=400M"], true),
        ("1 MiB sequential write, depth 8", &["--rw=write", "--bs=1M", "--iodepth=8", "--time_based", "--runtime=5", "--size=400M"], true),
        ("1 MiB sequential read, depth 8", &["--rw=read", "--bs=1M", "--iodepth=8", "--time_based", "--runtime=5", "--size=400M"], false),
    ];
    println!("== raid1 of two remote legs (nbdkit file, TCP 127.0.0.1) vs the same raid1 of local legs (tmpfs files), median of 3 alternating runs");
    for (what, args, write) in workloads {
        let (mut l, mut r) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let s = serve(&local);
            let (iops, bw) = peers::fio(&s.uri, args, write);
            l.push(if args.contains(&"--bs=4k") { iops } else { bw / 1e6 });
            s.stop(dir.path());
            let s = serve(&remote);
            let (iops, bw) = peers::fio(&s.uri, args, write);
            r.push(if args.contains(&"--bs=4k") { iops } else { bw / 1e6 });
            s.stop(dir.path());
        }
        let unit = if args.contains(&"--bs=4k") { "IOPS" } else { "MB/s" };
        let (a, b) = (peers::median(&l), peers::median(&r));
        println!("{what:<34} local {a:>10.0} {unit}   remote {b:>10.0} {unit}   remote/local {:.2}x", b / a);
    }
    for e in &mut exports {
        let _ = e.kill();
        let _ = e.wait();
    }
}
