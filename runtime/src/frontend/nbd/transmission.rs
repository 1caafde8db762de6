//! The transmission phase. Two costs pull against each other: a thread per
//! connection (nbdkit's way: workers take turns reading the next request
//! and serve it themselves, no hand-off on the hot path) is the fastest,
//! but idle clients then hold threads until the daemon stalls; a task per
//! connection handing requests to a shared pool costs two cross-thread
//! wake-ups per request (measured: 0.52x nbdkit at 4k random reads, where
//! the workers measured 1.35x; `benches/nbd.rs`).
//!
//! So a connection lives in two states. **Idle**, it is a tokio task
//! waiting for its socket to become readable: no thread. **Active**, it
//! has worker threads (leader/follower): one at a time reads the next
//! request off the socket, then serves it and writes its reply while the
//! next worker reads; a worker that finds every other one busy starts one
//! more, up to `requests_per_connection` (so that many requests are in
//! flight at most). A worker that finds no request for `LINGER` leaves;
//! when the last has left, the task waits for the socket again. Worker
//! threads across all connections are bounded by `--nbd-threads`: a
//! connection that cannot get its first worker waits for one.
//!
//! The socket stays a non-blocking tokio stream throughout; workers read and
//! write it with `try_read`/`try_write` and wait for readiness through the
//! runtime's handle, so tokio's idea of the socket's readiness stays true.

use super::handshake::Negotiated;
use super::limits::NbdLimits;
use super::payload::Payload;
use super::proto::*;
use super::socket;
use super::splice::{self, Pipe};
use super::{Export, NbdError};
use crate::device::BlockDevice;
use crate::device::status::{self, StatusExtent};
use parking_lot::Mutex;
use std::io::IoSlice;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

/// Bytes read ahead of the request being decoded; allocated while the
/// connection is active, dropped when it goes idle.
const READ_BUFFER: usize = 128 << 10;

/// The most one block status reply covers (the client asks again from
/// where it ends). An array answers chunk by chunk (two lseeks each on a
/// file leg), and clients such as nbdcopy ask from every request's offset
/// to the end: 64 MiB keeps each answer near a millisecond.
const MAX_STATUS_SPAN: u64 = 64 << 20;

/// Reads from this size on ask block status first, so holes are sent as
/// `OFFSET_HOLE` chunks instead of read and sent as zeroes.
const SPARSE_READ_MIN: u64 = 64 << 10;

/// Reads from this size on are spliced from the legs' files into the
/// socket when the device allows (`splice.rs`); below it the copy costs
/// less than the extra system call.
const SPLICE_READ_MIN: u64 = 64 << 10;

/// How long a worker waits for a next request before it leaves.
const LINGER: Duration = Duration::from_millis(20);

/// How long a stop waits for a connection's requests in flight.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A client socket, readable and writable from any thread without blocking.
pub trait Stream: Send + Sync + 'static {
    fn try_read(&self, buf: &mut [u8]) -> std::io::Result<usize>;
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize>;
    /// Push out bytes a write accepted but kept (TLS records the socket had
    /// no room for): `WouldBlock` while some remain.
    fn try_flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn ready(&self, interest: tokio::io::Interest) -> impl std::future::Future<Output = std::io::Result<tokio::io::Ready>> + Send;
    /// A plain socket's descriptor, for the workers' own I/O (`socket.rs`)
    /// and spliced reads; None when the bytes must pass through user space
    /// (TLS encrypts them there) and the runtime's calls above are used.
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }
    /// Whether large reads are spliced into this socket (`splice.rs`):
    /// Unix sockets only. Over TCP on loopback, nbdcopy read 1 MiB requests
    /// at 1,252 MB/s spliced against 1,627 copied (`--bench tls`'s
    /// plaintext export, same run), so TCP keeps the copy.
    fn splices_reads(&self) -> bool {
        false
    }
}

impl Stream for tokio::net::TcpStream {
    fn try_read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        tokio::net::TcpStream::try_read(self, buf)
    }
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        tokio::net::TcpStream::try_write_vectored(self, bufs)
    }
    fn ready(&self, interest: tokio::io::Interest) -> impl std::future::Future<Output = std::io::Result<tokio::io::Ready>> + Send {
        tokio::net::TcpStream::ready(self, interest)
    }
    fn raw_fd(&self) -> Option<RawFd> {
        Some(std::os::fd::AsRawFd::as_raw_fd(self))
    }
}

