//! Buffers the write and decode paths reuse per thread (parity outputs, old
//! values, decode sources, gathered stripes) instead of allocating and
//! zeroing them per request. Each starts on a 4 KiB boundary, so an
//! O_DIRECT leg reads into it or writes from it as it is (see
//! `device::ring`).
//!
//! A buffer goes back to the pool of the thread that drops it. The pool
//! keeps buffers by size class (powers of two), so a 4 KiB write never
//! takes the buffer a stripe-sized group needs next (and grows it, zeroing
//! the new part), and it keeps enough for a queue's requests in flight: a
//! small parity write holds three buffers while its leg I/O is out, 64
//! requests at a queue's depth. A pool of 32 buffers (before 2026-12-07)
//! dropped most of them and allocated them again, zeroed: the zeroing
//! alone was 5.7% of the ublk queue thread's time under 4k random writes
//! (perf in the VM bed).

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

const ALIGN: usize = 4096;

/// What one thread keeps: at most this many bytes (a burst of large
/// requests on one of the pool's many workers does not pin its memory for
/// good), and no buffer larger than `MAX_KEPT`.
const KEEP_BYTES: usize = 16 << 20;
const MAX_KEPT: usize = 4 << 20;

/// Size classes: class `c` holds buffers of `1 << c` bytes.
const CLASSES: usize = usize::BITS as usize;

/// `len` bytes of unspecified contents at a 4 KiB-aligned address.
pub struct Scratch {
    mem: Vec<u8>,
    start: usize,
    len: usize,
}

impl Deref for Scratch {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.start + self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let mem = std::mem::take(&mut self.mem);
        // During the thread's own exit its pool may be gone: then the
        // buffer is simply freed.
        let _ = POOL.try_with(|pool| pool.borrow_mut().keep(mem));
    }
}

#[derive(Default)]
struct Pool {
    classes: Vec<Vec<Vec<u8>>>,
    bytes: usize,
}

impl Pool {
    /// A buffer of at least `bytes`, from the smallest class that has one.
    fn reuse(&mut self, bytes: usize) -> Option<Vec<u8>> {
        let first = class_holding(bytes);
        let mem = self.classes.iter_mut().skip(first).find_map(Vec::pop)?;
        self.bytes -= mem.len();
        Some(mem)
    }

    fn keep(&mut self, mem: Vec<u8>) {
        let size = mem.len();
        if size == 0 || size > MAX_KEPT || self.bytes + size > KEEP_BYTES {
            return;
        }
        if self.classes.is_empty() {
            self.classes.resize_with(CLASSES, Vec::new);
        }
        // The class a buffer serves: every request it is at least as large as.
        self.classes[size.ilog2() as usize].push(mem);
        self.bytes += size;
    }
}

/// The smallest class whose buffers all hold `bytes`.
fn class_holding(bytes: usize) -> usize {
    bytes.next_power_of_two().trailing_zeros() as usize
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::default();
}

/// `n` buffers of `len` bytes (every user overwrites them whole).
pub fn take(n: usize, len: usize) -> Vec<Scratch> {
    let bytes = len + ALIGN - 1;
    (0..n)
        .map(|_| {
            let reused = POOL.try_with(|pool| pool.borrow_mut().reuse(bytes)).ok().flatten();
            // A new buffer is the whole class's size, so it serves any
            // request of that class when it comes back.
            let mem = reused.unwrap_or_else(|| vec![0u8; 1 << class_holding(bytes)]);
            // Within the first ALIGN bytes, because mem holds ALIGN - 1 spare.
            let start = mem.as_ptr().align_offset(ALIGN).min(ALIGN - 1);
            Scratch { mem, start, len }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_the_length_asked_for_even_when_reused() {
        for len in [4096, 512, 65536, 100, 4096, 192 << 10] {
            let bufs = take(3, len);
            assert!(bufs.iter().all(|b| b.len() == len && (b.as_ptr() as usize).is_multiple_of(ALIGN)));
        }
    }

    #[test]
    fn dropped_buffers_are_reused_by_size_and_the_pool_is_bounded() {
        let addresses = |bufs: &[Scratch]| bufs.iter().map(|b| b.as_ptr() as usize).collect::<Vec<_>>();
        std::thread::spawn(move || {
            // A queue's worth of small buffers comes back and is taken again.
            let small = take(192, 4096);
            let before = addresses(&small);
            drop(small);
            let again = take(192, 4096);
            let (mut a, mut b) = (before.clone(), addresses(&again));
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "every small buffer was reused");
            drop(again);
            // A large request does not take (and grow) a small buffer.
            let large = take(1, 192 << 10);
            assert!(!before.contains(&(large[0].as_ptr() as usize)));
            drop(large);
            // Far more than the pool keeps: the pool stays within its bound.
            drop(take(64, 1 << 20));
            POOL.with(|pool| assert!(pool.borrow().bytes <= KEEP_BYTES));
        })
        .join()
        .map_err(|_| "the test thread panicked")
        .unwrap();
    }
}
