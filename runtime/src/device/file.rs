//! A leg that is a file or a block device, with positioned I/O.
//!
//! Requests are served synchronously on the caller's thread (the frontends
//! run them on a thread pool; see `benches/legio.rs` for why a pool and not
//! io_uring). FUA writes use `pwritev2(RWF_DSYNC)`; discard punches holes;
//! write-zeroes uses `FALLOC_FL_ZERO_RANGE` (or writes zeroes where the file
//! system cannot). With `direct`, the file is opened `O_DIRECT` and requests
//! are bounced through aligned buffers when the caller's are not aligned.

use super::{BlockDevice, check_range, io_error};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// O_DIRECT alignment used for bounce buffers.
const DIRECT_ALIGN: usize = 4096;

pub struct FileLeg {
    file: Arc<File>,
    /// Serializes unaligned writes to an O_DIRECT leg (see `write_at`).
    unaligned: parking_lot::Mutex<()>,
    path: PathBuf,
    size: u64,
    direct: bool,
    /// The last data run block status found, [start, end): SEEK_HOLE walks
    /// every page of a run (on tmpfs, to the end of a full file), so a
    /// run is looked up once, not once per chunk. Only data is kept: a
    /// write cannot make it wrong, and a discard since leaves it reporting
    /// data for a hole, which block status allows.
    known_data: parking_lot::Mutex<(u64, u64)>,
}

/// Options for opening a leg.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenFlags {
    pub direct: bool,
    pub read_only: bool,
    /// For legs that are NBD URIs.
    pub nbd: super::nbd::NbdOptions,
}

impl FileLeg {
    /// Open an existing file or block device.
    pub fn open(path: &Path, flags: OpenFlags) -> io::Result<FileLeg> {
        let mut options = OpenOptions::new();
        options.read(true).write(!flags.read_only);
        if flags.direct {
            options.custom_flags(libc::O_DIRECT);
        }
        let file = options.open(path).map_err(|e| io::Error::new(e.kind(), format!("cannot open leg {}: {e}", path.display())))?;
        let size = device_size(&file).map_err(|e| io::Error::new(e.kind(), format!("cannot size leg {}: {e}", path.display())))?;
        Ok(FileLeg {
            file: Arc::new(file),
            unaligned: parking_lot::Mutex::new(()),
            path: path.to_path_buf(),
            size,
            direct: flags.direct,
            known_data: parking_lot::Mutex::new((0, 0)),
        })
    }

    /// Create (or extend) a sparse file of `size` bytes and open it.
    pub fn create(path: &Path, size: u64) -> io::Result<FileLeg> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        if file.metadata()?.len() < size {
            file.set_len(size)?;
        }
        drop(file);
        FileLeg::open(path, OpenFlags::default())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn aligned(&self, ptr: *const u8, len: usize, offset: u64) -> bool {
        !self.direct || (ptr as usize % DIRECT_ALIGN == 0 && len % 512 == 0 && offset % 512 == 0)
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        // SAFETY: fallocate on an fd we own, with plain integer arguments.
        let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, offset as libc::off_t, len as libc::off_t) };
        if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    fn write_zero_buffer(&self, offset: u64, len: u64, fua: bool) -> io::Result<()> {
        let block = vec![0u8; (1 << 20).min(len as usize)];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(block.len() as u64) as usize;
            self.write_at(&block[..n], offset + done, fua)?;
            done += n as u64;
        }
        Ok(())
    }
}

/// The O_DIRECT-aligned file range around `len` bytes at `offset`.
fn widen(offset: u64, len: usize) -> (u64, u64) {
    let a = DIRECT_ALIGN as u64;
    (offset / a * a, (offset + len as u64).div_ceil(a) * a)
}

