//! Chunk-sized buffers the write and decode paths reuse per thread
//! (parity outputs, old values, decode sources) instead of allocating and
//! zeroing them per stripe. Each starts on a 4 KiB boundary, so an O_DIRECT
//! leg reads into it or writes from it as it is (see `device::ring`).

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

const ALIGN: usize = 4096;

/// `len` bytes of unspecified contents at a 4 KiB-aligned address.
pub struct Scratch {
    mem: Vec<u8>,
    start: usize,
    len: usize,
}

impl Scratch {
    fn fit(mut mem: Vec<u8>, len: usize) -> Scratch {
        if mem.len() < len + ALIGN - 1 {
            mem.resize(len + ALIGN - 1, 0);
        }
        // Within the first ALIGN bytes, because mem holds ALIGN - 1 spare.
        let start = mem.as_ptr().align_offset(ALIGN).min(ALIGN - 1);
        Scratch { mem, start, len }
    }
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

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// `n` buffers of `len` bytes (every user overwrites them whole).
pub fn take(n: usize, len: usize) -> Vec<Scratch> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        (0..n).map(|_| Scratch::fit(pool.pop().unwrap_or_default(), len)).collect()
    })
}

pub fn give_back(buffers: Vec<Scratch>) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        for b in buffers {
            if pool.len() < 32 {
                pool.push(b.mem);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn buffers_are_aligned_and_the_length_asked_for_even_when_reused() {
        for len in [4096, 512, 65536, 100] {
            let bufs = super::take(3, len);
            assert!(bufs.iter().all(|b| b.len() == len && b.as_ptr() as usize % super::ALIGN == 0));
            super::give_back(bufs);
        }
    }
}
