//! What TLS costs, in the same run, on the same files:
//!
//! 1. Remote legs: a raid1 of two nbdkit file exports over TCP on loopback,
//!    `--tls=require` (nbds:// legs) against plaintext (nbd:// legs).
//!    Bar (issue 17): the 1 MiB sequential write at least 0.7x.
//! 2. The export: wasmraid serving a raid1 of two tmpfs files with
//!    `--tls require` against plaintext, nbdcopy (libnbd, one connection,
//!    8 requests of 1 MiB in flight) as the client, nbds:// against nbd://
//!    (fio's nbd engine cannot: libnbd refuses `tls-certificates=` in the
//!    URIs of programs that do not allow local files).
//!
//! Alternating rounds (plaintext, then TLS), every round printed, medians
//! and their ratio. `WASMRAID_BENCH_ROUNDS`
//! (default 3) and `WASMRAID_BENCH_SECONDS` (default 5) change the run.

mod peers;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

const LEG_BYTES: u64 = 512 << 20;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn certificates(dir: &Path) -> PathBuf {
    peers::require("openssl");
    let out = dir.join("certs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-certs.sh");
    let ok = Command::new(script).arg(&out).args(["bench", "localhost", "127.0.0.1"]).status().is_ok_and(|s| s.success());
    assert!(ok, "scripts/make-certs.sh failed");
    out
}

struct Workload {
    what: &'static str,
    args: Vec<String>,
    write: bool,
    unit: &'static str,
}

fn workloads(seconds: usize) -> Vec<Workload> {
    let timed = |rw: &str, bs: &str, depth: &str| -> Vec<String> {
        [format!("--rw={rw}"), format!("--bs={bs}"), format!("--iodepth={depth}"), "--time_based".into(), format!("--runtime={seconds}"), "--size=400M".into()]
            .to_vec()
    };
    vec![
        Workload { what: "1 MiB sequential write, depth 8", args: timed("write", "1M", "8"), write: true, unit: "MB/s" },
        Workload { what: "4k random read, depth 32", args: timed("randread", "4k", "32"), write: false, unit: "IOPS" },
    ]
}

fn measure(uri: &str, w: &Workload) -> f64 {
    let args: Vec<&str> = w.args.iter().map(String::as_str).collect();
    let (iops, bw) = peers::fio(uri, &args, w.write);
    if w.unit == "IOPS" { iops } else { bw / 1e6 }
}

/// One row: every round, the medians, the ratio, and the bar if any.
fn report(what: &str, unit: &str, plain: &[f64], tls: &[f64], bar: Option<f64>) {
    let (p, t) = (peers::median(plain), peers::median(tls));
    let ratio = t / p;
    let rounds = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" ");
    println!(
        "{what:<34} plaintext {p:>9.0} {unit}  TLS {t:>9.0} {unit}  TLS/plaintext {ratio:.2}x   (rounds: plaintext {}; TLS {})",
        rounds(plain),
        rounds(tls)
    );
    if let Some(bar) = bar {
        let verdict = if ratio >= bar { "meets" } else { "is BELOW" };
        println!("  {what}: {ratio:.2}x {verdict} the bar of {bar:.1}x");
    }
}

