//! `wasmraid create`, `assemble` and `examine`: self-describing arrays.

use super::SandboxArgs;
use super::serve::{ListenArgs, RemoteArgs, serve_table};
use anyhow::{Context, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use wasmraid::array::ReadPolicy;
use wasmraid::array::create::{AssembleOptions, CreateOptions, assemble, create};
use wasmraid::device::BlockDevice;
use wasmraid::device::file::{FileLeg, OpenFlags};
use wasmraid::meta::{store, superblock::uuid_text};
use wasmraid::table::Table;
use wasmraid::units::{format_size, parse_size};

#[derive(Args)]
pub struct CreateArgs {
    /// The array's name.
    name: String,
    /// A component file or a built-in layout name.
    #[arg(long)]
    layout: String,
    /// The legs, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    legs: Vec<PathBuf>,
    #[arg(long, default_value = "64K")]
    chunk: String,
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    args: String,
    /// Create legs that do not exist as sparse files of this size (they
    /// read as zeroes, so the array starts clean).
    #[arg(long, value_name = "SIZE")]
    create_legs: Option<String>,
    /// Trust that the legs' contents are consistent (all zeroes): no
    /// initial resync.
    #[arg(long)]
    assume_clean: bool,
    /// Overwrite legs that belong to another array.
    #[arg(long)]
    force: bool,
    /// Data covered by one write-intent bitmap region (mdadm's
    /// --bitmap-chunk): smaller regions resync less after a crash and cost
    /// more bitmap writes.
    #[arg(long, value_name = "SIZE", default_value = "64M")]
    bitmap_chunk: String,
}

fn open_legs(paths: &[PathBuf], flags: OpenFlags) -> anyhow::Result<Vec<Arc<dyn BlockDevice>>> {
    paths.iter().map(|p| wasmraid::device::open_leg(&p.to_string_lossy(), flags).with_context(|| format!("opening {}", p.display()))).collect()
}

pub fn create_cmd(a: CreateArgs, sandbox_args: &SandboxArgs) -> anyhow::Result<ExitCode> {
    let sandbox = sandbox_args.sandbox()?;
    let mut fresh = true;
    for leg in &a.legs {
        if !leg.exists() && !wasmraid::device::nbd::NbdUri::looks_like(&leg.to_string_lossy()) {
            let Some(size) = &a.create_legs else { bail!("{} does not exist (pass --create-legs SIZE to create it)", leg.display()) };
            FileLeg::create(leg, parse_size(size)?).with_context(|| format!("creating {}", leg.display()))?;
        } else {
            fresh = false;
        }
    }
    let (origin, bytes) = wasmraid::builtins::resolve(&a.layout)?;
    let chunk = parse_size(&a.chunk)?;
    if chunk == 0 || chunk % 512 != 0 {
        bail!("chunk size {} must be a non-zero multiple of 512 bytes", a.chunk);
    }
    let legs = open_legs(&a.legs, OpenFlags::default())?;
    let o = CreateOptions {
        name: a.name.clone(),
        component: bytes.into_owned(),
        chunk_sectors: (chunk / 512) as u32,
        args: a.args.clone(),
        assume_clean: a.assume_clean || fresh,
        force: a.force,
        bitmap_chunk: Some(parse_size(&a.bitmap_chunk)?),
    };
    let created = create(&legs, &sandbox, &o).with_context(|| format!("creating {} with {origin}", a.name))?;
    println!(
        "created {} ({}): {} over {} legs, {} usable, data offset {}, {} bitmap regions{}",
        a.name,
        uuid_text(&created.uuid),
        created.layout.name,
        legs.len(),
        format_size(created.layout.capacity_bytes()),
        format_size(created.data_offset),
        created.regions,
        if o.assume_clean { ", clean" } else { "; regions are synced as they are first written" }
    );
    println!("start it with: wasmraid assemble {} --legs {}", a.name, a.legs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(","));
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct AssembleArgs {
    /// The array's name (legs of other arrays are reported and left out). With --scan and no
    /// places: an array of the config file, or, with no name, every one of them.
    name: Option<String>,
    /// The legs, comma separated.
    #[arg(long, value_delimiter = ',')]
    legs: Vec<PathBuf>,
    /// Look for legs among these files, block devices, directories (their files and block
    /// devices) or globs; `partitions` is every block device the kernel lists. With no place:
    /// bring up what the config file names, like mdadm --assemble --scan.
    #[arg(long, num_args = 0.., value_name = "PLACE")]
    scan: Option<Vec<String>>,
    /// The config file --scan reads (TOML: where legs are, and an [[array]] per array).
    #[arg(long, value_name = "FILE", default_value = wasmraid::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Only legs of the array with this uuid (`wasmraid examine` prints it).
    #[arg(long)]
    uuid: Option<String>,
    /// Start even when dirty and degraded (the write hole), or when the
    /// legs' superblocks contradict each other (the freshest is trusted).
    #[arg(long)]
    force: bool,
    /// Seconds a region must stay idle before its bit is cleared.
    #[arg(long, default_value_t = 5.0)]
    daemon_sleep: f64,
    /// Rate limit for resync and recovery (e.g. 100M per second; 0 = none).
    #[arg(long, default_value = "0")]
    sync_rate: String,
    /// Mirror reads: least-outstanding (default) or nearest.
    #[arg(long, default_value = "least-outstanding")]
    read_policy: String,
    /// Open legs with O_DIRECT.
    #[arg(long)]
    direct: bool,
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(flatten)]
    listen: ListenArgs,
    /// The flags the command line gave (from clap's matches): with the
    /// config file, serving flags belong in it.
    #[arg(skip)]
    pub given: Vec<String>,
}

/// What may accompany `--scan` with no places: the rest is the config file's.
const WITH_CONFIG: [&str; 5] = ["name", "scan", "config", "force", "run_dir"];

/// `assemble` as one config entry stands for it.
#[derive(clap::Parser)]
#[command(name = "assemble", no_binary_name = true)]
struct FromConfig {
    #[command(flatten)]
    args: AssembleArgs,
}

/// The arguments of the config file's entry `name`, with this command
/// line's `--force`, `--run-dir` and config file.
fn from_config(config: &wasmraid::config::Config, a: &AssembleArgs, name: &str) -> anyhow::Result<AssembleArgs> {
    let path = a.config.display().to_string();
    let entry = config.array(name, &path)?;
    let mut words = entry.serving_args();
    if a.force {
        words.push("--force".into());
    }
    if let Some(dir) = &a.listen.run_dir {
        words.extend(["--run-dir".into(), dir.display().to_string()]);
    }
    let mut args =
        <FromConfig as clap::Parser>::try_parse_from(&words).map_err(|e| anyhow::anyhow!("{path}: array {name:?}: {}", e.to_string().trim_end()))?.args;
    args.config = a.config.clone();
    args.legs = entry.legs.iter().map(PathBuf::from).collect();
    args.scan = Some(config.places(entry));
    Ok(args)
}

/// A relative leg path made absolute (status names legs as opened, and
/// `detail --scan` must name them for a daemon with another working
/// directory); anything else (absolute paths, NBD URIs) as given.
fn absolute(p: &Path) -> PathBuf {
    if p.is_relative() && p.exists() { std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()) } else { p.to_path_buf() }
}

