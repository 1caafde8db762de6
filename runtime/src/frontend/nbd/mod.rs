//! The NBD server frontend (tokio): fixed newstyle handshake, many requests
//! in flight per connection with out-of-order replies, TCP (127.0.0.1 by
//! default) and Unix sockets. Hostile bytes close that one connection with
//! a logged reason; nothing else is affected. Clients are bounded
//! (`limits.rs`): connections at once, time to finish the handshake,
//! requests in flight per connection, and worker threads across all of
//! them (`transmission.rs`: an idle connection holds none); a stop
//! disconnects every client (`server.rs`).

mod handshake;
pub mod limits;
mod payload;
pub mod proto;
mod server;
mod socket;
mod splice;
mod tls_wire;
mod transmission;

pub use limits::{LimitsError, NbdLimits};
pub use server::{ClientInfo, Clients, NbdServer};

use crate::device::BlockDevice;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("{0}")]
    Request(#[from] proto::RequestError),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
}

/// One exported device.
pub struct Export {
    pub name: String,
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
                (name.clone(), Arc::new(Export { name, device, description }))
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

/// A client connection: a tokio stream the handshake reads and writes
/// asynchronously and the transmission phase's workers use from their
/// threads (`transmission::Stream`).
pub trait ClientStream: AsyncRead + AsyncWrite + transmission::Stream + Unpin {}

impl ClientStream for tokio::net::TcpStream {}
impl ClientStream for tokio::net::UnixStream {}
