//! A leg that is a remote NBD export (seed 002's remote node).
//!
//! One connection carries many requests at once: callers register a slot
//! by cookie, send under the writer lock and sleep; a reader thread matches
//! replies to slots. When the connection breaks, a supervisor thread
//! reconnects with exponential backoff, and every request that had no
//! reply yet is sent again on the new connection (NBD reads and writes are
//! idempotent). A request waits for a connection at most `timeout`; past
//! it the request fails, the array marks the leg failed and goes on
//! degraded, writing the regions it touches into its bitmap; once the
//! export is back, the array's daemon sees `link().connected` and re-adds
//! the leg with a bitmap-only resync.
//!
//! A send is bounded too: a server that stops reading fills the socket's
//! buffers, and a write into them would block every caller behind the
//! writer lock for good. The socket's send timeout is the leg timeout, the
//! writer lock is waited for until the request's deadline, and a send that
//! cannot progress is a lost link like any other (reconnect, resend, fail
//! the leg only past the deadline).

pub mod chunks;
pub mod handshake;
pub mod reply;
mod tls_stream;
pub mod uri;

use super::{BlockDevice, LinkState, status};
use crate::frontend::nbd::proto::*;
use chunks::{Asked, Payload, Refusal, Replies};
use handshake::{Features, Stream};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
pub use uri::NbdUri;

/// How long requests wait for a lost connection, and how hard to retry.
#[derive(Debug, Clone, Copy)]
pub struct NbdOptions {
    /// A request that cannot be answered within this fails (the leg is
    /// then failed by its array).
    pub timeout: Duration,
    /// Longest pause between two reconnection attempts.
    pub max_backoff: Duration,
}

impl Default for NbdOptions {
    fn default() -> Self {
        NbdOptions { timeout: Duration::from_secs(30), max_backoff: Duration::from_secs(2) }
    }
}

pub struct NbdLeg {
    uri: NbdUri,
    export: handshake::Export,
    options: NbdOptions,
    shared: Arc<Shared>,
    /// Serializes the read-modify-writes of writes not aligned to the
    /// server's minimum block (see `write_at`), as a file leg does for
    /// O_DIRECT.
    unaligned: Mutex<()>,
}

struct Shared {
    uri: NbdUri,
    state: Mutex<State>,
    changed: Condvar,
    cookies: AtomicU64,
    latency_ns: AtomicU64,
}

struct State {
    conn: Option<Arc<Conn>>,
    down_since: Option<Instant>,
    reconnects: u64,
    last_error: String,
    closing: bool,
    /// What the live connection's TLS proved (None: plaintext).
    tls: Option<crate::tls::Session>,
    /// What the live (or last) connection negotiated.
    features: Features,
}

/// One connection's transmission phase.
struct Conn {
    writer: Mutex<Stream>,
    pending: Mutex<HashMap<u64, Arc<Slot>>>,
    broken: AtomicBool,
    /// A send failed part-way (set under the writer lock).
    cut: AtomicBool,
    shutdown: Stream,
    /// Request and reply forms, and the block status context, of this
    /// connection (a reconnect may land on a server that offers less).
    features: Features,
}

struct Slot {
    state: Mutex<SlotState>,
    done: Condvar,
    /// What the request asked, to check the reply against.
    asked: Asked,
}

enum SlotState {
    Waiting,
    /// The server's answer: data for reads, status for block status, or
    /// its error.
    Answered(Result<Payload, Refusal>),
    /// The connection broke before the answer.
    Lost,
}

