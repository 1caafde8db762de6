//! One ublk queue thread: a task per tag on libublk's executor, and a task
//! that wakes the thread when the pool finishes a request.
//!
//! A plain read is served here. Where the kernel registers each request's
//! pages with this ring (`UBLK_F_AUTO_BUF_REG`, Linux 6.16+), the legs are
//! read straight into them: zero copy, as md's reads are. Otherwise the
//! legs are read on this queue's io_uring into the tag's buffer, a leg's
//! chunks side by side, and the data is copied to the request (user copy) by this thread when small, by a worker
//! when large, so that the copy, the one cost md does not have, runs on
//! another CPU while this thread goes on with other requests. A small
//! write that the device can stage (`device::staged`) is served here too:
//! its leg reads and writes go out on this ring with every other tag's,
//! which is what lets many requests share one system call and one virtio
//! notification per leg. So is a degraded read of one chunk: its sources
//! read on this ring, the chunk solved here. Everything else goes to the
//! pool.
//!
//! The thread sleeps in its io_uring wait. The kernel's commands complete
//! through that ring, but a worker finishing a request is another thread:
//! it writes the queue's eventfd, a read of which is always pending in the
//! ring, so the wait returns and the executor runs the woken task, which
//! commits the result and fetches the next request in one command.

use super::buffers::{self, TagBuf};
use super::gather::{Counts, Gathering, Outcome, Part, Split};
use super::pool::{Done, Job, Jobs, Piece, Request, Work, deliver, read_result};
use super::turns::Turns;
use super::user_copy::UserCopy;
use crate::array::scratch;
use crate::device::staged::Step;
use crate::device::{BlockDevice, Extent};
use libublk::io::{UblkDev, UblkQueue};
use libublk::uring_async::ublk_submit_sqe_async;
use libublk::{BufDesc, UblkError, UblkUringData};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;

/// Serve queue `qid` until the device stops.
pub fn run(qid: u16, dev: &UblkDev, device: Arc<dyn BlockDevice>, jobs: Jobs, gathered: Arc<Counts>) {
    let wake = match eventfd() {
        Ok(f) => Arc::new(f),
        Err(e) => {
            tracing::error!(queue = qid, "ublk queue cannot create its eventfd: {e}");
            return;
        }
    };
    let copy = match UserCopy::new(dev, qid) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(queue = qid, "ublk queue cannot open the device's data: {e}");
            return;
        }
    };
    let depth = usize::from(dev.dev_info.queue_depth);
    let (region, bufs) = match buffers::allocate(depth, dev.dev_info.max_io_buf_bytes as usize) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(queue = qid, "ublk queue cannot allocate its buffers: {e}");
            return;
        }
    };
    let queue = match UblkQueue::new(qid, dev) {
        Ok(q) => Rc::new(q),
        Err(e) => {
            tracing::error!(queue = qid, "ublk queue {qid} cannot start: {}", super::describe(&e));
            return;
        }
    };
    // With zero copy the ring's buffer table is libublk's, one slot per
    // tag for the kernel to put requests in: the queue's own buffers are
    // not registered then (only reads that are not zero copy use them).
    let zero_copy = dev.dev_info.flags & u64::from(libublk::sys::UBLK_F_AUTO_BUF_REG) != 0;
    let fixed = !zero_copy && register(&region, qid);
    let mut bufs: Vec<Option<TagBuf>> = bufs.into_iter().map(Some).collect();
    let executor = Rc::new(smol::LocalExecutor::new());
    let turns = Rc::new(Turns::default());
    let gathering = Rc::new(Gathering::new(turns.clone(), gathered));
    let mut tags = Vec::new();
    for tag in queue.tags() {
        let Some(buf) = bufs.get_mut(usize::from(tag)).and_then(Option::take) else {
            tracing::error!(queue = qid, tag, "ublk tag beyond the queue depth {depth}");
            continue;
        };
        let (q, jobs, wake, device, copy, gathering, turns) =
            (queue.clone(), jobs.clone(), wake.clone(), device.clone(), copy.clone(), gathering.clone(), turns.clone());
        tags.push(executor.spawn(async move {
            let (reply, replies) = smol::channel::bounded(1);
            let tag_io = TagIo { tag, jobs, reply, replies, wake, copy, gathering, turns, fixed, zero_copy };
            match serve_tag(&q, &tag_io, buf, &*device).await {
                Ok(()) | Err(UblkError::QueueIsDown) => {}
                Err(e) => tracing::error!(queue = qid, tag, "ublk tag stopped: {}", super::describe(&e)),
            }
        }));
    }
    drop(copy);
    // Never finished on purpose: it lives as long as the executor, which
    // drops it once every tag task is done.
    let waker = executor.spawn(drain_wakeups(wake.clone()));
    let exe = executor.clone();
    smol::block_on(executor.run(async move {
        let run_ops = || {
            turns.next();
            while exe.try_tick() {}
        };
        let done = || tags.iter().all(|t| t.is_finished());
        if let Err(e) = libublk::wait_and_handle_io_events(&queue, Some(20), run_ops, done).await {
            tracing::error!(queue = qid, "ublk queue stopped: {}", super::describe(&e));
        }
    }));
    drop(waker);
    if fixed {
        // Every read into the region has completed (every tag task is done).
        let _ = libublk::io::with_task_io_ring(|ring| ring.submitter().unregister_buffers());
    }
}

