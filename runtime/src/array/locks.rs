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

    /// Hold stripe `s` until the guard drops. A caller holding one stripe
    /// this way never waits for another, and `lock_all` takes its stripes
    /// in the table's order, so the table cannot deadlock.
    pub fn lock(&self, s: u64) -> MutexGuard<'_, ()> {
        self.table[self.slot(s)].lock()
    }

    /// `lock` if no one holds stripe `s` (or another stripe of its table
    /// entry): for callers that must never block (the ublk queue thread).
    pub fn try_lock(&self, s: u64) -> Option<MutexGuard<'_, ()>> {
        self.table[self.slot(s)].try_lock()
    }

    /// Hold every stripe of `stripes` (their table entries taken once
    /// each, in ascending order).
    pub fn lock_all(&self, stripes: std::ops::Range<u64>) -> Vec<MutexGuard<'_, ()>> {
        let mut slots: Vec<usize> = stripes.map(|s| self.slot(s)).collect();
        slots.sort_unstable();
        slots.dedup();
        slots.into_iter().map(|i| self.table[i].lock()).collect()
    }

    fn slot(&self, s: u64) -> usize {
        let h = s.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        (h % self.table.len() as u64) as usize
    }
}