pub fn assemble_cmd(a: AssembleArgs, sandbox_args: &SandboxArgs) -> anyhow::Result<ExitCode> {
    let with_config = a.legs.is_empty() && a.scan.as_ref().is_some_and(Vec::is_empty);
    let a = if with_config {
        let stray: Vec<String> = a.given.iter().filter(|id| !WITH_CONFIG.contains(&id.as_str())).map(|id| format!("--{}", id.replace('_', "-"))).collect();
        if !stray.is_empty() {
            bail!(
                "with --scan and no places, how an array is served comes from {}: put {} in its entry there (or give the legs or places to scan)",
                a.config.display(),
                stray.join(", ")
            );
        }
        let config = wasmraid::config::Config::load(&a.config)?;
        match &a.name {
            None => {
                let run_dir = a.listen.run_dir.clone().unwrap_or_else(wasmraid::control::default_run_dir);
                return super::scan::assemble_all(&config, &a.config, &run_dir);
            }
            Some(name) => from_config(&config, &a, name)?,
        }
    } else {
        a
    };
    let Some(name) = a.name.clone() else {
        bail!("name the array to assemble, or give --scan alone to bring up every array of {}", a.config.display());
    };
    let sandbox = sandbox_args.sandbox()?;
    let explicit: Vec<PathBuf> = a.legs.iter().map(|p| absolute(p)).collect();
    let places = a.scan.clone().unwrap_or_default();
    let mut paths = explicit.clone();
    paths.extend(wasmraid::config::candidates(&places).iter().map(|p| absolute(p)));
    if paths.is_empty() && places.is_empty() {
        bail!("give the legs (--legs a,b,c) or where to look for them (--scan PLACE...)");
    }
    if paths.is_empty() {
        bail!("no file or block device to look at in {}", places.join(", "));
    }
    // What a scan finds that is no leg of this array is no news.
    let scanned = |device: &str| !explicit.iter().any(|p| p.to_string_lossy() == device);
    let devices: Vec<Arc<dyn BlockDevice>> = paths
        .iter()
        .filter_map(|p| match wasmraid::device::open_leg(&p.to_string_lossy(), OpenFlags { direct: a.direct, read_only: false, nbd: a.remote.options() }) {
            Ok(l) => Some(l),
            Err(e) if scanned(&p.to_string_lossy()) => {
                tracing::debug!("skipping {}: {e}", p.display());
                None
            }
            Err(e) => {
                eprintln!("wasmraid: skipping {}: {e}", p.display());
                None
            }
        })
        .collect();
    let wanted = match &a.uuid {
        Some(u) => uuid_text(&wasmraid::config::parse_uuid(u).map_err(anyhow::Error::msg).context("--uuid")?),
        None => name.clone(),
    };
    let o = AssembleOptions { name: Some(wanted), force: a.force, daemon_sleep: Duration::from_secs_f64(a.daemon_sleep.max(0.0)) };
    let assembled = assemble(devices, &sandbox, &o).with_context(|| format!("assembling {name}"))?;
    for r in &assembled.report {
        let not_ours = r.slot.is_none() || r.reason.starts_with("foreign");
        if not_ours && scanned(&r.device) {
            tracing::debug!("{}: {}", r.device, r.reason);
            continue;
        }
        let verdict = if r.accepted { "accepted" } else { "REFUSED" };
        eprintln!("wasmraid: {}: {verdict}: {}", r.device, r.reason);
    }
    if let Some(note) = &assembled.bitmap_note {
        eprintln!("wasmraid: {note}");
    }
    let array = assembled.array.clone();
    array.sync.rate_limit.store(parse_size(&a.sync_rate)?, std::sync::atomic::Ordering::Relaxed);
    array.set_read_policy(a.read_policy.parse::<ReadPolicy>().map_err(anyhow::Error::msg)?);
    eprintln!("wasmraid: assembled {}: {} legs ({}), {} region(s) to resync", array.name(), array.legs().len(), array.health_chars(), assembled.needs_sync);
    // Resume an interrupted rebuild, or resync what the crash left.
    if let Some(action) = array.start_needed_sync() {
        eprintln!("wasmraid: {} started", action.name());
    }
    let table = Table::single(&name, array);
    serve_table(&name, table, sandbox, &a.listen)
}