/// Read into `buf` from `offset` until it is full or the file ends.
fn read_upto(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A buffer aligned for O_DIRECT.
struct Bounce {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl Bounce {
    fn new(len: usize) -> Bounce {
        let storage = vec![0u8; len + DIRECT_ALIGN];
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
        Bounce { storage, start, len }
    }
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

fn device_size(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::FileTypeExt;
    let meta = file.metadata()?;
    if meta.file_type().is_block_device() {
        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer we pass.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(size)
    } else {
        Ok(meta.len())
    }
}

/// `_IOR(0x12, 114, size_t)`
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

impl BlockDevice for FileLeg {
    fn size(&self) -> u64 {
        self.size
    }

    /// fallocate (zero range, else punch a hole): taken as fast on any file
    /// or block device; where the file system refuses both, the zeroes are
    /// written, and FAST_ZERO's promise is broken only by the time it takes.
    fn zeroes_fast(&self, _offset: u64, _len: u64) -> bool {
        true
    }

    /// O_DIRECT needs the storage's logical blocks (a block device says
    /// which, BLKSSZGET; a file's device is taken as 512); buffered I/O
    /// takes any size.
    fn block_sizes(&self) -> super::BlockSizes {
        if !self.direct {
            return super::BlockSizes::default();
        }
        let mut sector: libc::c_int = 512;
        if self.file.metadata().is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type())) {
            // SAFETY: BLKSSZGET writes one int through the pointer, which
            // points at `sector`; the descriptor is this leg's open device.
            let r = unsafe { libc::ioctl(self.file.as_raw_fd(), libc::BLKSSZGET, &mut sector as *mut libc::c_int) };
            if r != 0 {
                sector = 512;
            }
        }
        super::BlockSizes::normalized(sector.max(1) as u64, 4096)
    }

    /// Holes from the file system (SEEK_DATA / SEEK_HOLE): a punched or
    /// never-written range reads as zeroes without touching storage. A
    /// block device, or a file system without the calls, says data.
    fn block_status(&self, offset: u64, len: u64, out: &mut Vec<super::status::StatusExtent>) -> io::Result<()> {
        use super::status::{HOLE, StatusExtent, ZERO, push};
        use std::os::fd::AsRawFd;
        super::check_range(self, offset, len)?;
        let fd = self.file.as_raw_fd();
        let end = offset + len;
        let mut at = offset;
        while at < end {
            let (known_start, known_end) = *self.known_data.lock();
            if known_start <= at && at < known_end {
                let upto = known_end.min(end);
                push(out, StatusExtent { len: upto - at, allocation: 0, health: 0 });
                at = upto;
                continue;
            }
            // SAFETY: lseek on a descriptor this leg owns (kept open by
            // `self.file`); it moves only this descriptor's offset, which
            // no I/O here uses (all of it is pread/pwrite).
            let data = unsafe { libc::lseek(fd, at as libc::off_t, libc::SEEK_DATA) };
            let data = if data < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    // No data from `at` to the end of the file: a hole.
                    Some(libc::ENXIO) => end,
                    _ => {
                        push(out, StatusExtent { len: end - at, allocation: 0, health: 0 });
                        return Ok(());
                    }
                }
            } else {
                (data as u64).min(end)
            };
            push(out, StatusExtent { len: data - at, allocation: HOLE | ZERO, health: 0 });
            if data >= end {
                break;
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
            if hole > data as i64 {
                *self.known_data.lock() = (data, hole as u64);
            }
            let hole = if hole < 0 { end } else { (hole as u64).min(end) };
            push(out, StatusExtent { len: hole - data, allocation: 0, health: 0 });
            at = hole;
        }
        Ok(())
    }

    fn read_extents(&self, offset: u64, len: u64, buf_offset: usize, out: &mut Vec<super::Extent>) -> bool {
        // The caller's buffer is page-aligned (ublk's); O_DIRECT also needs
        // the file range aligned.
        let aligned = !self.direct || (offset % DIRECT_ALIGN as u64 == 0 && len % DIRECT_ALIGN as u64 == 0 && buf_offset % DIRECT_ALIGN == 0);
        let Ok(n) = u32::try_from(len) else { return false };
        if !aligned || check_range(self, offset, len).is_err() {
            return false;
        }
        out.push(super::Extent { file: self.file.clone(), offset, len: n, buf_offset, hold: None });
        true
    }

    fn stage_write(&self, offset: u64, len: u64, fua: bool) -> Option<Box<dyn super::staged::StagedWrite + '_>> {
        check_range(self, offset, len).ok()?;
        Some(Box::new(OneWrite { leg: self, offset, fua, sent: None }))
    }

    fn direct_file(&self, offset: u64, buf: *const u8, len: usize) -> Option<(Arc<File>, u64)> {
        (self.aligned(buf, len, offset) && check_range(self, offset, len as u64).is_ok()).then(|| (self.file.clone(), offset))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self, offset, buf.len() as u64)?;
        let result = if self.aligned(buf.as_ptr(), buf.len(), offset) {
            self.file.read_exact_at(buf, offset)
        } else {
            // O_DIRECT wants the file range aligned too: read the aligned
            // blocks around the request and copy the part asked for.
            let (start, end) = widen(offset, buf.len());
            let mut bounce = Bounce::new((end - start) as usize);
            let skip = (offset - start) as usize;
            read_upto(&self.file, bounce.as_mut(), start).and_then(|got| {
                if got < skip + buf.len() {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                buf.copy_from_slice(&bounce.as_mut()[skip..skip + buf.len()]);
                Ok(())
            })
        };
        result.map_err(|e| io_error(&self.describe(), "read", offset, buf.len() as u64, e))
    }

    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        check_range(self, offset, buf.len() as u64)?;
        let mut bounce;
        let mut at = offset;
        // Unaligned O_DIRECT writes read-modify-write whole blocks; two of
        // them sharing a block must not interleave.
        let _serial;
        let data = if self.aligned(buf.as_ptr(), buf.len(), offset) {
            buf
        } else if !self.direct {
            bounce = Bounce::new(buf.len());
            bounce.as_mut().copy_from_slice(buf);
            &*bounce.as_mut()
        } else {
            _serial = self.unaligned.lock();
            let (start, end) = widen(offset, buf.len());
            bounce = Bounce::new((end - start) as usize);
            read_upto(&self.file, bounce.as_mut(), start)
                .map_err(|e| io_error(&self.describe(), "write (reading the blocks around it)", offset, buf.len() as u64, e))?;
            let skip = (offset - start) as usize;
            bounce.as_mut()[skip..skip + buf.len()].copy_from_slice(buf);
            at = start;
            &*bounce.as_mut()
        };
        let result = if fua { pwrite_dsync(&self.file, data, at) } else { self.file.write_all_at(data, at) };
        result.map_err(|e| io_error(&self.describe(), "write", offset, buf.len() as u64, e))
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data().map_err(|e| io::Error::new(e.kind(), format!("{}: flush: {e}", self.describe())))
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self, offset, len)?;
        match self.fallocate(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, offset, len) {
            Ok(()) => Ok(()),
            // A hint: a leg that cannot punch holes keeps its data.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
            Err(e) => Err(io_error(&self.describe(), "discard", offset, len, e)),
        }
    }

    fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> io::Result<()> {
        check_range(self, offset, len)?;
        let zeroed = self
            .fallocate(libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE, offset, len)
            .or_else(|_| self.fallocate(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, offset, len));
        match zeroed {
            Ok(()) if fua => self.flush(),
            Ok(()) => Ok(()),
            Err(_) => self.write_zero_buffer(offset, len, fua),
        }
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// pwritev2 with RWF_DSYNC: this write alone is durable on return.
fn pwrite_dsync(file: &File, mut data: &[u8], mut offset: u64) -> io::Result<()> {
    while !data.is_empty() {
        let iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
        // SAFETY: one iovec describing `data`, which outlives the call.
        let n = unsafe { libc::pwritev2(file.as_raw_fd(), &iov, 1, offset as libc::off_t, libc::RWF_DSYNC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if e.raw_os_error() == Some(libc::EOPNOTSUPP) || e.raw_os_error() == Some(libc::ENOSYS) {
                file.write_all_at(data, offset)?;
                return file.sync_data();
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "pwritev2 wrote nothing"));
        }
        data = &data[n as usize..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaligned_requests_on_an_o_direct_leg_read_and_write_exactly_their_bytes() {
        // O_DIRECT needs a real file system (tmpfs refuses it): use the target dir.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("leg");
        FileLeg::create(&path, 1 << 20).unwrap();
        let leg = match FileLeg::open(&path, OpenFlags { direct: true, ..Default::default() }) {
            Ok(l) => l,
            Err(e) => panic!("O_DIRECT open failed on {}: {e}", path.display()),
        };
        let all: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        leg.write_at(&all, 0, false).unwrap();
        let mut got = vec![0u8; 30375];
        leg.read_at(&mut got, 16384 + 7).unwrap();
        assert_eq!(got, &all[16391..16391 + 30375]);
        let patch = vec![0xEEu8; 1000];
        leg.write_at(&patch, 4095, true).unwrap();
        let mut back = vec![0u8; 8192];
        leg.read_at(&mut back, 0).unwrap();
        assert_eq!(&back[..4095], &all[..4095], "bytes before the write are untouched");
        assert_eq!(&back[4095..5095], &patch[..]);
        assert_eq!(&back[5095..], &all[5095..8192], "bytes after the write are untouched");
        // The very end of the leg, unaligned.
        let mut tail = vec![0u8; 100];
        leg.read_at(&mut tail, (1 << 20) - 100).unwrap();
        assert_eq!(tail, &all[(1 << 20) - 100..]);
    }

    #[test]
    fn read_write_zero_discard_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let leg = FileLeg::create(&dir.path().join("leg"), 1 << 20).unwrap();
        assert_eq!(leg.size(), 1 << 20);
        leg.write_at(&[7u8; 8192], 4096, false).unwrap();
        leg.write_at(&[9u8; 100], 100, true).unwrap();
        let mut buf = vec![0u8; 8192];
        leg.read_at(&mut buf, 4096).unwrap();
        assert!(buf.iter().all(|&b| b == 7));
        leg.write_zeroes(4096, 4096, false).unwrap();
        leg.read_at(&mut buf, 4096).unwrap();
        assert!(buf[..4096].iter().all(|&b| b == 0) && buf[4096..].iter().all(|&b| b == 7));
        leg.discard(0, 1 << 20).unwrap();
        leg.flush().unwrap();
        let e = leg.read_at(&mut buf, (1 << 20) - 100).unwrap_err();
        assert!(e.to_string().contains("beyond the end"), "{e}");
    }
}

/// A file leg's staged write: one write, or the plain way when the data is
/// not aligned as O_DIRECT needs.
struct OneWrite<'a> {
    leg: &'a FileLeg,
    offset: u64,
    fua: bool,
    /// The length sent, once sent.
    sent: Option<u32>,
}

impl super::staged::StagedWrite for OneWrite<'_> {
    fn advance(&mut self, data: &[u8], results: &[i32]) -> super::staged::Step {
        use super::staged::{FileIo, Step};
        if let Some(len) = self.sent {
            return if results.len() == 1 && i64::from(results[0]) == i64::from(len) { Step::Done } else { Step::Abandon };
        }
        let Ok(len) = u32::try_from(data.len()) else { return Step::Abandon };
        if !self.leg.aligned(data.as_ptr(), data.len(), self.offset) {
            return Step::Abandon;
        }
        self.sent = Some(len);
        Step::Io(vec![FileIo { file: self.leg.file.clone(), offset: self.offset, buf: data.as_ptr().cast_mut(), len, write: true, dsync: self.fua }])
    }
}