impl NbdLeg {
    /// Connect (once, now: the size is needed) and start the supervisor.
    pub fn open(uri: NbdUri, options: NbdOptions) -> io::Result<NbdLeg> {
        let (stream, export, tls) = handshake::connect(&uri, options.timeout).map_err(|e| io::Error::new(e.kind(), format!("cannot open leg {uri}: {e}")))?;
        let shared = Arc::new(Shared {
            uri: uri.clone(),
            state: Mutex::new(State { conn: None, down_since: None, reconnects: 0, last_error: String::new(), closing: false, tls, features: export.features }),
            changed: Condvar::new(),
            cookies: AtomicU64::new(1),
            latency_ns: AtomicU64::new(0),
        });
        let conn = Conn::start(stream, &shared, options.timeout, export.features)?;
        shared.state.lock().conn = Some(conn);
        let supervisor = shared.clone();
        std::thread::Builder::new().name("wasmraid-nbd-leg".into()).spawn(move || supervise(supervisor, options, export))?;
        Ok(NbdLeg { uri, export, options, shared, unaligned: Mutex::new(()) })
    }

    pub fn uri(&self) -> &NbdUri {
        &self.uri
    }

    /// Send one request and wait for its answer, across reconnections.
    /// `payload`: a write's data, in pieces sent one after another.
    fn call(&self, command: u16, flags: u16, offset: u64, len: u64, payload: &[&[u8]]) -> io::Result<Payload> {
        let started = Instant::now();
        let deadline = started + self.options.timeout;
        loop {
            // A server that drops the connection on this very request would
            // otherwise be retried forever.
            if Instant::now() >= deadline {
                return Err(self.timed_out(command, offset, len, "retrying across reconnections"));
            }
            let conn = self.shared.connection(deadline).ok_or_else(|| self.timed_out(command, offset, len, "waiting for the link to come back"))?;
            let context = conn.features.base_allocation;
            if command == CMD_BLOCK_STATUS && context.is_none() {
                // Reconnected to a server that no longer offers it.
                return Err(io::Error::new(io::ErrorKind::Unsupported, format!("{}: the server no longer offers base:allocation", self.uri)));
            }
            let cookie = self.shared.cookies.fetch_add(1, Ordering::Relaxed);
            let asked = Asked { command, offset, len, context };
            let slot = Arc::new(Slot { state: Mutex::new(SlotState::Waiting), done: Condvar::new(), asked });
            conn.pending.lock().insert(cookie, slot.clone());
            if conn.broken.load(Ordering::Acquire) {
                conn.pending.lock().remove(&cookie);
                continue;
            }
            if let Err(e) = conn.send(command, flags, cookie, offset, len, payload, deadline) {
                conn.fail(&self.shared, &format!("sending a request: {e}"));
                continue;
            }
            let mut state = slot.state.lock();
            while matches!(*state, SlotState::Waiting) {
                if slot.done.wait_until(&mut state, deadline).timed_out() && matches!(*state, SlotState::Waiting) {
                    drop(state);
                    conn.pending.lock().remove(&cookie);
                    // A server that stops answering is as good as gone:
                    // drop the link so the next requests reconnect.
                    conn.fail(&self.shared, "a request got no reply in time");
                    return Err(self.timed_out(command, offset, len, "waiting for a reply"));
                }
            }
            match std::mem::replace(&mut *state, SlotState::Lost) {
                SlotState::Answered(Ok(data)) => {
                    self.shared.record_latency(started.elapsed());
                    return Ok(data);
                }
                SlotState::Answered(Err(Refusal { errno: ESHUTDOWN, .. })) => {
                    // A graceful stop (SIGTERM, a service restart) is a
                    // lost link, not a failed request: resend once the
                    // server is back, until the deadline.
                    drop(state);
                    conn.fail(&self.shared, "the server is shutting down (NBD_ESHUTDOWN)");
                    continue;
                }
                SlotState::Answered(Err(Refusal { errno, message })) => {
                    let errno = i32::try_from(errno).unwrap_or(EIO as i32);
                    return Err(io::Error::new(
                        io::Error::from_raw_os_error(errno).kind(),
                        format!(
                            "{}: the server failed {} of {len} bytes at {offset}: {}{}{message}",
                            self.uri,
                            command_name(command),
                            io::Error::from_raw_os_error(errno),
                            if message.is_empty() { "" } else { ": " }
                        ),
                    ));
                }
                SlotState::Lost | SlotState::Waiting => continue,
            }
        }
    }

