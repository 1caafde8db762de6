//! The proof a layout must pass before any data is placed by it.
//!
//! Rules, each named in a refusal with the stripe and slot that broke it:
//! the descriptor is sane; every slot is in bounds; no physical chunk is used
//! twice anywhere on the device (exhaustive, a bitmap per leg); every stripe
//! holds each data index exactly once and the declared replicas, parities
//! and spares; a declared period holds; the declared fault tolerance holds
//! for every distinct stripe shape (rank over GF(2^8)).

use super::decode::{DecodeError, Decoder};
use super::{Descriptor, Geometry, Role, Stripe, gf256};
use crate::sandbox::{GuestInstance, SandboxError};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::{Duration, Instant};

/// Stripes per aperiodic cache block (and per fingerprint).
pub const BLOCK_STRIPES: u64 = 256;
/// The longest period the host will precompute, in stripes.
pub const MAX_PERIOD_STRIPES: u64 = 1 << 16;
/// The largest precomputed period, in slots.
pub const MAX_PERIOD_SLOTS: u64 = 1 << 22;
/// Most stripes fetched from a guest in one call.
const FETCH_STRIPES: u64 = 4096;
/// Full periods compared after the first, and random stripes sampled.
const PERIODS_CHECKED: u64 = 3;
const RANDOM_SAMPLES: usize = 512;
/// Most GF(2^8) operations the fault-tolerance proof may spend per shape.
const FT_BUDGET: u128 = 20_000_000_000;

/// Which rule a layout broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    Descriptor,
    Encoding,
    Bounds,
    Overlap,
    DataIndex,
    Parity,
    Period,
    FaultTolerance,
    Guest,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rule::Descriptor => "descriptor",
            Rule::Encoding => "encoding",
            Rule::Bounds => "slot out of bounds",
            Rule::Overlap => "chunk used twice",
            Rule::DataIndex => "data indices",
            Rule::Parity => "parity",
            Rule::Period => "declared period",
            Rule::FaultTolerance => "declared fault tolerance",
            Rule::Guest => "guest failure",
        })
    }
}

/// A refused layout: the stripe and slot (when there is one) and the rule.
#[derive(Debug, thiserror::Error)]
pub struct ProofError {
    pub stripe: Option<u64>,
    pub slot: Option<u64>,
    pub rule: Rule,
    pub detail: String,
}

impl std::fmt::Display for ProofError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.stripe, self.slot) {
            (Some(s), Some(k)) => write!(f, "stripe {s}, slot {k}: ")?,
            (Some(s), None) => write!(f, "stripe {s}: ")?,
            _ => {}
        }
        write!(f, "{}: {}", self.rule, self.detail)
    }
}

fn refuse(rule: Rule, stripe: Option<u64>, slot: Option<u64>, detail: impl Into<String>) -> ProofError {
    ProofError { stripe, slot, rule, detail: detail.into() }
}

impl From<DecodeError> for ProofError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Slot { stripe, slot, what } => refuse(Rule::Encoding, Some(stripe), Some(slot), what),
            other => refuse(Rule::Encoding, None, None, other.to_string()),
        }
    }
}

impl From<SandboxError> for ProofError {
    fn from(e: SandboxError) -> Self {
        refuse(Rule::Guest, None, None, e.to_string())
    }
}

/// Where the proof gets stripes from: a guest, or a test's table.
pub trait StripeSource {
    fn fetch(&mut self, first: u64, count: u32) -> Result<Vec<u64>, SandboxError>;
}

impl StripeSource for GuestInstance {
    fn fetch(&mut self, first: u64, count: u32) -> Result<Vec<u64>, SandboxError> {
        self.map_stripes(first, count)
    }
}

/// What was proven, and how fast.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProofReport {
    pub stripes: u64,
    /// Physical chunks proven distinct and in bounds.
    pub chunks: u64,
    /// Distinct stripe shapes whose fault tolerance was proven.
    pub shapes: usize,
    pub fault_tolerance: u32,
    pub periodic: bool,
    #[serde(rename = "elapsed_ms", serialize_with = "crate::units::as_millis")]
    pub elapsed: Duration,
}

