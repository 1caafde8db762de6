//! The power-loss simulator's campaign: run workloads through the real
//! array on logged memory legs, build crash states from each run's log
//! (just after every flush and FUA of any leg, and at random points
//! between; per leg: nothing, everything, a prefix or a random subset of
//! what was not yet durable), judge each with the oracle, and end with
//! `N crash states, M violations`.

mod check;
mod faults;
mod history;
mod rig;
mod workload;

use check::Crash;
use clap::Parser;
use parking_lot::Mutex;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use wasmraid::device::log_writes::{Persist, durability_points, splitmix64};
use wasmraid::sandbox::{Sandbox, SandboxConfig};

#[derive(Parser)]
#[command(name = "wasmraid-crashsim", about = "Crash states from logged leg writes, judged by an oracle")]
struct Args {
    /// Crash states to judge (the campaign stops once it has judged them).
    #[arg(long, default_value_t = 2000)]
    states: u64,
    /// Layouts (default: raid1, raid5, raid6, raid10, pyramid, draid).
    #[arg(long = "layout", value_delimiter = ',')]
    layouts: Vec<String>,
    /// Workloads (default: all).
    #[arg(long = "workload", value_delimiter = ',')]
    workloads: Vec<String>,
    /// The first run's seed; run i uses seed + i.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs judged at once.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Crash points taken from each run.
    #[arg(long, default_value_t = 24)]
    points: usize,
    /// Judge only this crash point (with --persist: replaying a report).
    #[arg(long)]
    at: Option<u64>,
    /// What each device kept, comma separated (with --at).
    #[arg(long, value_delimiter = ',')]
    persist: Vec<Persist>,
    /// Stop at the first violation.
    #[arg(long)]
    fail_fast: bool,
    /// With a violation, show each device's superblock and bitmap in the
    /// crash state and where the block lives.
    #[arg(long)]
    explain: bool,
}

#[derive(Default)]
struct Totals {
    write_hole: u64,
    resumed: u64,
    replacement: u64,
    needs_sync: u64,
    failed_in_turn: u64,
    reshape_continued: u64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.write_hole += o.write_hole;
        self.resumed += o.resumed;
        self.replacement += o.replacement;
        self.needs_sync += o.needs_sync;
        self.failed_in_turn += o.failed_in_turn;
        self.reshape_continued += o.reshape_continued;
    }

    fn count(&mut self, o: &check::Outcome) {
        self.write_hole += u64::from(o.write_hole);
        self.resumed += u64::from(o.resumed > 0);
        self.replacement += u64::from(o.replacement);
        self.needs_sync += u64::from(o.needs_sync > 0);
        self.failed_in_turn += o.failed_in_turn as u64;
        self.reshape_continued += u64::from(o.reshape_continued);
    }
}

struct Plan {
    combos: Vec<(rig::LayoutSpec, workload::Kind)>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match campaign(&args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("wasmraid-crashsim: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn campaign(args: &Args) -> anyhow::Result<u64> {
    let cache = tempfile::tempdir()?;
    let sandbox = Sandbox::new(SandboxConfig { cache_dir: Some(cache.path().to_path_buf()), ..SandboxConfig::default() })?;
    let layouts: Vec<rig::LayoutSpec> = if args.layouts.is_empty() {
        rig::LAYOUTS.to_vec()
    } else {
        args.layouts.iter().map(|n| rig::layout(n).ok_or_else(|| anyhow::anyhow!("unknown layout {n}"))).collect::<Result<_, _>>()?
    };
    let kinds: Vec<workload::Kind> = if args.workloads.is_empty() {
        workload::KINDS.to_vec()
    } else {
        args.workloads.iter().map(|n| workload::Kind::parse(n).ok_or_else(|| anyhow::anyhow!("unknown workload {n}"))).collect::<Result<_, _>>()?
    };
    let mut combos = Vec::new();
    let spares: Vec<u32> = layouts.iter().map(|spec| spare_chunks(spec, &sandbox)).collect::<Result<_, _>>()?;
    for kind in &kinds {
        for (spec, spares) in layouts.iter().zip(&spares) {
            if kind.fits(spec, *spares) {
                combos.push((*spec, *kind));
            }
        }
    }
    if combos.is_empty() {
        anyhow::bail!("no workload applies to the chosen layouts");
    }
    let plan = Plan { combos };
    let judged = AtomicU64::new(0);
    let violations = AtomicU64::new(0);
    let runs = AtomicU64::new(0);
    let per_combo: Mutex<std::collections::BTreeMap<String, (u64, u64)>> = Mutex::new(Default::default());
    let totals: Mutex<Totals> = Mutex::new(Totals::default());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.max(1) {
            scope.spawn(|| {
                while judged.load(Ordering::Relaxed) < args.states && !(args.fail_fast && violations.load(Ordering::Relaxed) > 0) {
                    let r = runs.fetch_add(1, Ordering::Relaxed);
                    let (spec, kind) = plan.combos[(r % plan.combos.len() as u64) as usize];
                    let seed = args.seed + r;
                    let (n, bad, t) = one_run(args, spec, kind, seed, &sandbox);
                    totals.lock().add(&t);
                    judged.fetch_add(n, Ordering::Relaxed);
                    violations.fetch_add(bad, Ordering::Relaxed);
                    let mut table = per_combo.lock();
                    let e = table.entry(format!("{} {}", spec.name, kind.name())).or_default();
                    e.0 += n;
                    e.1 += bad;
                    if args.at.is_some() {
                        return;
                    }
                }
            });
            if args.at.is_some() {
                break;
            }
        }
    });
    let (n, m) = (judged.load(Ordering::Relaxed), violations.load(Ordering::Relaxed));
    for (combo, (states, bad)) in per_combo.lock().iter() {
        println!("  {combo:<28} {states:>7} states {bad:>4} violations");
    }
    let t = totals.lock();
    println!(
        "{} runs in {:.0?}; of the states: {} refused as the write hole (then forced and checked), {} resumed an interrupted rebuild, {} a replacement, {} resynced regions after assemble, {} finished a reshape on assemble; {} reads with a leg failed in turn",
        runs.load(Ordering::Relaxed),
        started.elapsed(),
        t.write_hole,
        t.resumed,
        t.replacement,
        t.needs_sync,
        t.reshape_continued,
        t.failed_in_turn
    );
    println!("{n} crash states, {m} violations");
    Ok(m)
}

