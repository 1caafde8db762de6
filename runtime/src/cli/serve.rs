//! `wasmraid serve` and `wasmraid table check`.

use super::SandboxArgs;
use anyhow::{Context, bail};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use wasmraid::device::BlockDevice;
use wasmraid::device::file::{FileLeg, OpenFlags};
use wasmraid::frontend::nbd::{Listen, NbdLimits};
use wasmraid::frontend::ublk::UblkConfig;
use wasmraid::serve::Frontends;
use wasmraid::table::bind::BindContext;
use wasmraid::table::{Table, parse};
use wasmraid::tls::{CertDir, ServerTls, TlsMode};
use wasmraid::units::{format_size, parse_size};

#[derive(Args)]
pub struct ServeArgs {
    /// The device's name (its NBD export name and control socket name).
    name: String,
    /// A device-mapper style table file (`<start> <length> <target> <args>`).
    #[arg(long, conflicts_with = "layout")]
    table: Option<PathBuf>,
    /// Serve one array: a component file or a built-in layout name.
    #[arg(long, requires = "legs")]
    layout: Option<String>,
    /// The array's legs (files or block devices), comma separated.
    #[arg(long, value_delimiter = ',')]
    legs: Vec<PathBuf>,
    /// Chunk size.
    #[arg(long, default_value = "64K")]
    chunk: String,
    /// The layout's arguments.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    args: String,
    /// Bytes to skip at the start of every leg (md's data offset), e.g. 1M.
    #[arg(long, default_value = "0")]
    data_offset: String,
    /// Create legs that do not exist as sparse files of this size.
    #[arg(long, value_name = "SIZE")]
    create_legs: Option<String>,
    /// Open legs with O_DIRECT.
    #[arg(long)]
    direct: bool,
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(flatten)]
    listen: ListenArgs,
}

/// How legs that are NBD URIs behave when their link breaks.
#[derive(Args, Clone)]
pub struct RemoteArgs {
    /// Seconds a request to a disconnected remote leg waits before the leg is failed.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    leg_timeout: f64,
}

impl RemoteArgs {
    pub fn options(&self) -> wasmraid::device::nbd::NbdOptions {
        wasmraid::device::nbd::NbdOptions { timeout: std::time::Duration::from_secs_f64(self.leg_timeout.max(0.1)), ..Default::default() }
    }
}

/// Where a served device listens.
#[derive(Args, Clone)]
pub struct ListenArgs {
    /// Serve NBD on this TCP address (default 127.0.0.1:10809 when neither --nbd-unix nor --ublk is given).
    #[arg(long)]
    nbd: Vec<SocketAddr>,
    /// Serve the device to the local kernel as /dev/ublkbN (needs the ublk_drv module).
    #[arg(long)]
    ublk: bool,
    /// Serve Prometheus metrics (GET /metrics) on this TCP address, e.g. 127.0.0.1:9273.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// The N of /dev/ublkbN (default: the kernel picks one).
    #[arg(long, value_name = "N", requires = "ublk")]
    ublk_id: Option<u32>,
    /// Take back /dev/ublkbN after its server died (kill -9, crash): serve the same table with this.
    #[arg(long, value_name = "N", conflicts_with = "ublk_id")]
    recover: Option<u32>,
    /// ublk hardware queues (default: one per CPU, at most 4).
    #[arg(long)]
    queues: Option<u16>,
    /// ublk queue depth: requests in flight per queue.
    #[arg(long, default_value_t = 64)]
    depth: u16,
    /// Largest ublk request (the kernel splits larger ones), e.g. 1M.
    #[arg(long, default_value = "512K")]
    max_io: String,
    /// Threads serving ublk requests.
    #[arg(long, default_value_t = 32)]
    ublk_threads: usize,
    /// Pin each ublk queue thread to its queue's CPUs (libublk's way) instead of letting the scheduler
    /// place them: measured in the VM with one submitter, unpinned reads 6-50% more.
    #[arg(long)]
    ublk_pin_queues: bool,
    /// Serve NBD on this Unix socket.
    #[arg(long)]
    nbd_unix: Vec<PathBuf>,
    /// NBD clients at once (handshake or transmission); one more is accepted and closed with a log line.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    nbd_max_connections: u64,
    /// Seconds an NBD client has to finish its handshake before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    nbd_handshake_timeout: f64,
    /// Worker threads serving NBD requests across all clients (an idle client holds none, a busy one up to 16).
    #[arg(long, value_name = "N", default_value_t = 64)]
    nbd_threads: usize,
    /// NBD over TLS (NBD_OPT_STARTTLS): off, on (clients choose) or require (plaintext clients are refused).
    #[arg(long, value_enum, default_value_t = TlsMode::Off)]
    tls: TlsMode,
    /// Directory with ca-cert.pem, server-cert.pem and server-key.pem, nbdkit's names
    /// (default /etc/pki/wasmraid for root, ~/.pki/wasmraid otherwise).
    #[arg(long, value_name = "DIR")]
    tls_certificates: Option<PathBuf>,
    /// Demand a client certificate signed by ca-cert.pem.
    #[arg(long)]
    tls_verify_peer: bool,
    /// Directory of control sockets.
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
}