/// Register the queue's buffers with its io_uring as fixed buffer 0, so
/// that leg reads into them pin no pages; false if the kernel refuses (an
/// unprivileged user's locked-memory limit) or `WASMRAID_UBLK_FIXED_BUFFERS=0`
/// says not to (the VM suite uses it to test that path), and reads then pin
/// pages per read.
fn register(region: &buffers::Region, qid: u16) -> bool {
    if std::env::var_os("WASMRAID_UBLK_FIXED_BUFFERS").is_some_and(|v| v == "0") {
        tracing::warn!(queue = qid, "ublk queue buffers not registered (WASMRAID_UBLK_FIXED_BUFFERS=0): leg reads pin pages each time");
        return false;
    }
    let iov = [region.iovec()];
    // SAFETY: the iovec describes the region's whole mapping, which stays
    // mapped until after `unregister_buffers` at the end of `run` (the
    // region is dropped only when `run` returns).
    match libublk::io::with_task_io_ring(|ring| unsafe { ring.submitter().register_buffers(&iov) }) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                queue = qid,
                "ublk queue buffers not registered with io_uring ({e}): leg reads pin pages each time (raise the locked-memory limit, ulimit -l)"
            );
            false
        }
    }
}

/// What a tag task needs besides its buffer.
struct TagIo {
    tag: u16,
    jobs: Jobs,
    /// Where the pool sends this tag's requests back (one at a time).
    reply: smol::channel::Sender<Done>,
    replies: smol::channel::Receiver<Done>,
    wake: Arc<File>,
    copy: Arc<UserCopy>,
    /// Writes of one stripe and degraded reads of one chunk in flight
    /// together, served as one (`gather.rs`).
    gathering: Rc<Gathering>,
    /// This queue's turns, and the I/O in flight that ends them.
    turns: Rc<Turns>,
    /// The queue's buffers are io_uring fixed buffer 0.
    fixed: bool,
    /// The kernel registers each request's pages as this ring's fixed
    /// buffer number `tag` (`UBLK_F_AUTO_BUF_REG`, Linux 6.16+).
    zero_copy: bool,
}

impl TagIo {
    /// What FETCH and COMMIT carry: nothing under user copy; under zero
    /// copy where the kernel registers the next request's pages, with
    /// FALLBACK so that a registration that fails leaves the request to
    /// user copy (`UBLK_IO_F_NEED_REG_BUF`) instead of failing it.
    fn desc(&self) -> BufDesc<'static> {
        if self.zero_copy {
            BufDesc::AutoReg(libublk::sys::ublk_auto_buf_reg {
                index: self.tag,
                flags: libublk::sys::UBLK_AUTO_BUF_REG_FALLBACK as u8,
                reserved0: 0,
                reserved1: 0,
            })
        } else {
            BufDesc::Slice(&[])
        }
    }

    /// Serve `request` by the pool, `buf` and `pieces` travelling with it
    /// and back.
    async fn to_pool(&self, request: Request, work: Work, buf: TagBuf, pieces: Vec<Piece>) -> Result<Done, UblkError> {
        let job = Job { request, tag: self.tag, work, buf, pieces, copy: self.copy.clone(), reply: self.reply.clone(), wake: self.wake.clone() };
        // The pool outlives every queue; if it is gone the process is
        // going down and the request cannot be served.
        match self.jobs.send(job) {
            Ok(()) => {
                let _busy = self.turns.busy();
                self.replies.recv().await.map_err(|_| UblkError::OtherError(-libc::EIO))
            }
            Err(job) => Ok((job.buf, job.pieces, -libc::EIO)),
        }
    }

    /// This request's pages are the ring's fixed buffer `tag`.
    fn registered(&self, request: &Request) -> bool {
        self.zero_copy && request.flags & libublk::sys::UBLK_IO_F_NEED_REG_BUF == 0
    }
}

