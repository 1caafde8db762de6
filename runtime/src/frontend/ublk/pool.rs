//! The worker threads that run ublk requests against the device.
//!
//! A ublk queue thread runs libublk's single-threaded executor on its own
//! io_uring; the device's I/O is synchronous (`BlockDevice`), so a request
//! served inline would stall every other tag of the queue. Instead each tag
//! task hands its request, and the buffer that holds the data, to this pool
//! and awaits the buffer back. Ownership of the buffer travels with the job,
//! so no pointer is shared between threads.

use super::buffers::TagBuf;
use super::user_copy::UserCopy;
use crate::device::BlockDevice;
use libublk::sys;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

/// One request, as the kernel described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// `UBLK_IO_OP_*`.
    pub op: u32,
    /// `UBLK_IO_F_*`.
    pub flags: u32,
    pub offset: u64,
    pub len: u64,
}

impl Request {
    pub fn from_desc(iod: &sys::ublksrv_io_desc) -> Request {
        Request { op: iod.op_flags & 0xff, flags: iod.op_flags >> 8 << 8, offset: iod.start_sector << 9, len: u64::from(iod.nr_sectors) << 9 }
    }

    pub fn fua(&self) -> bool {
        self.flags & sys::UBLK_IO_F_FUA != 0
    }

    /// The bytes it covers on the device; None if they pass the end of
    /// the address space.
    pub fn range(&self) -> Option<std::ops::Range<u64>> {
        Some(self.offset..self.offset.checked_add(self.len)?)
    }
}

/// Where part of a read's data sits in the buffer: the `len` bytes of the
/// request from `request_offset` are at `buf_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub request_offset: usize,
    pub buf_offset: usize,
    pub len: usize,
}

/// What a worker sends back: the buffer and the pieces list (both reused),
/// and the result the kernel gets (bytes done, or a negative errno).
pub type Done = (TagBuf, Vec<Piece>, i32);

/// A request on its way to a worker.
pub struct Job {
    pub request: Request,
    pub tag: u16,
    pub work: Work,
    pub buf: TagBuf,
    /// For `Work::Deliver`: where the data is in `buf`, in request order.
    /// Unused by `Work::Serve`; it travels anyway so its allocation is reused.
    pub pieces: Vec<Piece>,
    /// How the request's data moves between `buf` and the kernel.
    pub copy: Arc<UserCopy>,
    pub reply: smol::channel::Sender<Done>,
    /// The queue's eventfd: written after the reply so that the queue
    /// thread, asleep in its io_uring wait, wakes up and runs the task.
    pub wake: Arc<File>,
}

/// What a worker does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Everything: fetch a write's data, run the request on the device,
    /// deliver a read's data.
    Serve,
    /// `buf` already holds the read's data (the queue thread read the legs):
    /// only deliver it, off the queue thread's CPU.
    Deliver,
    /// Part of a larger write (the job's request is that part): its data
    /// fetched from byte `from` of the tag's request, then written.
    WritePart { from: usize },
}

/// The jobs waiting for a worker. A mutex and a condition variable rather
/// than a channel: a channel's receivers spin before they sleep, and on a
/// machine with few CPUs those spins are taken from the queue threads.
#[derive(Default)]
struct Waiting {
    jobs: parking_lot::Mutex<(std::collections::VecDeque<Job>, bool)>,
    ready: parking_lot::Condvar,
}

/// Where queue threads hand jobs to the pool.
#[derive(Clone)]
pub struct Jobs(Arc<Waiting>);

impl Jobs {
    /// Queue `job` for a worker; it comes back if the pool has stopped.
    pub fn send(&self, job: Job) -> Result<(), Job> {
        let mut waiting = self.0.jobs.lock();
        if waiting.1 {
            return Err(job);
        }
        waiting.0.push_back(job);
        drop(waiting);
        self.0.ready.notify_one();
        Ok(())
    }

    /// The next job, or None once the pool is stopping and none is left.
    fn next(&self) -> Option<Job> {
        let mut waiting = self.0.jobs.lock();
        loop {
            if let Some(job) = waiting.0.pop_front() {
                return Some(job);
            }
            if waiting.1 {
                return None;
            }
            self.0.ready.wait(&mut waiting);
        }
    }

    fn close(&self) {
        self.0.jobs.lock().1 = true;
        self.0.ready.notify_all();
    }
}