/// `wasmraid examine LEG`: a leg's metadata, like `mdadm --examine`.
pub fn examine_cmd(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let leg = FileLeg::open(path, OpenFlags { direct: false, read_only: true, ..Default::default() })?;
    let sb = match store::read_superblock(&leg) {
        Ok(sb) => sb,
        Err(e) => {
            println!("{}: {e}", path.display());
            return Ok(ExitCode::from(2));
        }
    };
    let component = store::read_component(&leg, &sb).map(|b| b.len()).map_err(|e| e.to_string());
    let bitmaps = store::read_bitmap_copies(&leg, &sb);
    if json {
        let v = serde_json::json!({
            "device": path.display().to_string(),
            "superblock": sb,
            "array_uuid": uuid_text(&sb.array_uuid),
            "leg_uuid": uuid_text(&sb.leg_uuid),
            "component": component.map(|n| serde_json::json!({"bytes": n, "sha256": "verified"})).unwrap_or_else(|e| serde_json::json!({"error": e})),
            "bitmap": bitmaps.iter().map(|c| match c {
                Ok((serial, states)) => serde_json::json!({"serial": serial, "regions": states.len()}),
                Err(e) => serde_json::json!({"error": e}),
            }).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}:", path.display());
    let version = if sb.reshape.is_some() { wasmraid::meta::superblock::VERSION_RESHAPE } else { wasmraid::meta::superblock::VERSION };
    println!("          Magic : WRAIDSB1 (version {version})");
    println!("     Array UUID : {}", uuid_text(&sb.array_uuid));
    println!("           Name : {}", sb.name);
    println!("         Layout : {} {:?} (component sha256 {})", sb.layout_name, sb.args, hex::encode(&sb.component_sha256[..8]));
    println!("      Component : {}", component.map(|n| format!("{n} bytes stored, checksum verified")).unwrap_or_else(|e| format!("UNREADABLE: {e}")));
    println!("     Chunk Size : {}", format_size(u64::from(sb.chunk_sectors) * 512));
    println!("    Data Offset : {} sectors", sb.data_offset / 512);
    println!("       Leg UUID : {}", uuid_text(&sb.leg_uuid));
    println!("      Leg Index : {} of {}", sb.leg_index, sb.legs.len());
    println!("     Generation : {} (bitmap forgets at {})", sb.generation, sb.events_cleared);
    println!(
        "          State : {}{}",
        if sb.dirty { "active (dirty)" } else { "clean" },
        if sb.unsynced { ", resync pending after an unclean stop" } else { "" }
    );
    println!("         Bitmap : {} regions of {} stripes", sb.regions, sb.region_stripes);
    if let Some(r) = &sb.reshape {
        // What md's examine calls the reshape position and the new geometry.
        println!("  Reshape pos'n : byte {} (below it the new layout holds the data)", r.position);
        println!("     New Layout : {} {:?} (component sha256 {})", r.layout_name, r.args, hex::encode(&r.component_sha256[..8]));
        println!(" New Chunk Size : {}", format_size(u64::from(r.chunk_sectors) * 512));
        println!("New Data Offset : {} sectors", r.data_offset / 512);
        println!("     Delta Legs : {} (slots from {} on are added)", sb.legs.len() as i64 - i64::from(r.old_slots), r.old_slots);
    }
    for (which, c) in ["A", "B"].iter().zip(&bitmaps) {
        match c {
            Ok((serial, states)) => {
                let dirty =
                    states.iter().filter(|s| wasmraid::meta::bitmap_state::needs_sync(**s) || **s == wasmraid::meta::bitmap_state::State::Dirty).count();
                println!("       Bitmap {which} : serial {serial}, {dirty} region(s) dirty or needing sync");
            }
            Err(e) => println!("       Bitmap {which} : INVALID ({e})"),
        }
    }
    println!("   Array legs   :");
    for (i, u) in sb.legs.iter().enumerate() {
        let state = match (sb.failed.get(i).copied().unwrap_or(false), sb.spared.get(i).copied().flatten(), sb.recovering.get(i).copied().flatten()) {
            (true, Some(o), _) => format!("failed, rebuilt into distributed spare {o}"),
            (true, None, _) => "failed".to_string(),
            (false, _, Some(r)) => format!("recovering{}, rebuilt below stripe {}", if r.bitmap_only { " (bitmap)" } else { "" }, r.offset),
            _ => "active".to_string(),
        };
        let me = if i == sb.leg_index as usize && sb.replacement.is_none_or(|r| r.uuid != sb.leg_uuid) { "  <- this leg" } else { "" };
        println!("     {i:>3}  {}  {state}{me}", uuid_text(u));
    }
    if let Some(r) = sb.replacement {
        let me = if r.uuid == sb.leg_uuid { "  <- this leg" } else { "" };
        println!("     replacement of {}: {}  rebuilt below stripe {}{me}", r.slot, uuid_text(&r.uuid), r.offset);
    }
    Ok(ExitCode::SUCCESS)
}
