//! A leg of an array: its device, data offset, health and counters.

use crate::device::BlockDevice;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// dm-raid's health characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Health {
    /// `A`: alive and in sync.
    Alive,
    /// `a`: alive, not in sync (being rebuilt).
    Recovering,
    /// `D`: dead (failed).
    Dead,
}

impl Health {
    pub fn char(self) -> char {
        match self {
            Health::Alive => 'A',
            Health::Recovering => 'a',
            Health::Dead => 'D',
        }
    }

    fn from_u8(v: u8) -> Health {
        match v {
            0 => Health::Alive,
            1 => Health::Recovering,
            _ => Health::Dead,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Health::Alive => 0,
            Health::Recovering => 1,
            Health::Dead => 2,
        }
    }
}

pub struct ArrayLeg {
    pub device: Arc<dyn BlockDevice>,
    /// Bytes skipped at the start of the leg (md's data offset).
    pub offset: u64,
    health: AtomicU8,
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub errors: AtomicU64,
    last_error: parking_lot::Mutex<Option<String>>,
}

impl ArrayLeg {
    pub fn new(device: Arc<dyn BlockDevice>, offset: u64) -> Self {
        ArrayLeg {
            device,
            offset,
            health: AtomicU8::new(Health::Alive.as_u8()),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: parking_lot::Mutex::new(None),
        }
    }

    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Acquire))
    }

    pub fn is_alive(&self) -> bool {
        self.health() == Health::Alive
    }

    /// Mark the leg dead; true if it was not dead already.
    pub fn fail(&self, why: impl Into<String>) -> bool {
        *self.last_error.lock() = Some(why.into());
        self.health.swap(Health::Dead.as_u8(), Ordering::AcqRel) != Health::Dead.as_u8()
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    pub fn set_health(&self, h: Health) {
        self.health.store(h.as_u8(), Ordering::Release);
    }
}