fn spare_chunks(spec: &rig::LayoutSpec, sandbox: &Arc<Sandbox>) -> anyhow::Result<u32> {
    let bytes = wasmraid::builtins::find(spec.name).ok_or_else(|| anyhow::anyhow!("no built-in {}", spec.name))?;
    let loaded = Arc::new(wasmraid::sandbox::component::load(sandbox, bytes)?);
    let g = wasmraid::layout::Geometry { chunk_sectors: rig::CHUNK_SECTORS, leg_chunks: vec![rig::LEG_CHUNKS; spec.legs], args: spec.args.into() };
    Ok(wasmraid::layout::proven::ProvenLayout::prove(loaded, g)?.descriptor.spare_chunks)
}

/// One workload run and its crash states: (states judged, violations).
fn one_run(args: &Args, spec: rig::LayoutSpec, kind: workload::Kind, seed: u64, sandbox: &Arc<Sandbox>) -> (u64, u64, Totals) {
    let mut totals = Totals::default();
    let rec = match workload::run(kind, spec, seed, sandbox) {
        Ok(r) => r,
        Err(e) => {
            println!("RUN FAILED layout={} workload={} seed={seed}: {e:#}", spec.name, kind.name());
            return (0, 1, totals);
        }
    };
    let oracle = history::Oracle::new(rec.ops.clone(), rec.blocks);
    let crashes = crash_states(args, &rec);
    let mut bad = 0;
    for crash in &crashes {
        let mut outcome = check::Outcome::default();
        let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check::check(&rec, &oracle, crash, sandbox, &mut outcome)));
        totals.count(&outcome);
        let failure = match verdict {
            Ok(Ok(())) => None,
            Ok(Err(v)) => Some(format!("({}) {}", v.invariant, v.detail)),
            Err(p) => Some(format!(
                "(a) panicked: {}",
                p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
            )),
        };
        if let Some(why) = failure {
            bad += 1;
            let persist: Vec<String> = crash.persist.iter().map(|p| p.to_string()).collect();
            println!("VIOLATION layout={} workload={} seed={seed} crash {crash}: {why}", spec.name, kind.name());
            println!("  events: {}", rec.events.join("; "));
            if args.explain {
                let block = why.split("block ").nth(1).and_then(|w| w.split(|c: char| !c.is_ascii_digit()).next()).and_then(|n| n.parse().ok());
                print!("{}", check::explain(&rec, crash, block));
            }
            println!(
                "  replay: scripts/crash.sh --layout {} --workload {} --seed {seed} --at {} --persist {}",
                spec.name,
                kind.name(),
                crash.at,
                persist.join(",")
            );
            if args.fail_fast {
                break;
            }
        }
    }
    (crashes.len() as u64, bad, totals)
}

/// The crash states of a run: after every flush and FUA (sampled to
/// `--points`), and random points between; four persistence choices each.
fn crash_states(args: &Args, rec: &workload::Recorded) -> Vec<Crash> {
    let devices = rec.bases.len();
    if let Some(at) = args.at {
        let mut persist = args.persist.clone();
        persist.resize(devices, Persist::Nothing);
        return vec![Crash { at, persist }];
    }
    let mut rng = rec.seed ^ 0xc4a5_11;
    let mut points = durability_points(&rec.entries);
    let want = args.points.max(2);
    // Sample the durability points evenly, then add random points between.
    if points.len() > want * 2 / 3 {
        let keep = want * 2 / 3;
        points = (0..keep).map(|i| points[i * points.len() / keep]).collect();
    }
    while points.len() < want {
        points.push(1 + splitmix64(&mut rng) % rec.end.max(1));
    }
    points.push(rec.end);
    points.sort_unstable();
    points.dedup();
    let mut crashes = Vec::new();
    for at in points {
        crashes.push(Crash { at, persist: vec![Persist::Nothing; devices] });
        crashes.push(Crash { at, persist: vec![Persist::Everything; devices] });
        let random: Vec<Persist> = (0..devices).map(|_| Persist::Random { seed: splitmix64(&mut rng), percent: (splitmix64(&mut rng) % 100) as u8 }).collect();
        crashes.push(Crash { at, persist: random });
        let mixed: Vec<Persist> = (0..devices)
            .map(|_| match splitmix64(&mut rng) % 3 {
                0 => Persist::Nothing,
                1 => Persist::Everything,
                _ => Persist::Prefix((splitmix64(&mut rng) % 8) as usize),
            })
            .collect();
        crashes.push(Crash { at, persist: mixed });
    }
    crashes
}
