//! `wasmraid reshape`: move an array's data to another layout (more legs,
//! another chunk, another component), like `mdadm --grow`. A served array
//! is reshaped by its daemon while it serves (`--wait` follows it); a
//! stopped one here, in the foreground with a progress bar. `--continue`
//! finishes one a crash or an interrupt left half done (`assemble` does
//! too), `--abort` takes back one that moved nothing.

use super::SandboxArgs;
use anyhow::{Context, bail};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use wasmraid::device::BlockDevice;
use wasmraid::device::file::OpenFlags;
use wasmraid::reshape::offline::{MAX_WINDOW, Target, reshape};
use wasmraid::units::{format_size, parse_size};

#[derive(Args)]
pub struct ReshapeArgs {
    /// The array's name. Served (`wasmraid serve`/`assemble`), its daemon
    /// reshapes it online; stopped, it is reshaped here.
    name: String,
    /// A stopped array's legs, comma separated (with --continue: every
    /// leg, those being added included).
    #[arg(long, value_delimiter = ',')]
    legs: Vec<PathBuf>,
    /// Legs to add, comma separated: new slots after the array's.
    #[arg(long, value_delimiter = ',')]
    add_legs: Vec<PathBuf>,
    /// Slots to take out, comma separated: the array's last ones (their
    /// data moves to the others; the array may not shrink).
    #[arg(long, value_delimiter = ',', conflicts_with = "add_legs")]
    remove_legs: Vec<usize>,
    /// The new layout: a component file or a built-in name (default: the
    /// array's own).
    #[arg(long)]
    layout: Option<String>,
    /// The new layout's arguments (default: none).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    args: String,
    /// The new chunk size (default: the array's).
    #[arg(long)]
    chunk: Option<String>,
    /// Finish a reshape that was interrupted.
    #[arg(long = "continue", conflicts_with_all = ["add_legs", "remove_legs", "layout", "chunk"])]
    resume: bool,
    /// Take back a reshape that was interrupted before it moved anything
    /// (refused, saying so, once it has: then only --continue finishes it).
    #[arg(long, conflicts_with_all = ["add_legs", "remove_legs", "layout", "chunk", "resume"])]
    abort: bool,
    /// Move at most this much a second (like md's speed_limit_max), e.g.
    /// 100M; default: as fast as the legs go.
    #[arg(long, value_name = "SIZE")]
    sync_rate: Option<String>,
    /// For a served array: follow the reshape with a progress bar until
    /// it is over.
    #[arg(long)]
    wait: bool,
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
}

/// O_DIRECT: the move reads and writes every byte once; through the page
/// cache each would be copied twice more.
fn open(paths: &[PathBuf]) -> anyhow::Result<Vec<Arc<dyn BlockDevice>>> {
    let flags = OpenFlags { direct: true, ..OpenFlags::default() };
    paths.iter().map(|p| wasmraid::device::open_leg(&p.to_string_lossy(), flags).with_context(|| format!("opening {}", p.display()))).collect()
}

