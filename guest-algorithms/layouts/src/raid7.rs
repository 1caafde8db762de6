//! Triple parity (insane_striping's raid7): P, Q, R rotated like md's
//! left-symmetric RAID6. P = sum D_k, Q = sum g^k D_k, R = sum g^2k D_k: a
//! Vandermonde code, so any three lost chunks are recoverable.

use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter, args, gf};

pub struct Raid7 {
    legs: u32,
}

impl Layout for Raid7 {
    const NAME: &'static str = "raid7";

    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        crate::need_legs(Self::NAME, g, 4)?;
        args::only(&g.args, &["left-symmetric"], &[])?;
        if g.legs > 258 {
            return Err(format!("raid7 supports at most 255 data legs, got {}", g.legs - 3));
        }
        let d = Descriptor {
            data_chunks: g.legs - 3,
            parity_chunks: 3,
            stripes: g.min_leg_chunks(),
            period: u64::from(g.legs),
            period_advance: u64::from(g.legs),
            fault_tolerance: 3,
            ..Descriptor::default()
        };
        Ok((Raid7 { legs: g.legs }, d))
    }

    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        let n = self.legs;
        let p = n - 1 - (s % u64::from(n)) as u32;
        for k in 0..n - 3 {
            out.data((p + 3 + k) % n, s, k);
        }
        out.xor_parity(p, s, 0);
        out.parity((p + 1) % n, s, 1, gf::exp2);
        out.parity((p + 2) % n, s, 2, |k| gf::exp2(2 * k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::grid;

    #[test]
    fn rotates_three_parities() {
        assert_eq!(grid::<Raid7>(5, "", 3), "Q R 0 1 P | R 2 3 P Q | 4 5 P Q R");
    }
}