    fn timed_out(&self, command: u16, offset: u64, len: u64, doing: &str) -> io::Error {
        let last = self.shared.state.lock().last_error.clone();
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{}: {} of {len} bytes at {offset} gave up after {:?} {doing} (last error: {last})", self.uri, command_name(command), self.options.timeout),
        )
    }

    pub fn link(&self) -> LinkState {
        let s = self.shared.state.lock();
        LinkState {
            connected: s.conn.is_some(),
            down_for_secs: s.down_since.map_or(0, |t| t.elapsed().as_secs()),
            reconnects: s.reconnects,
            last_error: s.last_error.clone(),
            latency_us: self.shared.latency_ns.load(Ordering::Relaxed) / 1000,
            tls: s.tls.clone(),
            features: s.features.describe(),
        }
    }

    fn has(&self, flag: u16) -> bool {
        self.export.flags & flag != 0
    }

    /// Requests carry at most this many bytes (large ones are split).
    const MAX_CHUNK: u64 = 4 << 20;

    /// The largest request: ours, or the server's maximum when smaller
    /// (`handshake` keeps it a multiple of the server's minimum, and ours
    /// is a multiple of any minimum, so pieces of an aligned request stay
    /// aligned).
    fn max_piece(&self) -> u64 {
        let server = self.export.block_sizes.map_or(u64::MAX, |(_, _, max)| u64::from(max));
        Self::MAX_CHUNK.min(server).max(1)
    }

    fn each_piece(&self, offset: u64, len: u64, mut f: impl FnMut(u64, u64, usize) -> io::Result<()>) -> io::Result<()> {
        let max = self.max_piece();
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(max);
            f(offset + done, n, done as usize)?;
            done += n;
        }
        Ok(())
    }

    /// `buf` from `offset`, in requests of at most the largest piece.
    fn read_pieces(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.each_piece(offset, buf.len() as u64, |at, n, from| match self.call(CMD_READ, 0, at, n, &[])? {
            // The reply reader checked the length: exactly `n`.
            Payload::Data(data) if data.len() as u64 == n => {
                buf[from..from + data.len()].copy_from_slice(&data);
                Ok(())
            }
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: a READ of {n} bytes at {at} answered without its data", self.uri))),
        })
    }

    /// `buf` at `offset`, in requests of at most the largest piece.
    fn write_pieces(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        let native_fua = fua && self.has(TFLAG_SEND_FUA);
        self.each_piece(offset, buf.len() as u64, |at, n, from| {
            self.call(CMD_WRITE, if native_fua { CMD_FLAG_FUA } else { 0 }, at, n, &[&buf[from..from + n as usize]]).map(drop)
        })?;
        if fua && !native_fua { self.flush() } else { Ok(()) }
    }

    /// Whether `len` bytes at `offset` go as one request: the server's
    /// whole blocks, no larger than its largest (otherwise a gathered read
    /// or write goes buffer by buffer, through `read_at`/`write_at`, which
    /// widen or split).
    fn one_request(&self, offset: u64, len: u64) -> bool {
        self.widened(offset, len).is_none() && len <= self.max_piece()
    }

    /// The server's whole blocks [start, end) around `len` bytes at
    /// `offset`, when these are not already aligned to its minimum block
    /// (None: send as they are).
    fn widened(&self, offset: u64, len: u64) -> Option<(u64, u64)> {
        let min = self.min_block();
        if min <= 1 || (offset.is_multiple_of(min) && len.is_multiple_of(min)) {
            return None;
        }
        let start = offset - offset % min;
        let end = (offset + len).div_ceil(min).saturating_mul(min).min(self.size());
        Some((start, end))
    }

    /// The server's whole blocks [start, end) inside `len` bytes at
    /// `offset` (start >= end: none).
    fn inner_blocks(&self, offset: u64, len: u64) -> (u64, u64) {
        let min = self.min_block();
        (offset.div_ceil(min).saturating_mul(min), (offset + len) / min * min)
    }

    /// The server's minimum block (1 when it said none).
    fn min_block(&self) -> u64 {
        self.export.block_sizes.map_or(1, |(min, _, _)| u64::from(min)).max(1)
    }

    /// The most one block status request asks about: fits a compact
    /// header's 32 bits, and bounds the extents one reply may list.
    const MAX_STATUS_ASK: u64 = 1 << 30;
}

