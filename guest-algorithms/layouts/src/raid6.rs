//! md RAID6: P (XOR) and Q (Reed-Solomon, generator 2) per stripe, rotated.
//!
//! Arguments: `left-symmetric` (md's default), `left-asymmetric`,
//! `right-symmetric`, `right-asymmetric`, or `rotating-n-restart` (mdadm's
//! `ddf-N-restart`). md weighs Q's terms g^j with j counted cyclically from
//! the leg after Q; DDF layouts weigh each term by its leg's index.

use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter, args, gf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rotation {
    LeftAsymmetric,
    RightAsymmetric,
    LeftSymmetric,
    RightSymmetric,
    RotatingNRestart,
}

const NAMES: &[&str] =
    &["left-symmetric", "left-asymmetric", "right-symmetric", "right-asymmetric", "rotating-n-restart", "ddf-n-restart", "ls", "la", "rs", "ra"];

pub struct Raid6 {
    legs: u32,
    rotation: Rotation,
}

/// Where one stripe's P, Q and data chunks go.
struct Placement {
    p: u32,
    q: u32,
    data: Vec<u32>,
}

impl Raid6 {
    fn place(&self, s: u64) -> Placement {
        let n = self.legs;
        let nd = n - 2;
        let rot = |s: u64| (s % u64::from(n)) as u32;
        let (p, symmetric) = match self.rotation {
            Rotation::LeftAsymmetric => (n - 1 - rot(s), false),
            Rotation::RightAsymmetric => (rot(s), false),
            Rotation::LeftSymmetric => (n - 1 - rot(s), true),
            Rotation::RightSymmetric => (rot(s), true),
            Rotation::RotatingNRestart => (n - 1 - rot(s + 1), false),
        };
        if symmetric {
            let q = (p + 1) % n;
            return Placement { p, q, data: (0..nd).map(|k| (p + 2 + k) % n).collect() };
        }
        if p == n - 1 {
            Placement { p, q: 0, data: (0..nd).map(|k| k + 1).collect() }
        } else {
            Placement { p, q: p + 1, data: (0..nd).map(|k| if k < p { k } else { k + 2 }).collect() }
        }
    }

    /// The Q coefficient of each data chunk, as md computes it.
    fn q_coefficients(&self, place: &Placement) -> Vec<u8> {
        let n = self.legs;
        if self.rotation == Rotation::RotatingNRestart {
            return place.data.iter().map(|&leg| gf::exp2(leg)).collect();
        }
        // Position of each leg among the data legs, walking from the leg
        // after Q and wrapping around.
        place
            .data
            .iter()
            .map(|&leg| {
                let j = (1..n).map(|step| (place.q + step) % n).take_while(|&l| l != leg).filter(|&l| l != place.p).count();
                gf::exp2(j as u32)
            })
            .collect()
    }
}

impl Layout for Raid6 {
    const NAME: &'static str = "raid6";

    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        crate::need_legs(Self::NAME, g, 4)?;
        args::only(&g.args, NAMES, &[])?;
        let rotation = match args::words(&g.args).next() {
            None | Some("left-symmetric" | "ls") => Rotation::LeftSymmetric,
            Some("left-asymmetric" | "la") => Rotation::LeftAsymmetric,
            Some("right-symmetric" | "rs") => Rotation::RightSymmetric,
            Some("right-asymmetric" | "ra") => Rotation::RightAsymmetric,
            Some(_) => Rotation::RotatingNRestart,
        };
        let d = Descriptor {
            data_chunks: g.legs - 2,
            parity_chunks: 2,
            stripes: g.min_leg_chunks(),
            period: u64::from(g.legs),
            period_advance: u64::from(g.legs),
            fault_tolerance: 2,
            ..Descriptor::default()
        };
        Ok((Raid6 { legs: g.legs, rotation }, d))
    }

    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        let place = self.place(s);
        let q = self.q_coefficients(&place);
        for (k, &leg) in place.data.iter().enumerate() {
            out.data(leg, s, k as u32);
        }
        out.xor_parity(place.p, s, 0);
        out.parity(place.q, s, 1, |k| q[k as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{grid, stripes_of};
    use wasmraid_guest::ROLE_PARITY;

    #[test]
    fn md_vectors_five_legs() {
        assert_eq!(grid::<Raid6>(5, "la", 5), "Q 0 1 2 P | 3 4 5 P Q | 6 7 P Q 8 | 9 P Q 10 11 | P Q 12 13 14");
        assert_eq!(grid::<Raid6>(5, "ls", 5), "Q 0 1 2 P | 3 4 5 P Q | 7 8 P Q 6 | 11 P Q 9 10 | P Q 12 13 14");
        assert_eq!(grid::<Raid6>(5, "ra", 5), "P Q 0 1 2 | 3 P Q 4 5 | 6 7 P Q 8 | 9 10 11 P Q | Q 12 13 14 P");
        assert_eq!(grid::<Raid6>(5, "rs", 5), "P Q 0 1 2 | 5 P Q 3 4 | 7 8 P Q 6 | 9 10 11 P Q | Q 12 13 14 P");
    }

    #[test]
    fn rotating_n_restart_is_left_asymmetric_one_stripe_on() {
        assert_eq!(grid::<Raid6>(5, "rotating-n-restart", 2), "0 1 2 P Q | 3 4 P Q 5");
    }

    fn q_of(args: &str, stripe: usize) -> Vec<u8> {
        let all = stripes_of::<Raid6>(&Geometry::uniform(5, 8, args));
        all[stripe].iter().find(|s| s.kind == ROLE_PARITY && s.index == 1).unwrap().coefficients.clone()
    }

    #[test]
    fn md_q_order_for_left_asymmetric() {
        // n = 5, LA, stripe 2 holds D6 D7 P Q D8: Q = D8 + g*D6 + g^2*D7.
        assert_eq!(q_of("la", 2), [2, 4, 1]);
        // For the symmetric layouts md's order is the logical order.
        assert_eq!(q_of("ls", 2), [1, 2, 4]);
    }

    #[test]
    fn ddf_q_weighs_physical_legs() {
        // Stripe 1 of rotating-n-restart: D3 D4 P Q D5 on legs 0 1 2 3 4.
        assert_eq!(q_of("rotating-n-restart", 1), [1, 2, 16]);
    }
}
