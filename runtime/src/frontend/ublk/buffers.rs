//! The data buffers of one ublk queue: one mapping cut into a buffer per
//! tag.
//!
//! One mapping, 2 MiB aligned and advised for huge pages, because every
//! request pins its buffer twice in the kernel (the legs' O_DIRECT reads and
//! the user copy to the request): pinning a huge page is one step where
//! 4 KiB pages are 256. The whole mapping is also registered with the
//! queue's io_uring as one fixed buffer when the kernel allows it, so leg
//! reads into it pin nothing at all.

use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

const HUGE_PAGE: usize = 2 << 20;

/// One anonymous mapping, unmapped when the last buffer cut from it goes.
#[derive(Debug)]
pub struct Region {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain memory; which thread may touch which bytes is
// decided by the `TagBuf`s cut from it, each of which owns its range.
unsafe impl Send for Region {}
// SAFETY: as above; `Region` itself hands out no references to its bytes.
unsafe impl Sync for Region {}

impl Region {
    /// The whole mapping, for registering it with io_uring.
    pub fn iovec(&self) -> libc::iovec {
        libc::iovec { iov_base: self.base.as_ptr().cast(), iov_len: self.len }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly the mapping made in `allocate`,
        // and no `TagBuf` (each holds an Arc) can use it any more.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// The buffer of one tag: `len` bytes of a region no other `TagBuf` touches.
/// Ownership moves between the queue thread and a worker with the request.
#[derive(Debug)]
pub struct TagBuf {
    region: Arc<Region>,
    offset: usize,
    len: usize,
}

impl TagBuf {
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `offset + len` lies inside the region (made so in
        // `allocate`), the range belongs to this TagBuf alone, and the Arc
        // keeps the mapping alive; `&self` forbids writes meanwhile.
        unsafe { std::slice::from_raw_parts(self.region.base.as_ptr().add(self.offset), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, with `&mut self` making the access
        // exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.region.base.as_ptr().add(self.offset), self.len) }
    }
}

/// A region of `tags` buffers of `bytes` each (a multiple of 4 KiB), and the
/// buffers cut from it.
pub fn allocate(tags: usize, bytes: usize) -> io::Result<(Arc<Region>, Vec<TagBuf>)> {
    let too_big = || io::Error::new(io::ErrorKind::InvalidInput, format!("{tags} ublk buffers of {bytes} bytes do not fit in memory"));
    let len = tags.checked_mul(bytes).filter(|&n| n > 0).ok_or_else(too_big)?;
    let padded = len.checked_add(HUGE_PAGE).ok_or_else(too_big)?;
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let raw = unsafe { libc::mmap(std::ptr::null_mut(), padded, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
    if raw == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = raw as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE);
    let (head, tail) = (aligned - start, padded - (aligned - start) - len);
    // SAFETY: the head and tail slack lie inside the mapping just made and
    // are not used; unmapping them leaves exactly [aligned, aligned + len).
    unsafe {
        if head > 0 {
            libc::munmap(raw, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
        // Only advice: without huge pages everything works, pinning costs more.
        libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    let base = NonNull::new(aligned as *mut u8).ok_or_else(|| io::Error::other("mmap returned address 0"))?;
    let region = Arc::new(Region { base, len });
    let bufs = (0..tags).map(|i| TagBuf { region: region.clone(), offset: i * bytes, len: bytes }).collect();
    Ok((region, bufs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_disjoint_aligned_and_writable() {
        let (region, mut bufs) = allocate(3, 8192).unwrap();
        assert_eq!(region.iovec().iov_base as usize % HUGE_PAGE, 0);
        assert_eq!(region.iovec().iov_len, 3 * 8192);
        for (i, b) in bufs.iter_mut().enumerate() {
            assert_eq!(b.as_slice().len(), 8192);
            b.as_mut_slice().fill(i as u8 + 1);
        }
        for (i, b) in bufs.iter().enumerate() {
            assert!(b.as_slice().iter().all(|&x| x == i as u8 + 1));
        }
        drop(region);
        // The buffers keep the mapping alive on their own.
        bufs[2].as_mut_slice()[0] = 9;
        assert_eq!(bufs[2].as_slice()[0], 9);
    }

    #[test]
    fn impossible_sizes_are_errors_not_panics() {
        assert!(allocate(usize::MAX, 4096).is_err());
        assert!(allocate(0, 4096).is_err());
    }
}