impl Drop for NbdLeg {
    fn drop(&mut self) {
        let mut s = self.shared.state.lock();
        s.closing = true;
        if let Some(c) = s.conn.take() {
            c.broken.store(true, Ordering::Release);
            c.shutdown.shutdown();
        }
        self.shared.changed.notify_all();
    }
}

impl BlockDevice for NbdLeg {
    fn size(&self) -> u64 {
        self.export.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        super::check_range(self, offset, buf.len() as u64)?;
        let Some((start, end)) = self.widened(offset, buf.len() as u64) else {
            return self.read_pieces(buf, offset);
        };
        // A server may refuse a read not aligned to its minimum block
        // (nbdkit's blocksize-policy does): read its whole blocks and keep
        // the part asked for.
        let mut whole = vec![0u8; (end - start) as usize];
        self.read_pieces(&mut whole, start)?;
        let from = (offset - start) as usize;
        buf.copy_from_slice(&whole[from..from + buf.len()]);
        Ok(())
    }
    fn read_scattered(&self, bufs: &mut [&mut [u8]], offset: u64) -> io::Result<()> {
        let len: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        super::check_range(self, offset, len)?;
        if !self.one_request(offset, len) {
            return super::read_each(self, bufs, offset);
        }
        let Payload::Data(data) = self.call(CMD_READ, 0, offset, len, &[])? else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: a READ of {len} bytes at {offset} answered without its data", self.uri)));
        };
        // The reply reader checked the length: exactly `len`.
        let mut from = 0usize;
        for buf in bufs {
            let piece = data
                .get(from..from + buf.len())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{}: a READ of {len} bytes at {offset} answered short", self.uri)))?;
            buf.copy_from_slice(piece);
            from += buf.len();
        }
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        super::check_range(self, offset, buf.len() as u64)?;
        let Some((start, end)) = self.widened(offset, buf.len() as u64) else {
            return self.write_pieces(buf, offset, fua);
        };
        // The server's whole blocks around it, read, patched and written
        // back; two such writes sharing a block must not interleave.
        let _serial = self.unaligned.lock();
        let mut whole = vec![0u8; (end - start) as usize];
        self.read_pieces(&mut whole, start).map_err(|e| {
            io::Error::new(e.kind(), format!("{}: a write of {} bytes at {offset} (reading the server's blocks around it): {e}", self.uri, buf.len()))
        })?;
        let from = (offset - start) as usize;
        whole[from..from + buf.len()].copy_from_slice(buf);
        self.write_pieces(&whole, start, fua)
    }
    fn write_gathered(&self, bufs: &[&[u8]], offset: u64, fua: bool) -> io::Result<()> {
        let len: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        super::check_range(self, offset, len)?;
        if !self.one_request(offset, len) {
            return super::write_each(self, bufs, offset, fua);
        }
        let native_fua = fua && self.has(TFLAG_SEND_FUA);
        self.call(CMD_WRITE, if native_fua { CMD_FLAG_FUA } else { 0 }, offset, len, bufs)?;
        if fua && !native_fua { self.flush() } else { Ok(()) }
    }
    fn flush(&self) -> io::Result<()> {
        if self.has(TFLAG_SEND_FLUSH) { self.call(CMD_FLUSH, 0, 0, 0, &[]).map(drop) } else { Ok(()) }
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        super::check_range(self, offset, len)?;
        // A hint: only the server's whole blocks inside the range are
        // sent, and nothing to a server that cannot take it.
        let (start, end) = self.inner_blocks(offset, len);
        if !self.has(TFLAG_SEND_TRIM) || start >= end {
            return Ok(());
        }
        self.each_piece(start, end - start, |at, n, _| self.call(CMD_TRIM, 0, at, n, &[]).map(drop))
    }
    fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> io::Result<()> {
        super::check_range(self, offset, len)?;
        // The server's whole blocks inside the range are zeroed by request;
        // the partial blocks at its ends, if any, are written (`write_at`
        // widens them).
        let (inner_start, inner_end) = self.inner_blocks(offset, len);
        if !self.has(TFLAG_SEND_WRITE_ZEROES) || inner_start >= inner_end {
            let zeroes = vec![0u8; len.min(self.max_piece()) as usize];
            return self.each_piece(offset, len, |at, n, _| self.write_at(&zeroes[..n as usize], at, fua));
        }
        let zeroes = vec![0u8; self.min_block() as usize];
        for (at, n) in [(offset, inner_start - offset), (inner_end, offset + len - inner_end)] {
            if n > 0 {
                self.write_at(&zeroes[..n as usize], at, fua)?;
            }
        }
        // NO_HOLE: a leg keeps the space its array counts on, so a thin
        // server cannot refuse a later write of this range for lack of it.
        let flags = if fua && self.has(TFLAG_SEND_FUA) { CMD_FLAG_FUA } else { 0 };
        self.each_piece(inner_start, inner_end - inner_start, |at, n, _| self.call(CMD_WRITE_ZEROES, flags | CMD_FLAG_NO_HOLE, at, n, &[]).map(drop))?;
        if fua && flags == 0 { self.flush() } else { Ok(()) }
    }
    fn describe(&self) -> String {
        self.uri.to_string()
    }
    /// What the server said (`NBD_INFO_BLOCK_SIZE`), so an array of remote
    /// legs tells its own clients the same.
    fn block_sizes(&self) -> super::BlockSizes {
        match self.export.block_sizes {
            Some((min, pref, _)) => super::BlockSizes::normalized(u64::from(min), u64::from(pref)),
            None => super::BlockSizes::default(),
        }
    }
    fn link(&self) -> Option<LinkState> {
        Some(NbdLeg::link(self))
    }
    /// `base:allocation` by `NBD_CMD_BLOCK_STATUS`, asked again from where
    /// each answer ends (a server may answer less than asked). A server
    /// without it: allocated, as any device that cannot tell.
    fn block_status(&self, offset: u64, len: u64, out: &mut Vec<status::StatusExtent>) -> io::Result<()> {
        super::check_range(self, offset, len)?;
        if self.shared.state.lock().features.base_allocation.is_none() {
            status::push(out, status::StatusExtent { len, allocation: 0, health: 0 });
            return Ok(());
        }
        let end = offset + len;
        let mut at = offset;
        while at < end {
            let ask = (end - at).min(Self::MAX_STATUS_ASK);
            let Payload::Status(extents) = self.call(CMD_BLOCK_STATUS, 0, at, ask, &[])? else {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: a BLOCK_STATUS at {at} answered without status", self.uri)));
            };
            let before = at;
            for (n, flags) in extents {
                // The reply reader clipped them to the request.
                status::push(out, status::StatusExtent { len: n, allocation: flags & (status::HOLE | status::ZERO), health: 0 });
                at += n;
            }
            if at == before {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: a BLOCK_STATUS at {at} described no bytes", self.uri)));
            }
        }
        Ok(())
    }
}