fn chunk_sectors(chunk: &Option<String>) -> anyhow::Result<Option<u32>> {
    let Some(c) = chunk else { return Ok(None) };
    let bytes = parse_size(c)?;
    if bytes == 0 || bytes % 512 != 0 || bytes / 512 > u64::from(u32::MAX) {
        bail!("chunk size {c} must be a non-zero multiple of 512 bytes");
    }
    Ok(Some((bytes / 512) as u32))
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template("   reshape [{bar:40}] {percent:>3}% {elapsed_precise} (eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Ask the daemon serving the array to reshape it; with `--wait`, follow
/// its status until the move is over.
fn reshape_served(a: &ReshapeArgs, socket: &std::path::Path) -> anyhow::Result<ExitCode> {
    use wasmraid::control::{Request, client::call};
    if a.resume || a.abort {
        let status = call(socket, &Request::Status, std::time::Duration::from_secs(10))?.result;
        let r = &status["reshape"];
        if a.abort && r["position"].as_u64().is_some_and(|p| p > 0) && r["state"] != "finished" {
            bail!(
                "the reshape of {} to {} is past its point of no return: the new layout holds the first {} bytes; it finishes by itself (`wasmraid status {}`)",
                a.name,
                r["to"].as_str().unwrap_or("?"),
                r["position"],
                a.name
            );
        }
        bail!(
            "{} is being served: a reshape under way there goes on by itself (`wasmraid status {}`); --continue and --abort are for a stopped array",
            a.name,
            a.name
        );
    }
    let text = |p: &PathBuf| p.to_string_lossy().into_owned();
    let request = Request::Reshape {
        add_legs: a.add_legs.iter().map(text).collect(),
        layout: a.layout.clone(),
        args: a.args.clone(),
        chunk_sectors: chunk_sectors(&a.chunk)?,
        remove_legs: a.remove_legs.clone(),
        rate: a.sync_rate.as_deref().map(parse_size).transpose()?.unwrap_or(0),
    };
    // Proving the new layout may take a while.
    let r = call(socket, &request, std::time::Duration::from_secs(600))?;
    if !r.ok {
        bail!("{}: {}", a.name, r.error.unwrap_or_default());
    }
    let s = &r.result;
    println!(
        "{}: reshaping {} over {} legs -> {} over {} legs, {} -> {} usable, in the background",
        a.name,
        s["from"].as_str().unwrap_or("?"),
        s["legs_before"],
        s["to"].as_str().unwrap_or("?"),
        s["legs_after"],
        format_size(s["size_before"].as_u64().unwrap_or(0)),
        format_size(s["size_after"].as_u64().unwrap_or(0))
    );
    if !a.wait {
        println!("follow it with: wasmraid status {}", a.name);
        return Ok(ExitCode::SUCCESS);
    }
    let bar = progress_bar();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let r = call(socket, &Request::Status, std::time::Duration::from_secs(10))?;
        let s = &r.result["reshape"];
        bar.set_position((s["progress"].as_f64().unwrap_or(0.0) * 1000.0) as u64);
        match s["state"].as_str() {
            Some("moving") => continue,
            Some("finished") => {
                bar.finish_and_clear();
                println!("{}: reshaped to {} over {} legs", a.name, s["to"].as_str().unwrap_or("?"), s["legs_after"]);
                if let Some(note) = s["grows"].as_str() {
                    println!("{}: {} usable now; {note}", a.name, format_size(s["size_after"].as_u64().unwrap_or(0)));
                }
                return Ok(ExitCode::SUCCESS);
            }
            other => {
                bar.finish_and_clear();
                bail!("{}: the reshape is {}: {}", a.name, other.unwrap_or("gone"), s["error"].as_str().unwrap_or("see the daemon's log"));
            }
        }
    }
}

pub fn reshape_cmd(a: ReshapeArgs, sandbox_args: &SandboxArgs) -> anyhow::Result<ExitCode> {
    let run_dir = a.run_dir.clone().unwrap_or_else(wasmraid::control::default_run_dir);
    let socket = wasmraid::control::socket_path(&run_dir, &a.name);
    if wasmraid::control::client::call(&socket, &wasmraid::control::Request::Status, std::time::Duration::from_secs(5)).is_ok() {
        return reshape_served(&a, &socket);
    }
    let Some(first) = a.legs.first() else { bail!("{} is not served: give its legs with --legs", a.name) };
    let sandbox = sandbox_args.sandbox()?;
    let legs = open(&a.legs)?;
    if a.abort {
        let said = wasmraid::reshape::offline::abort(&legs).with_context(|| format!("aborting the reshape of {}", a.name))?;
        println!("aborted: {said}");
        return Ok(ExitCode::SUCCESS);
    }
    let added = open(&a.add_legs)?;
    let target = if a.resume {
        None
    } else {
        let sb = wasmraid::meta::store::read_superblock(&*legs[0]).with_context(|| format!("reading {}", first.display()))?;
        // Without --layout, the array's own component (whatever its origin).
        let bytes = match &a.layout {
            Some(layout) => wasmraid::builtins::resolve(layout)?.1.into_owned(),
            None => wasmraid::meta::store::read_component(&*legs[0], &sb)?,
        };
        Some(Target { component: bytes, args: a.args.clone(), chunk_sectors: chunk_sectors(&a.chunk)?, remove_slots: a.remove_legs.clone() })
    };
    let bar = progress_bar();
    let rate = a.sync_rate.as_deref().map(parse_size).transpose()?.unwrap_or(0);
    let out = reshape(&legs, &added, &sandbox, target.as_ref(), MAX_WINDOW, rate, &mut |p, end| bar.set_position(p.saturating_mul(1000) / end.max(1)));
    bar.finish_and_clear();
    let out = out.with_context(|| format!("reshaping {}", a.name))?;
    println!(
        "reshaped {}: {} over {} legs -> {} over {} legs, {} -> {} usable{}",
        out.name,
        out.from,
        out.legs_before,
        out.to,
        out.legs_after,
        format_size(out.size_before),
        format_size(out.size_after),
        if out.resumed_at > 0 { format!(" (continued from byte {})", out.resumed_at) } else { String::new() }
    );
    let moved = out.size_before.saturating_sub(out.resumed_at.min(out.size_before));
    println!(
        "moved {} in {:.2} s ({:.0} MiB/s, {} windows, the new layout {} before the old on every leg)",
        format_size(moved),
        out.moving.as_secs_f64(),
        moved as f64 / 1048576.0 / out.moving.as_secs_f64().max(1e-6),
        out.windows,
        format_size(out.shift)
    );
    let all: Vec<String> = a.legs.iter().chain(&a.add_legs).map(|p| p.display().to_string()).collect();
    println!("start it with: wasmraid assemble {} --legs {}", out.name, all.join(","));
    Ok(ExitCode::SUCCESS)
}
