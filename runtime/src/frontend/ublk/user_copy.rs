//! `UBLK_F_USER_COPY`: the server moves each request's data itself, with
//! pread/pwrite on `/dev/ublkcN` at a position naming (queue, tag, byte).
//!
//! Without it the kernel copies between the server's buffer and the
//! request when the request is fetched (writes) or committed (reads), on
//! the queue thread, which serializes every byte of a queue on one CPU.
//! With it, any thread may do the copy: a large read is delivered by a
//! worker on another CPU while the queue thread goes on fetching, and the
//! server's buffer can be laid out as the legs want it (a leg's chunks side
//! by side) rather than as the request is.

use libublk::io::UblkDev;
use libublk::sys;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

/// One queue's handle on the device's data: a duplicate of libublk's
/// descriptor for `/dev/ublkcN`, so that workers may hold it.
#[derive(Debug)]
pub struct UserCopy {
    cdev: File,
    qid: u16,
}

impl UserCopy {
    pub fn new(dev: &UblkDev, qid: u16) -> io::Result<UserCopy> {
        // SAFETY: fds[0] is libublk's open /dev/ublkcN, alive for as long as
        // `dev`, which outlives this call; we only duplicate it.
        let fd = unsafe { BorrowedFd::borrow_raw(dev.tgt.fds[0]) };
        let owned: OwnedFd = fd.try_clone_to_owned()?;
        Ok(UserCopy { cdev: File::from(owned), qid })
    }

    /// Over any file, for tests: positions are the same, data lands in it.
    #[cfg(test)]
    pub fn over(cdev: File, qid: u16) -> UserCopy {
        UserCopy { cdev, qid }
    }

    /// The file position of byte `offset` of request `tag`'s data.
    fn pos(&self, tag: u16, offset: usize) -> io::Result<u64> {
        let offset = u64::try_from(offset)
            .ok()
            .filter(|&o| o <= u64::from(sys::UBLK_IO_BUF_BITS_MASK))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("offset {offset} is beyond a ublk request's largest buffer")))?;
        Ok(u64::from(sys::UBLKSRV_IO_BUF_OFFSET) | (u64::from(self.qid) << sys::UBLK_QID_OFF) | (u64::from(tag) << sys::UBLK_TAG_OFF) | offset)
    }

    /// Read a write request's data into `buf`.
    pub fn fetch(&self, tag: u16, buf: &mut [u8]) -> io::Result<()> {
        self.fetch_at(tag, 0, buf)
    }

    /// Read part of a write request's data, from its byte `from`, into `buf`.
    pub fn fetch_at(&self, tag: u16, from: usize, buf: &mut [u8]) -> io::Result<()> {
        self.cdev.read_exact_at(buf, self.pos(tag, from)?)
    }

    /// Deliver part of a read request's data: `pieces`, one after another,
    /// from byte `start` of the request. `pieces` is used up on the way.
    pub fn deliver(&self, tag: u16, start: usize, mut pieces: &mut [IoSlice<'_>]) -> io::Result<()> {
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        let mut done = 0usize;
        // pwritev may stop short (or take at most IOV_MAX pieces); go on
        // from where it stopped.
        while done < total {
            let rest = &pieces[..pieces.len().min(1024)];
            let at = start.checked_add(done).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            let at = i64::try_from(self.pos(tag, at)?).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            // SAFETY: `rest` is a valid array of IoSlices (iovec-compatible)
            // whose memory is borrowed for the duration of the call.
            let n = unsafe { libc::pwritev(self.cdev.as_raw_fd(), rest.as_ptr().cast(), rest.len() as i32, at) };
            match n {
                n if n > 0 && done + n as usize <= total => {
                    done += n as usize;
                    IoSlice::advance_slices(&mut pieces, n as usize);
                }
                n if n > 0 => return Err(io::Error::other("ublk took more data than it was given")),
                0 => return Err(io::Error::new(io::ErrorKind::WriteZero, "ublk took no data")),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
}
