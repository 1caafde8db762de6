//! RAID1, n-way: every leg holds a full copy, row for row.

use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter, args};

pub struct Raid1 {
    legs: u32,
}

impl Layout for Raid1 {
    const NAME: &'static str = "raid1";

    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        crate::need_legs(Self::NAME, g, 1)?;
        args::only(&g.args, &[], &[])?;
        let d = Descriptor {
            data_chunks: 1,
            replica_chunks: g.legs - 1,
            stripes: g.min_leg_chunks(),
            period: 1,
            period_advance: 1,
            fault_tolerance: g.legs - 1,
            ..Descriptor::default()
        };
        Ok((Raid1 { legs: g.legs }, d))
    }

    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        out.data(0, s, 0);
        for leg in 1..self.legs {
            out.replica(leg, s, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::grid;

    #[test]
    fn three_way_mirror() {
        assert_eq!(grid::<Raid1>(3, "", 2), "0 0* 0* | 1 1* 1*");
    }
}
