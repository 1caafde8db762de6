//! md RAID10 (`__raid10_find_phys`): near, far and offset copies.
//!
//! Arguments, as mdadm writes them: `n2` (default), `f2`, `o2`, or any copy
//! count (`n3`, `f3`...). One stripe is one data chunk and its copies.

use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter, args};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Near,
    Far,
    Offset,
}

pub struct Raid10 {
    legs: u64,
    kind: Kind,
    copies: u64,
    /// Rows between far copies (leg chunks / far for `f`, 1 for `o`).
    stride: u64,
}

fn parse(args_text: &str) -> Result<(Kind, u64), String> {
    let words: Vec<&str> = args::words(args_text).collect();
    let word = match words.as_slice() {
        [] => "n2",
        [w] => w,
        _ => return Err(format!("raid10 takes one layout word (n2, f2, o2), got '{args_text}'")),
    };
    let (kind, count) = match word.split_at_checked(1) {
        Some(("n", c)) => (Kind::Near, c),
        Some(("f", c)) => (Kind::Far, c),
        Some(("o", c)) => (Kind::Offset, c),
        _ => return Err(format!("unknown raid10 layout '{word}' (expected n2, f2, o2 or another copy count)")),
    };
    let copies: u64 = count.parse().map_err(|_| format!("raid10 layout '{word}': copy count is not a number"))?;
    if copies < 1 {
        return Err(format!("raid10 layout '{word}': needs at least one copy"));
    }
    Ok((kind, copies))
}

impl Layout for Raid10 {
    const NAME: &'static str = "raid10";

    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        crate::need_legs(Self::NAME, g, 2)?;
        let (kind, copies) = parse(&g.args)?;
        let legs = u64::from(g.legs);
        if copies > legs {
            return Err(format!("raid10 with {copies} copies needs at least {copies} legs, got {legs}"));
        }
        let leg = g.min_leg_chunks();
        let (near, far) = if kind == Kind::Near { (copies, 1) } else { (1, copies) };
        // md's raid10_size: (leg chunks / far) x legs / near data chunks.
        let stripes = (leg / far) * legs / near;
        let stride = match kind {
            Kind::Near => 0,
            Kind::Far => leg / far,
            Kind::Offset => 1,
        };
        // After `period` chunks the first copy is back on leg 0.
        let period = legs / gcd(legs, near);
        let rows = period * near / legs;
        let period_advance = if kind == Kind::Offset { rows * far } else { rows };
        let d = Descriptor {
            data_chunks: 1,
            replica_chunks: (copies - 1) as u32,
            stripes,
            period,
            period_advance,
            fault_tolerance: (copies - 1) as u32,
            ..Descriptor::default()
        };
        Ok((Raid10 { legs, kind, copies, stride }, d))
    }

    fn stripe(&self, c: u64, out: &mut StripeWriter<'_>) {
        let n = self.legs;
        if self.kind == Kind::Near {
            let t = c * self.copies;
            for i in 0..self.copies {
                let (leg, row) = ((t + i) % n, (t + i) / n);
                if i == 0 { out.data(leg as u32, row, 0) } else { out.replica(leg as u32, row, 0) }
            }
            return;
        }
        let (dev, mut row) = (c % n, c / n);
        if self.kind == Kind::Offset {
            row *= self.copies;
        }
        out.data(dev as u32, row, 0);
        for f in 1..self.copies {
            out.replica(((dev + f) % n) as u32, row + f * self.stride, 0);
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{grid, grid_rows};

    // layouts.md's vectors use 1-based chunk names and show every copy alike;
    // here data is `n`, a copy is `n*`, numbered from 0.
    #[test]
    fn near_two_on_three_legs() {
        assert_eq!(grid::<Raid10>(3, "n2", 3), "0 0* 1 | 1* 2 2* | 3 3* 4");
    }

    #[test]
    fn far_two_on_three_legs() {
        assert_eq!(grid_rows::<Raid10>(3, 8, "f2", 0..2), "0 1 2 | 3 4 5");
        assert_eq!(grid_rows::<Raid10>(3, 8, "f2", 4..6), "2* 0* 1* | 5* 3* 4*");
    }

    #[test]
    fn offset_two_on_three_legs() {
        assert_eq!(grid::<Raid10>(3, "o2", 4), "0 1 2 | 2* 0* 1* | 3 4 5 | 5* 3* 4*");
    }

    #[test]
    fn refuses_more_copies_than_legs() {
        assert!(Raid10::configure(&Geometry::uniform(2, 8, "n3")).err().unwrap().contains("at least 3 legs"));
        assert!(Raid10::configure(&Geometry::uniform(4, 8, "x2")).is_err());
    }
}