impl Shared {
    /// The live connection, waiting for one until `deadline`.
    fn connection(&self, deadline: Instant) -> Option<Arc<Conn>> {
        let mut s = self.state.lock();
        loop {
            if let Some(c) = &s.conn {
                if !c.broken.load(Ordering::Acquire) {
                    return Some(c.clone());
                }
            }
            if s.closing || self.changed.wait_until(&mut s, deadline).timed_out() {
                return s.conn.clone().filter(|c| !c.broken.load(Ordering::Acquire));
            }
        }
    }

    fn record_latency(&self, took: Duration) {
        let sample = took.as_nanos().min(u128::from(u64::MAX / 2)) as u64;
        let old = self.latency_ns.load(Ordering::Relaxed);
        let new = if old == 0 { sample } else { old - old / 8 + sample / 8 };
        self.latency_ns.store(new, Ordering::Relaxed);
    }
}

impl Conn {
    /// `send_timeout`: how long one write may make no progress before the
    /// link counts as lost.
    fn start(stream: Stream, shared: &Arc<Shared>, send_timeout: Duration, features: Features) -> io::Result<Arc<Conn>> {
        stream.set_send_timeout(send_timeout)?;
        let reader = stream.try_clone()?;
        let shutdown = stream.try_clone()?;
        let conn = Arc::new(Conn {
            writer: Mutex::new(stream),
            pending: Mutex::new(HashMap::new()),
            broken: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            shutdown,
            features,
        });
        let (c, s) = (conn.clone(), shared.clone());
        std::thread::Builder::new().name("wasmraid-nbd-reply".into()).spawn(move || {
            let e = c.read_replies(reader);
            c.fail(&s, &e.to_string());
        })?;
        Ok(conn)
    }

