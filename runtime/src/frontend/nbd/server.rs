//! One NBD server: its listeners, its clients and their bounds. A client
//! over `max_connections` is accepted and closed at once (never queued);
//! one that has not finished its handshake within `handshake_timeout` is
//! closed; accept errors (out of file descriptors) are logged and retried
//! with backoff; `shutdown` stops accepting, disconnects every client once
//! its requests in flight are answered (at most `STOP_GRACE`) and returns.

use super::limits::NbdLimits;
use super::transmission::{self, STOP_GRACE};
use super::{ClientStream, Exports, Listen, NbdError, handshake};
use crate::accept::{AcceptBackoff, LogThrottle};
use std::sync::Arc;
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
    /// One permit per connection slot.
    slots: Arc<Semaphore>,
    /// One permit per worker thread, across all connections.
    threads: Arc<Semaphore>,
    stop: watch::Sender<bool>,
    refused: LogThrottle,
    timed_out: LogThrottle,
}

impl NbdServer {
    /// Start the I/O threads; nothing listens yet.
    pub fn new(exports: Exports, limits: NbdLimits) -> std::io::Result<NbdServer> {
        let (stop, _) = watch::channel(false);
        let shared = Shared {
            exports,
            limits,
            slots: Arc::new(Semaphore::new(limits.max_connections as usize)),
            threads: Arc::new(Semaphore::new(limits.io_threads)),
            stop,
            refused: LogThrottle::new(Duration::from_secs(1)),
            timed_out: LogThrottle::new(Duration::from_secs(1)),
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
        self.accepted += 1;
        Ok((stream, format!("{}#{}", self.path, self.accepted)))
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
            Err(e) => tracing::warn!(%peer, "nbd connection closed: {e}"),
        }
    });
}

/// Handshake within the time allowed, then the transmission phase.
async fn connection<S: ClientStream>(stream: S, shared: &Shared, peer: &str) -> Result<(), NbdError> {
    let mut stop = shared.stop.subscribe();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let limit = shared.limits.handshake_timeout;
    let outcome = tokio::select! {
        _ = stop.wait_for(|s| *s) => return Ok(()),
        o = tokio::time::timeout(limit, handshake::negotiate(&mut rd, &mut wr, &shared.exports)) => o,
    };
    let export = match outcome {
        Err(_) => {
            if let Some(more) = shared.timed_out.allow() {
                tracing::warn!(%peer, "nbd: closed a client that did not finish its handshake within {limit:?} (--nbd-handshake-timeout){}", also(more));
            }
            return Ok(());
        }
        Ok(r) => match r? {
            handshake::Outcome::Done => return Ok(()),
            handshake::Outcome::Serve(export) => export,
        },
    };
    transmission::serve(rd.unsplit(wr), export, shared.threads.clone(), shared.limits, stop).await
}
