//! One NBD server: its listeners, its clients and their bounds. A client
//! over `max_connections` is accepted and closed at once (never queued);
//! one that has not finished its handshake within `handshake_timeout` is
//! closed; accept errors (out of file descriptors) are logged and retried
//! with backoff; `shutdown` stops accepting, disconnects every client once
//! its requests in flight are answered (at most `STOP_GRACE`) and returns.

use super::handshake::{self, Negotiated, Outcome, Wire};
use super::limits::NbdLimits;
use super::tls_wire::TlsWire;
use super::transmission::{self, STOP_GRACE};
use super::{ClientStream, Export, Exports, Listen, NbdError};
use crate::accept::{AcceptBackoff, LogThrottle};
use crate::tls::{ServerTls, Session, TlsMode};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

pub struct NbdServer {
    shared: Arc<Shared>,
    listeners: Vec<JoinHandle<()>>,
}

struct Shared {
    exports: Exports,
    limits: NbdLimits,
    tls: Option<ServerTls>,
    clients: Arc<Clients>,
    /// One permit per connection slot.
    slots: Arc<Semaphore>,
    /// One permit per worker thread, across all connections.
    threads: Arc<Semaphore>,
    stop: watch::Sender<bool>,
    refused: LogThrottle,
    timed_out: LogThrottle,
    tls_failed: LogThrottle,
}

impl NbdServer {
    /// Ready to listen; nothing listens yet. `tls`: what STARTTLS offers
    /// (None: plaintext only).
    pub fn new(exports: Exports, limits: NbdLimits, tls: Option<ServerTls>) -> std::io::Result<NbdServer> {
        let (stop, _) = watch::channel(false);
        let shared = Shared {
            exports,
            limits,
            tls,
            clients: Arc::new(Clients::default()),
            slots: Arc::new(Semaphore::new(limits.max_connections as usize)),
            threads: Arc::new(Semaphore::new(limits.io_threads)),
            stop,
            refused: LogThrottle::new(Duration::from_secs(1)),
            timed_out: LogThrottle::new(Duration::from_secs(1)),
            tls_failed: LogThrottle::new(Duration::from_secs(1)),
        };
        Ok(NbdServer { shared: Arc::new(shared), listeners: Vec::new() })
    }

    /// Bind now (so errors reach the caller), then accept in the background.
    pub async fn listen(&mut self, listen: &Listen) -> std::io::Result<()> {
        let shared = self.shared.clone();
        let what = listen.to_string();
        let task = match listen {
            Listen::Tcp(addr) => tokio::spawn(accept_loop(shared, what, TcpListener::bind(addr).await?)),
            Listen::Unix(path) => {
                let _ = std::fs::remove_file(path);
                let listener = UnixListener::bind(path)?;
                tokio::spawn(accept_loop(shared, what, UnixAcceptor { listener, path: path.display().to_string(), accepted: 0 }))
            }
        };
        self.listeners.push(task);
        Ok(())
    }

    /// The clients in transmission phase, for `status`.
    pub fn clients(&self) -> Arc<Clients> {
        self.shared.clients.clone()
    }

    /// Stop accepting, disconnect every client (after its requests in flight
    /// are answered, at most `STOP_GRACE`), and return.
    pub async fn shutdown(self) {
        for l in &self.listeners {
            l.abort();
        }
        self.shared.stop.send_replace(true);
        let all = self.shared.slots.acquire_many(self.shared.limits.max_connections);
        if tokio::time::timeout(STOP_GRACE + Duration::from_secs(1), all).await.is_err() {
            tracing::warn!("nbd: some connections did not close in time; stopping anyway");
        }
    }
}

/// A listener, TCP or Unix: the next client and a name for the log.
trait Acceptor: Send + 'static {
    type Stream: ClientStream;
    fn accept(&mut self) -> impl std::future::Future<Output = std::io::Result<(Self::Stream, String)>> + Send + '_;
}

