//! Serving a device: bind its table, export it over NBD and/or ublk, answer
//! the control socket, stop cleanly on SIGTERM, SIGINT or `wasmraid stop`.

use crate::control;
use crate::device::BlockDevice;
use crate::frontend::nbd::{Clients, Exports, Listen, NbdLimits, NbdServer};
use crate::frontend::ublk::{self, UblkConfig};
use crate::sandbox::Sandbox;
use crate::table::Table;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Notify;

/// How long an array must be idle before the daemon marks it clean (md's
/// safe_mode_delay); also the daemon's tick.
pub const SAFE_MODE_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// A device being served.
pub struct Served {
    pub name: String,
    pub table: Arc<Table>,
    pub sandbox: Arc<Sandbox>,
    pub listening: Vec<String>,
    /// Its NBD listeners and metrics address, as given (`detail --scan`).
    pub listens: Vec<Listen>,
    pub metrics: Option<std::net::SocketAddr>,
    /// The NBD server's TLS and its clients, when served over NBD.
    pub nbd: Option<NbdView>,
    /// The ublk device, when served through one.
    pub ublk: Option<ublk::Started>,
    pub stop: Notify,
    /// Every change the watcher sees (`control::events`), for `monitor`.
    pub events: tokio::sync::broadcast::Sender<control::events::Event>,
    /// The reshape of its array started in this daemon, if any.
    pub reshape: parking_lot::Mutex<Option<Arc<crate::reshape::online::Online>>>,
}

impl Served {
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "size_bytes": self.table.size(),
            "table": self.table.text(),
            "listening": self.listening,
            "nbd": self.nbd.as_ref().map(|n| serde_json::json!({
                "tls": n.tls.as_ref().map_or(crate::tls::TlsMode::Off, |t| t.mode),
                "tls_verify_peer": n.tls.as_ref().is_some_and(|t| t.verify_peer),
                "tls_certificates": n.tls.as_ref().map(|t| t.dir.dir.display().to_string()),
                "clients": n.clients.list(),
                "listen": self.listens.iter().filter_map(|l| match l { Listen::Tcp(a) => Some(a.to_string()), Listen::Unix(_) => None }).collect::<Vec<_>>(),
                "listen_unix": self.listens.iter().filter_map(|l| match l { Listen::Unix(p) => Some(p.display().to_string()), Listen::Tcp(_) => None }).collect::<Vec<_>>(),
            })),
            "metrics": self.metrics.map(|a| a.to_string()),
            "ublk": self.ublk.as_ref().map(|u| serde_json::json!({
                "id": u.id, "device": u.path, "queues": u.queues, "depth": u.depth, "recovered": u.recovered, "zero_copy": u.zero_copy,
                "state": ublk::state(u.id), "gathered": u.gathered.json(),
            })),
            "arrays": self.table.arrays().iter().map(|a| control::status::array_status(a)).collect::<Vec<_>>(),
            "reshape": self.reshape.lock().as_ref().map(|r| r.status()),
        })
    }
}

impl Served {
    /// What the event watcher compares (`control::events`).
    pub fn watched(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "arrays": self.table.arrays().iter().map(|a| control::status::watched(a)).collect::<Vec<_>>(),
        })
    }
}

