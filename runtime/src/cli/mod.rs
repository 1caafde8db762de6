//! Command-line interface (clap); `anyhow` lives only here.

mod algo;
mod control;
mod demo;
mod docs;
mod guest_tools;
mod logs;
mod meta;
mod monitor;
mod reshape;
mod scan;
mod serve;
mod systemd;

use clap::{CommandFactory, FromArgMatches, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmraid::sandbox::{Sandbox, SandboxConfig};

#[derive(clap::Parser)]
#[command(name = "wasmraid", version, about = "Block devices laid out by sandboxed, proven WebAssembly components")]
struct Cli {
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// Log lines on standard error as text or JSON, one object a line (default: $WASMRAID_LOG_FORMAT or text).
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<logs::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

/// Sandbox limits and the compiled-artifact cache.
#[derive(clap::Args, Clone)]
pub struct SandboxArgs {
    /// Directory for compiled components (default: $WASMRAID_CACHE_DIR or ~/.cache/wasmraid).
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the compiled-component cache.
    #[arg(long, global = true)]
    no_cache: bool,
    /// Longest a single guest call may run, in milliseconds.
    #[arg(long, global = true, value_name = "MS", default_value_t = 2000)]
    guest_timeout_ms: u64,
    /// Memory cap per guest instance, all its linear memories together (e.g. 256M).
    #[arg(long, global = true, value_name = "SIZE", default_value = "256M")]
    guest_memory: String,
    /// Largest component accepted (refused before it is compiled).
    #[arg(long, global = true, value_name = "SIZE", default_value = "64M")]
    max_component_size: String,
    /// Longest a component may take to compile, in seconds (compiles run in a child process).
    #[arg(long, global = true, value_name = "SECS", default_value_t = 15.0)]
    compile_timeout: f64,
    /// Address space of the process compiling a component.
    #[arg(long, global = true, value_name = "SIZE", default_value = "2G")]
    compile_memory: String,
    /// Longest a proof may spend in guest calls and fault-tolerance checks, in seconds.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 12.0)]
    proof_timeout: f64,
}

impl SandboxArgs {
    pub fn sandbox(&self) -> anyhow::Result<Arc<Sandbox>> {
        let defaults = SandboxConfig::default();
        let seconds = |what: &str, v: f64| -> anyhow::Result<Duration> {
            anyhow::ensure!(v.is_finite() && v > 0.0 && v <= 86_400.0, "--{what} must be between 0 and 86400 seconds, got {v}");
            Ok(Duration::from_secs_f64(v))
        };
        // Compiles run in a child of this very program (`compile.rs`).
        let compiler = match std::env::current_exe() {
            Ok(exe) => wasmraid::sandbox::Compiler::Child(exe),
            Err(e) => anyhow::bail!("cannot find this program to run its compiler child: {e}"),
        };
        let config = SandboxConfig {
            call_timeout: Duration::from_millis(self.guest_timeout_ms),
            memory_bytes: usize::try_from(wasmraid::units::parse_size(&self.guest_memory)?)?,
            cache_dir: if self.no_cache { None } else { self.cache_dir.clone().or(defaults.cache_dir) },
            compile: wasmraid::sandbox::CompileLimits {
                max_component_bytes: usize::try_from(wasmraid::units::parse_size(&self.max_component_size)?)?,
                timeout: seconds("compile-timeout", self.compile_timeout)?,
                memory_bytes: wasmraid::units::parse_size(&self.compile_memory)?,
            },
            compiler,
            proof_timeout: seconds("proof-timeout", self.proof_timeout)?,
            ..defaults
        };
        Ok(Sandbox::new(config)?)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Compile, prove, draw and list layout algorithms; write the contract and bindings for a new one.
    #[command(subcommand)]
    Algo(algo::AlgoCommand),
    /// Prove and draw a few built-in layouts, then serve an array over NBD and exercise it (the README's first command).
    Demo,
    /// (internal) Compile a component into an artifact, in the child process the sandbox starts.
    #[command(name = "__compile-component", hide = true)]
    CompileComponent {
        #[arg(long)]
        stack_bytes: usize,
        input: PathBuf,
        output: PathBuf,
    },
    /// Serve a table or an array over NBD, with a control socket.
    Serve(serve::ServeArgs),
    /// Check a device-mapper style table.
    #[command(subcommand)]
    Table(TableCommand),
    /// Show a served device: per-leg health (dm-raid A/a/D), layout, counters.
    Status {
        name: String,
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
    },
    /// Leg operations on a served array.
    #[command(subcommand)]
    Leg(LegCommand),
    /// Replace a served array's layout component with one proven identical.
    Reload {
        name: String,
        /// A component file or a built-in name.
        component: String,
        /// The array within the device (when its table has several).
        #[arg(long)]
        array: Option<String>,
        /// New algorithm arguments (default: keep the running ones).
        #[arg(long, allow_hyphen_values = true)]
        args: Option<String>,
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
    },
    /// Write superblocks, the component and bitmaps onto legs (like mdadm --create).
    Create(meta::CreateArgs),
    /// Move an array's data to another layout: more legs or fewer, another chunk, another
    /// component (like mdadm --grow); online when served; crash-safe, finished by assemble.
    Reshape(reshape::ReshapeArgs),
    /// Find an array's legs by uuid, check them, and serve it (like mdadm --assemble);
    /// `--scan` alone brings up every array of the config file.
    Assemble(meta::AssembleArgs),
    /// With --scan: a config file entry per array served now, to paste into
    /// /etc/wasmraid/wasmraid.conf (like mdadm --detail --scan).
    Detail {
        /// Print the entries (the only form: `status NAME` details one device).
        #[arg(long, required = true)]
        scan: bool,
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
    },
    /// The kernel's ublk devices: list them, delete one a dead server left.
    #[command(subcommand)]
    Ublk(UblkCommand),
    /// Print a leg's metadata (like mdadm --examine).
    Examine {
        leg: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Scrub a served array: count parity/copy mismatches (md's check).
    Check(SyncArgs),
    /// Scrub a served array and rewrite what disagrees (md's repair).
    Repair(SyncArgs),
    /// Background settings of a served array.
    Tune {
        name: String,
        #[arg(long)]
        array: Option<String>,
        /// Rate limit for resync, recovery, check (e.g. 50M per second; 0 = none).
        #[arg(long)]
        sync_rate: Option<String>,
        /// Mirror reads: least-outstanding or nearest.
        #[arg(long)]
        read_policy: Option<String>,
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
    },
    /// Stop serving a device (flushes, removes its sockets).
    Stop {
        name: String,
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
    },
    /// Report events as they happen (md's Fail, DegradedArray, SpareActive, Rebuild*, ...), like mdadm --monitor.
    Monitor {
        name: String,
        /// Run this for each event, with md's arguments: EVENT DEVICE [COMPONENT].
        #[arg(long, value_name = "CMD")]
        program: Option<String>,
        /// One JSON object per event.
        #[arg(long)]
        json: bool,
        /// Start with a TestMessage per array (md's --test).
        #[arg(long)]
        test: bool,
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
    },
    /// Write the man pages (wasmraid.1 and one per command) into DIR.
    Man { dir: PathBuf },
    /// Print a shell's completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum TableCommand {
    /// Parse and validate a table; with --bind also open legs and prove layouts.
    Check {
        file: PathBuf,
        #[arg(long)]
        bind: bool,
    },
}

/// Which array, and whether to wait with a progress bar.
#[derive(clap::Args)]
pub struct SyncArgs {
    name: String,
    #[arg(long)]
    array: Option<String>,
    /// Wait for the end, showing progress.
    #[arg(long)]
    wait: bool,
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum UblkCommand {
    /// Every ublk device and its state (LIVE, QUIESCED: its server died).
    List,
    /// Delete /dev/ublkbN (a device whose server is gone for good).
    Del { id: u32 },
}

#[derive(Subcommand)]
enum LegCommand {
    /// Mark a leg failed; the array continues degraded.
    Fail {
        name: String,
        leg: usize,
        #[arg(long)]
        array: Option<String>,
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
    },
    /// Detach a dead leg; its slot stays empty.
    Remove {
        name: String,
        leg: usize,
        #[arg(long)]
        array: Option<String>,
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
    },
    /// Add a spare device into a dead or empty slot and rebuild it.
    Add {
        name: String,
        device: PathBuf,
        /// The slot (default: the first dead one).
        #[arg(long)]
        slot: Option<usize>,
        #[arg(long)]
        array: Option<String>,
        #[arg(long)]
        wait: bool,
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
    },
    /// Rebuild a new device to replace a live leg, which keeps serving meanwhile.
    Replace {
        name: String,
        leg: usize,
        device: PathBuf,
        #[arg(long)]
        array: Option<String>,
        #[arg(long)]
        wait: bool,
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
    },
    /// Bring back a leg that left: bitmap-only recovery when it is recent.
    ReAdd {
        name: String,
        device: PathBuf,
        #[arg(long)]
        array: Option<String>,
        #[arg(long)]
        wait: bool,
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
    },
}

pub fn main() -> std::process::ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let (Command::Assemble(a), Some(m)) = (&mut cli.command, matches.subcommand_matches("assemble")) {
        a.given = given_flags(m, "assemble");
    }
    let log_format = match logs::format(cli.log_format) {
        Ok(format) => {
            logs::init(format);
            format
        }
        Err(e) => {
            eprintln!("wasmraid: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    if !matches!(cli.command, Command::Serve(_) | Command::Assemble(_) | Command::Demo) {
        // A client printing into a closed pipe (`status | head`) ends
        // quietly like any Unix tool; servers keep ignoring SIGPIPE, or a
        // client hanging up would kill them.
        // SAFETY: setting a signal disposition to SIG_DFL passes no pointers.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = dispatch(cli.command, &cli.sandbox);
    match result {
        Ok(code) => code,
        Err(e) => {
            logs::failed(log_format, &e);
            std::process::ExitCode::from(1)
        }
    }
}

/// The flags of subcommand `sub` the command line gave (not defaults;
/// the global sandbox flags are the top command's).
fn given_flags(m: &clap::ArgMatches, sub: &str) -> Vec<String> {
    let cli = Cli::command();
    let Some(command) = cli.find_subcommand(sub) else { return Vec::new() };
    command
        .get_arguments()
        .map(|a| a.get_id().as_str())
        .filter(|id| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
        .map(str::to_string)
        .collect()
}

fn dispatch(command: Command, sandbox: &SandboxArgs) -> anyhow::Result<std::process::ExitCode> {
    match command {
        Command::Algo(cmd) => algo::run(cmd, sandbox),
        Command::Demo => demo::run(sandbox),
        Command::CompileComponent { stack_bytes, input, output } => Ok(wasmraid::sandbox::compile::child_main(&input, &output, stack_bytes)),
        Command::Serve(args) => serve::run(args, sandbox),
        Command::Table(TableCommand::Check { file, bind }) => serve::check(&file, bind, sandbox),
        Command::Status { name, json, run_dir } => control::status(&run_dir, &name, json),
        Command::Leg(LegCommand::Fail { name, leg, array, run_dir }) => {
            control::call(&run_dir, &name, wasmraid::control::Request::LegFail { array, leg }, Duration::from_secs(10)).map(|r| {
                println!("{name}: leg {leg} failed; health {}", r.result["health"].as_str().unwrap_or("?"));
                std::process::ExitCode::SUCCESS
            })
        }
        Command::Reload { name, component, array, args, run_dir } => {
            // The server resolves the path: make it absolute here.
            let component = match std::path::Path::new(&component) {
                p if p.exists() => std::fs::canonicalize(p).map(|p| p.display().to_string()).unwrap_or(component),
                _ => component,
            };
            control::call(&run_dir, &name, wasmraid::control::Request::Reload { array, component, args }, Duration::from_secs(600)).map(|r| {
                let x = &r.result;
                println!(
                    "{name}: reloaded {} -> {} ({} stripes proven identical in {:.1} ms)",
                    &x["old_hash"].as_str().unwrap_or("")[..16.min(x["old_hash"].as_str().unwrap_or("").len())],
                    &x["new_hash"].as_str().unwrap_or("")[..16.min(x["new_hash"].as_str().unwrap_or("").len())],
                    x["stripes_compared"],
                    x["compare_time_ms"].as_f64().unwrap_or(0.0)
                );
                std::process::ExitCode::SUCCESS
            })
        }
        Command::Create(args) => meta::create_cmd(args, sandbox),
        Command::Reshape(args) => reshape::reshape_cmd(args, sandbox),
        Command::Assemble(args) => meta::assemble_cmd(args, sandbox),
        Command::Detail { scan: _, run_dir } => scan::detail_scan(&run_dir.unwrap_or_else(wasmraid::control::default_run_dir)),
        Command::Ublk(UblkCommand::List) => {
            for (id, state) in wasmraid::frontend::ublk::list() {
                println!("/dev/ublkb{id} {state}");
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Ublk(UblkCommand::Del { id }) => {
            wasmraid::frontend::ublk::delete(id)?;
            println!("deleted /dev/ublkb{id}");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Examine { leg, json } => meta::examine_cmd(&leg, json),
        Command::Check(a) => control::sync(&a.run_dir, &a.name, a.array, "check", a.wait),
        Command::Repair(a) => control::sync(&a.run_dir, &a.name, a.array, "repair", a.wait),
        Command::Tune { name, array, sync_rate, read_policy, run_dir } => control::tune(&run_dir, &name, array, sync_rate, read_policy),
        Command::Leg(LegCommand::Remove { name, leg, array, run_dir }) => {
            control::leg(&run_dir, &name, wasmraid::control::Request::LegRemove { array, leg }, false)
        }
        Command::Leg(LegCommand::Add { name, device, slot, array, wait, run_dir }) => {
            control::leg(&run_dir, &name, wasmraid::control::Request::LegAdd { array, leg: slot, device: control::absolute(&device)? }, wait)
        }
        Command::Leg(LegCommand::Replace { name, leg, device, array, wait, run_dir }) => {
            control::leg(&run_dir, &name, wasmraid::control::Request::LegReplace { array, leg, device: control::absolute(&device)? }, wait)
        }
        Command::Leg(LegCommand::ReAdd { name, device, array, wait, run_dir }) => {
            control::leg(&run_dir, &name, wasmraid::control::Request::LegReadd { array, device: control::absolute(&device)? }, wait)
        }
        Command::Stop { name, run_dir } => control::stop(&run_dir, &name, Duration::from_secs(60)),
        Command::Monitor { name, program, json, test, run_dir } => monitor::run(&run_dir, &name, program.as_deref(), json, test),
        Command::Man { dir } => docs::man_pages(&dir),
        Command::Completions { shell } => docs::completions(shell),
    }
}
