//! One ublk queue thread: a task per tag on libublk's executor, and a task
//! that wakes the thread when the pool finishes a request.
//!
//! The thread sleeps in its io_uring wait. The kernel's commands complete
//! through that ring, but a worker finishing a request is another thread:
//! it writes the queue's eventfd, a read of which is always pending in the
//! ring, so the wait returns and the executor runs the woken task, which
//! commits the result and fetches the next request in one command.

use super::pool::{Job, Request};
use libublk::helpers::IoBuf;
use libublk::io::{UblkDev, UblkQueue};
use libublk::uring_async::ublk_submit_sqe_async;
use libublk::{BufDesc, UblkError, UblkUringData};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;

/// Serve queue `qid` until the device stops.
pub fn run(qid: u16, dev: &UblkDev, jobs: crossbeam_channel::Sender<Job>) {
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
        let (q, jobs, wake) = (queue.clone(), jobs.clone(), wake.clone());
        tags.push(executor.spawn(async move {
            match serve_tag(&q, tag, buf_bytes, jobs, wake).await {
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

/// One tag: fetch a request, have the pool serve it, commit the result and
/// fetch the next, until the queue goes down.
async fn serve_tag(q: &UblkQueue<'_>, tag: u16, buf_bytes: usize, jobs: crossbeam_channel::Sender<Job>, wake: Arc<File>) -> Result<(), UblkError> {
    let (reply, replies) = smol::channel::bounded(1);
    let mut buf = IoBuf::<u8>::new(buf_bytes);
    q.submit_io_prep_cmd(tag, BufDesc::Slice(buf.as_slice()), -1, Some(&buf)).await?;
    loop {
        let request = Request::from_desc(q.get_iod(tag));
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