/// What `status` shows of the NBD server.
pub struct NbdView {
    pub tls: Option<crate::tls::ServerTls>,
    pub clients: Arc<Clients>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {what}: {error}")]
    Listen { what: String, error: std::io::Error },
    #[error("control socket {path}: {error}")]
    Control { path: String, error: std::io::Error },
    #[error(transparent)]
    RunDir(#[from] control::run_dir::RunDirError),
    #[error("starting the NBD server: {0}")]
    NbdStart(std::io::Error),
    #[error("{0}")]
    Name(String),
    #[error(transparent)]
    Ublk(#[from] ublk::UblkFrontendError),
}

/// How a served device reaches its clients.
#[derive(Debug, Clone, Default)]
pub struct Frontends {
    pub nbd: Vec<Listen>,
    /// The bounds of the NBD server (shared by its listeners).
    pub nbd_limits: NbdLimits,
    /// STARTTLS for every NBD listener (None: plaintext only).
    pub nbd_tls: Option<crate::tls::ServerTls>,
    pub ublk: Option<UblkConfig>,
    /// Where Prometheus scrapes `/metrics` (`metrics.rs`), if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
}

/// What the block layer should know of a table: a single array's chunk and
/// stripe, or plain 4 KiB hints.
pub fn limits(table: &Table) -> ublk::Limits {
    let mut limits = ublk::Limits::plain(table.size());
    if let [array] = &table.arrays()[..] {
        let layout = array.layout();
        let chunk = layout.geometry.chunk_sectors.saturating_mul(512);
        limits.io_min = chunk;
        limits.io_opt = chunk.saturating_mul(layout.descriptor.data_chunks.max(1));
        limits.discard_granularity = chunk;
    }
    limits
}

/// Serve until stopped. `ready` is called once everything listens.
pub async fn run(
    name: String,
    table: Arc<Table>,
    sandbox: Arc<Sandbox>,
    frontends: Frontends,
    run_dir: PathBuf,
    ready: impl FnOnce(&Served, &std::path::Path),
) -> Result<(), ServeError> {
    control::valid_name(&name).map_err(ServeError::Name)?;
    // First: a directory we must refuse leaves nothing else behind.
    control::run_dir::prepare(&run_dir)?;
    let exports = Exports::new(vec![(name.clone(), table.clone() as Arc<dyn BlockDevice>)]);
    crate::fd_limit::raise();
    let mut listening = Vec::new();
    let listens = frontends.nbd;
    let recovering_ublk = frontends.ublk.as_ref().is_some_and(|u| u.recover.is_some());
    let nbd_tls = frontends.nbd_tls;
    let mut nbd_server =
        if listens.is_empty() { None } else { Some(NbdServer::new(exports, frontends.nbd_limits, nbd_tls.clone()).map_err(ServeError::NbdStart)?) };
    let nbd_view = nbd_server.as_ref().map(|s| NbdView { tls: nbd_tls.clone(), clients: s.clients() });
    for listen in &listens {
        warn_if_exposed(listen, nbd_tls.as_ref());
        if let Some(server) = &mut nbd_server {
            server.listen(listen).await.map_err(|error| ServeError::Listen { what: listen.to_string(), error })?;
        }
        listening.push(match listen {
            Listen::Tcp(a) => format!("nbd://{a}/{name}"),
            Listen::Unix(p) => format!("nbd+unix:///{name}?socket={}", p.display()),
        });
    }
    let socket = control::socket_path(&run_dir, &name);
    let control_err = |error: std::io::Error| ServeError::Control { path: socket.display().to_string(), error };
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Err(control_err(std::io::Error::new(std::io::ErrorKind::AddrInUse, format!("{name} is already being served"))));
        }
        std::fs::remove_file(&socket).map_err(control_err)?;
    }
    let listener = tokio::net::UnixListener::bind(&socket).map_err(control_err)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(control_err)?;
    let (ublk_started, ublk_thread) = match frontends.ublk {
        Some(config) => {
            let (started, thread) = start_ublk(table.clone(), config).await.inspect_err(|_| {
                let _ = std::fs::remove_file(&socket);
            })?;
            listening.push(started.path.clone());
            claim_ublk(&run_dir, &name, started.id);
            (Some(started), Some(thread))
        }
        None => (None, None),
    };
    let served = Arc::new(Served {
        name: name.clone(),
        table: table.clone(),
        sandbox,
        listening,
        listens: listens.clone(),
        metrics: frontends.metrics,
        nbd: nbd_view,
        ublk: ublk_started.clone(),
        stop: Notify::new(),
        events: tokio::sync::broadcast::channel(control::events::BACKLOG).0,
        reshape: parking_lot::Mutex::new(None),
    });
    let control_task = tokio::spawn(control::server::run(listener, served.clone()));
    let watcher = {
        let served = served.clone();
        tokio::spawn(async move {
            let mut watcher = control::events::Watcher::default();
            loop {
                let s = served.clone();
                if let Ok(status) = tokio::task::spawn_blocking(move || s.watched()).await {
                    for event in watcher.changes(&status) {
                        tracing::info!(event = %event.event, array = %event.array, component = ?event.component, "event");
                        let _ = served.events.send(event);
                    }
                }
                tokio::time::sleep(control::events::WATCH_EVERY).await;
            }
        })
    };
    let metrics_task = match frontends.metrics {
        Some(addr) => {
            let metrics = tokio::net::TcpListener::bind(addr).await.map_err(|error| ServeError::Listen { what: format!("metrics {addr}"), error })?;
            let source = served.clone();
            served_metrics_note(addr);
            Some(tokio::spawn(crate::metrics::serve(metrics, Arc::new(move || source.status()))))
        }
        None => None,
    };
    // The array daemon, every 200 ms: mark idle arrays clean (md's safe
    // mode), clear idle bitmap regions (md's daemon_sleep), re-add legs
    // whose link came back, and start what an array needs (resume an
    // interrupted rebuild, resync, rebuild into distributed spares), as
    // md's recovery thread does.
    // The arrays are read each time: a reshape takes the array away while
    // it moves it, and gives back the reshaped one.
    let daemon = {
        let table = table.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SAFE_MODE_DELAY).await;
                for a in &table.arrays() {
                    let a = a.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || {
                        a.mark_clean_if_idle(SAFE_MODE_DELAY)?;
                        a.readd_reconnected_legs();
                        a.start_needed_sync();
                        a.bitmap_daemon()
                    })
                    .await
                    {
                        tracing::error!("array daemon: {e}");
                    }
                }
            }
        })
    };
    for a in table.arrays().iter().filter(|a| a.meta.is_none()) {
        if recovering_ublk {
            // The dead server may have left stripes torn anywhere, and
            // nothing on disk says where: recompute all the redundancy.
            tracing::warn!(array = %a.name(), "taken back after its server died, with no metadata to say which stripes a crash may have torn: resyncing the whole array");
            if let Err(e) = a.start_sync(crate::array::sync::SyncAction::Resync, None) {
                tracing::error!(array = %a.name(), "cannot start the full resync: {e}");
            }
        } else if a.layout().descriptor.parity_chunks + a.layout().descriptor.replica_chunks > 0 {
            tracing::warn!(array = %a.name(), "served without metadata: after a crash nothing says which stripes may be torn, and nothing will resync them by itself (create the array with `wasmraid create` for superblocks and a write-intent bitmap, or run `wasmraid repair` after a crash)");
        }
    }
    ready(&served, &socket);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(control_err)?;
    let (ublk_gone_tx, ublk_gone) = tokio::sync::oneshot::channel::<()>();
    let mut ublk_thread = ublk_thread.map(|t| {
        tokio::task::spawn_blocking(move || {
            let r = t.join();
            let _ = ublk_gone_tx.send(());
            r
        })
    });
    let ublk_ended = async move {
        // No ublk device: never.
        if ublk_gone.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = served.stop.notified() => tracing::info!("stop requested"),
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
        _ = ublk_ended => tracing::warn!("the ublk device was stopped from outside; shutting down"),
    }
    // Stop the kernel side first: it drains what is in flight through us.
    if let Some(started) = &ublk_started {
        let id = started.id;
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || ublk::stop(id)).await {
            tracing::warn!("stopping {}: {e}", started.path);
        }
    }
    if let Some(t) = ublk_thread.take() {
        match t.await {
            Ok(Ok(Err(e))) => tracing::error!("ublk: {e}"),
            Ok(Err(_)) => tracing::error!("ublk: the serving thread panicked"),
            _ => {}
        }
    }
    // Stop accepting and disconnect the clients (each after its requests in
    // flight are answered, bounded): an idle client must not hold up a stop.
    if let Some(server) = nbd_server {
        server.shutdown().await;
    }
    control_task.abort();
    daemon.abort();
    watcher.abort();
    if let Some(t) = metrics_task {
        t.abort();
    }
    let _ = std::fs::remove_file(&socket);
    if ublk_started.is_some() {
        let _ = std::fs::remove_file(ublk_claim_path(&run_dir, &name));
    }
    for listen in &listens {
        if let Listen::Unix(p) = listen {
            let _ = std::fs::remove_file(p);
        }
    }
    let t = table.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || t.flush()).await {
        tracing::error!("final flush failed: {e}");
    }
    // A reshape under way records where it stopped, cleanly.
    let reshape = served.reshape.lock().clone();
    if let Some(r) = reshape {
        let _ = tokio::task::spawn_blocking(move || r.stop()).await;
    }
    // A clean stop: mark idle regions clean and the arrays not dirty.
    for a in table.arrays().iter().cloned() {
        let name = a.name().to_string();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || a.shutdown()).await {
            tracing::error!(array = %name, "clean shutdown failed: {e}");
        }
    }
    Ok(())
}

