//! The transmission phase. A connection is a tokio task that reads the
//! next request off the socket and hands it to the server's I/O threads
//! (`pool.rs`); the thread that serves it writes the reply straight to the
//! socket when nothing else is being written and the socket takes it, and
//! otherwise leaves it to the connection's writer task. Requests are
//! served concurrently and answered as they complete (out of order,
//! matched by cookie).
//!
//! Why this shape: the server used to give each connection 16 threads of
//! its own plus a thread of tokio's blocking pool, so ~500 idle clients
//! exhausted that pool and stalled the array daemon, the control socket and
//! `stop`. Now a waiting connection costs a task and a small buffer, the
//! threads are a fixed number shared by all connections, and a connection
//! has at most `requests_per_connection` requests in flight: the next is
//! not read until one is answered, so a client that sends and never reads
//! its replies holds a bounded amount of memory until `reply_stall` closes
//! it.

use super::limits::NbdLimits;
use super::pool::IoPool;
use super::proto::*;
use super::{Export, NbdError};
use crate::device::BlockDevice;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};
use tokio::net::{tcp, unix};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

/// Bytes read ahead of the request being decoded: enough for a burst of
/// headers, small enough that a thousand idle connections cost 16 MiB.
const READ_BUFFER: usize = 16 << 10;

/// How long a stop waits for a connection's requests in flight.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The receiving half of a client's socket.
pub enum ReadHalf {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
}

impl AsyncRead for ReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Unix(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// The sending half: written without blocking from any thread, waited on
/// from the writer task.
pub enum WriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
}

impl WriteHalf {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        match self {
            WriteHalf::Tcp(w) => w.try_write_vectored(bufs),
            WriteHalf::Unix(w) => w.try_write_vectored(bufs),
        }
    }

    async fn writable(&self) -> std::io::Result<()> {
        match self {
            WriteHalf::Tcp(w) => w.writable().await,
            WriteHalf::Unix(w) => w.writable().await,
        }
    }
}

/// A reply not yet wholly on the socket; its permit lets the connection
/// read one more request once it is.
struct Reply {
    header: [u8; 16],
    data: Option<Vec<u8>>,
    sent: usize,
    _permit: OwnedSemaphorePermit,
}