impl ListenArgs {
    fn frontends(&self, name: &str) -> anyhow::Result<Frontends> {
        let max_io = u32::try_from(parse_size(&self.max_io)?)
            .ok()
            .filter(|n| *n >= 4096 && n % 4096 == 0)
            .with_context(|| format!("--max-io {} must be a multiple of 4K below 4G", self.max_io))?;
        let mut nbd: Vec<Listen> = self.nbd.iter().map(|addr| Listen::Tcp(*addr)).chain(self.nbd_unix.iter().map(|p| Listen::Unix(p.clone()))).collect();
        // A restart (systemd's Restart=on-failure) runs the same command
        // line as the daemon that died: take its quiesced device back
        // rather than fail to create one with the same id.
        let run_dir = self.run_dir.clone().unwrap_or_else(wasmraid::control::default_run_dir);
        let taken_back = match (self.ublk_id, self.recover) {
            (Some(id), None) if wasmraid::serve::ublk_left_by_dead_server(&run_dir, name, id) => {
                eprintln!("wasmraid: /dev/ublkb{id} was left by a server of {name} that died: taking it back (as --recover {id})");
                Some(id)
            }
            _ => None,
        };
        let ublk = (self.ublk || self.recover.is_some()).then(|| {
            let defaults = UblkConfig::default();
            UblkConfig {
                id: if taken_back.is_some() { None } else { self.ublk_id },
                queues: self.queues.unwrap_or(defaults.queues),
                depth: self.depth,
                workers: self.ublk_threads,
                recover: self.recover.or(taken_back),
                max_io_bytes: max_io,
                pin_queues: self.ublk_pin_queues,
            }
        });
        if nbd.is_empty() && ublk.is_none() {
            nbd.push(Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 10809))));
        }
        let nbd_limits = NbdLimits::new(self.nbd_max_connections, self.nbd_handshake_timeout, self.nbd_threads)?;
        if self.tls == TlsMode::Off && (self.tls_certificates.is_some() || self.tls_verify_peer) {
            bail!("--tls-certificates and --tls-verify-peer need --tls on or --tls require");
        }
        if self.tls != TlsMode::Off && nbd.is_empty() {
            bail!("--tls {} applies to NBD listeners (--nbd, --nbd-unix), and none is given", self.tls);
        }
        let dir = CertDir::new(self.tls_certificates.clone().unwrap_or_else(|| wasmraid::tls::default_dir("wasmraid")));
        let nbd_tls = ServerTls::load(self.tls, dir, self.tls_verify_peer).context("--tls")?;
        Ok(Frontends { nbd, nbd_limits, nbd_tls, ublk, metrics: self.metrics })
    }
}

/// Serve a bound table until stopped.
pub fn serve_table(name: &str, table: Table, sandbox: Arc<wasmraid::sandbox::Sandbox>, listen: &ListenArgs) -> anyhow::Result<ExitCode> {
    let run_dir = listen.run_dir.clone().unwrap_or_else(wasmraid::control::default_run_dir);
    let frontends = listen.frontends(name)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("wasmraid").build()?;
    let served = runtime.block_on(wasmraid::serve::run(name.to_string(), Arc::new(table), sandbox, frontends, run_dir, |served, socket| {
        let serving = format!("serving {} ({}) on {}", served.name, format_size(served.table.size()), served.listening.join(", "));
        super::logs::say(&format!("{serving}; control {}", socket.display()));
        super::systemd::ready(&serving);
        super::systemd::start_watchdog();
    }));
    super::systemd::stopping();
    // Everything is flushed and shut down by now: do not wait for blocking
    // tasks still parked on a device (dropping the runtime would).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served?;
    Ok(ExitCode::SUCCESS)
}

