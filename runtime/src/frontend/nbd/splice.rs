//! Reads answered without copying their data through user space: the legs'
//! page cache pages are spliced into a pipe (the kernel takes references,
//! it does not copy), then from the pipe into the client's socket (TCP and
//! Unix sockets take the pages as they are). nbdkit's file plugin, like
//! our plain path, copies twice: pread into a buffer, send out of it.
//!
//! A read is moved into the pipe whole before its reply header goes out,
//! so a leg that fails to read costs nothing on the wire: the pipe is
//! thrown away and the plain path (`read_at`, which decodes and fails the
//! leg) serves the read instead. Only the device's own answer says which
//! ranges may be read from files as they are (`BlockDevice::read_extents`:
//! nothing to decode, every leg in sync).

use crate::device::Extent;
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The pipe's size asked for; Linux lets anyone have 1 MiB
/// (`/proc/sys/fs/pipe-max-size`).
const PIPE_BYTES: libc::c_int = 1 << 20;

/// A pipe holding one reply's data between the legs and the socket.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes in it now.
    held: usize,
    /// What it takes at most (`F_GETPIPE_SZ`).
    pub capacity: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors owned by
        // nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own; a refusal (a lower
        // pipe-max-size) leaves the default size, read back below.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
        // SAFETY: as above.
        let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        if size <= 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Pipe { read, write, held: 0, capacity: size as usize })
    }

    /// Put `head` (a reply header, copied) then every extent (referenced)
    /// into the pipe, in order: true when all of it is there. False (the
    /// pipe is then emptied) when a file could not be read or the pipe ran
    /// out of room: the caller serves the read the plain way.
    pub fn fill(&mut self, head: &[u8], extents: &[Extent]) -> bool {
        if !head.is_empty() {
            // SAFETY: `head` is valid for its length; the descriptor is open.
            let n = unsafe { libc::write(self.write.as_raw_fd(), head.as_ptr().cast(), head.len()) };
            if n > 0 {
                self.held += n as usize;
            }
            if n != head.len() as isize {
                self.empty();
                return false;
            }
        }
        for e in extents {
            let mut offset = e.offset as libc::loff_t;
            let mut left = e.len as usize;
            while left > 0 {
                // SAFETY: both descriptors are open for the call (the
                // extent's Arc keeps the file open); `offset` is a valid
                // loff_t the kernel advances.
                let n = unsafe { libc::splice(e.file.as_raw_fd(), &mut offset, self.write.as_raw_fd(), std::ptr::null_mut(), left, libc::SPLICE_F_NONBLOCK) };
                if n <= 0 {
                    // An error, the pipe full (EAGAIN) or the file shorter
                    // than the extent: none of it is sent.
                    self.empty();
                    return false;
                }
                left -= n as usize;
                self.held += n as usize;
            }
        }
        true
    }

    /// Throw away what the pipe holds (a fresh pipe: draining one could
    /// block on nothing).
    fn empty(&mut self) {
        if self.held > 0 {
            match Pipe::new() {
                Ok(fresh) => *self = fresh,
                // Keep the old one: it is then never filled again until
                // emptied (`held` stays), and reads go the plain way.
                Err(e) => tracing::warn!("a new pipe for spliced reads: {e}"),
            }
        }
    }

    /// Move up to `held` bytes from the pipe into `socket` (non-blocking):
    /// the bytes moved, `WouldBlock` when the socket is full.
    pub fn drain_into(&mut self, socket: RawFd) -> io::Result<usize> {
        // SAFETY: both descriptors are open; no offsets (pipe and socket).
        let n = unsafe {
            libc::splice(self.read.as_raw_fd(), std::ptr::null_mut(), socket, std::ptr::null_mut(), self.held, libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE)
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.held -= n as usize;
        Ok(n as usize)
    }

    pub fn held(&self) -> usize {
        self.held
    }
}

thread_local! {
    /// One pipe per worker thread, made on its first spliced read.
    static PIPE: RefCell<Option<Pipe>> = const { RefCell::new(None) };
}

/// Run `f` with this thread's pipe, empty; None when no pipe can be had
/// (the caller reads the plain way).
pub fn with_pipe<T>(f: impl FnOnce(&mut Pipe) -> T) -> Option<T> {
    PIPE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|p| p.held > 0) {
            *slot = Some(Pipe::new().map_err(|e| tracing::warn!("a pipe for spliced reads: {e}")).ok()?);
        }
        slot.as_mut().map(f)
    })
}

/// `extents` cut into runs of at most `max` bytes each (an extent longer
/// than that is split), in order.
pub fn runs(extents: Vec<Extent>, max: usize) -> Vec<Vec<Extent>> {
    let mut runs: Vec<Vec<Extent>> = vec![Vec::new()];
    let mut filled = 0usize;
    for mut e in extents {
        while e.len > 0 {
            if filled == max {
                runs.push(Vec::new());
                filled = 0;
            }
            let take = (e.len as usize).min(max - filled) as u32;
            let piece = Extent { file: e.file.clone(), offset: e.offset, len: take, buf_offset: e.buf_offset, hold: e.hold.clone() };
            e.offset += u64::from(take);
            e.buf_offset += take as usize;
            e.len -= take;
            filled += take as usize;
            if let Some(run) = runs.last_mut() {
                run.push(piece);
            }
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::Arc;

    #[test]
    fn runs_cut_extents_at_the_limit_and_keep_their_order() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&(0..=255u8).cycle().take(10_000).collect::<Vec<_>>()).unwrap();
        let file = Arc::new(f);
        let e = |offset, len, buf_offset| Extent { file: file.clone(), offset, len, buf_offset, hold: None };
        let cut = runs(vec![e(0, 3000, 0), e(5000, 5000, 3000)], 4096);
        let shape: Vec<Vec<(u64, u32, usize)>> = cut.iter().map(|r| r.iter().map(|x| (x.offset, x.len, x.buf_offset)).collect()).collect();
        assert_eq!(shape, vec![vec![(0, 3000, 0), (5000, 1096, 3000)], vec![(6096, 3904, 4096)]]);
    }

    #[test]
    fn a_filled_pipe_gives_the_files_bytes_in_order_and_a_short_file_fills_nothing() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let file = Arc::new(f);
        let (mut ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let sent = with_pipe(|p| {
            assert!(p.fill(
                b"head",
                &[
                    Extent { file: file.clone(), offset: 10_000, len: 5000, buf_offset: 0, hold: None },
                    Extent { file: file.clone(), offset: 3, len: 7, buf_offset: 5000, hold: None }
                ]
            ));
            let mut moved = 0;
            while p.held() > 0 {
                moved += p.drain_into(ours.as_raw_fd()).unwrap();
            }
            moved
        });
        assert_eq!(sent, Some(5011));
        ours.flush().unwrap();
        let mut got = vec![0u8; 5011];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..5004], &data[10_000..15_000]);
        assert_eq!(&got[5004..], &data[3..10]);
        // Past the file's end: nothing is held, the plain path takes over.
        let filled = with_pipe(|p| (p.fill(b"head", &[Extent { file: file.clone(), offset: 19_000, len: 4000, buf_offset: 0, hold: None }]), p.held()));
        assert_eq!(filled, Some((false, 0)));
        let _ = &mut ours;
    }
}