impl Reply {
    /// Write what the socket takes now: true once all of it is sent.
    fn write_some(&mut self, w: &WriteHalf) -> std::io::Result<bool> {
        let data = self.data.as_deref().unwrap_or(&[]);
        let total = self.header.len() + data.len();
        while self.sent < total {
            let (h, d) = if self.sent < self.header.len() { (&self.header[self.sent..], data) } else { (&[][..], &data[self.sent - self.header.len()..]) };
            match w.try_write_vectored(&[IoSlice::new(h), IoSlice::new(d)]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

struct Outbox {
    queue: VecDeque<Reply>,
    /// The writer task holds replies it is writing: others queue behind.
    writing: bool,
}

struct Conn {
    export: Arc<Export>,
    wr: WriteHalf,
    out: Mutex<Outbox>,
    wake_writer: Notify,
    /// The socket failed or the client stopped taking replies: replies
    /// are dropped (their permits returned) instead of written.
    dead: AtomicBool,
}

impl Conn {
    /// Called by an I/O thread with a finished request's reply.
    fn deliver(&self, mut reply: Reply) {
        if self.dead.load(Ordering::Acquire) {
            return;
        }
        let mut out = self.out.lock();
        if !out.writing && out.queue.is_empty() {
            // Nothing ahead of it: the common case costs no hand-off.
            match reply.write_some(&self.wr) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    drop(out);
                    self.die(&e);
                    return;
                }
            }
        }
        out.queue.push_back(reply);
        drop(out);
        self.wake_writer.notify_one();
    }

    fn die(&self, why: &std::io::Error) {
        if !self.dead.swap(true, Ordering::AcqRel) {
            tracing::debug!("nbd connection: cannot send replies: {why}");
        }
        self.out.lock().queue.clear();
        self.wake_writer.notify_one();
    }

    /// The writer task: writes the replies the socket did not take at once,
    /// waiting for it at most `stall` each time.
    async fn write_queued(self: Arc<Self>, stall: std::time::Duration) -> Result<(), NbdError> {
        loop {
            self.wake_writer.notified().await;
            loop {
                if self.dead.load(Ordering::Acquire) {
                    return Err(NbdError::Protocol("the connection failed while sending replies".into()));
                }
                let batch: Vec<Reply> = {
                    let mut out = self.out.lock();
                    if out.queue.is_empty() {
                        out.writing = false;
                        break;
                    }
                    out.writing = true;
                    out.queue.drain(..).collect()
                };
                for mut reply in batch {
                    loop {
                        match reply.write_some(&self.wr) {
                            Ok(true) => break,
                            Ok(false) => match tokio::time::timeout(stall, self.wr.writable()).await {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => {
                                    self.die(&e);
                                    return Err(e.into());
                                }
                                Err(_) => {
                                    let e = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("the client took no reply bytes for {stall:?}"));
                                    self.die(&e);
                                    return Err(NbdError::Protocol(e.to_string()));
                                }
                            },
                            Err(e) => {
                                self.die(&e);
                                return Err(e.into());
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Serve requests until the client disconnects, breaks the protocol, or the
/// server stops (`stop` turns true); the first error is returned.
pub async fn serve(rd: ReadHalf, wr: WriteHalf, export: Arc<Export>, pool: Arc<IoPool>, limits: NbdLimits, mut stop: watch::Receiver<bool>) -> Result<(), NbdError> {
    let conn = Arc::new(Conn { export, wr, out: Mutex::new(Outbox { queue: VecDeque::new(), writing: false }), wake_writer: Notify::new(), dead: AtomicBool::new(false) });
    let per_conn = limits.requests_per_connection;
    let inflight = Arc::new(Semaphore::new(per_conn as usize));
    let mut writer = tokio::spawn(conn.clone().write_queued(limits.reply_stall));
    let mut writer_done = false;
    let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
    let outcome: Result<(), NbdError> = loop {
        // A permit first: the next request stays in the socket until one of
        // ours is answered.
        let permit = tokio::select! {
            _ = stopped(&mut stop) => break Ok(()),
            w = &mut writer, if !writer_done => { writer_done = true; break ended(w) }
            p = inflight.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break Ok(()),
            },
        };
        let next = tokio::select! {
            _ = stopped(&mut stop) => break Ok(()),
            w = &mut writer, if !writer_done => { writer_done = true; break ended(w) }
            r = next_request(&mut rd) => r,
        };
        match next {
            Ok(Some((request, payload))) => {
                let conn = conn.clone();
                pool.submit(Box::new(move || {
                    let (error, data) = serve_one(&*conn.export.device, request, payload);
                    conn.deliver(Reply { header: simple_reply(error, request.cookie), data, sent: 0, _permit: permit });
                }));
            }
            // EOF or DISC: what is in flight is still answered (below).
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // Let what is in flight finish and its replies go out: all the permits
    // come back once every reply is sent or dropped; a stop waits at most
    // STOP_GRACE.
    if outcome.is_ok() && !writer_done {
        let drained = inflight.acquire_many(per_conn);
        tokio::select! {
            _ = drained => {}
            _ = &mut writer => {}
            _ = async { stopped(&mut stop).await; tokio::time::sleep(STOP_GRACE).await } => {}
        }
    }
    writer.abort();
    conn.dead.store(true, Ordering::Release);
    outcome
}

/// Resolves once the server stops (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn ended(w: Result<Result<(), NbdError>, tokio::task::JoinError>) -> Result<(), NbdError> {
    match w {
        Ok(r) => r,
        Err(e) => Err(NbdError::Protocol(format!("the reply writer failed: {e}"))),
    }
}

/// The next request and its payload; None at EOF or DISC.
async fn next_request<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Option<(Request, Option<Vec<u8>>)>, NbdError> {
    let mut header = [0u8; REQUEST_HEADER];
    match rd.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let request = decode_request(&header)?;
    if request.command == CMD_DISC {
        return Ok(None);
    }
    let payload = if request.command == CMD_WRITE {
        // decode_request bounds the length (MAX_REQUEST).
        let mut data = vec![0u8; request.length as usize];
        rd.read_exact(&mut data).await?;
        Some(data)
    } else {
        None
    };
    Ok(Some((request, payload)))
}

/// Serve one request: (NBD error, data for a read).
fn serve_one(device: &dyn BlockDevice, r: Request, payload: Option<Vec<u8>>) -> (u32, Option<Vec<u8>>) {
    let fua = r.flags & CMD_FLAG_FUA != 0;
    let in_range = r.offset.checked_add(u64::from(r.length)).is_some_and(|end| end <= device.size());
    let result = match r.command {
        CMD_FLUSH => device.flush(),
        _ if !in_range => return (if r.command == CMD_WRITE { ENOSPC } else { EINVAL }, None),
        CMD_READ => {
            let mut buf = vec![0u8; r.length as usize];
            return match device.read_at(&mut buf, r.offset) {
                Ok(()) => (0, Some(buf)),
                Err(e) => (errno(&e, r), None),
            };
        }
        CMD_WRITE => device.write_at(payload.as_deref().unwrap_or(&[]), r.offset, fua),
        CMD_TRIM => device.discard(r.offset, u64::from(r.length)),
        CMD_WRITE_ZEROES => device.write_zeroes(r.offset, u64::from(r.length), fua),
        _ => return (EINVAL, None),
    };
    match result {
        Ok(()) => (0, None),
        Err(e) => (errno(&e, r), None),
    }
}

fn errno(e: &std::io::Error, r: Request) -> u32 {
    tracing::warn!(command = command_name(r.command), offset = r.offset, length = r.length, "request failed: {e}");
    match e.kind() {
        std::io::ErrorKind::InvalidInput => EINVAL,
        std::io::ErrorKind::Unsupported => ENOTSUP,
        _ => EIO,
    }
}
