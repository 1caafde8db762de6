//! The fixed cost of a small request through the array, in process over
//! legs in memory: no kernel I/O, so whatever the data path's bookkeeping
//! (counters, latency histograms) costs shows undiluted. 4 KiB reads and
//! writes at random places of raid0 and raid5 over four legs, on one
//! thread and on two at once (two threads share the array's counters and
//! histograms: their cache lines bounce). Run it before and after a change
//! to the data path and compare the nanoseconds per request.

mod harness;

use harness::{ns_per_iter, row, walk};
use std::sync::Arc;
use wasmraid::array::Array;
use wasmraid::device::BlockDevice;
use wasmraid::device::mem::MemLeg;
use wasmraid::layout::Geometry;
use wasmraid::layout::proven::ProvenLayout;
use wasmraid::sandbox::{Sandbox, SandboxConfig, component};

const LEGS: usize = 4;
const LEG_BYTES: u64 = 64 << 20;
const CHUNK: u64 = 64 << 10;
const ITERS: u64 = 200_000;

fn array(sandbox: &Arc<Sandbox>, layout: &str) -> Array {
    let legs: Vec<(Arc<dyn BlockDevice>, u64)> = (0..LEGS).map(|i| (Arc::new(MemLeg::new(format!("m{i}"), LEG_BYTES)) as Arc<dyn BlockDevice>, 0)).collect();
    let c = Arc::new(component::load(sandbox, wasmraid::builtins::find(layout).expect("built-in")).expect("load"));
    let g = Geometry { chunk_sectors: (CHUNK / 512) as u32, leg_chunks: vec![LEG_BYTES / CHUNK; LEGS], args: String::new() };
    Array::new(layout, legs, ProvenLayout::prove(c, g).expect("prove"))
}

/// Median ns per 4 KiB request over `threads` threads at once.
fn per_request(a: &Array, threads: u64, write: bool) -> f64 {
    let blocks = a.size() / 4096;
    let per_thread: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut buf = vec![t as u8 + 1; 4096];
                    ns_per_iter(5, ITERS, |i| {
                        let at = walk(i * threads + t, blocks) * 4096;
                        let r = if write { a.write_at(&buf, at, false) } else { a.read_at(&mut buf, at) };
                        r.expect("request");
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    per_thread.iter().sum::<f64>() / per_thread.len() as f64
}

fn main() {
    // `IOCOST_ONLY=raid0-write-1` runs one case (alternate two builds
    // case by case on a busy machine).
    let only = std::env::var("IOCOST_ONLY").ok();
    let sandbox = Sandbox::new(SandboxConfig { cache_dir: None, ..SandboxConfig::default() }).expect("sandbox");
    for layout in ["raid0", "raid5"] {
        if only.as_deref().is_some_and(|o| !o.starts_with(&format!("{layout}-"))) {
            continue;
        }
        let a = array(&sandbox, layout);
        // Every block written once first: reads then copy real bytes.
        let fill = vec![7u8; 1 << 20];
        for at in (0..a.size()).step_by(fill.len()) {
            a.write_at(&fill, at, false).expect("fill");
        }
        for threads in [1, 2] {
            for write in [false, true] {
                let op = if write { "write" } else { "read" };
                if only.as_deref().is_some_and(|o| o != format!("{layout}-{op}-{threads}")) {
                    continue;
                }
                row(&format!("{layout} 4 KiB {op}, {threads} thread(s)"), per_request(&a, threads, write), "ns/request", None);
            }
        }
    }
}
