//! `wasmraid algo ...`: compile, check (prove), show (draw), list.

use super::SandboxArgs;
use super::guest_tools;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use wasmraid::builtins::{self, Origin};
use wasmraid::layout::Geometry;
use wasmraid::layout::compare;
use wasmraid::layout::draw::Grid;
use wasmraid::layout::proven::{LayoutError, ProvenLayout};
use wasmraid::sandbox::{GuestInstance, LoadedComponent, Sandbox, component};
use wasmraid::units::{format_size, parse_size};

#[derive(Subcommand)]
pub enum AlgoCommand {
    /// List the built-in layouts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Compile a component ahead of time into the cache.
    Compile {
        /// A component file or a built-in name.
        component: String,
        #[arg(long)]
        json: bool,
    },
    /// Prove a layout valid for a geometry, and measure it.
    Check {
        /// A component file or a built-in name.
        component: String,
        #[command(flatten)]
        geometry: GeometryArgs,
        #[arg(long)]
        json: bool,
    },
    /// Draw a layout as a grid of legs by rows.
    Show {
        /// A component file or a built-in name.
        component: String,
        #[command(flatten)]
        geometry: GeometryArgs,
        /// Rows to draw.
        #[arg(long, default_value_t = 12)]
        rows: u64,
        /// First row to draw.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Also write the picture as SVG to this file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Prove that two layouts place every chunk of a geometry alike (e.g. a port and the built-in it copies).
    Diff {
        /// A component file or a built-in name.
        a: String,
        /// A component file or a built-in name.
        b: String,
        #[command(flatten)]
        geometry: GeometryArgs,
        #[arg(long)]
        json: bool,
    },
    /// Print the layout contract (WIT) a component implements.
    Wit(guest_tools::WitArgs),
    /// Write bindings for the contract, for languages without a generator of their own.
    Bindings(guest_tools::BindingsArgs),
    /// Wrap a core module into a layout component (no WASI), recording its language.
    Componentize(guest_tools::ComponentizeArgs),
}

/// The array a layout is checked or drawn for.
#[derive(Args, Clone)]
pub struct GeometryArgs {
    /// Number of legs.
    #[arg(long, default_value_t = 6)]
    legs: u32,
    /// Chunk size (e.g. 64K).
    #[arg(long, default_value = "64K")]
    chunk: String,
    /// Size of every leg (e.g. 1G).
    #[arg(long, default_value = "1G")]
    leg_size: String,
    /// Sizes of legs of unequal size, comma separated (overrides --legs and --leg-size).
    #[arg(long, value_delimiter = ',')]
    leg_sizes: Vec<String>,
    /// The algorithm's arguments (e.g. left-symmetric, n2, scheme=...).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    args: String,
}

impl GeometryArgs {
    pub fn geometry(&self) -> anyhow::Result<Geometry> {
        let chunk = parse_size(&self.chunk)?;
        if chunk == 0 || chunk % 512 != 0 || chunk / 512 > u64::from(u32::MAX) {
            bail!("chunk size {} must be a non-zero multiple of 512 bytes", self.chunk);
        }
        let sizes: Vec<u64> = if self.leg_sizes.is_empty() {
            vec![parse_size(&self.leg_size)?; self.legs as usize]
        } else {
            self.leg_sizes.iter().map(|s| parse_size(s)).collect::<Result<_, _>>()?
        };
        if sizes.is_empty() {
            bail!("an array needs at least one leg");
        }
        Ok(Geometry { chunk_sectors: (chunk / 512) as u32, leg_chunks: sizes.iter().map(|s| s / chunk).collect(), args: self.args.clone() })
    }