fn main() {
    peers::require("nbdkit");
    peers::require("fio");
    let rounds = env_or("WASMRAID_BENCH_ROUNDS", 3).max(1);
    let seconds = env_or("WASMRAID_BENCH_SECONDS", 5).max(1);
    let dir = tempfile::Builder::new().prefix("wasmraid-tls-bench").tempdir_in("/dev/shm").expect("tmpfs dir");
    let certs = certificates(dir.path());
    let files: Vec<_> = (0..2).map(|i| dir.path().join(format!("leg{i}"))).collect();
    for f in &files {
        peers::filled_file(f, LEG_BYTES);
    }

    println!(
        "== remote legs: raid1 of two nbdkit file exports (tmpfs) over TCP 127.0.0.1, TLS (--tls=require) vs plaintext; {rounds} alternating rounds of {seconds} s"
    );
    let (plain_ports, tls_ports) = ([10941u16, 10942], [10943u16, 10944]);
    let mut servers: Vec<Child> = Vec::new();
    servers.extend(files.iter().zip(plain_ports).map(|(f, p)| peers::nbdkit_tcp(f, p, None)));
    servers.extend(files.iter().zip(tls_ports).map(|(f, p)| peers::nbdkit_tcp(f, p, Some(&certs))));
    let plain_legs: Vec<String> = plain_ports.iter().map(|p| format!("nbd://127.0.0.1:{p}/leg")).collect();
    let tls_legs: Vec<String> = tls_ports.iter().map(|p| format!("nbds://localhost:{p}/leg?tls-certificates={}", certs.display())).collect();
    let serve = |legs: &[String]| {
        let args: Vec<String> = ["--layout", "raid1", "--legs", &legs.join(",")].iter().map(|s| s.to_string()).collect();
        peers::wasmraid(dir.path(), &args)
    };
    for w in workloads(seconds) {
        let (mut plain, mut tls) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let s = serve(&plain_legs);
            plain.push(measure(&s.uri, &w));
            s.stop(dir.path());
            let s = serve(&tls_legs);
            tls.push(measure(&s.uri, &w));
            s.stop(dir.path());
        }
        report(w.what, w.unit, &plain, &tls, w.write.then_some(0.7));
    }
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }

    println!(
        "== the export: wasmraid raid1 of two tmpfs files over TCP 127.0.0.1, --tls require (nbds://) vs plaintext (nbd://), nbdcopy of {} MiB; {rounds} alternating rounds",
        COPY_BYTES >> 20
    );
    let local: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let port = 10945u16;
    let export = |tls: bool| {
        let mut args: Vec<String> =
            ["--layout", "raid1", "--legs", &local.join(","), "--nbd", &format!("127.0.0.1:{port}")].iter().map(|s| s.to_string()).collect();
        if tls {
            args.extend(["--tls".into(), "require".into(), "--tls-certificates".into(), certs.display().to_string()]);
        }
        let s = peers::wasmraid(dir.path(), &args);
        peers::wait_port(port, "wasmraid");
        s
    };
    let tls_uri = format!("nbds://localhost:{port}/bench?tls-certificates={}", certs.display());
    let plain_uri = format!("nbd://127.0.0.1:{port}/bench");
    let source = dir.path().join("source");
    peers::filled_file(&source, COPY_BYTES);
    let source = source.display().to_string();
    for (what, write) in [("1 MiB sequential write (nbdcopy)", true), ("1 MiB sequential read (nbdcopy)", false)] {
        let (mut plain, mut tls) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            for (uri, into) in [(&plain_uri, &mut plain), (&tls_uri, &mut tls)] {
                let s = export(std::ptr::eq(uri, &tls_uri));
                into.push(if write { nbdcopy(&source, uri) } else { nbdcopy(uri, "null:") });
                s.stop(dir.path());
            }
        }
        report(what, "MB/s", &plain, &tls, None);
    }
}

/// Bytes nbdcopy moves per round.
const COPY_BYTES: u64 = 384 << 20;

/// nbdcopy from `from` to `to`, one connection, 8 requests of 1 MiB: MB/s.
fn nbdcopy(from: &str, to: &str) -> f64 {
    peers::require("nbdcopy");
    let started = std::time::Instant::now();
    let out =
        Command::new("nbdcopy").args(["--connections=1", "--requests=8", "--request-size=1048576", "--flush"]).arg(from).arg(to).output().expect("run nbdcopy");
    assert!(out.status.success(), "nbdcopy {from} {to}: {}", String::from_utf8_lossy(&out.stderr));
    COPY_BYTES as f64 / started.elapsed().as_secs_f64() / 1e6
}
