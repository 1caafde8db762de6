//! The same periodic layout (raid4) written in Rust, C, Zig, Python and
//! JavaScript, by the tutorials in docs/tutorials/, serving the same legs:
//! the per-I/O cost on the data path must not depend on the language (bar:
//! every language within 5% of the Rust tutorial's, in this run). The guest
//! is called to map one period and prove it; every I/O after that is served
//! from the cached map, so a 100x slower guest costs nothing per I/O. The
//! guest's own per-stripe cost is printed beside it, to show what the cache
//! hides.
//!
//! Two measurements, contenders alternated round by round, medians:
//! in process, 4 KiB random reads and read-modify-write writes through
//! `Array` on tmpfs legs (the data path without a frontend); and through the
//! NBD export with fio (4 KiB random reads, iodepth 16).
//!
//! The components come from `scripts/tutorials.sh` (run here when missing).

mod harness;
mod peers;

use harness::{ns_per_iter, row, walk};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use wasmraid::array::Array;
use wasmraid::device::BlockDevice;
use wasmraid::device::file::FileLeg;
use wasmraid::layout::Geometry;
use wasmraid::layout::proven::ProvenLayout;
use wasmraid::sandbox::{GuestInstance, Sandbox, SandboxConfig, component};

const LANGUAGES: [&str; 5] = ["rust", "c", "zig", "python", "javascript"];
const LEGS: usize = 5;
const LEG_BYTES: u64 = 64 << 20;
const CHUNK: u64 = 64 << 10;
const ROUNDS: usize = 5;

fn components() -> Vec<(&'static str, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = |lang: &str| root.join(format!("target/tutorials/raid4-{lang}.wasm"));
    if LANGUAGES.iter().any(|l| !path(l).exists()) {
        println!("(building the tutorials' components: scripts/tutorials.sh)");
        let ok = std::process::Command::new(root.join("scripts/tutorials.sh")).status().is_ok_and(|s| s.success());
        assert!(ok, "scripts/tutorials.sh failed");
    }
    LANGUAGES.iter().map(|l| (*l, path(l))).collect()
}

struct Contender {
    language: &'static str,
    array: Array,
    guest_ns_per_stripe: f64,
    load_ms: f64,
}

fn contender(sandbox: &Arc<Sandbox>, legs: &[PathBuf], language: &'static str, file: &Path) -> Contender {
    let bytes = std::fs::read(file).expect("component");
    let started = Instant::now();
    let loaded = Arc::new(component::load(sandbox, &bytes).unwrap_or_else(|e| panic!("{language}: {e}")));
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let g = Geometry { chunk_sectors: (CHUNK / 512) as u32, leg_chunks: vec![LEG_BYTES / CHUNK; LEGS], args: String::new() };
    let mut guest = GuestInstance::new(loaded.clone());
    guest.configure(&g).expect("configure");
    let guest_ns_per_stripe = ns_per_iter(3, 4, |_| {
        std::hint::black_box(guest.map_stripes(0, 256).expect("map"));
    }) / 256.0;
    let legs: Vec<(Arc<dyn BlockDevice>, u64)> =
        legs.iter().map(|p| (Arc::new(FileLeg::open(p, Default::default()).expect("leg")) as Arc<dyn BlockDevice>, 0)).collect();
    let array = Array::new(language, legs, ProvenLayout::prove(loaded, g).expect("prove"));
    Contender { language, array, guest_ns_per_stripe, load_ms }
}

