//! Layout lookup, batch fill and proof rates, with ratios against native
//! Rust references measured in the same run.
//!
//! Bars: a cached lookup costs at most 1.2x the native reference of the same
//! layout; the proof of a periodic layout runs at >= 50 M chunks/s.

mod harness;

use harness::{ns_per_iter, row, seconds, walk};
use std::hint::black_box;
use std::sync::Arc;
use wasmraid::layout::Geometry;
use wasmraid::layout::proven::ProvenLayout;
use wasmraid::sandbox::{GuestInstance, LoadedComponent, Sandbox, SandboxConfig, component};

/// md RAID5 left-symmetric (`raid5_compute_sector`), natively.
fn native_raid5_ls(c: u64, n: u64) -> (u32, u64) {
    let d = n - 1;
    let (s, k) = (c / d, c % d);
    let p = d - s % n;
    (((p + 1 + k) % n) as u32, s)
}

/// md RAID6 left-symmetric, natively.
fn native_raid6_ls(c: u64, n: u64) -> (u32, u64) {
    let d = n - 2;
    let (s, k) = (c / d, c % d);
    let p = n - 1 - s % n;
    (((p + 2 + k) % n) as u32, s)
}

fn load(sandbox: &Arc<Sandbox>, name: &str) -> Arc<LoadedComponent> {
    Arc::new(component::load(sandbox, wasmraid::builtins::find(name).expect("built-in")).expect("loads"))
}

fn main() {
    let sandbox = Sandbox::new(SandboxConfig { cache_dir: None, ..SandboxConfig::default() }).expect("sandbox");
    const LOOKUPS: u64 = 4 << 20;
    println!("== per-lookup cost (ns), {LOOKUPS} lookups at pseudo-random data chunks, median of 7");
    for (name, legs, native) in [("raid5", 6u64, native_raid5_ls as fn(u64, u64) -> (u32, u64)), ("raid6", 8, native_raid6_ls)] {
        let g = Geometry { chunk_sectors: 128, leg_chunks: vec![1 << 20; legs as usize], args: "left-symmetric".into() };
        let component = load(&sandbox, name);
        let layout = ProvenLayout::prove(component.clone(), g.clone()).expect("proves");
        let chunks = layout.descriptor.data_chunk_count();
        // The two must agree before their speed means anything.
        for i in 0..10_000 {
            let c = walk(i, chunks);
            let p = layout.locate(c).expect("locate");
            assert_eq!((p.leg, p.chunk), native(c, legs), "{name} chunk {c}");
        }
        // The same pseudo-random chunk numbers for both, precomputed so the
        // walk itself is not measured.
        let sequence: Vec<u64> = (0..1u64 << 16).map(|i| walk(i, chunks)).collect();
        let at = |i: u64| sequence[(i & 0xffff) as usize];
        let native_ns = ns_per_iter(7, LOOKUPS, |i| {
            black_box(native(black_box(at(i)), black_box(legs)));
        });
        let cached_ns = ns_per_iter(7, LOOKUPS, |i| {
            black_box(layout.locate(black_box(at(i))).ok());
        });
        let mut guest = GuestInstance::new(component);
        guest.configure(&g).expect("configure");
        let d = u64::from(layout.descriptor.data_chunks);
        let uncached_ns = ns_per_iter(5, 20_000, |i| {
            black_box(guest.map_stripes(walk(i, chunks) / d, 1).ok());
        });
        row(&format!("{name} native Rust reference ({legs} legs)"), native_ns, "ns", None);
        row(&format!("{name} wasm guest through the cache"), cached_ns, "ns", Some((cached_ns / native_ns, "of native (bar <= 1.20)")));
        row(&format!("{name} uncached guest call (one stripe)"), uncached_ns, "ns", Some((uncached_ns / native_ns, "of native")));
    }

    println!("\n== batch fill rate (map-stripes of 4096 stripes)");
    for name in ["raid5", "raid6", "pyramid", "draid"] {
        let legs = if name == "pyramid" { 14 } else { 8 };
        let g = Geometry { chunk_sectors: 128, leg_chunks: vec![1 << 20; legs], args: String::new() };
        let mut guest = GuestInstance::new(load(&sandbox, name));
        guest.configure(&g).expect("configure");
        let per_batch = seconds(9, || {
            black_box(guest.map_stripes(4096, 4096).expect("map"));
        });
        row(&format!("{name} ({legs} legs)"), 4096.0 / per_batch / 1e6, "M stripe/s", None);
    }

    println!("\n== proof rate");
    // 100 TB at 1 MiB chunks over 8 legs: 12.5 TB per leg.
    let legs = 8usize;
    let per_leg_chunks = (100u64 << 40) / (1 << 20) / legs as u64;
    let big = Geometry { chunk_sectors: 2048, leg_chunks: vec![per_leg_chunks; legs], args: String::new() };
    for name in ["raid6", "raid10"] {
        let component = load(&sandbox, name);
        let mut report = None;
        let secs = seconds(3, || report = Some(ProvenLayout::prove(component.clone(), big.clone()).expect("proves").report));
        let chunks = report.map_or(0, |r| r.chunks);
        row(
            &format!("{name} periodic, 100 TiB at 1 MiB chunks ({chunks} chunks)"),
            chunks as f64 / secs / 1e6,
            "M chunk/s",
            Some((chunks as f64 / secs / 50e6, "of the 50 M chunk/s bar")),
        );
        println!("{:<48} {secs:>12.2} s", "  time for the whole proof");
    }
    let aperiodic = Geometry { chunk_sectors: 2048, leg_chunks: vec![1 << 18; 10], args: String::new() };
    let component = load(&sandbox, "draid");
    let mut report = None;
    let secs = seconds(3, || report = Some(ProvenLayout::prove(component.clone(), aperiodic.clone()).expect("proves").report));
    let chunks = report.map_or(0, |r| r.chunks);
    row(&format!("draid aperiodic, streamed from the guest ({chunks} chunks)"), chunks as f64 / secs / 1e6, "M chunk/s", None);
}
