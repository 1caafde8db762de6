//! One ublk queue thread: a task per tag on libublk's executor, and a task
//! that wakes the thread when the pool finishes a request.
//!
//! The thread sleeps in its io_uring wait. The kernel's commands complete
//! through that ring, but a worker finishing a request is another thread:
//! it writes the queue's eventfd, a read of which is always pending in the
//! ring, so the wait returns and the executor runs the woken task, which
//! commits the result and fetches the next request in one command.

use super::pool::{Job, Request};
use crate::device::{BlockDevice, Extent};
use libublk::helpers::IoBuf;
use libublk::io::{UblkDev, UblkQueue};
use libublk::uring_async::ublk_submit_sqe_async;
use libublk::{BufDesc, UblkError, UblkUringData};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;

/// Serve queue `qid` until the device stops.
pub fn run(qid: u16, dev: &UblkDev, device: Arc<dyn BlockDevice>, jobs: crossbeam_channel::Sender<Job>) {
    let wake = match eventfd() {
        Ok(f) => Arc::new(f),
        Err(e) => {
            tracing::error!(queue = qid, "ublk queue cannot create its eventfd: {e}");
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
    let executor = Rc::new(smol::LocalExecutor::new());
    let buf_bytes = dev.dev_info.max_io_buf_bytes as usize;
    let mut tags = Vec::new();
    for tag in queue.tags() {
        let (q, jobs, wake, device) = (queue.clone(), jobs.clone(), wake.clone(), device.clone());
        tags.push(executor.spawn(async move {
            match serve_tag(&q, tag, buf_bytes, &*device, jobs, wake).await {
                Ok(()) | Err(UblkError::QueueIsDown) => {}
                Err(e) => tracing::error!(queue = qid, tag, "ublk tag stopped: {}", super::describe(&e)),
            }
        }));
    }
    // Never finished on purpose: it lives as long as the executor, which
    // drops it once every tag task is done.
    let waker = executor.spawn(drain_wakeups(wake.clone()));
    let exe = executor.clone();
    smol::block_on(executor.run(async move {
        let run_ops = || while exe.try_tick() {};
        let done = || tags.iter().all(|t| t.is_finished());
        if let Err(e) = libublk::wait_and_handle_io_events(&queue, Some(20), run_ops, done).await {
            tracing::error!(queue = qid, "ublk queue stopped: {}", super::describe(&e));
        }
    }));
    drop(waker);
}

/// One tag: fetch a request, serve it (a plain read straight from the legs
/// through this queue's ring, anything else by the pool), commit the result
/// and fetch the next, until the queue goes down.
async fn serve_tag(
    q: &UblkQueue<'_>,
    tag: u16,
    buf_bytes: usize,
    device: &dyn BlockDevice,
    jobs: crossbeam_channel::Sender<Job>,
    wake: Arc<File>,
) -> Result<(), UblkError> {
    let (reply, replies) = smol::channel::bounded(1);
    let mut buf = IoBuf::<u8>::new(buf_bytes);
    let mut extents = Vec::new();
    q.submit_io_prep_cmd(tag, BufDesc::Slice(buf.as_slice()), -1, Some(&buf)).await?;
    loop {
        let request = Request::from_desc(q.get_iod(tag));
        if request.op == libublk::sys::UBLK_IO_OP_READ {
            extents.clear();
            if device.read_extents(request.offset, request.len, 0, &mut extents) && read_direct(q, &mut extents, &mut buf).await {
                q.submit_io_commit_cmd(tag, BufDesc::Slice(buf.as_slice()), request.len as i32).await?;
                continue;
            }
        }
        let job = Job { request, buf, reply: reply.clone(), wake: wake.clone() };
        // The pool outlives every queue; if it is gone the process is
        // going down and the request cannot be served.
        let (back, result) = match jobs.send(job) {
            Ok(()) => replies.recv().await.map_err(|_| UblkError::OtherError(-libc::EIO))?,
            Err(crossbeam_channel::SendError(job)) => (job.buf, -libc::EIO),
        };
        buf = back;
        q.submit_io_commit_cmd(tag, BufDesc::Slice(buf.as_slice()), result).await?;
    }
}

/// Read every extent into its place in `buf` at once, on this queue's
/// ring; extents that follow each other in one file (a stripe's chunks on
/// one leg) go as one vectored read, as the block layer would merge them.
/// False if any read fails or comes up short: the caller then serves the
/// request the slow way, which handles the error (and fails the leg).
async fn read_direct(q: &UblkQueue<'_>, extents: &mut [Extent], buf: &mut IoBuf<u8>) -> bool {
    let base = buf.as_mut_slice();
    if extents.iter().any(|e| e.buf_offset.checked_add(e.len as usize).is_none_or(|end| end > base.len())) {
        return false;
    }
    extents.sort_unstable_by_key(|e| (e.file.as_raw_fd(), e.offset));
    // One iovec list per run of contiguous extents; kept here until every
    // read completes, since the kernel reads them when it starts the I/O.
    let mut runs: Vec<(usize, Vec<libc::iovec>, u64)> = Vec::new();
    for (i, e) in extents.iter().enumerate() {
        // SAFETY: `buf_offset + len` is within `base` (checked above).
        let iov = libc::iovec { iov_base: unsafe { base.as_mut_ptr().add(e.buf_offset) }.cast(), iov_len: e.len as usize };
        match runs.last_mut() {
            Some((first, iovs, bytes))
                if {
                    let f = &extents[*first];
                    Arc::ptr_eq(&f.file, &e.file) && f.offset + *bytes == e.offset && iovs.len() < 64
                } =>
            {
                iovs.push(iov);
                *bytes += u64::from(e.len);
            }
            _ => runs.push((i, vec![iov], u64::from(e.len))),
        }
    }
    let pending: Vec<_> = runs
        .iter()
        .map(|(first, iovs, bytes)| {
            let e = &extents[*first];
            // The kernel writes into the iovecs' memory only until this
            // read completes: every read is awaited below before `buf` is
            // used again, and a tag task is never dropped while awaiting
            // (the queue runs until every tag task has finished). `e.file`
            // keeps the descriptor open until then.
            let sqe = io_uring::opcode::Readv::new(io_uring::types::Fd(e.file.as_raw_fd()), iovs.as_ptr(), iovs.len() as u32).offset(e.offset).build();
            (q.ublk_submit_sqe(sqe), *bytes)
        })
        .collect();
    let mut ok = true;
    for (read, bytes) in pending {
        ok &= i64::from(read.await) == bytes as i64;
    }
    drop(runs);
    ok
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