impl ProofReport {
    /// Chunks proven per second.
    pub fn rate(&self) -> f64 {
        self.chunks as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What a proven layout keeps for the data path.
#[derive(Debug)]
pub enum Proven {
    /// One period of stripes; the guest is never asked again.
    Periodic { base: Vec<Stripe> },
    /// A fingerprint of every block of stripes, so a refill from the guest
    /// can be checked against what was proven.
    Aperiodic { fingerprints: Vec<u64> },
}

/// Prove the layout `source` describes with `d` on `g`, with no bound on
/// the time spent (tests; see `prove_within`).
pub fn prove(source: &mut dyn StripeSource, g: &Geometry, d: &Descriptor, hasher: &impl BuildHasher) -> Result<(Proven, ProofReport), ProofError> {
    prove_within(source, g, d, hasher, Duration::MAX)
}

/// Prove the layout, refusing it once guest calls and fault-tolerance
/// checks together have taken `limit` (a guest whose every call takes
/// just under the per-call deadline cannot stretch a proof for minutes).
pub fn prove_within(
    source: &mut dyn StripeSource,
    g: &Geometry,
    d: &Descriptor,
    hasher: &impl BuildHasher,
    limit: Duration,
) -> Result<(Proven, ProofReport), ProofError> {
    let started = Instant::now();
    check_descriptor(g, d)?;
    let mut checker = Checker::new(g, d);
    checker.budget = Budget { limit, spent: Duration::ZERO };
    let (proven, shapes) = if d.is_periodic() { prove_periodic(source, &mut checker)? } else { prove_aperiodic(source, &mut checker, hasher)? };
    let report = ProofReport {
        stripes: d.stripes,
        chunks: d.stripes.saturating_mul(d.slots()),
        shapes,
        fault_tolerance: d.fault_tolerance,
        periodic: d.is_periodic(),
        elapsed: started.elapsed(),
    };
    Ok((proven, report))
}

fn check_descriptor(g: &Geometry, d: &Descriptor) -> Result<(), ProofError> {
    let bad = |detail: String| Err(refuse(Rule::Descriptor, None, None, detail));
    if d.data_chunks == 0 {
        return bad("a stripe must hold at least one data chunk".into());
    }
    if d.data_chunks > 255 && d.parity_chunks > 0 {
        return bad(format!("{} data chunks per stripe: GF(2^8) parity covers at most 255", d.data_chunks));
    }
    if d.slots() > 4096 {
        return bad(format!("{} slots per stripe (at most 4096)", d.slots()));
    }
    if d.stripes == 0 {
        return bad("the layout holds no stripes (legs too small for one stripe?)".into());
    }
    if d.fault_tolerance > g.legs() {
        return bad(format!("fault tolerance {} exceeds the {} legs", d.fault_tolerance, g.legs()));
    }
    // Every slot of every stripe is a distinct chunk: no layout can hold
    // more stripes than the legs hold chunks. Checked before any count the
    // guest declared sizes an allocation or a loop.
    let chunks = g.leg_chunks.iter().fold(0u64, |a, &n| a.saturating_add(n));
    if d.stripes > chunks / d.slots().max(1) {
        return bad(format!("declares {} stripes of {} slots, but the legs hold only {chunks} chunks", d.stripes, d.slots()));
    }
    if d.is_periodic() {
        if d.period > MAX_PERIOD_STRIPES || d.period.saturating_mul(d.slots()) > MAX_PERIOD_SLOTS {
            return bad(format!(
                "period of {} stripes is too long to precompute (at most {MAX_PERIOD_STRIPES} stripes and {MAX_PERIOD_SLOTS} slots); declare the layout aperiodic",
                d.period
            ));
        }
        if d.period_advance == 0 && d.stripes > d.period {
            return bad("period advance 0 would reuse the first period's chunks".into());
        }
    }
    Ok(())
}

/// Time a proof may spend where a guest decides the cost: its calls, and
/// checking the fault tolerance of the shapes it returns.
struct Budget {
    limit: Duration,
    spent: Duration,
}

impl Budget {
    /// Add the time since `since` to what was spent.
    fn charge(&mut self, since: Instant) -> Result<(), ProofError> {
        self.spent = self.spent.saturating_add(since.elapsed());
        self.check(Instant::now())
    }

    /// Would the time since `since`, added, go past the limit?
    fn check(&self, since: Instant) -> Result<(), ProofError> {
        if self.spent.saturating_add(since.elapsed()) > self.limit {
            return Err(refuse(
                Rule::Guest,
                None,
                None,
                format!("the proof spent more than {:?} in guest calls and fault-tolerance checks (--proof-timeout)", self.limit),
            ));
        }
        Ok(())
    }
}

/// Per-stripe rules, the overlap bitmaps and the fault-tolerance shapes.
struct Checker<'a> {
    g: &'a Geometry,
    d: &'a Descriptor,
    decoder: Decoder,
    used: Vec<Vec<u64>>,
    shapes: HashMap<u64, ()>,
    shape_hasher: std::collections::hash_map::RandomState,
    budget: Budget,
}

impl<'a> Checker<'a> {
    fn new(g: &'a Geometry, d: &'a Descriptor) -> Self {
        Checker {
            g,
            d,
            decoder: Decoder::default(),
            used: Vec::new(),
            shapes: HashMap::new(),
            shape_hasher: Default::default(),
            budget: Budget { limit: Duration::MAX, spent: Duration::ZERO },
        }
    }