impl Stream for tokio::net::UnixStream {
    fn try_read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        tokio::net::UnixStream::try_read(self, buf)
    }
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        tokio::net::UnixStream::try_write_vectored(self, bufs)
    }
    fn ready(&self, interest: tokio::io::Interest) -> impl std::future::Future<Output = std::io::Result<tokio::io::Ready>> + Send {
        tokio::net::UnixStream::ready(self, interest)
    }
    fn raw_fd(&self) -> Option<RawFd> {
        Some(std::os::fd::AsRawFd::as_raw_fd(self))
    }
    fn splices_reads(&self) -> bool {
        true
    }
}

/// Bytes received and not yet decoded.
#[derive(Default)]
struct Inbox {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Inbox {
    fn is_drained(&self) -> bool {
        self.start == self.end
    }

    /// Read what the socket holds into the drained buffer (allocated
    /// first if the connection was idle): the bytes read, 0 at EOF.
    fn refill<S: Stream>(&mut self, stream: &S) -> std::io::Result<usize> {
        self.refill_with(|buf| stream.try_read(buf))
    }

    /// `refill`, reading with `read`.
    fn refill_with(&mut self, read: impl FnOnce(&mut [u8]) -> std::io::Result<usize>) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            self.buf = vec![0; READ_BUFFER];
        }
        let n = read(&mut self.buf)?;
        (self.start, self.end) = (0, n);
        Ok(n)
    }

    /// Drop the buffer once nothing is left in it: an idle connection
    /// holds none.
    fn release_if_drained(&mut self) {
        if self.is_drained() {
            *self = Inbox::default();
        }
    }
}

/// How filling a buffer from the client ended.
enum Fill {
    Full,
    /// The client closed its end before the first byte.
    Eof,
    /// Nothing arrived in the time allowed (or the server stops).
    Quiet,
}

/// What reading the next request found.
enum Next {
    Request(Request, Option<Payload>),
    /// EOF or DISC.
    End,
    /// Nothing arrived for `LINGER`.
    Quiet,
}

struct Conn<S: Stream> {
    stream: S,
    export: Arc<Export>,
    chosen: Negotiated,
    runtime: tokio::runtime::Handle,
    limits: NbdLimits,
    threads: Arc<Semaphore>,
    inbox: Mutex<Inbox>,
    /// Serializes replies on the socket.
    outbox: Mutex<()>,
    /// Workers alive, and those waiting for or holding `inbox`.
    workers: AtomicUsize,
    readers: AtomicUsize,
    /// The client is gone, broke the protocol, or the server stops.
    closing: AtomicBool,
    first_error: Mutex<Option<NbdError>>,
    /// Told when the last worker leaves.
    idle: Notify,
}

