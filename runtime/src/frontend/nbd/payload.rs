//! A write's payload, in a buffer each worker thread keeps for its next
//! one: a fresh 1 MiB buffer is zeroed before the socket overwrites it,
//! and that memset cost a write as much as one of its copies.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Buffers larger than this are not kept (a worker would hold them while
/// idle, and workers are many).
const KEPT_MAX: usize = 4 << 20;

thread_local! {
    static SPARE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `len` bytes to be filled by the caller (their old contents are another
/// payload's, never read: the request is dropped unless all of it arrives).
pub struct Payload {
    buf: Vec<u8>,
    len: usize,
}

impl Payload {
    pub fn new(len: usize) -> Payload {
        // A spare too small stays for the smaller payloads to come.
        let spare = SPARE.with(|s| {
            let mut s = s.borrow_mut();
            (s.len() >= len).then(|| std::mem::take(&mut *s))
        });
        Payload { buf: spare.unwrap_or_else(|| vec![0; len]), len }
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl DerefMut for Payload {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        if self.buf.len() <= KEPT_MAX {
            let buf = std::mem::take(&mut self.buf);
            // A thread being torn down has no spare left to fill.
            let _ = SPARE.try_with(|s| {
                let mut spare = s.borrow_mut();
                if spare.len() < buf.len() {
                    *spare = buf;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_its_length_and_its_buffer_serves_the_next() {
        let mut p = Payload::new(1000);
        assert_eq!(p.len(), 1000);
        p.fill(7);
        let at = p.as_ptr();
        drop(p);
        let q = Payload::new(10);
        assert_eq!((q.len(), q.as_ptr()), (10, at), "the same buffer, cut to the new length");
        drop(q);
        let big = Payload::new(KEPT_MAX + 1);
        drop(big);
        assert_eq!(Payload::new(1).as_ptr(), at, "a buffer over the limit is not kept");
    }
}
