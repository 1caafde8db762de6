//! A dRAID/CRUSH-style aperiodic layout: every stripe uses one row on every
//! leg, with its data, parity and spare columns permuted by a seeded hash of
//! the stripe number, so a rebuild reads from every leg at once.
//!
//! Arguments: `p=N` parities (1 to 3, default 2), `s=N` spares (default 1),
//! `seed=N` (default 0); the data count is legs - p - s. Parity m weighs
//! data chunk k by g^(m k), a Vandermonde code that survives any p losses.

use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter, args, gf};

pub struct Draid {
    legs: u32,
    data: u32,
    parities: u32,
    seed: u64,
}

/// SplitMix64: a small, well-mixed hash (Steele, Lea, Flood).
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Draid {
    /// Leg of each column in stripe `s`: a Fisher-Yates shuffle.
    fn permutation(&self, s: u64) -> Vec<u32> {
        let mut legs: Vec<u32> = (0..self.legs).collect();
        let mut state = splitmix64(self.seed ^ splitmix64(s));
        for i in (1..legs.len()).rev() {
            state = splitmix64(state);
            let j = (state % (i as u64 + 1)) as usize;
            legs.swap(i, j);
        }
        legs
    }
}

impl Layout for Draid {
    const NAME: &'static str = "draid";

    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        args::only(&g.args, &[], &["p", "s", "seed"])?;
        let parities = args::number(&g.args, "p", 2)?;
        let spares = args::number(&g.args, "s", 1)?;
        let seed = args::number(&g.args, "seed", 0)?;
        if !(1..=3).contains(&parities) {
            return Err(format!("draid supports p=1 to p=3 parities, got p={parities}"));
        }
        let legs = u64::from(g.legs);
        if legs < parities + spares + 1 {
            return Err(format!("draid with p={parities} s={spares} needs at least {} legs, got {legs}", parities + spares + 1));
        }
        let data = (legs - parities - spares) as u32;
        if data > 255 {
            return Err(format!("draid supports at most 255 data chunks per stripe, got {data}"));
        }
        let d = Descriptor {
            data_chunks: data,
            parity_chunks: parities as u32,
            spare_chunks: spares as u32,
            stripes: g.min_leg_chunks(),
            fault_tolerance: parities as u32,
            ..Descriptor::default()
        };
        Ok((Draid { legs: g.legs, data, parities: parities as u32, seed }, d))
    }

    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        let legs = self.permutation(s);
        let mut column = legs.iter().copied();
        for k in 0..self.data {
            out.data(column.next().unwrap_or(0), s, k);
        }
        for m in 0..self.parities {
            out.parity(column.next().unwrap_or(0), s, m, |k| gf::exp2(m * k));
        }
        for (ordinal, leg) in column.enumerate() {
            out.spare(leg, s, ordinal as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stripes_of;
    use std::collections::BTreeSet;

    #[test]
    fn every_stripe_is_a_permutation_and_stripes_differ() {
        let stripes = stripes_of::<Draid>(&Geometry::uniform(8, 32, "p=2,s=1,seed=7"));
        let mut shapes = BTreeSet::new();
        for stripe in &stripes {
            let legs: BTreeSet<u32> = stripe.iter().map(|s| s.leg).collect();
            assert_eq!(legs.len(), 8);
            shapes.insert(stripe.iter().map(|s| s.leg).collect::<Vec<_>>());
        }
        assert!(shapes.len() > 16, "only {} distinct shapes in 32 stripes", shapes.len());
    }

    #[test]
    fn seed_changes_the_layout() {
        let a = stripes_of::<Draid>(&Geometry::uniform(8, 8, "seed=1"));
        let b = stripes_of::<Draid>(&Geometry::uniform(8, 8, "seed=2"));
        assert_ne!(a, b);
    }

    #[test]
    fn refuses_too_many_parities() {
        assert!(Draid::configure(&Geometry::uniform(8, 8, "p=4")).err().unwrap().contains("p=4"));
        assert!(Draid::configure(&Geometry::uniform(3, 8, "p=2,s=1")).err().unwrap().contains("at least 4"));
    }
}
