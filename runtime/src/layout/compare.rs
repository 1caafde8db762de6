//! Proving two layouts identical, so one can replace the other under load:
//! exhaustively, or over one common period when both are periodic.

use super::Slot;
use super::map::MapError;
use super::proven::ProvenLayout;

/// Where two layouts part.
#[derive(Debug, thiserror::Error)]
pub enum Difference {
    #[error("the geometry differs: {0}")]
    Geometry(String),
    #[error("the descriptor differs: {0}")]
    Descriptor(String),
    #[error("stripe {stripe} differs: {detail}")]
    Stripe { stripe: u64, detail: String },
    #[error("{0}")]
    Map(#[from] MapError),
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Ok when `new` places every slot of every stripe where `old` does.
/// Returns the number of stripes compared.
pub fn identical(old: &ProvenLayout, new: &ProvenLayout) -> Result<u64, Difference> {
    let (g1, g2) = (&old.geometry, &new.geometry);
    if g1.chunk_sectors != g2.chunk_sectors || g1.leg_chunks != g2.leg_chunks {
        return Err(Difference::Geometry(format!(
            "chunk {} vs {} sectors, legs {:?} vs {:?} chunks",
            g1.chunk_sectors, g2.chunk_sectors, g1.leg_chunks, g2.leg_chunks
        )));
    }
    let (d1, d2) = (&old.descriptor, &new.descriptor);
    let shape = |d: &super::Descriptor| (d.data_chunks, d.replica_chunks, d.parity_chunks, d.spare_chunks, d.stripes);
    if shape(d1) != shape(d2) {
        return Err(Difference::Descriptor(format!("(data, replicas, parities, spares, stripes) {:?} vs {:?}", shape(d1), shape(d2))));
    }
    let stripes = d1.stripes;
    let limit = if d1.is_periodic() && d2.is_periodic() {
        let l = d1.period / gcd(d1.period, d2.period) * d2.period;
        let same_advance = (l / d1.period).checked_mul(d1.period_advance) == (l / d2.period).checked_mul(d2.period_advance);
        // With equal advances per common period, one common period decides
        // every stripe; otherwise the first difference is in the second.
        if same_advance { l.min(stripes) } else { l.saturating_mul(2).min(stripes) }
    } else {
        stripes
    };
    for s in 0..limit {
        compare_stripe(old, new, s)?;
    }
    Ok(limit)
}

fn compare_stripe(old: &ProvenLayout, new: &ProvenLayout, s: u64) -> Result<(), Difference> {
    let (a, b) = (old.stripe(s)?, new.stripe(s)?);
    let places = |v: &super::map::StripeView| {
        let mut p: Vec<Slot> = v.shape.slots.iter().enumerate().map(|(i, sl)| Slot { leg: sl.leg, chunk: v.place(i).chunk, role: sl.role.clone() }).collect();
        p.sort_by(|x, y| (x.leg, x.chunk).cmp(&(y.leg, y.chunk)));
        p
    };
    let (pa, pb) = (places(&a), places(&b));
    if let Some((x, y)) = pa.iter().zip(&pb).find(|(x, y)| x != y) {
        return Err(Difference::Stripe {
            stripe: s,
            detail: format!("running: leg {} chunk {} {:?}; new: leg {} chunk {} {:?}", x.leg, x.chunk, x.role, y.leg, y.chunk, y.role),
        });
    }
    Ok(())
}
