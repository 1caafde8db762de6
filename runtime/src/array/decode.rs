//! Degraded reads: solving a stripe's parity equations for a lost chunk.
//!
//! A plan, for one stripe shape and one set of failed legs, picks D
//! independent surviving slots and the coefficients that rebuild each data
//! chunk from them. Plans are cached per (shape, failed legs).

use crate::layout::{Stripe, gf256};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// How to rebuild every data chunk of a stripe from surviving slots.
pub struct Plan {
    /// Slot indices read (D of them).
    pub sources: Vec<usize>,
    /// `rebuild[k][j]`: coefficient of `sources[j]` in data chunk k.
    pub rebuild: Vec<Vec<u8>>,
}

#[derive(Default)]
pub struct Plans {
    cache: Mutex<HashMap<(u64, Vec<bool>), Arc<Plan>>>,
}

impl Plans {
    /// The plan for `stripe` with `alive(leg)` telling which legs survive;
    /// None when the surviving slots cannot determine the data.
    pub fn plan(&self, stripe: &Stripe, data_chunks: usize, alive: impl Fn(u32) -> bool) -> Option<Arc<Plan>> {
        let survivors: Vec<bool> = stripe.slots.iter().map(|s| alive(s.leg)).collect();
        // Chunk offsets differ between stripes of one shape: the key is the
        // legs and roles only.
        let key = (shape_hash(stripe), survivors);
        if let Some(plan) = self.cache.lock().get(&key) {
            return Some(plan.clone());
        }
        let plan = Arc::new(solve(stripe, data_chunks, &key.1)?);
        let mut cache = self.cache.lock();
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(key, plan.clone());
        Some(plan)
    }
}

fn shape_hash(stripe: &Stripe) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for slot in &stripe.slots {
        slot.leg.hash(&mut h);
        slot.role.hash(&mut h);
    }
    h.finish()
}

/// Pick D independent surviving equations (greedily, data and replicas
/// first so healthy chunks are read as they are) and invert them.
fn solve(stripe: &Stripe, d: usize, survivors: &[bool]) -> Option<Plan> {
    let mut order: Vec<usize> = (0..stripe.slots.len()).filter(|&i| survivors[i]).collect();
    order.sort_by_key(|&i| match stripe.slots[i].role {
        crate::layout::Role::Data(_) => 0,
        crate::layout::Role::Replica(_) => 1,
        _ => 2,
    });
    let mut chosen: Vec<usize> = Vec::with_capacity(d);
    let mut rows: Vec<Vec<u8>> = Vec::with_capacity(d);
    for i in order {
        let Some(eq) = stripe.slots[i].role.equation(d) else { continue };
        let mut candidate = rows.clone();
        candidate.push(eq.clone());
        if gf256::rank(candidate) == rows.len() + 1 {
            rows.push(eq);
            chosen.push(i);
            if rows.len() == d {
                break;
            }
        }
    }
    if rows.len() < d {
        return None;
    }
    // values = M * data  =>  data = M^-1 * values.
    let inverse = gf256::invert(&rows)?;
    Some(Plan { sources: chosen, rebuild: inverse })
}