/// A fixed set of threads serving jobs for every queue of one device.
pub struct Pool {
    jobs: Jobs,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    pub fn new(device: Arc<dyn BlockDevice>, threads: usize) -> io::Result<Pool> {
        let jobs = Jobs(Arc::default());
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let queue = jobs.clone();
            let device = device.clone();
            handles.push(std::thread::Builder::new().name(format!("wasmraid-ublk-{i}")).spawn(move || {
                while let Some(job) = queue.next() {
                    serve_job(device.as_ref(), job);
                }
            })?);
        }
        Ok(Pool { jobs, threads: handles })
    }

    pub fn submit(&self) -> Jobs {
        self.jobs.clone()
    }

    /// Let the workers finish what they hold and exit.
    pub fn join(mut self) {
        self.jobs.close();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Pool {
    /// A pool dropped without `join` still lets its workers go.
    fn drop(&mut self) {
        self.jobs.close();
    }
}

fn serve_job(device: &dyn BlockDevice, job: Job) {
    let Job { request, tag, work, mut buf, pieces, copy, reply, wake } = job;
    let result = match work {
        Work::Serve => serve_copying(device, &copy, tag, &request, 0, buf.as_mut_slice()),
        Work::WritePart { from } => serve_copying(device, &copy, tag, &request, from, buf.as_mut_slice()),
        Work::Deliver => read_result(&request, deliver(&copy, tag, buf.as_slice(), &pieces)),
    };
    // The descriptor must not outlive the queue (the device's removal
    // waits for its last close): drop it before the queue can end.
    drop(copy);
    // The task may be gone only when its queue died; nothing waits then.
    let _ = reply.try_send((buf, pieces, result));
    let _ = (&*wake).write_all(&1u64.to_ne_bytes());
}

/// Run one request, moving its data in and out through `copy`; a write's
/// data is fetched from byte `from` of the tag's request (`r` may be part
/// of it).
fn serve_copying(device: &dyn BlockDevice, copy: &UserCopy, tag: u16, r: &Request, from: usize, buf: &mut [u8]) -> i32 {
    if r.op == sys::UBLK_IO_OP_WRITE {
        let Some(data) = usize::try_from(r.len).ok().and_then(|n| buf.get_mut(..n)) else {
            return -libc::EINVAL;
        };
        if let Err(e) = copy.fetch_at(tag, from, data) {
            tracing::warn!(offset = r.offset, len = r.len, "ublk: cannot fetch a write's data: {e}");
            return -errno(&e);
        }
    }
    let result = serve(device, r, buf);
    if r.op == sys::UBLK_IO_OP_READ && result > 0 {
        let whole = [Piece { request_offset: 0, buf_offset: 0, len: result as usize }];
        return read_result(r, deliver(copy, tag, buf, &whole));
    }
    result
}

/// Hand part of a read's data to the kernel: the `pieces` of `buf`, in
/// request order and following each other in the request.
pub fn deliver(copy: &UserCopy, tag: u16, buf: &[u8], pieces: &[Piece]) -> io::Result<usize> {
    let out_of_buffer = || io::Error::new(io::ErrorKind::InvalidInput, "a read's data lies outside its buffer");
    let mut slices = pieces
        .iter()
        .map(|p| p.buf_offset.checked_add(p.len).and_then(|end| buf.get(p.buf_offset..end)).map(IoSlice::new))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(out_of_buffer)?;
    let start = pieces.first().map_or(0, |p| p.request_offset);
    let total = slices.iter().map(|s| s.len()).sum();
    copy.deliver(tag, start, &mut slices)?;
    Ok(total)
}

/// The kernel's answer for a read whose delivery came to `delivered`.
pub fn read_result(r: &Request, delivered: io::Result<usize>) -> i32 {
    match delivered {
        Ok(n) if n as u64 == r.len => n as i32,
        Ok(n) => {
            tracing::warn!(offset = r.offset, len = r.len, "ublk: only {n} bytes of a read delivered");
            -libc::EIO
        }
        Err(e) => {
            tracing::warn!(offset = r.offset, len = r.len, "ublk: cannot deliver a read's data: {e}");
            -errno(&e)
        }
    }
}

/// Run one request; the kernel's answer.
pub fn serve(device: &dyn BlockDevice, r: &Request, buf: &mut [u8]) -> i32 {
    match run(device, r, buf) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(op = r.op, offset = r.offset, len = r.len, "ublk request failed: {e}");
            -errno(&e)
        }
    }
}

fn run(device: &dyn BlockDevice, r: &Request, buf: &mut [u8]) -> io::Result<i32> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {r:?}"));
    let bytes = i32::try_from(r.len).map_err(|_| invalid("request too large"))?;
    if r.op != sys::UBLK_IO_OP_FLUSH {
        crate::device::check_range(device, r.offset, r.len)?;
    }
    let data_len = usize::try_from(r.len).map_err(|_| invalid("request too large"))?;
    match r.op {
        sys::UBLK_IO_OP_READ => {
            let data = buf.get_mut(..data_len).ok_or_else(|| invalid("read larger than the I/O buffer"))?;
            device.read_at(data, r.offset)?;
            Ok(bytes)
        }
        sys::UBLK_IO_OP_WRITE => {
            let data = buf.get(..data_len).ok_or_else(|| invalid("write larger than the I/O buffer"))?;
            device.write_at(data, r.offset, r.fua())?;
            Ok(bytes)
        }
        sys::UBLK_IO_OP_FLUSH => {
            device.flush()?;
            Ok(0)
        }
        sys::UBLK_IO_OP_DISCARD => {
            device.discard(r.offset, r.len)?;
            Ok(bytes)
        }
        sys::UBLK_IO_OP_WRITE_ZEROES => {
            device.write_zeroes(r.offset, r.len, r.fua())?;
            Ok(bytes)
        }
        _ => Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
    }
}