/// Serve requests until the client disconnects, breaks the protocol, or the
/// server stops (`stop` turns true); the first error is returned.
pub async fn serve<S: Stream>(
    stream: S,
    export: Arc<Export>,
    chosen: Negotiated,
    threads: Arc<Semaphore>,
    limits: NbdLimits,
    mut stop: watch::Receiver<bool>,
) -> Result<(), NbdError> {
    let conn = Arc::new(Conn {
        stream,
        export,
        chosen,
        runtime: tokio::runtime::Handle::current(),
        limits,
        threads,
        inbox: Mutex::new(Inbox::default()),
        outbox: Mutex::new(()),
        workers: AtomicUsize::new(0),
        readers: AtomicUsize::new(0),
        closing: AtomicBool::new(false),
        first_error: Mutex::new(None),
        idle: Notify::new(),
    });
    loop {
        // Idle: wait for a request (or the server's stop) without a thread.
        tokio::select! {
            _ = stopped(&mut stop) => break,
            r = conn.stream.ready(tokio::io::Interest::READABLE) => { r?; }
        }
        // Read what is there first: a readiness left over from the
        // handshake or the last worker costs no thread.
        let got = {
            let mut inbox = conn.inbox.lock();
            if inbox.is_drained() { inbox.refill(&conn.stream) } else { Ok(1) }
        };
        match got {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => {
                conn.inbox.lock().release_if_drained();
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let permit = tokio::select! {
            _ = stopped(&mut stop) => break,
            p = conn.threads.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let idle = conn.idle.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if let Err(e) = spawn_worker(&conn, permit) {
            conn.closing.store(true, Ordering::Release);
            return Err(e.into());
        }
        tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = &mut idle => {}
        }
        if conn.closing.load(Ordering::Acquire) {
            break;
        }
    }
    // Workers finish what they hold (a stop waits at most STOP_GRACE) and
    // take no more requests.
    conn.closing.store(true, Ordering::Release);
    let deadline = Instant::now() + STOP_GRACE;
    while conn.workers.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        let idle = conn.idle.notified();
        let _ = tokio::time::timeout(Duration::from_millis(50), idle).await;
    }
    conn.first_error.lock().take().map_or(Ok(()), Err)
}

/// Resolves once the server stops (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn spawn_worker<S: Stream>(conn: &Arc<Conn<S>>, permit: OwnedSemaphorePermit) -> std::io::Result<()> {
    conn.workers.fetch_add(1, Ordering::AcqRel);
    let me = conn.clone();
    let spawned = std::thread::Builder::new().name("nbd-worker".into()).spawn(move || {
        me.work();
        drop(permit);
        if me.workers.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last one out: the read-ahead buffer goes with it.
            me.inbox.lock().release_if_drained();
            me.idle.notify_one();
        }
    });
    if let Err(e) = spawned {
        conn.workers.fetch_sub(1, Ordering::AcqRel);
        return Err(e);
    }
    Ok(())
}

impl<S: Stream> Conn<S> {
    fn fail(&self, e: NbdError) {
        self.closing.store(true, Ordering::Release);
        let mut first = self.first_error.lock();
        if first.is_none() {
            *first = Some(e);
        }
    }

    fn work(self: &Arc<Self>) {
        loop {
            if self.closing.load(Ordering::Acquire) {
                return;
            }
            self.readers.fetch_add(1, Ordering::AcqRel);
            let next = {
                let mut inbox = self.inbox.lock();
                self.next_request(&mut inbox)
            };
            let others_reading = self.readers.fetch_sub(1, Ordering::AcqRel) > 1;
            let (request, payload) = match next {
                Ok(Next::Request(r, p)) => (r, p),
                Ok(Next::Quiet) => return,
                Ok(Next::End) => {
                    self.closing.store(true, Ordering::Release);
                    return;
                }
                Err(e) => {
                    self.fail(e);
                    return;
                }
            };
            // Nobody left to read the next request while this one is
            // served: start one more worker, within the bounds.
            if !others_reading && self.workers.load(Ordering::Acquire) < self.limits.requests_per_connection as usize {
                if let Ok(permit) = self.threads.clone().try_acquire_owned() {
                    let _ = spawn_worker(self, permit);
                }
            }
            let sent = match request.command {
                // A payload only a write takes (extended headers let any
                // command carry one): consumed, then refused.
                c if c != CMD_WRITE && payload.is_some() => self.reply_done(request, EINVAL),
                CMD_READ if self.chosen.structured => self.reply_read_chunked(request),
                CMD_BLOCK_STATUS => self.reply_block_status(request),
                CMD_READ if let Some(sent) = self.reply_read_spliced(request) => sent,
                CMD_READ => {
                    let (error, data) = serve_one(&*self.export.device, request, payload);
                    self.reply(&simple_reply(error, request.cookie), data.as_deref().unwrap_or(&[]))
                }
                _ => {
                    let (error, _) = serve_one(&*self.export.device, request, payload);
                    self.reply_done(request, error)
                }
            };
            if let Err(e) = sent {
                self.fail(e);
                return;
            }
        }
    }

