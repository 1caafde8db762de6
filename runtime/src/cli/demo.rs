//! `wasmraid demo`: prove and draw a few built-in layouts.

use super::SandboxArgs;
use super::algo::load;
use std::process::ExitCode;
use wasmraid::layout::Geometry;
use wasmraid::layout::draw::Grid;
use wasmraid::layout::proven::ProvenLayout;
use wasmraid::units::format_size;

const SHOWCASE: &[(&str, u32, &str, u64)] = &[
    ("raid5", 4, "left-symmetric", 4),
    ("raid6", 5, "left-asymmetric", 5),
    ("raid10", 3, "n2", 4),
    ("pyramid", 14, "elegant", 4),
    ("draid", 8, "p=2,s=1,seed=42", 4),
];

pub fn run(sandbox_args: &SandboxArgs) -> anyhow::Result<ExitCode> {
    let sandbox = sandbox_args.sandbox()?;
    for &(name, legs, args, rows) in SHOWCASE {
        let (origin, loaded) = load(name, &sandbox)?;
        let g = Geometry { chunk_sectors: 128, leg_chunks: vec![16384; legs as usize], args: args.into() };
        let layout = ProvenLayout::prove(loaded.clone(), g).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        let r = &layout.report;
        println!(
            "== {name} {args:?} on {legs} legs of 1 GiB, 64 KiB chunks: {} usable; proven in {:.1} ms ({} chunks, survives {} failed legs); {}",
            format_size(layout.capacity_bytes()),
            r.elapsed.as_secs_f64() * 1e3,
            r.chunks,
            r.fault_tolerance,
            if loaded.stats.from_cache { "loaded from the compile cache" } else { "compiled" },
        );
        print!("{}", Grid::of(&layout, 0..rows, 1 << 16)?.text());
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
