//! Linear concatenation of legs of any size (dm `linear`, DST's linear
//! algorithm): one chunk per stripe, legs one after another. Aperiodic.

use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter, args};

pub struct Linear {
    /// First stripe of each leg (prefix sums of the leg sizes).
    starts: Vec<u64>,
}

impl Layout for Linear {
    const NAME: &'static str = "linear";

    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        crate::need_legs(Self::NAME, g, 1)?;
        args::only(&g.args, &[], &[])?;
        let mut starts = Vec::with_capacity(g.leg_chunks.len());
        let mut total = 0u64;
        for &size in &g.leg_chunks {
            starts.push(total);
            total = total.checked_add(size).ok_or("total size overflows")?;
        }
        let d = Descriptor { data_chunks: 1, stripes: total, ..Descriptor::default() };
        Ok((Linear { starts }, d))
    }

    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        // The last leg whose start is at or before s (empty legs are skipped
        // because a later leg with the same start wins).
        let leg = self.starts.partition_point(|&start| start <= s) - 1;
        out.data(leg as u32, s - self.starts[leg], 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stripes_of;

    #[test]
    fn unequal_legs_follow_each_other() {
        let g = Geometry { legs: 3, chunk_sectors: 8, leg_chunks: vec![2, 0, 3], args: String::new() };
        let slots = stripes_of::<Linear>(&g);
        let places: Vec<(u32, u64)> = slots.iter().map(|s| (s[0].leg, s[0].chunk)).collect();
        assert_eq!(places, [(0, 0), (0, 1), (2, 0), (2, 1), (2, 2)]);
    }
}
