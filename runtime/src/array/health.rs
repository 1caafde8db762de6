//! A leg of an array: its device (and a replacement being rebuilt), data
//! offset, health, identity and counters.

use crate::device::BlockDevice;
use parking_lot::{Mutex, RwLock};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

/// dm-raid's health characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Health {
    /// `A`: alive and in sync.
    Alive,
    /// `a`: alive, not in sync (being rebuilt): written, not read.
    Recovering,
    /// `D`: dead (failed or missing).
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
    device: RwLock<Arc<dyn BlockDevice>>,
    /// A device being rebuilt to take this leg's place (`leg replace`).
    replacement: RwLock<Option<Arc<dyn BlockDevice>>>,
    /// Bytes skipped at the start of the leg (metadata, or md's data offset).
    pub offset: u64,
    health: AtomicU8,
    /// This leg's uuid (zero without metadata).
    pub uuid: Mutex<[u8; 16]>,
    /// The uuid the replacement takes when it finishes.
    pub replacement_uuid: Mutex<[u8; 16]>,
    /// Requests in flight on this leg (least-outstanding-I/O reads).
    pub inflight: AtomicU32,
    /// Where the last request on this leg ended (nearest-position reads).
    pub last_position: AtomicU64,
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub errors: AtomicU64,
    /// How long this leg's I/Os took, where the array waited for them
    /// itself (`latency.rs`).
    pub latency: crate::latency::IoLatency,
    last_error: Mutex<Option<String>>,
    /// Failed because its network link was lost (not by the operator, not
    /// by a media error): re-added by itself when the link returns.
    pub lost_link: std::sync::atomic::AtomicBool,
    /// Recent read latency, nanoseconds (exponentially weighted, 1/8).
    pub read_latency_ns: AtomicU64,
    /// While recovering: stripes below this hold what the array holds
    /// (checkpointed in the superblocks).
    pub recovery_offset: AtomicU64,
    /// The recovery rebuilds only the bitmap's regions.
    pub recovery_bitmap_only: std::sync::atomic::AtomicBool,
    /// Stripes below this are rebuilt on the replacement.
    pub replacement_offset: AtomicU64,
    /// The array stopped uncleanly while this leg (or its replacement)
    /// was being rebuilt: regions below the checkpoint that the crash may
    /// have torn are rebuilt again, or the copy reads come from would
    /// change once the rebuild ends.
    pub redo_torn_below_checkpoint: std::sync::atomic::AtomicBool,
}

impl ArrayLeg {
    pub fn new(device: Arc<dyn BlockDevice>, offset: u64) -> Self {
        ArrayLeg {
            device: RwLock::new(device),
            replacement: RwLock::new(None),
            offset,
            health: AtomicU8::new(Health::Alive.as_u8()),
            uuid: Mutex::new([0; 16]),
            replacement_uuid: Mutex::new([0; 16]),
            inflight: AtomicU32::new(0),
            last_position: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Default::default(),
            last_error: Mutex::new(None),
            lost_link: std::sync::atomic::AtomicBool::new(false),
            read_latency_ns: AtomicU64::new(0),
            recovery_offset: AtomicU64::new(0),
            recovery_bitmap_only: std::sync::atomic::AtomicBool::new(false),
            replacement_offset: AtomicU64::new(0),
            redo_torn_below_checkpoint: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn device(&self) -> Arc<dyn BlockDevice> {
        self.device.read().clone()
    }

    pub fn set_device(&self, device: Arc<dyn BlockDevice>) {
        *self.device.write() = device;
    }

    pub fn replacement(&self) -> Option<Arc<dyn BlockDevice>> {
        self.replacement.read().clone()
    }

    pub fn set_replacement(&self, device: Option<Arc<dyn BlockDevice>>) {
        *self.replacement.write() = device;
    }

    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Acquire))
    }

    /// Readable: alive and in sync.
    pub fn is_alive(&self) -> bool {
        self.health() == Health::Alive
    }

    /// Writable: alive, or being rebuilt.
    pub fn is_writable(&self) -> bool {
        self.health() != Health::Dead
    }

    /// Mark the leg dead; true if it was not dead already.
    pub fn fail(&self, why: impl Into<String>) -> bool {
        *self.last_error.lock() = Some(why.into());
        self.health.swap(Health::Dead.as_u8(), Ordering::AcqRel) != Health::Dead.as_u8()
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// Fold one read's duration into the leg's recent latency (the
    /// nearest read policy's) and its latency histogram.
    pub fn record_read_latency(&self, took: std::time::Duration) {
        self.latency.read.record(took);
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX / 2);
        let old = self.read_latency_ns.load(Ordering::Relaxed);
        self.read_latency_ns.store(if old == 0 { sample } else { old - old / 8 + sample / 8 }, Ordering::Relaxed);
    }

    pub fn set_health(&self, h: Health) {
        self.health.store(h.as_u8(), Ordering::Release);
    }

    /// Start rebuilding this leg from stripe `offset`.
    pub fn start_recovery(&self, offset: u64, bitmap_only: bool) {
        self.recovery_offset.store(offset, Ordering::Release);
        self.recovery_bitmap_only.store(bitmap_only, Ordering::Release);
        self.set_health(Health::Recovering);
    }

    /// Where this leg's rebuild stands, for the superblock.
    pub fn recovery(&self) -> Option<crate::meta::superblock::Recovery> {
        (self.health() == Health::Recovering).then(|| crate::meta::superblock::Recovery {
            offset: self.recovery_offset.load(Ordering::Acquire),
            bitmap_only: self.recovery_bitmap_only.load(Ordering::Acquire),
        })
    }
}
