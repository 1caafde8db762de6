//! RAID4: RAID5 with the parity on a fixed leg (md's `parity-n`, the
//! default, or `parity-0`).

use crate::raid5::{Raid5, Rotation};
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

pub struct Raid4(Raid5);

impl Layout for Raid4 {
    const NAME: &'static str = "raid4";

    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        let (inner, d) = Raid5::configure_with(Self::NAME, g, Rotation::ParityN, &["parity-n", "parity-0", "parity-last", "parity-first"])?;
        Ok((Raid4(inner), d))
    }

    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        self.0.stripe(s, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::grid;

    #[test]
    fn parity_on_the_last_leg_by_default() {
        assert_eq!(grid::<Raid4>(4, "", 2), "0 1 2 P | 3 4 5 P");
        assert_eq!(grid::<Raid4>(3, "parity-0", 2), "P 0 1 | P 2 3");
        assert!(Raid4::configure(&Geometry::uniform(4, 8, "left-symmetric")).is_err());
    }
}