/// Reads up to this size are delivered by the queue thread itself; larger
/// ones by a worker, so that the copy of a large read runs on another CPU
/// while the queue thread goes on with other requests.
const DELIVER_INLINE_MAX: u64 = 128 << 10;

/// One tag: fetch a request, serve it (a plain read straight from the legs
/// through this queue's ring, anything else by the pool), commit the result
/// and fetch the next, until the queue goes down.
async fn serve_tag(q: &UblkQueue<'_>, io: &TagIo, mut buf: TagBuf, device: &dyn BlockDevice) -> Result<(), UblkError> {
    let tag = io.tag;
    let mut extents = Vec::new();
    let mut pieces = Vec::new();
    // User copy: the kernel is given no buffer and never copies.
    q.submit_io_prep_cmd(tag, io.desc(), -1, None).await?;
    loop {
        let request = Request::from_desc(q.get_iod(tag));
        let mut work = Work::Serve;
        pieces.clear();
        if request.op == libublk::sys::UBLK_IO_OP_READ {
            extents.clear();
            if io.registered(&request)
                && device.read_extents(request.offset, request.len, 0, &mut extents)
                && read_zero_copy(q, &io.turns, tag, request.len, &mut extents).await
            {
                // Read: let go of the extents (they hold a swappable
                // device's gate) before waiting for this tag's next request.
                extents.clear();
                q.submit_io_commit_cmd(tag, io.desc(), request.len as i32).await?;
                continue;
            }
            extents.clear();
            let direct = device.read_extents(request.offset, request.len, 0, &mut extents)
                && read_direct(q, &io.turns, &mut extents, &mut buf, io.fixed, &mut pieces).await;
            extents.clear();
            if direct {
                if request.len <= DELIVER_INLINE_MAX {
                    let result = read_result(&request, deliver(&io.copy, tag, buf.as_slice(), &pieces));
                    q.submit_io_commit_cmd(tag, io.desc(), result).await?;
                    continue;
                }
                work = Work::Deliver;
            }
        }
        if work == Work::Serve && request.op == libublk::sys::UBLK_IO_OP_READ && request.len <= DELIVER_INLINE_MAX {
            if let Some(result) = io.gathering.rebuild(q, &io.copy, tag, &request, device).await {
                q.submit_io_commit_cmd(tag, io.desc(), result).await?;
                continue;
            }
            if read_staged(q, io, &mut buf, &request, device).await? {
                continue;
            }
        }
        if request.op == libublk::sys::UBLK_IO_OP_WRITE && request.len <= DELIVER_INLINE_MAX {
            let written = match io.gathering.write(q, &io.copy, tag, buf.as_mut_slice(), &request, device).await {
                Outcome::Written => true,
                Outcome::Refused => false,
                Outcome::Alone => write_staged(q, io, &mut buf, &request, device).await,
            };
            if written {
                q.submit_io_commit_cmd(tag, io.desc(), request.len as i32).await?;
                continue;
            }
        }
        let split = if request.op == libublk::sys::UBLK_IO_OP_WRITE && request.len > DELIVER_INLINE_MAX { io.gathering.split(&request, device) } else { None };
        let (back, back_pieces, result) = match split {
            Some(split) => write_split(q, io, buf, pieces, &request, split, device).await?,
            None => io.to_pool(request, work, buf, pieces).await?,
        };
        buf = back;
        pieces = back_pieces;
        q.submit_io_commit_cmd(tag, io.desc(), result).await?;
    }
}