    fn fetch(&mut self, source: &mut dyn StripeSource, first: u64, count: u64) -> Result<(Vec<u64>, Vec<Stripe>), ProofError> {
        let asked = Instant::now();
        let words = source.fetch(first, count as u32);
        self.budget.charge(asked)?;
        let words = words?;
        let stripes = self.decoder.decode(self.d, first, count, &words)?;
        Ok((words, stripes))
    }

    /// Roles, indices and legs of one stripe.
    fn check_stripe(&self, s: u64, stripe: &Stripe) -> Result<(), ProofError> {
        let d = self.d;
        let legs = self.g.legs();
        let mut data_seen = vec![false; d.data_chunks as usize];
        let mut parity_seen = vec![false; d.parity_chunks as usize];
        let mut spare_seen = vec![false; d.spare_chunks as usize];
        let mut replicas = 0u32;
        for (i, slot) in stripe.slots.iter().enumerate() {
            let at = |rule, detail: String| refuse(rule, Some(s), Some(i as u64), detail);
            if slot.leg >= legs {
                return Err(at(Rule::Bounds, format!("leg {} does not exist (the array has {legs} legs)", slot.leg)));
            }
            match &slot.role {
                Role::Data(k) => match data_seen.get_mut(*k as usize) {
                    Some(seen) if !*seen => *seen = true,
                    Some(_) => return Err(at(Rule::DataIndex, format!("data chunk {k} appears twice"))),
                    None => return Err(at(Rule::DataIndex, format!("data index {k} beyond the {} declared", d.data_chunks))),
                },
                Role::Replica(k) => {
                    if *k >= d.data_chunks {
                        return Err(at(Rule::DataIndex, format!("replica of data index {k} beyond the {} declared", d.data_chunks)));
                    }
                    replicas += 1;
                }
                Role::Parity { ordinal, coefficients } => {
                    match parity_seen.get_mut(*ordinal as usize) {
                        Some(seen) if !*seen => *seen = true,
                        _ => return Err(at(Rule::Parity, format!("parity ordinal {ordinal} repeated or beyond the {} declared", d.parity_chunks))),
                    }
                    if coefficients.iter().all(|&c| c == 0) {
                        return Err(at(Rule::Parity, format!("parity {ordinal} covers no data chunk (all coefficients 0)")));
                    }
                }
                Role::Spare(o) => match spare_seen.get_mut(*o as usize) {
                    Some(seen) if !*seen => *seen = true,
                    _ => return Err(at(Rule::Descriptor, format!("spare ordinal {o} repeated or beyond the {} declared", d.spare_chunks))),
                },
            }
        }
        let mut places: Vec<(u32, u64, usize)> = stripe.slots.iter().enumerate().map(|(i, sl)| (sl.leg, sl.chunk, i)).collect();
        places.sort_unstable();
        if let Some(w) = places.windows(2).find(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1)) {
            return Err(refuse(
                Rule::Overlap,
                Some(s),
                Some(w[1].2 as u64),
                format!("leg {} chunk {} is also used by slot {} of the same stripe", w[1].0, w[1].1, w[0].2),
            ));
        }
        if let Some(k) = data_seen.iter().position(|seen| !seen) {
            return Err(refuse(Rule::DataIndex, Some(s), None, format!("data chunk {k} is missing")));
        }
        if replicas != d.replica_chunks || parity_seen.iter().any(|p| !p) || spare_seen.iter().any(|p| !p) {
            return Err(refuse(
                Rule::Descriptor,
                Some(s),
                None,
                format!(
                    "holds {replicas} replicas, {} parities, {} spares; declared {}, {}, {}",
                    parity_seen.iter().filter(|p| **p).count(),
                    spare_seen.iter().filter(|p| **p).count(),
                    d.replica_chunks,
                    d.parity_chunks,
                    d.spare_chunks
                ),
            ));
        }
        Ok(())
    }

