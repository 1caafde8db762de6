//! RAID0 (dm `striped`): chunk c on leg c mod n, row c div n.

use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter, args};

pub struct Raid0 {
    legs: u32,
}

impl Layout for Raid0 {
    const NAME: &'static str = "raid0";

    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        crate::need_legs(Self::NAME, g, 1)?;
        args::only(&g.args, &[], &[])?;
        let d = Descriptor { data_chunks: g.legs, stripes: g.min_leg_chunks(), period: 1, period_advance: 1, ..Descriptor::default() };
        Ok((Raid0 { legs: g.legs }, d))
    }

    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        for k in 0..self.legs {
            out.data(k, s, k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::grid;

    #[test]
    fn dm_striped_order() {
        assert_eq!(grid::<Raid0>(3, "", 2), "0 1 2 | 3 4 5");
    }
}