/// A write too large to gather, served in the parts `split` cut: its
/// partial first and last stripes each gathered with the writes that
/// share them (a part alone written from a buffer of its own), the whole
/// stripes between by the pool, all at once. A part its group could not
/// write goes to the pool after. The request's result: its length, or
/// the first part's error.
async fn write_split(
    q: &UblkQueue<'_>,
    io: &TagIo,
    buf: TagBuf,
    pieces: Vec<Piece>,
    request: &Request,
    split: Split,
    device: &dyn BlockDevice,
) -> Result<Done, UblkError> {
    let edge = |edge: Option<(Part, std::ops::Range<u64>)>| async move {
        let (part, unit) = edge?;
        // None says written: a part without a buffer goes to the pool.
        let Some(mut own) = scratch::take(1, part.range.end as usize - part.range.start as usize).pop() else { return Some(part) };
        let outcome = io.gathering.write_part(q, &io.copy, io.tag, &mut own, &part, unit, device).await;
        (!matches!(outcome, Outcome::Written)).then_some(part)
    };
    let part_request = |part: &Part| Request { offset: part.range.start, len: part.range.end - part.range.start, ..*request };
    let middle = async {
        if split.middle.range.is_empty() {
            return Ok((buf, pieces, 0));
        }
        io.to_pool(part_request(&split.middle), Work::WritePart { from: split.middle.from }, buf, pieces).await
    };
    let ((head, tail), done) = smol::future::zip(smol::future::zip(edge(split.head), edge(split.tail)), middle).await;
    let (mut buf, mut pieces, mut result) = done?;
    for part in [head, tail].into_iter().flatten() {
        let (back, back_pieces, r) = io.to_pool(part_request(&part), Work::WritePart { from: part.from }, buf, pieces).await?;
        (buf, pieces) = (back, back_pieces);
        if result >= 0 {
            result = r;
        }
    }
    Ok((buf, pieces, if result >= 0 { request.len as i32 } else { result }))
}

/// Read every extent at once on this queue's ring. Extents that follow
/// each other in one file (a stripe's chunks on one leg) are one read into
/// one stretch of `buf`, as the block layer would merge them; `pieces` says
/// where each part of the request landed, in request order, for the copy to
/// the request. False if any read fails or comes up short, or the extents
/// do not cover the request exactly: the caller then serves the request the
/// slow way, which handles the error (and fails the leg).
async fn read_direct(q: &UblkQueue<'_>, turns: &Turns, extents: &mut [Extent], buf: &mut TagBuf, fixed: bool, pieces: &mut Vec<Piece>) -> bool {
    extents.sort_unstable_by_key(|e| (e.file.as_raw_fd(), e.offset));
    // (first extent, bytes, where in buf)
    let mut runs: Vec<(usize, u64, usize)> = Vec::new();
    let mut used = 0usize;
    for (i, e) in extents.iter().enumerate() {
        let follows = runs.last().is_some_and(|&(first, bytes, _)| continues(&extents[first], bytes, e));
        if !follows {
            runs.push((i, 0, used));
        }
        if let Some(run) = runs.last_mut() {
            run.1 += u64::from(e.len);
        }
        pieces.push(Piece { request_offset: e.buf_offset, buf_offset: used, len: e.len as usize });
        used += e.len as usize;
    }
    let base = buf.as_mut_slice();
    if used > base.len() || runs.iter().any(|&(_, bytes, _)| bytes > u64::from(u32::MAX)) {
        return false;
    }
    let pending: Vec<_> = runs
        .iter()
        .map(|&(first, bytes, at)| {
            let e = &extents[first];
            let fd = io_uring::types::Fd(e.file.as_raw_fd());
            // SAFETY: `at + bytes <= used <= base.len()` (checked above).
            let ptr = unsafe { base.as_mut_ptr().add(at) };
            // The kernel writes into `base` only until this read completes:
            // every read is awaited below before `buf` is used again, and a
            // tag task is never dropped while awaiting (the queue runs until
            // every tag task has finished). `e.file` keeps the descriptor
            // open until then.
            let sqe = if fixed {
                io_uring::opcode::ReadFixed::new(fd, ptr, bytes as u32, 0).offset(e.offset).build()
            } else {
                io_uring::opcode::Read::new(fd, ptr, bytes as u32).offset(e.offset).build()
            };
            (q.ublk_submit_sqe(sqe), bytes)
        })
        .collect();
    read_all(turns, pending).await && in_request_order(pieces)
}

/// Whether extent `e` continues the run of `bytes` that starts at `first`:
/// the same file, right after it (one read, as the block layer would merge).
fn continues(first: &Extent, bytes: u64, e: &Extent) -> bool {
    Arc::ptr_eq(&first.file, &e.file) && first.offset + bytes == e.offset
}

/// Await every read submitted; true if each read all its bytes.
async fn read_all(turns: &Turns, pending: Vec<(impl std::future::Future<Output = i32>, u64)>) -> bool {
    let _busy = turns.busy();
    let mut ok = true;
    for (read, bytes) in pending {
        ok &= i64::from(read.await) == bytes as i64;
    }
    ok
}

