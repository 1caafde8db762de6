//! The worker threads that run ublk requests against the device.
//!
//! A ublk queue thread runs libublk's single-threaded executor on its own
//! io_uring; the device's I/O is synchronous (`BlockDevice`), so a request
//! served inline would stall every other tag of the queue. Instead each tag
//! task hands its request, and the buffer that holds the data, to this pool
//! and awaits the buffer back. Ownership of the buffer travels with the job,
//! so no pointer is shared between threads.

use crate::device::BlockDevice;
use libublk::helpers::IoBuf;
use libublk::sys;
use std::fs::File;
use std::io::{self, Write};
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

    fn fua(&self) -> bool {
        self.flags & sys::UBLK_IO_F_FUA != 0
    }
}

/// What a worker sends back: the buffer, and the result the kernel gets
/// (bytes done, or a negative errno).
pub type Done = (IoBuf<u8>, i32);

/// A request on its way to a worker.
pub struct Job {
    pub request: Request,
    pub buf: IoBuf<u8>,
    pub reply: smol::channel::Sender<Done>,
    /// The queue's eventfd: written after the reply so that the queue
    /// thread, asleep in its io_uring wait, wakes up and runs the task.
    pub wake: Arc<File>,
}

/// A fixed set of threads serving jobs for every queue of one device.
pub struct Pool {
    jobs: crossbeam_channel::Sender<Job>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    pub fn new(device: Arc<dyn BlockDevice>, threads: usize) -> io::Result<Pool> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            let device = device.clone();
            handles.push(std::thread::Builder::new().name(format!("wasmraid-ublk-{i}")).spawn(move || {
                for job in queue {
                    serve_job(device.as_ref(), job);
                }
            })?);
        }
        Ok(Pool { jobs, threads: handles })
    }

    pub fn submit(&self) -> crossbeam_channel::Sender<Job> {
        self.jobs.clone()
    }

    /// Let the workers finish what they hold and exit.
    pub fn join(self) {
        drop(self.jobs);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn serve_job(device: &dyn BlockDevice, job: Job) {
    let Job { request, mut buf, reply, wake } = job;
    let result = serve(device, &request, &mut buf);
    // The task may be gone only when its queue died; nothing waits then.
    let _ = reply.try_send((buf, result));
    let _ = (&*wake).write_all(&1u64.to_ne_bytes());
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
    fn bad_requests_fail_with_an_errno_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let dev = FileLeg::create(&dir.path().join("leg"), 1 << 20).unwrap();
        let mut small = vec![0u8; 4096];
        assert_eq!(serve(&dev, &request(sys::UBLK_IO_OP_READ, 0, 8192), &mut small), -libc::EINVAL);
        assert_eq!(serve(&dev, &request(sys::UBLK_IO_OP_READ, 1 << 20, 4096), &mut small), -libc::EINVAL);
        assert_eq!(serve(&dev, &request(99, 0, 4096), &mut small), -libc::EOPNOTSUPP);
    }
}