    pub fn describe(&self, g: &Geometry) -> String {
        let sizes: Vec<u64> = g.leg_chunks.iter().map(|c| c * g.chunk_bytes()).collect();
        let legs = if sizes.windows(2).all(|w| w[0] == w[1]) {
            format!("{} legs x {}", sizes.len(), format_size(sizes[0]))
        } else {
            format!("{} legs of {}", sizes.len(), sizes.iter().map(|s| format_size(*s)).collect::<Vec<_>>().join(", "))
        };
        format!("{legs}, chunk {}, args {:?}", format_size(g.chunk_bytes()), g.args)
    }
}

pub fn run(cmd: AlgoCommand, sandbox_args: &SandboxArgs) -> anyhow::Result<ExitCode> {
    match cmd {
        AlgoCommand::List { json } => list(json),
        AlgoCommand::Compile { component, json } => compile(&component, &sandbox_args.sandbox()?, json),
        AlgoCommand::Check { component, geometry, json } => check(&component, &geometry, &sandbox_args.sandbox()?, json),
        AlgoCommand::Diff { a, b, geometry, json } => diff(&a, &b, &geometry, &sandbox_args.sandbox()?, json),
        AlgoCommand::Wit(args) => guest_tools::wit(args).map(|()| ExitCode::SUCCESS),
        AlgoCommand::Bindings(args) => guest_tools::bindings(args).map(|()| ExitCode::SUCCESS),
        AlgoCommand::Componentize(args) => guest_tools::componentize(args).map(|()| ExitCode::SUCCESS),
        AlgoCommand::Show { component, geometry, rows, from, svg } => {
            let sandbox = sandbox_args.sandbox()?;
            let (origin, loaded) = load(&component, &sandbox)?;
            let g = geometry.geometry()?;
            let layout = ProvenLayout::prove(loaded, g.clone()).map_err(|e| refusal(&origin, e))?;
            let grid = Grid::of(&layout, from..from + rows, 1 << 20)?;
            println!("{} on {}", layout.name, geometry.describe(&g));
            print!("{}", grid.text());
            if let Some(path) = svg {
                std::fs::write(&path, grid.svg(&format!("{} - {}", layout.name, geometry.describe(&g))))
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list(json: bool) -> anyhow::Result<ExitCode> {
    let all = builtins::all();
    if json {
        let v: Vec<_> = all.iter().map(|b| json!({"name": b.name, "size": b.bytes.len(), "summary": b.summary})).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for b in all {
            println!("{:<8} {:>7}  {}", b.name, format_size(b.bytes.len() as u64), b.summary);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn load(spec: &str, sandbox: &Arc<Sandbox>) -> anyhow::Result<(Origin, Arc<LoadedComponent>)> {
    let (origin, bytes) = builtins::resolve(spec)?;
    let loaded = component::load(sandbox, &bytes).with_context(|| format!("loading {origin}"))?;
    for note in [&loaded.stats.cache_rejected, &loaded.stats.cache_write_failed].into_iter().flatten() {
        eprintln!("wasmraid: note: {note}");
    }
    Ok((origin, Arc::new(loaded)))
}

fn refusal(origin: &Origin, e: LayoutError) -> anyhow::Error {
    anyhow::anyhow!("{origin}: {e}")
}

fn compile(spec: &str, sandbox: &Arc<Sandbox>, json: bool) -> anyhow::Result<ExitCode> {
    let (origin, loaded) = load(spec, sandbox)?;
    let path = sandbox
        .config()
        .cache_dir
        .as_ref()
        .map(|d| wasmraid::sandbox::artifact_cache::ArtifactCache::new(d).path_for(&loaded.sha256, &sandbox.compatibility_hash()));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"component": origin.to_string(), "sha256": loaded.hash(), "stats": loaded.stats, "artifact": path}))?
        );
    } else {
        let how = if loaded.stats.from_cache { "already compiled; loaded from cache" } else { "compiled" };
        println!("{origin}: {how} in {:.2} ms", loaded.stats.load_time.as_secs_f64() * 1e3);
        if let Some(p) = path {
            println!("artifact {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Per-stripe cost of the guest (batched) and of the cached lookup.
struct Costs {
    guest_ns_per_stripe: f64,
    cached_ns_per_lookup: f64,
}

fn measure(loaded: &Arc<LoadedComponent>, layout: &ProvenLayout) -> anyhow::Result<Costs> {
    let mut instance = GuestInstance::new(loaded.clone());
    instance.configure(&layout.geometry)?;
    let batch = layout.descriptor.stripes.min(4096) as u32;
    let started = Instant::now();
    let rounds = 5;
    for _ in 0..rounds {
        std::hint::black_box(instance.map_stripes(0, batch)?);
    }
    let guest_ns_per_stripe = started.elapsed().as_nanos() as f64 / f64::from(rounds * batch);
    let chunks = layout.descriptor.data_chunk_count().max(1);
    let lookups = 1u64 << 20;
    let started = Instant::now();
    let mut c = 0u64;
    for _ in 0..lookups {
        std::hint::black_box(layout.locate(c)?);
        c = (c + 7919) % chunks;
    }
    Ok(Costs { guest_ns_per_stripe, cached_ns_per_lookup: started.elapsed().as_nanos() as f64 / lookups as f64 })
}

fn check(spec: &str, geometry: &GeometryArgs, sandbox: &Arc<Sandbox>, json: bool) -> anyhow::Result<ExitCode> {
    let (origin, loaded) = load(spec, sandbox)?;
    let g = geometry.geometry()?;
    let proven = ProvenLayout::prove(loaded.clone(), g.clone());
    let layout = match proven {
        Ok(l) => l,
        Err(e) => {
            if json {
                let error = match &e {
                    LayoutError::Proof(p) => json!({"rule": p.rule, "stripe": p.stripe, "slot": p.slot, "detail": p.detail}),
                    LayoutError::Sandbox(s) => json!({"rule": "guest", "detail": s.to_string()}),
                };
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"component": origin.to_string(), "sha256": loaded.hash(), "proven": false, "error": error}))?
                );
            } else {
                println!("{origin}: REFUSED\n  {e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let costs = measure(&loaded, &layout)?;
    let d = layout.descriptor;
    let raw: u64 = g.leg_chunks.iter().sum::<u64>() * g.chunk_bytes();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "component": origin.to_string(),
                "name": layout.name,
                "sha256": loaded.hash(),
                "size": loaded.size,
                "language": loaded.language,
                "producers": loaded.producers,
                "load": loaded.stats,
                "geometry": g,
                "descriptor": d,
                "capacity_bytes": layout.capacity_bytes(),
                "raw_bytes": raw,
                "proven": true,
                "proof": layout.report,
                "proof_chunks_per_second": layout.report.rate(),
                "guest_ns_per_stripe": costs.guest_ns_per_stripe,
                "cached_ns_per_lookup": costs.cached_ns_per_lookup,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let r = &layout.report;
    println!("component  {origin}: {}, {}, sha256 {}", layout.name, format_size(loaded.size as u64), &loaded.hash()[..16]);
    if let Some(language) = &loaded.language {
        let sdk: Vec<&str> = loaded.producers.iter().filter(|(k, _)| k == "sdk").map(|(_, v)| v.as_str()).collect();
        println!("language   {language}{}", if sdk.is_empty() { String::new() } else { format!(" ({})", sdk.join(", ")) });
    }
    if !loaded.producers.is_empty() {
        let p: Vec<String> = loaded.producers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!("producers  {}", p.join("; "));
    }
    let how = if loaded.stats.from_cache { "loaded from the compile cache" } else { "compiled" };
    println!("load       {how} in {:.2} ms", loaded.stats.load_time.as_secs_f64() * 1e3);
    println!("geometry   {}", geometry.describe(&g));
    let mut shape = vec![format!("{} data", d.data_chunks)];
    for (n, what) in [(d.replica_chunks, "replica"), (d.parity_chunks, "parity"), (d.spare_chunks, "spare")] {
        if n > 0 {
            shape.push(format!("{n} {what}"));
        }
    }
    let period = if d.is_periodic() { format!("period {} stripes, advance {} chunks", d.period, d.period_advance) } else { "aperiodic".into() };
    println!("layout     {} per stripe; {} stripes; {period}", shape.join(" + "), d.stripes);
    println!("capacity   {} of {} raw", format_size(layout.capacity_bytes()), format_size(raw));
    println!(
        "proof      PASSED: {} chunks in bounds and distinct; {} stripe shape(s) survive any {} failed leg(s); {:.1} ms ({:.1} M chunks/s)",
        r.chunks,
        r.shapes,
        r.fault_tolerance,
        r.elapsed.as_secs_f64() * 1e3,
        r.rate() / 1e6
    );
    println!("map cost   guest {:.1} ns/stripe (batched); cached lookup {:.1} ns", costs.guest_ns_per_stripe, costs.cached_ns_per_lookup);
    Ok(ExitCode::SUCCESS)
}

fn diff(a: &str, b: &str, geometry: &GeometryArgs, sandbox: &Arc<Sandbox>, json: bool) -> anyhow::Result<ExitCode> {
    let g = geometry.geometry()?;
    let mut proven = Vec::new();
    for spec in [a, b] {
        let (origin, loaded) = load(spec, sandbox)?;
        proven.push(ProvenLayout::prove(loaded, g.clone()).map_err(|e| refusal(&origin, e))?);
    }
    let started = Instant::now();
    let outcome = compare::identical(&proven[0], &proven[1]);
    let elapsed = started.elapsed();
    if json {
        let v = match &outcome {
            Ok(stripes) => json!({"a": a, "b": b, "geometry": g, "identical": true, "stripes_compared": stripes}),
            Err(d) => json!({"a": a, "b": b, "geometry": g, "identical": false, "difference": d.to_string()}),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match &outcome {
            Ok(stripes) => println!(
                "IDENTICAL: {a} and {b} place every chunk alike on {} ({stripes} stripes compared, {:.1} ms)",
                geometry.describe(&g),
                elapsed.as_secs_f64() * 1e3
            ),
            Err(d) => println!("DIFFERENT: {a} and {b} on {}: {d}", geometry.describe(&g)),
        }
    }
    Ok(if outcome.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