/// Read every extent at once on this queue's ring straight into the
/// request's own pages, the ring's fixed buffer `tag` (for a buffer the
/// kernel registered, a fixed read's address is the offset in it): no
/// buffer of ours, no copy. Extents that follow each other both in one
/// file and in the request are one read. False if any read fails or comes
/// up short, or the extents do not cover the request: the caller then
/// reads it again the copying way, which overwrites whatever landed and
/// handles the error.
async fn read_zero_copy(q: &UblkQueue<'_>, turns: &Turns, tag: u16, len: u64, extents: &mut [Extent]) -> bool {
    extents.sort_unstable_by_key(|e| e.buf_offset);
    let mut covered = 0usize;
    // (first extent, bytes)
    let mut runs: Vec<(usize, u64)> = Vec::new();
    for (i, e) in extents.iter().enumerate() {
        if e.buf_offset != covered {
            return false;
        }
        covered += e.len as usize;
        let follows = runs.last().is_some_and(|&(first, bytes)| continues(&extents[first], bytes, e));
        if follows {
            if let Some(run) = runs.last_mut() {
                run.1 += u64::from(e.len);
            }
        } else {
            runs.push((i, u64::from(e.len)));
        }
    }
    if covered as u64 != len || runs.iter().any(|&(_, bytes)| bytes > u64::from(u32::MAX)) {
        return false;
    }
    let pending: Vec<_> = runs
        .iter()
        .map(|&(first, bytes)| {
            let e = &extents[first];
            // No memory of ours is named: the address is an offset into the
            // request's pages, which the kernel keeps registered until this
            // tag's next COMMIT, sent only after every read is awaited.
            let sqe =
                io_uring::opcode::ReadFixed::new(io_uring::types::Fd(e.file.as_raw_fd()), e.buf_offset as *mut u8, bytes as u32, tag).offset(e.offset).build();
            (q.ublk_submit_sqe(sqe), bytes)
        })
        .collect();
    read_all(turns, pending).await
}

/// A small write served here when the device can stage it (`device::staged`):
/// its data fetched from the request (a copy, no I/O), then each stage's leg
/// operations submitted on this queue's ring with every other request's, and
/// awaited. False when the device cannot stage it or abandons it: the pool
/// then serves it the plain way, fetching the data again.
async fn write_staged(q: &UblkQueue<'_>, io: &TagIo, buf: &mut TagBuf, request: &Request, device: &dyn BlockDevice) -> bool {
    let Some(mut staged) = device.stage_write(request.offset, request.len, request.fua()) else {
        return false;
    };
    let Some(data) = usize::try_from(request.len).ok().and_then(|n| buf.as_mut_slice().get_mut(..n)) else {
        return false;
    };
    if io.copy.fetch(io.tag, data).is_err() {
        return false;
    }
    let data: &[u8] = data;
    run_stages(q, &io.turns, |results| staged.advance(data, results)).await
}

/// A degraded read rebuilt here when the device can stage it: the
/// sources read on this ring, the chunk solved into the tag's buffer,
/// delivered to the request. False: the pool serves it.
async fn read_staged(q: &UblkQueue<'_>, io: &TagIo, buf: &mut TagBuf, request: &Request, device: &dyn BlockDevice) -> Result<bool, UblkError> {
    let Some(mut staged) = device.stage_read(request.offset, request.len) else {
        return Ok(false);
    };
    let Some(data) = usize::try_from(request.len).ok().and_then(|n| buf.as_mut_slice().get_mut(..n)) else {
        return Ok(false);
    };
    if !run_stages(q, &io.turns, |results| staged.advance(data, results)).await {
        return Ok(false);
    }
    drop(staged);
    let whole = [Piece { request_offset: 0, buf_offset: 0, len: request.len as usize }];
    let result = read_result(request, deliver(&io.copy, io.tag, buf.as_slice(), &whole));
    q.submit_io_commit_cmd(io.tag, io.desc(), result).await?;
    Ok(true)
}