    /// Prove the fault tolerance of `stripe`'s shape unless an identical
    /// shape (same roles grouped by leg, whatever the legs' numbers) was
    /// proven already.
    fn check_shape(&mut self, s: u64, stripe: &Stripe) -> Result<(), ProofError> {
        let mut slots: Vec<(u32, u64)> = stripe
            .slots
            .iter()
            .map(|sl| {
                let mut h = self.shape_hasher.build_hasher();
                sl.role.hash(&mut h);
                (sl.leg, h.finish())
            })
            .collect();
        slots.sort_unstable();
        let mut groups: Vec<u64> = slots
            .chunk_by(|a, b| a.0 == b.0)
            .map(|group| {
                let mut h = self.shape_hasher.build_hasher();
                group.iter().for_each(|(_, role)| role.hash(&mut h));
                h.finish()
            })
            .collect();
        groups.sort_unstable();
        let mut h = self.shape_hasher.build_hasher();
        groups.hash(&mut h);
        if self.shapes.insert(h.finish(), ()).is_some() {
            return Ok(());
        }
        let started = Instant::now();
        let budget = &self.budget;
        let verdict = fault_tolerance_holds(s, stripe, self.d, &mut |since| budget.check(since), started);
        self.budget.charge(started)?;
        verdict
    }

    fn bitmaps(&mut self) -> &mut Vec<Vec<u64>> {
        if self.used.is_empty() {
            self.used = self.g.leg_chunks.iter().map(|&n| vec![0u64; n.div_ceil(64) as usize]).collect();
        }
        &mut self.used
    }
}

/// Every set of `d.fault_tolerance` failed legs leaves the stripe's data
/// recoverable: the surviving equations have rank D. `charge` is called now
/// and then with `started`, and ends the proof when the budget would be
/// spent.
fn fault_tolerance_holds(
    s: u64,
    stripe: &Stripe,
    d: &Descriptor,
    charge: &mut dyn FnMut(Instant) -> Result<(), ProofError>,
    started: Instant,
) -> Result<(), ProofError> {
    let mut legs: Vec<u32> = stripe.slots.iter().map(|sl| sl.leg).collect();
    legs.sort_unstable();
    legs.dedup();
    let f = (d.fault_tolerance as usize).min(legs.len());
    if let Some(verdict) = systematic_tolerance(s, stripe, d, f, charge, started) {
        return verdict;
    }
    exhaustive_tolerance(s, stripe, d, &legs, f, charge, started)
}

/// Every combination of `f` failed legs, the surviving equations ranked.
fn exhaustive_tolerance(
    s: u64,
    stripe: &Stripe,
    d: &Descriptor,
    legs: &[u32],
    f: usize,
    charge: &mut dyn FnMut(Instant) -> Result<(), ProofError>,
    started: Instant,
) -> Result<(), ProofError> {
    let n = d.data_chunks as usize;
    let combos = binomial(legs.len() as u128, f as u128);
    let cost = combos.saturating_mul((stripe.slots.len() * n * n) as u128);
    if cost > FT_BUDGET {
        return Err(refuse(
            Rule::FaultTolerance,
            Some(s),
            None,
            format!("{combos} failure combinations of {f} among {} legs are too many to prove", legs.len()),
        ));
    }
    let equations: Vec<(u32, Vec<u8>)> = stripe.slots.iter().filter_map(|sl| Some((sl.leg, sl.role.equation(n)?))).collect();
    let mut failed: Vec<usize> = (0..f).collect();
    let mut tried = 0u64;
    loop {
        let lost: Vec<u32> = failed.iter().map(|&i| legs[i]).collect();
        let rows: Vec<Vec<u8>> = equations.iter().filter(|(leg, _)| !lost.contains(leg)).map(|(_, row)| row.clone()).collect();
        if gf256::rank(rows) < n {
            return Err(unrecoverable(s, d, &lost));
        }
        tried += 1;
        if tried % 1024 == 0 {
            charge(started)?;
        }
        if !next_combination(&mut failed, legs.len()) {
            return Ok(());
        }
    }
}

