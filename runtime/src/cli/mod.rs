//! Command-line interface (clap); `anyhow` lives only here.

mod algo;
mod demo;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmraid::sandbox::{Sandbox, SandboxConfig};

#[derive(Parser)]
#[command(name = "wasmraid", version, about = "Block devices laid out by sandboxed, proven WebAssembly components")]
struct Cli {
    #[command(flatten)]
    sandbox: SandboxArgs,
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
    /// Memory cap per guest instance (e.g. 256M).
    #[arg(long, global = true, value_name = "SIZE", default_value = "256M")]
    guest_memory: String,
}

impl SandboxArgs {
    pub fn sandbox(&self) -> anyhow::Result<Arc<Sandbox>> {
        let defaults = SandboxConfig::default();
        let config = SandboxConfig {
            call_timeout: Duration::from_millis(self.guest_timeout_ms),
            memory_bytes: usize::try_from(wasmraid::units::parse_size(&self.guest_memory)?)?,
            cache_dir: if self.no_cache { None } else { self.cache_dir.clone().or(defaults.cache_dir) },
            ..defaults
        };
        Ok(Sandbox::new(config)?)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Compile, prove, draw and list layout algorithms.
    #[command(subcommand)]
    Algo(algo::AlgoCommand),
    /// Prove and draw a few built-in layouts (the README's first command).
    Demo,
}

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WASMRAID_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Algo(cmd) => algo::run(cmd, &cli.sandbox),
        Command::Demo => demo::run(&cli.sandbox),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wasmraid: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