/// Run a staged request's stages on this queue's ring: each stage's
/// operations submitted together (with whatever other tags submit before
/// the ring is entered) and all awaited before the next step. True when
/// the request completed; false when it was abandoned.
pub(super) async fn run_stages(q: &UblkQueue<'_>, turns: &Turns, mut advance: impl FnMut(&[i32]) -> Step) -> bool {
    let mut results: Vec<i32> = Vec::new();
    loop {
        match advance(&results) {
            Step::Done => return true,
            Step::Abandon => return false,
            Step::Io(ops) => {
                let pending: Vec<_> = ops
                    .iter()
                    .map(|op| {
                        let fd = io_uring::types::Fd(op.file.as_raw_fd());
                        // The buffers are the tag's and the staged
                        // request's own, both left alone until every
                        // operation of the stage is awaited below (a tag
                        // task is never dropped while awaiting); `ops`
                        // keeps each file open until then.
                        let sqe = if op.write {
                            let flags = if op.dsync { libc::RWF_DSYNC } else { 0 };
                            io_uring::opcode::Write::new(fd, op.buf, op.len).offset(op.offset).rw_flags(flags as _).build()
                        } else {
                            io_uring::opcode::Read::new(fd, op.buf, op.len).offset(op.offset).build()
                        };
                        q.ublk_submit_sqe(sqe)
                    })
                    .collect();
                results.clear();
                let _busy = turns.busy();
                for done in pending {
                    results.push(done.await);
                }
                drop(ops);
            }
        }
    }
}

/// Sort `pieces` by their place in the request and merge neighbours that are
/// neighbours in the buffer too; false unless they cover the request from
/// byte 0 without gap or overlap.
fn in_request_order(pieces: &mut Vec<Piece>) -> bool {
    pieces.sort_unstable_by_key(|p| p.request_offset);
    let mut merged: Vec<Piece> = Vec::with_capacity(pieces.len());
    for p in pieces.iter() {
        match merged.last_mut() {
            Some(last) if last.request_offset + last.len != p.request_offset => return false,
            Some(last) if last.buf_offset + last.len == p.buf_offset => last.len += p.len,
            None if p.request_offset != 0 => return false,
            _ => merged.push(*p),
        }
    }
    *pieces = merged;
    true
}

/// Keep a read of the eventfd pending in the queue's ring, forever: each
/// completion is a wake-up that lets the executor run finished tasks.
async fn drain_wakeups(wake: Arc<File>) {
    // The kernel writes into this buffer whenever a read completes, possibly
    // while the ring is torn down; a leaked 8 bytes per queue can never be
    // freed under it.
    let buf: &'static mut [u8; 8] = Box::leak(Box::new([0u8; 8]));
    let fd = io_uring::types::Fd(wake.as_raw_fd());
    loop {
        let sqe = io_uring::opcode::Read::new(fd, buf.as_mut_ptr(), 8).build();
        match ublk_submit_sqe_async(sqe, UblkUringData::Target as u64).await {
            Ok(r) if r >= 0 || r == -libc::EINTR || r == -libc::EAGAIN => {}
            Ok(r) => {
                tracing::error!("ublk queue eventfd read failed: errno {}", -r);
                return;
            }
            Err(e) => {
                tracing::error!("ublk queue eventfd read failed: {}", super::describe(&e));
                return;
            }
        }
    }
}

fn eventfd() -> std::io::Result<File> {
    // SAFETY: eventfd takes no pointers; a negative return is an error and
    // a non-negative one is a new descriptor that only this OwnedFd owns.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(request_offset: usize, buf_offset: usize, len: usize) -> Piece {
        Piece { request_offset, buf_offset, len }
    }

    #[test]
    fn pieces_sort_into_request_order_and_merge_where_the_buffer_allows() {
        // raid0 over two legs, 4 chunks: leg 0 holds chunks 0 and 2, read
        // into the buffer side by side, then leg 1 with chunks 1 and 3.
        let mut p = vec![piece(0, 0, 64), piece(128, 64, 64), piece(64, 128, 64), piece(192, 192, 64)];
        assert!(in_request_order(&mut p));
        assert_eq!(p, vec![piece(0, 0, 64), piece(64, 128, 64), piece(128, 64, 64), piece(192, 192, 64)]);
        let mut linear = vec![piece(64, 64, 64), piece(0, 0, 64)];
        assert!(in_request_order(&mut linear));
        assert_eq!(linear, vec![piece(0, 0, 128)]);
    }

    #[test]
    fn pieces_with_a_gap_or_overlap_or_late_start_are_refused() {
        assert!(!in_request_order(&mut vec![piece(0, 0, 64), piece(128, 64, 64)]));
        assert!(!in_request_order(&mut vec![piece(0, 0, 64), piece(32, 64, 64)]));
        assert!(!in_request_order(&mut vec![piece(64, 0, 64)]));
    }
}