    /// Wait until the socket is ready for `interest`, at most `limit`:
    /// false when the time ran out.
    fn wait(&self, interest: tokio::io::Interest, limit: Duration) -> std::io::Result<bool> {
        if let Some(fd) = self.stream.raw_fd() {
            return socket::wait(fd, interest.is_writable(), limit);
        }
        // The timer is made inside block_on: it needs the runtime's context.
        match self.runtime.block_on(async { tokio::time::timeout(limit, self.stream.ready(interest)).await }) {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// Read what the socket holds, without waiting.
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.stream.raw_fd() {
            Some(fd) => socket::recv(fd, buf),
            None => self.stream.try_read(buf),
        }
    }

    /// Write what the socket takes, without waiting.
    fn send(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        match self.stream.raw_fd() {
            Some(fd) => socket::send(fd, bufs),
            None => self.stream.try_write_vectored(bufs),
        }
    }

    /// Fill `out` from the inbox and the socket. Before any byte of a
    /// request has arrived, `quiet_after` bounds the wait (None: read
    /// until `out` is full or the client stalls past `reply_stall`).
    fn read_exact(&self, inbox: &mut Inbox, out: &mut [u8], quiet_after: Option<Duration>) -> Result<Fill, NbdError> {
        let mut filled = 0;
        let started = Instant::now();
        while filled < out.len() {
            if !inbox.is_drained() {
                let n = (inbox.end - inbox.start).min(out.len() - filled);
                out[filled..filled + n].copy_from_slice(&inbox.buf[inbox.start..inbox.start + n]);
                inbox.start += n;
                filled += n;
                continue;
            }
            // Large payloads go straight into `out`; headers through the
            // read-ahead buffer.
            let direct = out.len() - filled >= READ_BUFFER;
            let got = if direct { self.recv(&mut out[filled..]) } else { inbox.refill_with(|buf| self.recv(buf)) };
            match got {
                Ok(0) if filled == 0 => return Ok(Fill::Eof),
                Ok(0) => return Err(NbdError::Io(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(n) if direct => filled += n,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.closing.load(Ordering::Acquire) && filled == 0 {
                        return Ok(Fill::Quiet);
                    }
                    let limit = match quiet_after {
                        Some(q) if filled == 0 => q,
                        _ => self.limits.reply_stall.saturating_sub(started.elapsed()),
                    };
                    if !self.wait(tokio::io::Interest::READABLE, limit)? {
                        if filled == 0 && quiet_after.is_some() {
                            return Ok(Fill::Quiet);
                        }
                        return Err(NbdError::Protocol(format!("the client sent part of a request and nothing more for {:?}", self.limits.reply_stall)));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Fill::Full)
    }

    fn next_request(&self, inbox: &mut Inbox) -> Result<Next, NbdError> {
        let extended = self.chosen.extended;
        let mut header = [0u8; EXTENDED_REQUEST_HEADER];
        let size = if extended { EXTENDED_REQUEST_HEADER } else { REQUEST_HEADER };
        match self.read_exact(inbox, &mut header[..size], Some(LINGER))? {
            Fill::Full => {}
            Fill::Eof => return Ok(Next::End),
            Fill::Quiet => return Ok(Next::Quiet),
        }
        let request = if extended {
            decode_extended_request(&header)?
        } else {
            let mut compact = [0u8; REQUEST_HEADER];
            compact.copy_from_slice(&header[..REQUEST_HEADER]);
            decode_request(&compact)?
        };
        if request.command == CMD_DISC {
            return Ok(Next::End);
        }
        let payload_bytes = payload_len(&request, extended);
        let payload = if payload_bytes > 0 || request.command == CMD_WRITE {
            // The decoders bound a payload's length (MAX_REQUEST).
            let mut data = Payload::new(payload_bytes as usize);
            if !matches!(self.read_exact(inbox, &mut data, None)?, Fill::Full) {
                return Err(NbdError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Some(data)
        } else {
            None
        };
        Ok(Next::Request(request, payload))
    }

    /// The reply to a request with no data back: simple, or with extended
    /// headers (where simple replies are not allowed) a done chunk.
    fn reply_done(&self, r: Request, error: u32) -> Result<(), NbdError> {
        if !self.chosen.extended {
            return self.reply(&simple_reply(error, r.cookie), &[]);
        }
        if error == 0 {
            self.reply(&chunk_header(true, REPLY_FLAG_DONE, REPLY_TYPE_NONE, &r, 0), &[])
        } else {
            self.reply(&error_chunk(true, error, &r, &format!("{} failed", command_name(r.command))), &[])
        }
    }

    /// A read, answered as one `OFFSET_DATA` chunk or an error chunk.
    fn reply_read_chunked(&self, r: Request) -> Result<(), NbdError> {
        if let Some(pieces) = self.holes_in(r) {
            return self.reply_read_sparse(r, &pieces);
        }
        if let Some(sent) = self.reply_read_spliced(r) {
            return sent;
        }
        self.reply_read_from(r, r.offset)
    }

    /// A large read whose bytes lie in files as they are, spliced from
    /// them into the socket (`splice.rs`): a pipe-full at a time, each its
    /// own `OFFSET_DATA` chunk (one simple reply, when the whole read fits
    /// one pipe). None: nothing was sent, serve it the plain way.
    fn reply_read_spliced(&self, r: Request) -> Option<Result<(), NbdError>> {
        let device = &*self.export.device;
        if r.length < SPLICE_READ_MIN || !self.stream.splices_reads() || r.offset.checked_add(r.length).is_none_or(|end| end > device.size()) {
            return None;
        }
        let fd = self.stream.raw_fd()?;
        let mut extents = Vec::new();
        if !device.read_extents(r.offset, r.length, 0, &mut extents) {
            return None;
        }
        let (structured, extended) = (self.chosen.structured, self.chosen.extended);
        splice::with_pipe(|pipe| {
            // Room for the header, and for extents that start mid-page.
            let room = pipe.capacity.saturating_sub(64 << 10).max(4096);
            let runs = splice::runs(extents, room);
            // One pipe-full for a simple reply; none at all, nothing to send.
            if runs.is_empty() || (!structured && runs.len() != 1) {
                return None;
            }
            let mut at = r.offset;
            let last = runs.len().saturating_sub(1);
            for (i, run) in runs.iter().enumerate() {
                let len: u64 = run.iter().map(|e| u64::from(e.len)).sum();
                let head = if structured {
                    let flags = if i == last { REPLY_FLAG_DONE } else { 0 };
                    // len <= the pipe's capacity
                    let mut head = chunk_header(extended, flags, REPLY_TYPE_OFFSET_DATA, &r, 8 + len as u32);
                    head.extend_from_slice(&at.to_be_bytes());
                    head
                } else {
                    simple_reply(0, r.cookie).to_vec()
                };
                if !pipe.fill(&head, run) {
                    // A leg that did not read: nothing of this piece went
                    // out; the plain path serves the rest (and fails the
                    // leg, or decodes around it).
                    return (i > 0).then(|| self.reply_read_from(r, at));
                }
                if let Err(e) = self.reply_piped(pipe, fd) {
                    return Some(Err(e));
                }
                at += len;
            }
            Some(Ok(()))
        })
        .flatten()
    }

    /// A chunked read from `at` to its end (all of it, or what a spliced
    /// read left), the plain way, as its last chunk.
    fn reply_read_from(&self, r: Request, at: u64) -> Result<(), NbdError> {
        let extended = self.chosen.extended;
        let rest = Request { offset: at, length: r.offset + r.length - at, ..r };
        let (error, data) = serve_one(&*self.export.device, rest, None);
        match data {
            Some(data) if error == 0 => {
                let mut head = chunk_header(extended, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, &r, 8 + data.len() as u32);
                head.extend_from_slice(&at.to_be_bytes());
                self.reply(&head, &data)
            }
            _ => self.reply(&error_chunk(extended, error.max(EIO), &r, "the read failed"), &[]),
        }
    }

    /// For a large read, the pieces of it the device knows read as zeroes
    /// (`base:allocation`'s zero flag) and the rest, when there is a hole
    /// to skip: those become `OFFSET_HOLE` chunks and are neither read nor
    /// sent. Small reads are not worth the question.
    fn holes_in(&self, r: Request) -> Option<Vec<(u64, u64, bool)>> {
        let device = &*self.export.device;
        if r.length < SPARSE_READ_MIN || r.offset.checked_add(r.length).is_none_or(|end| end > device.size()) {
            return None;
        }
        let mut extents = Vec::new();
        device.block_status(r.offset, r.length, &mut extents).ok()?;
        let mut at = r.offset;
        let pieces: Vec<(u64, u64, bool)> = status::project(&extents, |e| e.allocation & status::ZERO)
            .into_iter()
            .map(|(len, zero)| {
                at += len;
                (at - len, len, zero != 0)
            })
            .collect();
        // Block status covers the range; anything else, read it all.
        (at == r.offset + r.length && pieces.iter().any(|p| p.2)).then_some(pieces)
    }

    /// A read as `OFFSET_HOLE` and `OFFSET_DATA` chunks, the last one done;
    /// an error ends it with an error chunk (earlier chunks stand, as the
    /// protocol allows).
    fn reply_read_sparse(&self, r: Request, pieces: &[(u64, u64, bool)]) -> Result<(), NbdError> {
        let extended = self.chosen.extended;
        let device = &*self.export.device;
        let last = pieces.len() - 1;
        for (i, &(at, len, zero)) in pieces.iter().enumerate() {
            let flags = if i == last { REPLY_FLAG_DONE } else { 0 };
            if zero {
                let mut chunk = chunk_header(extended, flags, REPLY_TYPE_OFFSET_HOLE, &r, 12);
                chunk.extend_from_slice(&at.to_be_bytes());
                // len <= MAX_REQUEST
                chunk.extend_from_slice(&(len as u32).to_be_bytes());
                self.reply(&chunk, &[])?;
                continue;
            }
            let mut data = vec![0u8; len as usize];
            if let Err(e) = device.read_at(&mut data, at) {
                let piece = Request { offset: at, length: len, ..r };
                let errno = errno(&e, piece);
                return self.reply(&error_chunk(extended, errno, &r, "the read failed"), &[]);
            }
            let mut head = chunk_header(extended, flags, REPLY_TYPE_OFFSET_DATA, &r, 8 + len as u32);
            head.extend_from_slice(&at.to_be_bytes());
            self.reply(&head, &data)?;
        }
        Ok(())
    }

    /// `NBD_CMD_BLOCK_STATUS`: one chunk per chosen context, the last one
    /// done. Without structured replies and a context it is refused.
    fn reply_block_status(&self, r: Request) -> Result<(), NbdError> {
        if !self.chosen.structured || self.chosen.contexts.is_empty() {
            return self.reply_done(r, EINVAL);
        }
        let extended = self.chosen.extended;
        let device = &*self.export.device;
        let end = r.offset.checked_add(r.length).filter(|&e| e <= device.size() && r.length > 0);
        let Some(end) = end else {
            return self.reply(&error_chunk(extended, EINVAL, &r, "block status range is empty or past the end"), &[]);
        };
        // A reply covers at most this much; the client asks again from
        // where it ends (the protocol allows a shorter answer).
        let len = (end - r.offset).min(MAX_STATUS_SPAN);
        let mut extents = Vec::new();
        if let Err(e) = device.block_status(r.offset, len, &mut extents) {
            tracing::warn!(offset = r.offset, length = r.length, "block status failed: {e}");
            return self.reply(&error_chunk(extended, EIO, &r, &e.to_string()), &[]);
        }
        let last = self.chosen.contexts.len() - 1;
        for (i, &id) in self.chosen.contexts.iter().enumerate() {
            let pick: fn(&StatusExtent) -> u32 = if id == 1 { |e| e.allocation } else { |e| e.health };
            let mut merged = status::project(&extents, pick);
            if r.flags & CMD_FLAG_REQ_ONE != 0 {
                merged.truncate(1);
            }
            let mut payload = id.to_be_bytes().to_vec();
            if extended {
                payload.extend_from_slice(&(merged.len() as u32).to_be_bytes());
            }
            for &(len, flags) in &merged {
                if extended {
                    payload.extend_from_slice(&len.to_be_bytes());
                    payload.extend_from_slice(&u64::from(flags).to_be_bytes());
                } else {
                    // len <= MAX_STATUS_SPAN < 4 GiB
                    payload.extend_from_slice(&(len as u32).to_be_bytes());
                    payload.extend_from_slice(&flags.to_be_bytes());
                }
            }
            let flags = if i == last { REPLY_FLAG_DONE } else { 0 };
            let kind = if extended { REPLY_TYPE_BLOCK_STATUS_EXT } else { REPLY_TYPE_BLOCK_STATUS };
            self.reply(&chunk_header(extended, flags, kind, &r, payload.len() as u32), &payload)?;
        }
        Ok(())
    }

    /// Send what `pipe` holds (one reply, or one chunk of it).
    fn reply_piped(&self, pipe: &mut Pipe, fd: RawFd) -> Result<(), NbdError> {
        let _turn = self.outbox.lock();
        self.send_until(|| {
            if pipe.held() == 0 {
                return Ok(true);
            }
            match pipe.drain_into(fd)? {
                0 => Err(std::io::ErrorKind::WriteZero.into()),
                _ => Ok(false),
            }
        })
    }

    fn reply(&self, header: &[u8], data: &[u8]) -> Result<(), NbdError> {
        let _turn = self.outbox.lock();
        let (mut h, mut d) = (header, data);
        self.send_until(|| {
            if h.is_empty() && d.is_empty() {
                return self.stream.try_flush().map(|()| true);
            }
            match self.send(&[IoSlice::new(h), IoSlice::new(d)])? {
                0 => Err(std::io::ErrorKind::WriteZero.into()),
                n => {
                    let from_header = n.min(h.len());
                    h = &h[from_header..];
                    d = &d[n - from_header..];
                    Ok(false)
                }
            }
        })
    }

    /// Call `step` (one non-blocking write: true once all is out) until
    /// done, waiting for room in between; a client that takes no bytes
    /// for `reply_stall` is given up on. The caller holds the outbox.
    fn send_until(&self, mut step: impl FnMut() -> std::io::Result<bool>) -> Result<(), NbdError> {
        let started = Instant::now();
        loop {
            match step() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let left = self.limits.reply_stall.saturating_sub(started.elapsed());
                    if !self.wait(tokio::io::Interest::WRITABLE, left)? {
                        return Err(NbdError::Protocol(format!("the client took no reply bytes for {:?}", self.limits.reply_stall)));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Serve one request: (NBD error, data for a read).
fn serve_one(device: &dyn BlockDevice, r: Request, payload: Option<Payload>) -> (u32, Option<Vec<u8>>) {
    let fua = r.flags & CMD_FLAG_FUA != 0;
    let in_range = r.offset.checked_add(r.length).is_some_and(|end| end <= device.size());
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
        CMD_TRIM => device.discard(r.offset, r.length),
        CMD_WRITE_ZEROES if r.flags & CMD_FLAG_FAST_ZERO != 0 && !device.zeroes_fast(r.offset, r.length) => return (ENOTSUP, None),
        CMD_WRITE_ZEROES => device.write_zeroes(r.offset, r.length, fua),
        CMD_CACHE => {
            read_ahead(device, r.offset, r.length);
            Ok(())
        }
        _ => return (EINVAL, None),
    };
    match result {
        Ok(()) => (0, None),
        Err(e) => (errno(&e, r), None),
    }
}

/// How much of one CACHE request is read ahead (the rest of a larger one is
/// a hint not taken), and in what pieces the device is asked where it lies.
const CACHE_MAX: u64 = 1 << 30;
const CACHE_PIECE: u64 = 32 << 20;

/// `NBD_CMD_CACHE`: the kernel reads ahead (POSIX_FADV_WILLNEED) the files
/// holding the range where the device maps it to them as they are; what
/// it cannot map (a failed leg's share, a remote leg) is a hint not taken.
/// A hint either way: its answer is success.
fn read_ahead(device: &dyn BlockDevice, offset: u64, len: u64) {
    let end = offset.saturating_add(len.min(CACHE_MAX));
    let mut at = offset;
    let mut extents = Vec::new();
    while at < end {
        let n = (end - at).min(CACHE_PIECE);
        extents.clear();
        if device.read_extents(at, n, 0, &mut extents) {
            for e in &extents {
                // SAFETY: the extent's Arc keeps the file open for the call.
                unsafe {
                    libc::posix_fadvise(std::os::fd::AsRawFd::as_raw_fd(&*e.file), e.offset as libc::off_t, libc::off_t::from(e.len), libc::POSIX_FADV_WILLNEED)
                };
            }
        }
        at += n;
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
