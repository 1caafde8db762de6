//! The per-stripe map cache: a proven layout answered natively.
//!
//! A periodic layout is one precomputed period; a lookup is one division and
//! a table read. An aperiodic layout lives in a bounded concurrent cache of
//! blocks of stripes, filled by batched guest calls (from a small pool of
//! guest instances shared by all threads), each block checked against the
//! fingerprint taken when it was proven.

use super::decode::Decoder;
use super::verify::{BLOCK_STRIPES, fingerprint};
use super::{Descriptor, Geometry, Stripe};
use crate::sandbox::{GuestInstance, LoadedComponent, SandboxError};
use parking_lot::{Condvar, Mutex};
use std::collections::hash_map::RandomState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A physical place: a chunk on a leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Place {
    pub leg: u32,
    pub chunk: u64,
}

/// A stripe as the data path sees it: a shape and how far it is advanced.
#[derive(Clone, Debug)]
pub struct StripeView {
    pub shape: Arc<Stripe>,
    /// Chunks added to every slot's chunk.
    pub advance: u64,
}

impl StripeView {
    /// The place of slot `i`.
    pub fn place(&self, i: usize) -> Place {
        let slot = &self.shape.slots[i];
        Place { leg: slot.leg, chunk: slot.chunk + self.advance }
    }
}

/// Why a lookup failed (only aperiodic layouts can fail).
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("stripe {stripe} is beyond the layout's {stripes} stripes")]
    OutOfRange { stripe: u64, stripes: u64 },
    #[error("refilling the map cache: {0}")]
    Guest(#[from] SandboxError),
    #[error("block {block} of stripes differs from what was proven: the guest changed its answer; refusing to use it")]
    Changed { block: u64 },
    #[error("block {block}: {detail}")]
    Malformed { block: u64, detail: String },
}

/// One period, precomputed.
pub struct PeriodicMap {
    base: Vec<Arc<Stripe>>,
    /// Place of data chunk `r * D + k` of the first period.
    data_places: Vec<Place>,
    period: u64,
    period_data_chunks: u64,
    advance: u64,
    stripes: u64,
}

impl PeriodicMap {
    pub fn new(d: &Descriptor, base: Vec<Stripe>) -> Self {
        let mut data_places = Vec::with_capacity(base.len() * d.data_chunks as usize);
        for stripe in &base {
            for k in 0..d.data_chunks {
                let slot = stripe.data_slot(k).map(|i| &stripe.slots[i]);
                // The proof guarantees every data index exists exactly once.
                data_places.push(slot.map_or(Place { leg: 0, chunk: 0 }, |s| Place { leg: s.leg, chunk: s.chunk }));
            }
        }
        let period = base.len() as u64;
        PeriodicMap {
            base: base.into_iter().map(Arc::new).collect(),
            data_places,
            period,
            period_data_chunks: period * u64::from(d.data_chunks),
            advance: d.period_advance,
            stripes: d.stripes,
        }
    }

    /// Where logical data chunk `c` lives (`c` below the layout's data
    /// chunk count).
    #[inline]
    pub fn locate(&self, c: u64) -> Place {
        let q = c / self.period_data_chunks;
        let p = self.data_places[(c - q * self.period_data_chunks) as usize];
        Place { leg: p.leg, chunk: p.chunk + q * self.advance }
    }

    pub fn stripe(&self, s: u64) -> Result<StripeView, MapError> {
        if s >= self.stripes {
            return Err(MapError::OutOfRange { stripe: s, stripes: self.stripes });
        }
        let q = s / self.period;
        Ok(StripeView { shape: self.base[(s - q * self.period) as usize].clone(), advance: q * self.advance })
    }
}

/// Guest instances shared by every thread that refills the cache: at most
/// `limit` ever exist, each holding up to the guest's memory cap (one per
/// worker thread would multiply it: a 240 MiB guest took a daemon serving
/// four NBD connections to 4 GB).
struct InstancePool {
    idle: Mutex<Vec<GuestInstance>>,
    returned: Condvar,
    created: AtomicUsize,
    limit: usize,
}

