//! The NBD server frontend (tokio): fixed newstyle handshake, many requests
//! in flight per connection with out-of-order replies, TCP (127.0.0.1 by
//! default) and Unix sockets. Hostile bytes close that one connection with
//! a logged reason; nothing else is affected.

mod handshake;
pub mod proto;
mod transmission;

use crate::device::BlockDevice;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("{0}")]
    Request(#[from] proto::RequestError),
}

/// One exported device.
pub struct Export {
    pub device: Arc<dyn BlockDevice>,
    pub description: String,
}

/// The exports a server offers, by name; the first is also the default
/// (the empty name).
#[derive(Default, Clone)]
pub struct Exports {
    by_name: Arc<BTreeMap<String, Arc<Export>>>,
    default: Option<String>,
}

impl Exports {
    pub fn new(list: Vec<(String, Arc<dyn BlockDevice>)>) -> Self {
        let default = list.first().map(|(n, _)| n.clone());
        let by_name = list
            .into_iter()
            .map(|(name, device)| {
                let description = device.describe();
                (name, Arc::new(Export { device, description }))
            })
            .collect();
        Exports { by_name: Arc::new(by_name), default }
    }

    pub fn find(&self, name: &str) -> Option<Arc<Export>> {
        let name = if name.is_empty() { self.default.as_deref()? } else { name };
        self.by_name.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.by_name.keys()
    }
}

/// Where to listen.
#[derive(Clone, Debug)]
pub enum Listen {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "nbd://{a}"),
            Listen::Unix(p) => write!(f, "nbd+unix:///?socket={}", p.display()),
        }
    }
}

/// Bind first (so errors reach the caller), then serve in the background.
pub async fn bind_and_spawn(listen: Listen, exports: Exports) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    match &listen {
        Listen::Tcp(addr) => {
            let listener = TcpListener::bind(addr).await?;
            Ok(tokio::spawn(async move {
                loop {
                    let (stream, peer) = listener.accept().await?;
                    let _ = stream.set_nodelay(true);
                    spawn_connection(stream, peer.to_string(), exports.clone());
                }
            }))
        }
        Listen::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let listener = UnixListener::bind(path)?;
            let path = path.clone();
            Ok(tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    let (stream, _) = listener.accept().await?;
                    n += 1;
                    spawn_connection(stream, format!("{}#{n}", path.display()), exports.clone());
                }
            }))
        }
    }
}

/// A tokio stream the transmission phase can take over in blocking mode.
pub trait IntoBlocking: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    fn into_blocking(self) -> std::io::Result<transmission::Socket>;
}

impl IntoBlocking for tokio::net::TcpStream {
    fn into_blocking(self) -> std::io::Result<transmission::Socket> {
        let s = self.into_std()?;
        s.set_nonblocking(false)?;
        Ok(transmission::Socket::Tcp(s))
    }
}

impl IntoBlocking for tokio::net::UnixStream {
    fn into_blocking(self) -> std::io::Result<transmission::Socket> {
        let s = self.into_std()?;
        s.set_nonblocking(false)?;
        Ok(transmission::Socket::Unix(s))
    }
}

fn spawn_connection<S: IntoBlocking>(stream: S, peer: String, exports: Exports) {
    tokio::spawn(async move {
        tracing::debug!(%peer, "nbd connection");
        match connection(stream, &exports).await {
            Ok(()) => tracing::debug!(%peer, "nbd connection closed"),
            Err(NbdError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                tracing::debug!(%peer, "nbd client went away")
            }
            Err(e) => tracing::warn!(%peer, "nbd connection closed: {e}"),
        }
    });
}

/// Handshake on tokio, then serve the transmission phase on worker threads.
async fn connection<S: IntoBlocking>(stream: S, exports: &Exports) -> Result<(), NbdError> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    match handshake::negotiate(&mut rd, &mut wr, exports).await? {
        handshake::Outcome::Done => Ok(()),
        handshake::Outcome::Serve(export) => {
            let socket = rd.unsplit(wr).into_blocking()?;
            tokio::task::spawn_blocking(move || transmission::run(socket, export))
                .await
                .map_err(|e| NbdError::Protocol(format!("connection thread failed: {e}")))?
        }
    }
}