/// The table a `--layout` serve stands for, with a given length.
fn layout_table(a: &ServeArgs, layout: &str, sectors: u64) -> anyhow::Result<String> {
    let chunk = parse_size(&a.chunk)?;
    if chunk == 0 || chunk % 512 != 0 {
        bail!("chunk size {} must be a non-zero multiple of 512 bytes", a.chunk);
    }
    let offset = parse_size(&a.data_offset)?;
    if offset % 512 != 0 {
        bail!("data offset {} must be a multiple of 512 bytes", a.data_offset);
    }
    let mut line = format!("0 {sectors} wasm {layout} {} {}", chunk / 512, a.legs.len());
    for leg in &a.legs {
        let text = leg.to_str().context("leg paths must be UTF-8")?;
        if text.chars().any(char::is_whitespace) {
            bail!("leg path {text:?} contains white space");
        }
        line.push_str(&format!(" {text} {}", offset / 512));
    }
    if !a.args.trim().is_empty() {
        line.push_str(&format!(" -- {}", a.args.trim()));
    }
    Ok(line)
}

fn bind(name: &str, text: &str, sandbox: &Arc<wasmraid::sandbox::Sandbox>, flags: OpenFlags) -> anyhow::Result<Table> {
    let spec = parse::parse(text)?;
    Ok(Table::bind(&spec, BindContext::new(name, sandbox.clone(), flags))?)
}

pub fn run(a: ServeArgs, sandbox_args: &SandboxArgs) -> anyhow::Result<ExitCode> {
    wasmraid::control::valid_name(&a.name).map_err(anyhow::Error::msg)?;
    let sandbox = sandbox_args.sandbox()?;
    let flags = OpenFlags { direct: a.direct, read_only: false, nbd: a.remote.options() };
    if let Some(size) = &a.create_legs {
        let size = parse_size(size)?;
        for leg in &a.legs {
            if !leg.exists() && !wasmraid::device::nbd::NbdUri::looks_like(&leg.to_string_lossy()) {
                FileLeg::create(leg, size).with_context(|| format!("creating leg {}", leg.display()))?;
            }
        }
    }
    let table = match (&a.table, &a.layout) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading table {}", path.display()))?;
            bind(&a.name, &text, &sandbox, flags).with_context(|| format!("table {}", path.display()))?
        }
        (None, Some(layout)) => {
            // Prove once to learn the capacity, then bind the whole array.
            let probe = bind(&a.name, &layout_table(&a, layout, 1)?, &sandbox, flags)?;
            let sectors = probe.arrays().first().map(|x| x.size() / 512).unwrap_or(0);
            drop(probe);
            bind(&a.name, &layout_table(&a, layout, sectors)?, &sandbox, flags)?
        }
        (None, None) => bail!("give --table FILE, or --layout COMPONENT with --legs"),
    };
    serve_table(&a.name, table, sandbox, &a.listen)
}

/// `wasmraid table check FILE`: parse and validate a table without opening
/// anything; with `--bind`, also open the legs and prove the layouts.
pub fn check(path: &PathBuf, bind_too: bool, sandbox_args: &SandboxArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading table {}", path.display()))?;
    let spec = match parse::parse(&text) {
        Ok(s) => s,
        Err(e) => {
            println!("{}: {e}", path.display());
            return Ok(ExitCode::from(2));
        }
    };
    println!("{}: {} line(s), {} sectors ({}): valid", path.display(), spec.lines.len(), spec.sectors(), format_size(spec.sectors() * 512));
    if bind_too {
        match Table::bind(&spec, BindContext::new("check", sandbox_args.sandbox()?, OpenFlags { direct: false, read_only: true, ..Default::default() })) {
            Ok(t) => println!("bound: {}", t.describe()),
            Err(e) => {
                println!("{}: {e}", path.display());
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