/// An aperiodic layout behind a bounded cache.
pub struct AperiodicMap {
    pool: InstancePool,
    component: Arc<LoadedComponent>,
    geometry: Geometry,
    descriptor: Descriptor,
    fingerprints: Vec<u64>,
    hasher: RandomState,
    cache: quick_cache::sync::Cache<u64, Arc<[Arc<Stripe>]>>,
    /// Lookups answered by the cache, and those that refilled it from the
    /// guest (a lookup waiting on another's refill of its block is a hit).
    /// quick_cache's own statistics count a refill's miss twice.
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What the map cache of an aperiodic layout did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

impl AperiodicMap {
    /// `cache_blocks` blocks of 256 stripes are kept.
    pub fn new(
        component: Arc<LoadedComponent>,
        geometry: Geometry,
        descriptor: Descriptor,
        fingerprints: Vec<u64>,
        hasher: RandomState,
        cache_blocks: usize,
    ) -> Self {
        let limit = component.sandbox.config().map_instances.max(1);
        AperiodicMap {
            pool: InstancePool { idle: Mutex::new(Vec::new()), returned: Condvar::new(), created: AtomicUsize::new(0), limit },
            component,
            geometry,
            descriptor,
            fingerprints,
            hasher,
            cache: quick_cache::sync::Cache::new(cache_blocks.max(1)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn stripe(&self, s: u64) -> Result<StripeView, MapError> {
        if s >= self.descriptor.stripes {
            return Err(MapError::OutOfRange { stripe: s, stripes: self.descriptor.stripes });
        }
        let block = s / BLOCK_STRIPES;
        let mut missed = false;
        let stripes = self.cache.get_or_insert_with(&block, || {
            missed = true;
            self.fill(block)
        });
        // One relaxed add per lookup, beside a hash lookup under a lock.
        if missed { &self.misses } else { &self.hits }.fetch_add(1, Ordering::Relaxed);
        let stripes = stripes?;
        let shape = stripes[(s - block * BLOCK_STRIPES) as usize].clone();
        Ok(StripeView { shape, advance: 0 })
    }

    pub fn cache_stats(&self) -> CacheStats {
        CacheStats { hits: self.hits.load(Ordering::Relaxed), misses: self.misses.load(Ordering::Relaxed) }
    }

    /// Guest instances created to refill the cache so far (at most the
    /// sandbox's `map_instances`).
    pub fn instances(&self) -> usize {
        self.pool.created.load(Ordering::Acquire)
    }

    pub fn locate(&self, c: u64) -> Result<Place, MapError> {
        let d = u64::from(self.descriptor.data_chunks);
        let view = self.stripe(c / d)?;
        let k = (c % d) as u32;
        let i = view.shape.data_slot(k).ok_or(MapError::Malformed { block: c / d / BLOCK_STRIPES, detail: format!("no data chunk {k}") })?;
        Ok(view.place(i))
    }

    /// Run `f` on an instance of the pool: an idle one, a new one while
    /// fewer than the limit exist, else the next one returned.
    fn with_instance<R>(&self, block: u64, f: impl FnOnce(&mut GuestInstance) -> Result<R, MapError>) -> Result<R, MapError> {
        let pool = &self.pool;
        let mut instance = {
            let mut idle = pool.idle.lock();
            loop {
                if let Some(i) = idle.pop() {
                    break i;
                }
                if pool.created.load(Ordering::Acquire) < pool.limit {
                    pool.created.fetch_add(1, Ordering::AcqRel);
                    drop(idle);
                    let mut fresh = GuestInstance::new(self.component.clone());
                    let configured = fresh.configure(&self.geometry);
                    match configured {
                        Ok(d) if d == self.descriptor => break fresh,
                        other => {
                            pool.created.fetch_sub(1, Ordering::AcqRel);
                            pool.returned.notify_one();
                            return Err(match other {
                                Err(e) => e.into(),
                                Ok(_) => MapError::Changed { block },
                            });
                        }
                    }
                }
                pool.returned.wait(&mut idle);
            }
        };
        let result = f(&mut instance);
        pool.idle.lock().push(instance);
        pool.returned.notify_one();
        result
    }

    /// Fetch one block from a pooled instance and check it against its
    /// fingerprint.
    fn fill(&self, block: u64) -> Result<Arc<[Arc<Stripe>]>, MapError> {
        let first = block * BLOCK_STRIPES;
        let count = BLOCK_STRIPES.min(self.descriptor.stripes - first);
        let words = self.with_instance(block, |instance| Ok(instance.map_stripes(first, count as u32)?))?;
        if self.fingerprints.get(block as usize) != Some(&fingerprint(&self.hasher, &words)) {
            return Err(MapError::Changed { block });
        }
        let stripes = Decoder::default().decode(&self.descriptor, first, count, &words).map_err(|e| MapError::Malformed { block, detail: e.to_string() })?;
        Ok(stripes.into_iter().map(Arc::new).collect())
    }
}