    /// Send one request, giving up at `deadline`: a caller stuck behind a
    /// send that does not progress waits no longer than its own deadline.
    #[allow(clippy::too_many_arguments)]
    fn send(&self, command: u16, flags: u16, cookie: u64, offset: u64, len: u64, payload: &[&[u8]], deadline: Instant) -> io::Result<()> {
        let h = request_header(self.features.replies, command, flags, cookie, offset, len)?;
        let Some(mut w) = self.writer.try_lock_until(deadline) else {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "another request's send made no progress until this one's deadline"));
        };
        // A request cut mid-way leaves the stream mid-request (mid-record
        // under TLS): nothing may follow it on this connection.
        if self.cut.load(Ordering::Acquire) {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "an earlier send was cut"));
        }
        let sent = write_all_vectored(&mut w, h.as_slice(), payload, deadline);
        if sent.is_err() {
            self.cut.store(true, Ordering::Release);
        }
        sent.map_err(|e| match e.kind() {
            // SO_SNDTIMEO expired with nothing taken: the server stopped reading.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                io::Error::new(io::ErrorKind::TimedOut, "the server took no request bytes within the leg timeout (it stopped reading)")
            }
            _ => e,
        })
    }

    /// Match replies to slots until the connection fails; returns why.
    fn read_replies(&self, mut r: Stream) -> io::Error {
        let mut r = io::BufReader::with_capacity(256 << 10, &mut r);
        let mut reader = reply::Reader::new(self.features.replies);
        loop {
            // The slot stays registered until its whole reply is read: if
            // the link breaks mid-reply, the request is resent.
            let reply = match reader.next(&mut r, |cookie| self.pending.lock().get(&cookie).map(|s| s.asked)) {
                Ok(reply) => reply,
                Err(e) => return e,
            };
            // Gone only if its caller gave up meanwhile (and failed this
            // connection) or the connection already failed.
            let Some(slot) = self.pending.lock().remove(&reply.cookie) else { continue };
            *slot.state.lock() = SlotState::Answered(reply.answer);
            slot.done.notify_all();
        }
    }

    /// Mark the connection broken (once): wake every waiter to resend, and
    /// the supervisor to reconnect.
    fn fail(&self, shared: &Shared, why: &str) {
        if self.broken.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shutdown.shutdown();
        for (_, slot) in self.pending.lock().drain() {
            let mut s = slot.state.lock();
            if matches!(*s, SlotState::Waiting) {
                *s = SlotState::Lost;
            }
            slot.done.notify_all();
        }
        let mut s = shared.state.lock();
        if s.conn.as_ref().is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), self)) {
            s.conn = None;
            s.down_since = Some(Instant::now());
            s.last_error = why.to_string();
            if !s.closing {
                tracing::warn!(leg = %shared.uri, "link down: {why}; requests wait while it reconnects");
            }
        }
        shared.changed.notify_all();
    }
}