impl Acceptor for TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&mut self) -> std::io::Result<(Self::Stream, String)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer.to_string()))
    }
}

struct UnixAcceptor {
    listener: UnixListener,
    path: String,
    accepted: u64,
}

impl Acceptor for UnixAcceptor {
    type Stream = tokio::net::UnixStream;
    async fn accept(&mut self) -> std::io::Result<(Self::Stream, String)> {
        let (stream, _) = self.listener.accept().await?;
        widen_send_buffer(&stream);
        self.accepted += 1;
        Ok((stream, format!("{}#{}", self.path, self.accepted)))
    }
}

/// A Unix client's send buffer (the kernel doubles it, for its own
/// bookkeeping). A reply larger than the buffer goes out in rounds, each
/// waiting for the client to read and for the runtime to say the socket
/// has room again: at Linux's default (208 KiB) 1 MiB reads ran at 1.6
/// GB/s, with this at 3.5 (fio, depth 8, `benches/nbd.rs`; 4 MiB gained
/// nothing more). The kernel holds at most twice this per connection
/// while a client does not read, and connecting takes write permission on
/// the socket file (under the usual umask, its owner's). TCP keeps its autotuning (a set size would
/// turn it off).
const UNIX_SEND_BUFFER: libc::c_int = 1 << 20;

fn widen_send_buffer(stream: &tokio::net::UnixStream) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
    let size = UNIX_SEND_BUFFER;
    // SO_SNDBUFFORCE passes net.core.wmem_max with CAP_NET_ADMIN (which a
    // ublk server has); without it SO_SNDBUF gets as close as the cap lets.
    for option in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
        // SAFETY: `fd` is the open socket `stream` owns; the value is a
        // c_int of the length given.
        let set = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, option, (&raw const size).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t) };
        if set == 0 {
            return;
        }
    }
}

/// Accept until the task is aborted or the server stops.
async fn accept_loop<A: Acceptor>(shared: Arc<Shared>, what: String, mut listener: A) {
    let mut backoff = AcceptBackoff::new(format!("nbd listener {what}"));
    let mut stop = shared.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        backoff.succeeded();
        match shared.slots.clone().try_acquire_owned() {
            Ok(slot) => spawn_connection(stream, peer, shared.clone(), slot),
            Err(_) => {
                if let Some(more) = shared.refused.allow() {
                    tracing::warn!(%peer, "nbd: refused a client: {} connections already (--nbd-max-connections){}", shared.limits.max_connections, also(more));
                }
                drop(stream);
            }
        }
    }
}

fn also(more: u64) -> String {
    if more > 0 { format!("; {more} more since the last such line") } else { String::new() }
}

fn spawn_connection<S: ClientStream>(stream: S, peer: String, shared: Arc<Shared>, slot: OwnedSemaphorePermit) {
    tokio::spawn(async move {
        let _slot = slot;
        tracing::debug!(%peer, "nbd connection");
        match connection(stream, &shared, &peer).await {
            Ok(()) => tracing::debug!(%peer, "nbd connection closed"),
            Err(NbdError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                tracing::debug!(%peer, "nbd client went away")
            }
            // Anyone who can reach the port can fail a handshake: once a
            // second is enough for the log.
            Err(e @ NbdError::Tls(_)) => {
                if let Some(more) = shared.tls_failed.allow() {
                    tracing::warn!(%peer, "nbd connection closed: {e}{}", also(more));
                }
            }
            Err(e) => tracing::warn!(%peer, "nbd connection closed: {e}"),
        }
    });
}

/// A client in transmission phase, as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientInfo {
    pub peer: String,
    pub export: String,
    /// None: plaintext.
    pub tls: Option<Session>,
}

/// The clients in transmission phase, by connection number.
#[derive(Default)]
pub struct Clients {
    next: AtomicU64,
    live: Mutex<BTreeMap<u64, ClientInfo>>,
}