/// Where a daemon records the ublk device it serves, in its run
/// directory: left behind when it dies, so the next daemon of the same
/// name (a systemd restart) knows a quiesced device with that id is its
/// own to take back, and no other device's.
fn ublk_claim_path(run_dir: &std::path::Path, name: &str) -> PathBuf {
    run_dir.join(format!("{name}.ublk"))
}

fn claim_ublk(run_dir: &std::path::Path, name: &str, id: u32) {
    if let Err(e) = std::fs::write(ublk_claim_path(run_dir, name), format!("{id}\n")) {
        tracing::warn!("cannot record that {name} serves /dev/ublkb{id} (a restart will not take it back by itself): {e}");
    }
}

/// The ublk device a dead daemon of `name` left, when its record says
/// `id` and the kernel holds that device quiesced (its server gone).
pub fn ublk_left_by_dead_server(run_dir: &std::path::Path, name: &str, id: u32) -> bool {
    let recorded = std::fs::read_to_string(ublk_claim_path(run_dir, name)).ok().and_then(|t| t.trim().parse::<u32>().ok());
    recorded == Some(id) && ublk::state(id).as_deref() == Some("QUIESCED")
}

/// Metrics name the legs and their errors: say so when others can read them.
fn served_metrics_note(addr: std::net::SocketAddr) {
    if !addr.ip().is_loopback() {
        tracing::warn!("metrics on {addr} are readable by anyone who can reach it (no authentication)");
    }
}

