//! md RAID5 (`raid5_compute_sector`): one XOR parity per stripe, rotated.
//!
//! Arguments: the md layout name, `left-symmetric` (md's default),
//! `left-asymmetric`, `right-symmetric`, `right-asymmetric`, `parity-0`,
//! `parity-n` (short forms `ls`, `la`, `rs`, `ra`).

use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter, args};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    LeftAsymmetric,
    RightAsymmetric,
    LeftSymmetric,
    RightSymmetric,
    Parity0,
    ParityN,
}

impl Rotation {
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "left-asymmetric" | "la" => Rotation::LeftAsymmetric,
            "right-asymmetric" | "ra" => Rotation::RightAsymmetric,
            "left-symmetric" | "ls" => Rotation::LeftSymmetric,
            "right-symmetric" | "rs" => Rotation::RightSymmetric,
            "parity-0" | "parity-first" => Rotation::Parity0,
            "parity-n" | "parity-last" => Rotation::ParityN,
            _ => return None,
        })
    }

    const NAMES: &[&str] = &["left-symmetric", "left-asymmetric", "right-symmetric", "right-asymmetric", "parity-0", "parity-n"];
}

pub struct Raid5 {
    legs: u32,
    rotation: Rotation,
}

impl Raid5 {
    /// Parity leg and the leg of each data chunk in stripe `s`.
    pub fn place(&self, s: u64) -> (u32, impl Fn(u32) -> u32 + '_) {
        let n = self.legs;
        let data = n - 1;
        let rot = (s % u64::from(n)) as u32;
        let p = match self.rotation {
            Rotation::LeftAsymmetric | Rotation::LeftSymmetric => data - rot,
            Rotation::RightAsymmetric | Rotation::RightSymmetric => rot,
            Rotation::Parity0 => 0,
            Rotation::ParityN => data,
        };
        let symmetric = matches!(self.rotation, Rotation::LeftSymmetric | Rotation::RightSymmetric);
        (p, move |k| {
            if symmetric {
                (p + 1 + k) % n
            } else if k < p {
                k
            } else {
                k + 1
            }
        })
    }

    pub(crate) fn configure_with(name: &str, g: &Geometry, default: Rotation, allowed: &[&str]) -> Result<(Self, Descriptor), String> {
        crate::need_legs(name, g, 2)?;
        args::only(&g.args, allowed, &[])?;
        let rotation = match args::words(&g.args).next() {
            Some(w) => Rotation::parse(w).ok_or_else(|| format!("unknown {name} layout '{w}'"))?,
            None => default,
        };
        let period = if matches!(rotation, Rotation::Parity0 | Rotation::ParityN) { 1 } else { u64::from(g.legs) };
        let d = Descriptor {
            data_chunks: g.legs - 1,
            parity_chunks: 1,
            stripes: g.min_leg_chunks(),
            period,
            period_advance: period,
            fault_tolerance: 1,
            ..Descriptor::default()
        };
        Ok((Raid5 { legs: g.legs, rotation }, d))
    }
}

impl Layout for Raid5 {
    const NAME: &'static str = "raid5";

    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        Self::configure_with(Self::NAME, g, Rotation::LeftSymmetric, &[Rotation::NAMES, &["la", "ra", "ls", "rs"]].concat())
    }

    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        let (p, data_leg) = self.place(s);
        for k in 0..self.legs - 1 {
            out.data(data_leg(k), s, k);
        }
        out.xor_parity(p, s, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::grid;

    // Vectors from layouts.md, checked there against md in Linux 6.12.
    #[test]
    fn md_vectors_four_legs() {
        assert_eq!(grid::<Raid5>(4, "left-asymmetric", 4), "0 1 2 P | 3 4 P 5 | 6 P 7 8 | P 9 10 11");
        assert_eq!(grid::<Raid5>(4, "right-asymmetric", 4), "P 0 1 2 | 3 P 4 5 | 6 7 P 8 | 9 10 11 P");
        assert_eq!(grid::<Raid5>(4, "left-symmetric", 4), "0 1 2 P | 4 5 P 3 | 8 P 6 7 | P 9 10 11");
        assert_eq!(grid::<Raid5>(4, "right-symmetric", 4), "P 0 1 2 | 5 P 3 4 | 7 8 P 6 | 9 10 11 P");
        assert_eq!(grid::<Raid5>(4, "parity-0", 2), "P 0 1 2 | P 3 4 5");
        assert_eq!(grid::<Raid5>(4, "parity-n", 2), "0 1 2 P | 3 4 5 P");
    }

    #[test]
    fn default_is_left_symmetric() {
        assert_eq!(grid::<Raid5>(4, "", 4), grid::<Raid5>(4, "ls", 4));
    }

    #[test]
    fn refuses_unknown_layout_and_one_leg() {
        assert!(Raid5::configure(&Geometry::uniform(4, 8, "diagonal")).err().unwrap().contains("diagonal"));
        assert!(Raid5::configure(&Geometry::uniform(1, 8, "")).err().unwrap().contains("at least 2"));
    }
}