impl Clients {
    pub fn list(&self) -> Vec<ClientInfo> {
        self.live.lock().values().cloned().collect()
    }

    fn enter(self: &Arc<Self>, info: ClientInfo) -> ClientEntry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.live.lock().insert(id, info);
        ClientEntry { clients: self.clone(), id }
    }
}

/// Removes its client from the list when the connection ends.
struct ClientEntry {
    clients: Arc<Clients>,
    id: u64,
}

impl Drop for ClientEntry {
    fn drop(&mut self) {
        self.clients.live.lock().remove(&self.id);
    }
}

/// How the handshake left a connection.
enum Settled<S: ClientStream> {
    Plain(S, Arc<Export>, Negotiated),
    Tls(TlsWire<S>, Arc<Export>, Negotiated, Session),
    Done,
}

/// Greeting, haggling and, when the client asks, the TLS handshake.
async fn settle<S: ClientStream>(mut stream: S, shared: &Shared) -> Result<Settled<S>, NbdError> {
    let offered = shared.tls.as_ref().map_or(TlsMode::Off, |t| t.mode);
    let no_zeroes = handshake::greet(&mut stream).await?;
    let mut chosen = Negotiated::default();
    match handshake::haggle(&mut stream, &shared.exports, no_zeroes, Wire::Plain(offered), &mut chosen).await? {
        Outcome::Done => Ok(Settled::Done),
        Outcome::Serve(export) => Ok(Settled::Plain(stream, export, chosen)),
        Outcome::StartTls => {
            // haggle acks STARTTLS only when TLS is offered.
            let tls = shared.tls.as_ref().ok_or_else(|| NbdError::Protocol("STARTTLS acked without TLS".into()))?;
            let mut encrypted = tls.acceptor().accept(stream).await.map_err(|e| NbdError::Tls(e.to_string()))?;
            match handshake::haggle(&mut encrypted, &shared.exports, no_zeroes, Wire::Encrypted, &mut chosen).await? {
                Outcome::Serve(export) => {
                    let (socket, session) = encrypted.into_inner();
                    let info = Session::of(&session);
                    Ok(Settled::Tls(TlsWire::new(socket, session), export, chosen, info))
                }
                Outcome::Done | Outcome::StartTls => Ok(Settled::Done),
            }
        }
    }
}

/// Handshake within the time allowed, then the transmission phase.
async fn connection<S: ClientStream>(stream: S, shared: &Shared, peer: &str) -> Result<(), NbdError> {
    let mut stop = shared.stop.subscribe();
    let limit = shared.limits.handshake_timeout;
    let settled = tokio::select! {
        _ = stop.wait_for(|s| *s) => return Ok(()),
        o = tokio::time::timeout(limit, settle(stream, shared)) => o,
    };
    let settled = match settled {
        Err(_) => {
            if let Some(more) = shared.timed_out.allow() {
                tracing::warn!(%peer, "nbd: closed a client that did not finish its handshake within {limit:?} (--nbd-handshake-timeout){}", also(more));
            }
            return Ok(());
        }
        Ok(r) => r?,
    };
    let (threads, limits) = (shared.threads.clone(), shared.limits);
    match settled {
        Settled::Done => Ok(()),
        Settled::Plain(stream, export, chosen) => {
            let _entry = shared.clients.enter(ClientInfo { peer: peer.to_string(), export: export.name.clone(), tls: None });
            transmission::serve(stream, export, chosen, threads, limits, stop).await
        }
        Settled::Tls(wire, export, chosen, session) => {
            tracing::info!(%peer, export = %export.name, "nbd: TLS client: {session}");
            let _entry = shared.clients.enter(ClientInfo { peer: peer.to_string(), export: export.name.clone(), tls: Some(session) });
            transmission::serve(wire, export, chosen, threads, limits, stop).await
        }
    }
}