/// An export other machines can reach is only as safe as its TLS: say so
/// when it has none, or when it lets any client in.
fn warn_if_exposed(listen: &Listen, tls: Option<&crate::tls::ServerTls>) {
    let Listen::Tcp(addr) = listen else { return };
    if addr.ip().is_loopback() {
        return;
    }
    match tls {
        None => tracing::warn!(
            "nbd: {listen} is reachable from other machines without TLS: anyone on the path can read and rewrite the device, unauthenticated (--tls require --tls-certificates DIR)"
        ),
        Some(t) if t.mode == crate::tls::TlsMode::On => {
            tracing::warn!("nbd: {listen} is reachable from other machines and also accepts plaintext clients (--tls on): use --tls require")
        }
        Some(t) if !t.verify_peer => {
            tracing::warn!("nbd: {listen} encrypts, but any client that can reach it may connect (--tls-verify-peer demands a certificate signed by the CA)")
        }
        Some(_) => {}
    }
}

type UblkThread = std::thread::JoinHandle<Result<(), ublk::UblkFrontendError>>;

/// Start the ublk device on a thread of its own (libublk runs its own
/// executors there) and wait, without blocking tokio, until it is live.
async fn start_ublk(table: Arc<Table>, config: UblkConfig) -> Result<(ublk::Started, UblkThread), ServeError> {
    let limits = limits(&table);
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new().name("wasmraid-ublk".into()).spawn(move || {
        ublk::serve(table as Arc<dyn BlockDevice>, limits, &config, move |started| {
            let _ = ready_tx.send(started);
        })
    });
    let thread = thread.map_err(|e| ServeError::Ublk(e.into()))?;
    match ready.await {
        Ok(started) => Ok((started, thread)),
        // The thread ended before the device went live: its error says why.
        Err(_) => match thread.join() {
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(())) => {
                Err(ServeError::Ublk(ublk::UblkFrontendError::Driver { what: "starting the device".into(), detail: "it stopped before going live".into() }))
            }
            Err(_) => {
                Err(ServeError::Ublk(ublk::UblkFrontendError::Driver { what: "starting the device".into(), detail: "the serving thread panicked".into() }))
            }
        },
    }
}