/// The errno a failed request completes with: the OS error when there is
/// one, EINVAL for requests we refuse, EIO for everything else.
fn errno(e: &io::Error) -> i32 {
    match (e.raw_os_error(), e.kind()) {
        (Some(n), _) if n > 0 => n,
        (_, io::ErrorKind::InvalidInput) => libc::EINVAL,
        _ => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::file::FileLeg;

    fn request(op: u32, offset: u64, len: u64) -> Request {
        Request { op, flags: 0, offset, len }
    }

    #[test]
    fn requests_reach_the_device_and_return_byte_counts() {
        let dir = tempfile::tempdir().unwrap();
        let dev = FileLeg::create(&dir.path().join("leg"), 1 << 20).unwrap();
        let mut buf = vec![7u8; 8192];
        assert_eq!(serve(&dev, &request(sys::UBLK_IO_OP_WRITE, 4096, 8192), &mut buf), 8192);
        let mut back = vec![0u8; 8192];
        assert_eq!(serve(&dev, &request(sys::UBLK_IO_OP_READ, 4096, 8192), &mut back), 8192);
        assert_eq!(back, buf);
        assert_eq!(serve(&dev, &request(sys::UBLK_IO_OP_WRITE_ZEROES, 4096, 4096), &mut back), 4096);
        assert_eq!(serve(&dev, &request(sys::UBLK_IO_OP_READ, 4096, 4096), &mut back), 4096);
        assert!(back[..4096].iter().all(|&b| b == 0));
        assert_eq!(serve(&dev, &request(sys::UBLK_IO_OP_FLUSH, 0, 0), &mut back), 0);
    }

    #[test]
    fn reads_are_delivered_in_request_order_and_writes_fetched_at_the_tags_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).open(dir.path().join("cdev")).unwrap();
        let copy = UserCopy::over(file.try_clone().unwrap(), 1);
        // Queue 1, tag 3: where ublk puts that request's data.
        let at = u64::from(sys::UBLKSRV_IO_BUF_OFFSET) | (1 << sys::UBLK_QID_OFF) | (3 << sys::UBLK_TAG_OFF);
        // The buffer holds the request's second half first, as legs put it.
        let buf: Vec<u8> = (0..8192u32).map(|i| if i < 4096 { 2 } else { 1 }).collect();
        let pieces = [Piece { request_offset: 0, buf_offset: 4096, len: 4096 }, Piece { request_offset: 4096, buf_offset: 0, len: 4096 }];
        let r = request(sys::UBLK_IO_OP_READ, 0, 8192);
        assert_eq!(read_result(&r, deliver(&copy, 3, &buf, &pieces)), 8192);
        let mut back = vec![0u8; 8192];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut back, at).unwrap();
        assert!(back[..4096].iter().all(|&b| b == 1) && back[4096..].iter().all(|&b| b == 2));
        // Half a request delivered is an error, not a short success.
        assert_eq!(read_result(&r, deliver(&copy, 3, &buf, &pieces[1..])), -libc::EIO);
        // A piece outside the buffer is refused before anything is copied.
        let outside = [Piece { request_offset: 0, buf_offset: 8000, len: 4096 }];
        assert_eq!(read_result(&r, deliver(&copy, 3, &buf, &outside)), -libc::EINVAL);
        let mut fetched = vec![0u8; 8192];
        copy.fetch(3, &mut fetched).unwrap();
        assert_eq!(fetched, back);
        // Part of a write, from its byte 4096.
        let mut part = vec![0u8; 4096];
        copy.fetch_at(3, 4096, &mut part).unwrap();
        assert_eq!(part, back[4096..]);
        // More pieces than one pwritev takes (IOV_MAX 1024): 2048 pieces of
        // 4 bytes, each the buffer's pieces swapped pairwise.
        let pieces: Vec<Piece> = (0..2048).map(|i| Piece { request_offset: i * 4, buf_offset: (i ^ 1) * 4, len: 4 }).collect();
        // Each 4 bytes of the buffer hold their own index, so no two match.
        let many: Vec<u8> = (0..2048u32).flat_map(u32::to_le_bytes).collect();
        assert_eq!(read_result(&r, deliver(&copy, 3, &many, &pieces)), 8192);
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut back, at).unwrap();
        assert!(back.chunks(4).enumerate().all(|(i, c)| c == ((i ^ 1) as u32).to_le_bytes()));
    }

    #[test]
    fn bad_requests_fail_with_an_errno_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let dev = FileLeg::create(&dir.path().join("leg"), 1 << 20).unwrap();
        let mut small = vec![0u8; 4096];
        assert_eq!(serve(&dev, &request(sys::UBLK_IO_OP_READ, 0, 8192), &mut small), -libc::EINVAL);
        assert_eq!(serve(&dev, &request(sys::UBLK_IO_OP_READ, 1 << 20, 4096), &mut small), -libc::EINVAL);
        assert_eq!(serve(&dev, &request(99, 0, 4096), &mut small), -libc::EOPNOTSUPP);
    }
}
