//! A write (or a degraded read) served in stages by a caller that has its own asynchronous I/O:
//! the ublk queue thread, whose io_uring carries the kernel's commands and
//! every leg operation of every request in flight on that queue. Each stage
//! is a set of file reads and writes that may all be in flight together (a
//! parity write: the old data and old parity, then the new data and new
//! parity); the caller submits them, awaits them all, and hands the results
//! back for the next stage.
//!
//! Why: measured in the VM bed, a request handed to a worker thread that
//! blocks in the legs' system calls pays two thread switches and a virtio
//! notification per leg operation; leg operations of many requests
//! submitted from one ring in one system call share a notification. raid0
//! 4k random writes ran at 2,685 IOPS through the worker pool against 7,674
//! for reads served from the queue's ring.
//!
//! A device offers a staged write only where nothing in it can block (no
//! lock waited for, no metadata written, every leg a local file in sync); a
//! write it cannot stage, or one it abandons half-way, is served the plain
//! way (`BlockDevice::write_at`), which is also where errors are reported.
//! Abandoning is always safe: the plain write writes the same data again,
//! and a leg that failed a staged operation has been marked failed first.

use std::fs::File;
use std::sync::Arc;

/// One file operation of a stage.
pub struct FileIo {
    /// Kept open until the operation completes, even if the leg is replaced.
    pub file: Arc<File>,
    pub offset: u64,
    /// Read into, or written from: the request's own data or a buffer the
    /// staged write owns, valid until the stage's results are handed back
    /// (the caller must not drop the staged write or change the data while
    /// any operation is in flight).
    pub buf: *mut u8,
    pub len: u32,
    pub write: bool,
    /// The write is durable when it completes (FUA: RWF_DSYNC).
    pub dsync: bool,
}

/// What the caller does next.
pub enum Step {
    /// Run these together, then call `advance` with their results.
    Io(Vec<FileIo>),
    /// The write is complete and may be acknowledged.
    Done,
    /// Serve the request the plain way.
    Abandon,
}

/// A write in progress (see the module documentation).
pub trait StagedWrite {
    /// The next step of writing `data` (the request's data, the same bytes
    /// every call), given the previous stage's results: one per operation,
    /// the bytes moved or a negative errno (empty at the first call).
    fn advance(&mut self, data: &[u8], results: &[i32]) -> Step;
}

/// A read in progress that the plain read paths cannot map onto files as
/// they are (a degraded read: the chunk is rebuilt from the stripe's
/// survivors), in stages like a staged write.
pub trait StagedRead {
    /// The next step of reading into `buf` (the request's length, the
    /// same buffer every call), given the previous stage's results as for
    /// `StagedWrite::advance`. At `Done`, `buf` holds the data.
    fn advance(&mut self, buf: &mut [u8], results: &[i32]) -> Step;
}

/// Whether every operation of a stage moved all its bytes.
pub fn all_moved(ops: &[FileIo], results: &[i32]) -> bool {
    ops.len() == results.len() && ops.iter().zip(results).all(|(op, &r)| i64::from(r) == i64::from(op.len))
}

/// Run a staged request's stages (`advance`: its `advance` with the data
/// or buffer bound) with plain system calls, one operation after another:
/// how the tests drive staged requests, and what a frontend without a ring
/// of its own could do. `inject` may replace an operation's result (a
/// test's failing leg). True when the request completed.
pub fn run_blocking(mut advance: impl FnMut(&[i32]) -> Step, mut inject: impl FnMut(&FileIo) -> Option<i32>) -> bool {
    let mut results = Vec::new();
    loop {
        match advance(&results) {
            Step::Done => return true,
            Step::Abandon => return false,
            Step::Io(ops) => results = ops.iter().map(|op| inject(op).unwrap_or_else(|| run_one(op))).collect(),
        }
    }
}

fn run_one(op: &FileIo) -> i32 {
    use std::os::unix::fs::FileExt;
    let len = op.len as usize;
    let result = if op.write {
        // SAFETY: a staged write keeps `buf` valid and unchanged for `len`
        // bytes until this stage's results are handed back.
        let data = unsafe { std::slice::from_raw_parts(op.buf.cast_const(), len) };
        op.file.write_all_at(data, op.offset).and_then(|()| if op.dsync { op.file.sync_data() } else { Ok(()) })
    } else {
        // SAFETY: as above, and nothing else reads or writes the buffer
        // while the stage is in flight.
        let buf = unsafe { std::slice::from_raw_parts_mut(op.buf, len) };
        op.file.read_exact_at(buf, op.offset)
    };
    match result {
        Ok(()) => op.len as i32,
        Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
    }
}