fn unrecoverable(s: u64, d: &Descriptor, lost: &[u32]) -> ProofError {
    refuse(
        Rule::FaultTolerance,
        Some(s),
        None,
        format!(
            "declares {} but losing legs {} leaves its data unrecoverable",
            d.fault_tolerance,
            lost.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        ),
    )
}

/// The fault tolerance of a systematic stripe: every leg holds at most one
/// slot, and slots are data, parity or spares. Losing the data chunks E and
/// some parities leaves the data recoverable exactly when the surviving
/// parity rows, restricted to E's columns, have rank |E|; and more losses
/// are never better, so only the largest failure sets with e data losses
/// are checked: C(D, e)·C(P, f - e) ranks of at most P x e (about ten
/// thousand 4x4 ranks for a 20+4 code) instead of C(D + P, f) ranks of D
/// columns. None when the stripe is not of that form.
fn systematic_tolerance(
    s: u64,
    stripe: &Stripe,
    d: &Descriptor,
    f: usize,
    charge: &mut dyn FnMut(Instant) -> Result<(), ProofError>,
    started: Instant,
) -> Option<Result<(), ProofError>> {
    let n = d.data_chunks as usize;
    let mut seen_legs = std::collections::HashSet::new();
    let mut data_leg = vec![u32::MAX; n];
    let mut parity: Vec<(u32, &[u8])> = Vec::new();
    let mut spares = 0usize;
    for slot in &stripe.slots {
        if !seen_legs.insert(slot.leg) {
            return None;
        }
        match &slot.role {
            Role::Data(k) => *data_leg.get_mut(*k as usize)? = slot.leg,
            Role::Parity { coefficients, .. } if coefficients.len() == n => parity.push((slot.leg, coefficients)),
            Role::Spare(_) => spares += 1,
            _ => return None,
        }
    }
    let p = parity.len();
    let mut tried = 0u64;
    let mut m = vec![0u8; p * f.min(n).max(1)];
    for e in 1..=f.min(n) {
        let q = p.min(f - e);
        if f - e - q > spares {
            continue; // no failure set loses exactly e data chunks
        }
        let mut lost_data: Vec<usize> = (0..e).collect();
        loop {
            let mut lost_parity: Vec<usize> = (0..q).collect();
            loop {
                let mut rows = 0;
                for i in (0..p).filter(|i| !lost_parity.contains(i)) {
                    for (c, &k) in lost_data.iter().enumerate() {
                        m[rows * e + c] = parity[i].1[k];
                    }
                    rows += 1;
                }
                if rows < e || gf256::rank_flat(&mut m[..rows * e], rows, e) < e {
                    let lost: Vec<u32> = lost_data.iter().map(|&k| data_leg[k]).chain(lost_parity.iter().map(|&i| parity[i].0)).collect();
                    return Some(Err(unrecoverable(s, d, &lost)));
                }
                tried += 1;
                if tried % 4096 == 0 {
                    if let Err(e) = charge(started) {
                        return Some(Err(e));
                    }
                }
                if q == 0 || !next_combination(&mut lost_parity, p) {
                    break;
                }
            }
            if !next_combination(&mut lost_data, n) {
                break;
            }
        }
    }
    Some(Ok(()))
}

fn binomial(n: u128, k: u128) -> u128 {
    (0..k).fold(1u128, |acc, i| acc.saturating_mul(n - i) / (i + 1))
}

