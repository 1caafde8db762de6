//! Serving a device: bind its table, export it over NBD, answer the control
//! socket, stop cleanly on SIGTERM, SIGINT or `wasmraid stop`.

use crate::control;
use crate::device::BlockDevice;
use crate::frontend::nbd::{self, Exports, Listen};
use crate::sandbox::Sandbox;
use crate::table::Table;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Notify;

/// A device being served.
pub struct Served {
    pub name: String,
    pub table: Arc<Table>,
    pub sandbox: Arc<Sandbox>,
    pub listening: Vec<String>,
    pub stop: Notify,
}

impl Served {
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "size_bytes": self.table.size(),
            "table": self.table.text(),
            "listening": self.listening,
            "arrays": self.table.arrays.iter().map(|a| control::status::array_status(a)).collect::<Vec<_>>(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {what}: {error}")]
    Listen { what: String, error: std::io::Error },
    #[error("control socket {path}: {error}")]
    Control { path: String, error: std::io::Error },
    #[error("{0}")]
    Name(String),
}

/// Serve until stopped. `ready` is called once everything listens.
pub async fn run(
    name: String,
    table: Arc<Table>,
    sandbox: Arc<Sandbox>,
    listens: Vec<Listen>,
    run_dir: PathBuf,
    ready: impl FnOnce(&Served, &std::path::Path),
) -> Result<(), ServeError> {
    control::valid_name(&name).map_err(ServeError::Name)?;
    let exports = Exports::new(vec![(name.clone(), table.clone() as Arc<dyn BlockDevice>)]);
    let mut tasks = Vec::new();
    let mut listening = Vec::new();
    for listen in &listens {
        let task = nbd::bind_and_spawn(listen.clone(), exports.clone()).await.map_err(|error| ServeError::Listen { what: listen.to_string(), error })?;
        tasks.push(task);
        listening.push(match listen {
            Listen::Tcp(a) => format!("nbd://{a}/{name}"),
            Listen::Unix(p) => format!("nbd+unix:///{name}?socket={}", p.display()),
        });
    }
    let socket = control::socket_path(&run_dir, &name);
    let control_err = |error: std::io::Error| ServeError::Control { path: socket.display().to_string(), error };
    std::fs::create_dir_all(&run_dir).map_err(control_err)?;
    let _ = std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700));
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Err(control_err(std::io::Error::new(std::io::ErrorKind::AddrInUse, format!("{name} is already being served"))));
        }
        std::fs::remove_file(&socket).map_err(control_err)?;
    }
    let listener = tokio::net::UnixListener::bind(&socket).map_err(control_err)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(control_err)?;
    let served = Arc::new(Served { name: name.clone(), table: table.clone(), sandbox, listening, stop: Notify::new() });
    let control_task = tokio::spawn(control::server::run(listener, served.clone()));
    // The bitmap daemon: clear idle regions lazily (md's daemon_sleep);
    // and, like md's recovery thread, rebuild a dead leg into the layout's
    // distributed spares when it has some free.
    let daemon = {
        let arrays: Vec<_> = table.arrays.to_vec();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                for a in &arrays {
                    let a = a.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || {
                        a.start_spare_rebuild_if_needed();
                        a.bitmap_daemon()
                    })
                    .await
                    {
                        tracing::error!("bitmap daemon: {e}");
                    }
                }
            }
        })
    };
    ready(&served, &socket);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(control_err)?;
    tokio::select! {
        _ = served.stop.notified() => tracing::info!("stop requested"),
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
    for t in tasks {
        t.abort();
    }
    control_task.abort();
    daemon.abort();
    let _ = std::fs::remove_file(&socket);
    for listen in &listens {
        if let Listen::Unix(p) = listen {
            let _ = std::fs::remove_file(p);
        }
    }
    let t = table.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || t.flush()).await {
        tracing::error!("final flush failed: {e}");
    }
    // A clean stop: mark idle regions clean and the arrays not dirty.
    for a in table.arrays.iter().cloned() {
        let name = a.name().to_string();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || a.shutdown()).await {
            tracing::error!(array = %name, "clean shutdown failed: {e}");
        }
    }
    Ok(())
}