fn main() {
    let components = components();
    let sandbox = Sandbox::new(SandboxConfig { cache_dir: None, ..SandboxConfig::default() }).expect("sandbox");
    let dir = tempfile::Builder::new().prefix("wasmraid-languages-bench").tempdir_in("/dev/shm").expect("tmpfs");
    let legs: Vec<PathBuf> = (0..LEGS).map(|i| dir.path().join(format!("leg{i}"))).collect();
    for leg in &legs {
        peers::filled_file(leg, LEG_BYTES);
    }
    // The layouts are identical, so every contender serves the same legs.
    let contenders: Vec<Contender> = components.iter().map(|(lang, file)| contender(&sandbox, &legs, lang, file)).collect();
    let size = contenders[0].array.size();
    let blocks = size / 4096;

    println!("== raid4 from docs/tutorials/, {LEGS} legs of {} MiB on tmpfs, 64 KiB chunks", LEG_BYTES >> 20);
    println!("   the guests themselves (compile, then map-stripes batched by 256):");
    for c in &contenders {
        row(&format!("{:<10} guest map-stripes", c.language), c.guest_ns_per_stripe, "ns/stripe", None);
    }
    for c in &contenders {
        row(&format!("{:<10} compile", c.language), c.load_ms, "ms", None);
    }

    println!("== in process: per-I/O cost through Array, median of {ROUNDS} alternating rounds");
    let mut read_ns = vec![Vec::new(); contenders.len()];
    let mut write_ns = vec![Vec::new(); contenders.len()];
    let mut buf = vec![0u8; 4096];
    let data = vec![0x5au8; 4096];
    for _ in 0..ROUNDS {
        for (i, c) in contenders.iter().enumerate() {
            read_ns[i].push(ns_per_iter(3, 20_000, |n| c.array.read(&mut buf, walk(n, blocks) * 4096).expect("read")));
            write_ns[i].push(ns_per_iter(3, 5_000, |n| c.array.write(&data, walk(n, blocks) * 4096, false).expect("write")));
        }
    }
    report("4 KiB random read", &contenders, &read_ns, "ns/IO");
    report("4 KiB random write (rmw)", &contenders, &write_ns, "ns/IO");
    drop(contenders);

    println!("== through NBD: fio 4 KiB random read, iodepth 16, 3 s, median of 5 alternating rounds");
    println!("   (rust runs twice per round: the gap between its two slots is this machine's noise floor)");
    let cache = dir.path().join("cache");
    let mut nbd: Vec<(&str, PathBuf)> = components.clone();
    nbd.insert(1, ("rust again", components[0].1.clone()));
    let mut iops = vec![Vec::new(); nbd.len()];
    for _ in 0..5 {
        for (i, (lang, file)) in nbd.iter().enumerate() {
            let sdir = dir.path().join(lang.replace(' ', "-"));
            std::fs::create_dir_all(&sdir).expect("server folder");
            let args: Vec<String> = vec![
                "--layout".into(),
                file.display().to_string(),
                "--chunk".into(),
                "64K".into(),
                "--legs".into(),
                legs.iter().map(|l| l.display().to_string()).collect::<Vec<_>>().join(","),
                "--cache-dir".into(),
                cache.display().to_string(),
            ];
            let server = peers::wasmraid(&sdir, &args);
            let (ops, _) = peers::fio(&server.uri, &["--rw=randread", "--bs=4k", "--iodepth=16", "--time_based", "--runtime=3", "--size=256M"], false);
            server.stop(&sdir);
            iops[i].push(1e9 / ops);
        }
    }
    let names: Vec<&str> = nbd.iter().map(|(l, _)| *l).collect();
    report_named("4 KiB random read via NBD", &names, &iops, "ns/IO (1/IOPS)");
}

fn report(what: &str, contenders: &[Contender], samples: &[Vec<f64>], unit: &str) {
    let names: Vec<&str> = contenders.iter().map(|c| c.language).collect();
    report_named(what, &names, samples, unit);
}

/// Each language's median against the Rust one, and the spread.
fn report_named(what: &str, names: &[&str], samples: &[Vec<f64>], unit: &str) {
    let medians: Vec<f64> = samples.iter().map(|s| peers::median(s)).collect();
    let reference = medians[0];
    for (name, m) in names.iter().zip(&medians) {
        row(&format!("{what}: {name}"), *m, unit, Some((m / reference, "of rust's cost (bar <= 1.05)")));
    }
    let (lo, hi) = medians.iter().fold((f64::MAX, 0f64), |(lo, hi), m| (lo.min(*m), hi.max(*m)));
    println!("{what}: spread {:.1}% (slowest / fastest)", (hi / lo - 1.0) * 100.0);
}