/// A request header: 28 bytes, or 32 with extended headers (a 64-bit
/// length; a write's is its payload's, as `NBD_CMD_FLAG_PAYLOAD_LEN` says).
fn request_header(replies: Replies, command: u16, flags: u16, cookie: u64, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let extended = replies == Replies::Extended;
    let flags = if extended && command == CMD_WRITE { flags | CMD_FLAG_PAYLOAD_LEN } else { flags };
    let mut h = Vec::with_capacity(EXTENDED_REQUEST_HEADER);
    h.extend_from_slice(&if extended { EXTENDED_REQUEST_MAGIC } else { REQUEST_MAGIC }.to_be_bytes());
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&command.to_be_bytes());
    h.extend_from_slice(&cookie.to_be_bytes());
    h.extend_from_slice(&offset.to_be_bytes());
    if extended {
        h.extend_from_slice(&len.to_be_bytes());
    } else {
        let len = u32::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("a {} of {len} bytes needs extended headers", command_name(command))))?;
        h.extend_from_slice(&len.to_be_bytes());
    }
    Ok(h)
}

/// Write all of it; a server that takes a trickle keeps it going only until
/// `deadline`.
fn write_all_vectored(w: &mut Stream, head: &[u8], data: &[&[u8]], deadline: Instant) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = std::iter::once(head).chain(data.iter().copied()).filter(|s| !s.is_empty()).map(IoSlice::new).collect();
    let mut left: &mut [IoSlice<'_>] = &mut slices;
    while !left.is_empty() {
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the server took the request too slowly"));
        }
        let n = match w.write_vectored(left) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut left, n);
    }
    Ok(())
}

/// Reconnect whenever the link is down, backing off up to `max_backoff`.
fn supervise(shared: Arc<Shared>, options: NbdOptions, export: handshake::Export) {
    let mut backoff = Duration::from_millis(50);
    loop {
        {
            let mut s = shared.state.lock();
            while s.conn.is_some() && !s.closing {
                shared.changed.wait(&mut s);
            }
            if s.closing {
                return;
            }
        }
        match handshake::connect(&shared.uri, options.timeout.min(Duration::from_secs(5))) {
            Ok((_, e, _)) if e.size < export.size => {
                note_failure(&shared, &format!("the export shrank to {} bytes (was {})", e.size, export.size));
            }
            Ok((stream, e, tls)) => match Conn::start(stream, &shared, options.timeout, e.features) {
                Ok(conn) => {
                    let mut s = shared.state.lock();
                    if s.closing {
                        conn.shutdown.shutdown();
                        return;
                    }
                    let down = s.down_since.take().map(|t| t.elapsed()).unwrap_or_default();
                    s.reconnects += 1;
                    s.conn = Some(conn);
                    s.tls = tls;
                    s.features = e.features;
                    tracing::warn!(leg = %shared.uri, "link back after {down:.1?} (reconnect #{})", s.reconnects);
                    shared.changed.notify_all();
                    backoff = Duration::from_millis(50);
                    continue;
                }
                Err(e) => note_failure(&shared, &e.to_string()),
            },
            Err(e) => note_failure(&shared, &e.to_string()),
        }
        // Sleep, but wake at once when the leg is dropped.
        let mut s = shared.state.lock();
        if !s.closing {
            let _ = shared.changed.wait_for(&mut s, backoff);
        }
        backoff = (backoff * 2).min(options.max_backoff);
    }
}

fn note_failure(shared: &Shared, why: &str) {
    let mut s = shared.state.lock();
    if s.last_error != why {
        tracing::warn!(leg = %shared.uri, "reconnect failed: {why}");
    }
    s.last_error = why.to_string();
}
