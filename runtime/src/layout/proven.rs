//! From a loaded component to a proven, cached layout.

use super::map::{AperiodicMap, MapError, PeriodicMap, Place, StripeView};
use super::verify::{self, ProofError, ProofReport, Proven};
use super::{Descriptor, Geometry};
use crate::sandbox::{GuestInstance, LoadedComponent, SandboxError};
use std::collections::hash_map::RandomState;
use std::sync::Arc;

/// Blocks of 256 stripes an aperiodic layout keeps decoded (1M stripes).
pub const DEFAULT_CACHE_BLOCKS: usize = 4096;

/// Why a component cannot be used as a layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("layout refused: {0}")]
    Proof(#[from] ProofError),
}

/// How the data path finds stripes.
pub enum LayoutMap {
    Periodic(PeriodicMap),
    Aperiodic(AperiodicMap),
}

/// A layout that passed the proof, with its map cache.
pub struct ProvenLayout {
    pub name: String,
    /// sha256 of the component, hex.
    pub component_hash: String,
    pub geometry: Geometry,
    pub descriptor: Descriptor,
    pub report: ProofReport,
    pub map: LayoutMap,
    /// The component's guest calls (`LoadedComponent::calls`), kept here
    /// because a periodic layout keeps no component once proven.
    pub guest_calls: Arc<std::sync::atomic::AtomicU64>,
}

impl ProvenLayout {
    /// Configure `component` for `geometry`, prove it, build its map.
    pub fn prove(component: Arc<LoadedComponent>, geometry: Geometry) -> Result<ProvenLayout, LayoutError> {
        let mut instance = GuestInstance::new(component.clone());
        let name = instance.name()?;
        let descriptor = instance.configure(&geometry)?;
        let hasher = RandomState::new();
        let (proven, report) = verify::prove_within(&mut instance, &geometry, &descriptor, &hasher, component.sandbox.config().proof_timeout)?;
        let map = match proven {
            Proven::Periodic { base } => LayoutMap::Periodic(PeriodicMap::new(&descriptor, base)),
            Proven::Aperiodic { fingerprints } => {
                LayoutMap::Aperiodic(AperiodicMap::new(component.clone(), geometry.clone(), descriptor, fingerprints, hasher, DEFAULT_CACHE_BLOCKS))
            }
        };
        Ok(ProvenLayout { name, component_hash: component.hash(), geometry, descriptor, report, map, guest_calls: component.calls.clone() })
    }

    /// Where logical data chunk `c` lives.
    #[inline]
    pub fn locate(&self, c: u64) -> Result<Place, MapError> {
        match &self.map {
            LayoutMap::Periodic(m) => Ok(m.locate(c)),
            LayoutMap::Aperiodic(m) => m.locate(c),
        }
    }

    /// Stripe `s` with its places.
    pub fn stripe(&self, s: u64) -> Result<StripeView, MapError> {
        match &self.map {
            LayoutMap::Periodic(m) => m.stripe(s),
            LayoutMap::Aperiodic(m) => m.stripe(s),
        }
    }

    /// The map cache's hits and misses; None for a periodic layout, which
    /// answers every lookup from its precomputed period (no cache, and no
    /// counting on that path).
    pub fn map_cache(&self) -> Option<super::map::CacheStats> {
        match &self.map {
            LayoutMap::Periodic(_) => None,
            LayoutMap::Aperiodic(m) => Some(m.cache_stats()),
        }
    }

    /// Usable size in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.descriptor.data_chunk_count().saturating_mul(self.geometry.chunk_bytes())
    }
}
