//! Per-stripe locks: a fixed table of mutexes hashed by stripe number, so
//! concurrent writes to one stripe never tear its parity while writes to
//! different stripes rarely meet.

use parking_lot::{Mutex, MutexGuard};

pub struct StripeLocks {
    table: Vec<Mutex<()>>,
}

impl StripeLocks {
    pub fn new(slots: usize) -> Self {
        StripeLocks { table: (0..slots.max(1)).map(|_| Mutex::new(())).collect() }
    }

    /// Hold stripe `s` until the guard drops. Callers hold at most one
    /// stripe at a time, so the table cannot deadlock.
    pub fn lock(&self, s: u64) -> MutexGuard<'_, ()> {
        let h = s.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        self.table[(h % self.table.len() as u64) as usize].lock()
    }
}