/// Advance `c` to the next k-combination of 0..n in lexicographic order.
fn next_combination(c: &mut [usize], n: usize) -> bool {
    let k = c.len();
    for i in (0..k).rev() {
        if c[i] < n - k + i {
            c[i] += 1;
            for j in i + 1..k {
                c[j] = c[j - 1] + 1;
            }
            return true;
        }
    }
    false
}

fn prove_periodic(source: &mut dyn StripeSource, ck: &mut Checker<'_>) -> Result<(Proven, usize), ProofError> {
    let (d, g) = (ck.d, ck.g);
    let period = d.period.min(d.stripes);
    let mut base = Vec::with_capacity(period as usize);
    let mut first = 0;
    while first < period {
        let count = FETCH_STRIPES.min(period - first);
        base.extend(ck.fetch(source, first, count)?.1);
        first += count;
    }
    for (s, stripe) in base.iter().enumerate() {
        ck.check_stripe(s as u64, stripe)?;
        ck.check_shape(s as u64, stripe)?;
    }
    check_period(source, ck, &base)?;

    // Bounds: the last period a base stripe reaches.
    let periods_of = |r: u64| (d.stripes - 1 - r) / d.period + 1;
    let mut runs: Vec<Vec<(u64, u64, u64, u64)>> = vec![Vec::new(); g.leg_chunks.len()];
    for (r, stripe) in base.iter().enumerate() {
        let times = periods_of(r as u64);
        for (i, slot) in stripe.slots.iter().enumerate() {
            let last = (times - 1).checked_mul(d.period_advance).and_then(|a| a.checked_add(slot.chunk));
            let size = g.leg_chunks[slot.leg as usize];
            match last {
                Some(last) if last < size => runs[slot.leg as usize].push((slot.chunk, times, r as u64, i as u64)),
                _ => {
                    let stripe_no = r as u64 + (times - 1) * d.period;
                    return Err(refuse(
                        Rule::Bounds,
                        Some(stripe_no),
                        Some(i as u64),
                        format!("leg {} chunk {} is beyond the leg's {size} chunks", slot.leg, last.map_or("(overflow)".into(), |l| l.to_string())),
                    ));
                }
            }
        }
    }

    // Overlap: mark every chunk the layout uses, leg by leg, in parallel.
    let advance = d.period_advance;
    let bitmaps = std::mem::take(ck.bitmaps());
    let results: Vec<Result<(), (u64, u64, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = bitmaps.into_iter().zip(runs.iter()).map(|(mut bits, runs)| scope.spawn(move || mark_runs(&mut bits, runs, advance))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Err((u64::MAX, 0, 0)))).collect()
    });
    for (leg, result) in results.into_iter().enumerate() {
        if let Err((chunk, r, slot)) = result {
            let stripe = if chunk == u64::MAX { None } else { Some(owner_stripe(&base, d, leg as u32, chunk, r)) };
            return Err(refuse(Rule::Overlap, stripe, Some(slot), format!("leg {leg} chunk {chunk} is used by two slots")));
        }
    }
    Ok((Proven::Periodic { base }, ck.shapes.len()))
}

/// Set the bits of every chunk of `runs` (base chunk, periods, stripe,
/// slot); the first chunk found set already is the overlap.
fn mark_runs(bits: &mut [u64], runs: &[(u64, u64, u64, u64)], advance: u64) -> Result<(), (u64, u64, u64)> {
    for &(start, times, r, slot) in runs {
        let mut chunk = start;
        for _ in 0..times {
            let (w, b) = ((chunk / 64) as usize, chunk % 64);
            let Some(word) = bits.get_mut(w) else { return Err((chunk, r, slot)) };
            if *word & (1 << b) != 0 {
                return Err((chunk, r, slot));
            }
            *word |= 1 << b;
            chunk += advance;
        }
    }
    Ok(())
}

/// The stripe number at which base stripe `r` reaches `chunk` on `leg`.
fn owner_stripe(base: &[Stripe], d: &Descriptor, leg: u32, chunk: u64, r: u64) -> u64 {
    base[r as usize]
        .slots
        .iter()
        .filter(|s| s.leg == leg && s.chunk <= chunk)
        .find_map(|s| {
            let delta = chunk - s.chunk;
            if d.period_advance == 0 { Some(r) } else { (delta % d.period_advance == 0).then(|| r + delta / d.period_advance * d.period) }
        })
        .unwrap_or(r)
}

