//! Array write throughput, in process over files on tmpfs: RAID6 full-stripe
//! writes against RAID0 on the same legs. Bar: RAID6 >= 0.7x RAID0. With 10
//! legs a stripe holds 8 data chunks (512 KiB), so power-of-two requests are
//! whole stripes, and the ceiling is 8/10 = 0.8: RAID6 writes 10 chunks for
//! every 8 of data, RAID0 writes 10 of data.

mod harness;
mod peers;

use harness::{row, seconds};
use std::sync::Arc;
use wasmraid::array::Array;
use wasmraid::device::BlockDevice;
use wasmraid::device::file::FileLeg;
use wasmraid::layout::Geometry;
use wasmraid::layout::proven::ProvenLayout;
use wasmraid::sandbox::{Sandbox, SandboxConfig, component};

const LEGS: usize = 10;
const LEG_BYTES: u64 = 256 << 20;
const CHUNK: u64 = 64 << 10;

fn array(sandbox: &Arc<Sandbox>, dir: &std::path::Path, layout: &str) -> Array {
    let legs: Vec<(Arc<dyn BlockDevice>, u64)> =
        (0..LEGS).map(|i| (Arc::new(FileLeg::create(&dir.join(format!("{layout}-{i}")), LEG_BYTES).expect("leg")) as Arc<dyn BlockDevice>, 0)).collect();
    let c = Arc::new(component::load(sandbox, wasmraid::builtins::find(layout).expect("built-in")).expect("load"));
    let g = Geometry { chunk_sectors: (CHUNK / 512) as u32, leg_chunks: vec![LEG_BYTES / CHUNK; LEGS], args: String::new() };
    Array::new(layout, legs, ProvenLayout::prove(c, g).expect("prove"))
}

/// Logical bytes per second writing the whole array in requests of
/// `stripes` full stripes.
fn write_rate(a: &Array, stripes: u64) -> f64 {
    let d = u64::from(a.layout().descriptor.data_chunks);
    let request = (d * CHUNK * stripes) as usize;
    let data: Vec<u8> = (0..request).map(|i| (i * 7 + i / 4096) as u8).collect();
    let total = a.size() / request as u64 * request as u64;
    let secs = seconds(5, || {
        let mut at = 0;
        while at < total {
            a.write(&data, at, false).expect("write");
            at += request as u64;
        }
    });
    total as f64 / secs
}

fn main() {
    let sandbox = Sandbox::new(SandboxConfig { cache_dir: None, ..SandboxConfig::default() }).expect("sandbox");
    let dir = tempfile::Builder::new().prefix("wasmraid-array-bench").tempdir_in("/dev/shm").expect("tmpfs");
    let raid0 = array(&sandbox, dir.path(), "raid0");
    let raid6 = array(&sandbox, dir.path(), "raid6");
    println!("== sequential full-stripe writes, {LEGS} legs of {} MiB on tmpfs, 64 KiB chunks, median of 5 passes", LEG_BYTES >> 20);
    for stripes in [1u64, 4] {
        let only = std::env::var("ONLY").unwrap_or_default();
        let r0 = if only == "raid6" { 1.0 } else { write_rate(&raid0, stripes) };
        let r6 = if only == "raid0" { 1.0 } else { write_rate(&raid6, stripes) };
        row(&format!("raid0, {stripes} stripe(s) per request"), r0 / 1e6, "MB/s", None);
        row(&format!("raid6, {stripes} stripe(s) per request"), r6 / 1e6, "MB/s", Some((r6 / r0, "of raid0 (bar >= 0.70)")));
    }
    drop((raid0, raid6));
    through_nbd(dir.path());
    println!("(in process, one writer thread: the legs' tmpfs copy dominates; see the README)");
}

/// The same comparison through the NBD export with fio (1 MiB and 4 MiB
/// sequential writes, iodepth 8), legs allocated beforehand.
fn through_nbd(dir: &std::path::Path) {
    println!("== through the NBD export: fio nbd engine, sequential writes, iodepth 8, median of 3");
    let mut rates = Vec::new();
    for layout in ["raid0", "raid6"] {
        let legs: Vec<String> = (0..LEGS).map(|i| dir.join(format!("nbd-{layout}-{i}")).display().to_string()).collect();
        for leg in &legs {
            peers::filled_file(std::path::Path::new(leg), LEG_BYTES);
        }
        let args: Vec<String> = ["--layout", layout, "--chunk", "64K", "--legs", &legs.join(",")].iter().map(|s| s.to_string()).collect();
        let server = peers::wasmraid(dir, &args);
        let mut per_bs = Vec::new();
        for bs in ["1M", "4M"] {
            let mut runs: Vec<f64> =
                (0..3).map(|_| peers::fio(&server.uri, &["--rw=write", &format!("--bs={bs}"), "--iodepth=8", "--size=1G", "--loops=2"], true).1).collect();
            runs.sort_by(f64::total_cmp);
            per_bs.push((bs, runs[1]));
        }
        rates.push((layout, per_bs));
    }
    for i in 0..2 {
        let (bs, r0) = rates[0].1[i];
        let r6 = rates[1].1[i].1;
        row(&format!("raid0, {bs} writes"), r0 / 1e6, "MB/s", None);
        row(&format!("raid6, {bs} writes (whole stripes)"), r6 / 1e6, "MB/s", Some((r6 / r0, "of raid0 (bar >= 0.70)")));
    }
}

#[allow(dead_code)]
fn counters(raid6: &Array) {
    let c = &raid6.counters;
    println!(
        "raid6 writes: {} full-stripe, {} reconstruct, {} read-modify-write",
        c.full_stripe.load(std::sync::atomic::Ordering::Relaxed),
        c.rcw.load(std::sync::atomic::Ordering::Relaxed),
        c.rmw.load(std::sync::atomic::Ordering::Relaxed)
    );
}