/// The declared period holds over a few whole periods and random stripes.
fn check_period(source: &mut dyn StripeSource, ck: &mut Checker<'_>, base: &[Stripe]) -> Result<(), ProofError> {
    let d = ck.d;
    let compare = |s: u64, got: &Stripe| -> Result<(), ProofError> {
        let r = (s % d.period) as usize;
        let q = s / d.period;
        let expected = q.checked_mul(d.period_advance).and_then(|a| base[r].advanced(a));
        let Some(expected) = expected else {
            return Err(refuse(Rule::Bounds, Some(s), None, "chunk offset overflows".to_string()));
        };
        for (i, (want, have)) in expected.slots.iter().zip(&got.slots).enumerate() {
            if want != have {
                return Err(refuse(
                    Rule::Period,
                    Some(s),
                    Some(i as u64),
                    format!(
                        "period {} advance {} predicts leg {} chunk {} ({:?}), the guest returned leg {} chunk {} ({:?})",
                        d.period, d.period_advance, want.leg, want.chunk, want.role, have.leg, have.chunk, have.role
                    ),
                ));
            }
        }
        Ok(())
    };
    let whole = (d.period * (PERIODS_CHECKED + 1)).min(d.stripes);
    let mut first = d.period;
    while first < whole {
        let count = FETCH_STRIPES.min(whole - first);
        let (_, stripes) = ck.fetch(source, first, count)?;
        for (i, st) in stripes.iter().enumerate() {
            compare(first + i as u64, st)?;
        }
        first += count;
    }
    if d.stripes > whole {
        use rand::Rng;
        let mut rng = rand::rng();
        let mut samples: Vec<u64> = (0..RANDOM_SAMPLES).map(|_| rng.random_range(whole..d.stripes)).collect();
        samples.push(d.stripes - 1);
        for s in samples {
            let (_, st) = ck.fetch(source, s, 1)?;
            compare(s, &st[0])?;
        }
    }
    Ok(())
}

fn prove_aperiodic(source: &mut dyn StripeSource, ck: &mut Checker<'_>, hasher: &impl BuildHasher) -> Result<(Proven, usize), ProofError> {
    let d = ck.d;
    let per_stripe = d.words_per_stripe() as usize;
    let mut fingerprints = Vec::with_capacity(d.stripes.div_ceil(BLOCK_STRIPES) as usize);
    let mut first = 0;
    while first < d.stripes {
        let count = (FETCH_STRIPES).min(d.stripes - first);
        let (words, stripes) = ck.fetch(source, first, count)?;
        for block in words.chunks(per_stripe * BLOCK_STRIPES as usize) {
            fingerprints.push(fingerprint(hasher, block));
        }
        for (i, stripe) in stripes.iter().enumerate() {
            let s = first + i as u64;
            ck.check_stripe(s, stripe)?;
            let legs = &ck.g.leg_chunks;
            if ck.used.is_empty() {
                ck.used = legs.iter().map(|&n| vec![0u64; n.div_ceil(64) as usize]).collect();
            }
            let bits = &mut ck.used;
            for (k, slot) in stripe.slots.iter().enumerate() {
                let size = legs[slot.leg as usize];
                if slot.chunk >= size {
                    return Err(refuse(
                        Rule::Bounds,
                        Some(s),
                        Some(k as u64),
                        format!("leg {} chunk {} is beyond the leg's {size} chunks", slot.leg, slot.chunk),
                    ));
                }
                let word = &mut bits[slot.leg as usize][(slot.chunk / 64) as usize];
                let bit = 1u64 << (slot.chunk % 64);
                if *word & bit != 0 {
                    return Err(refuse(Rule::Overlap, Some(s), Some(k as u64), format!("leg {} chunk {} is used by two slots", slot.leg, slot.chunk)));
                }
                *word |= bit;
            }
            ck.check_shape(s, stripe)?;
        }
        first += count;
    }
    Ok((Proven::Aperiodic { fingerprints }, ck.shapes.len()))
}

/// The fingerprint of one block of a guest's flat answer.
pub fn fingerprint(hasher: &impl BuildHasher, words: &[u64]) -> u64 {
    let mut h = hasher.build_hasher();
    words.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
