//! Pyramid / LRC codes (insane_striping's "elegant" and `lrc`): data in
//! local groups, each with its own XOR parity, plus global parities and
//! distributed spares, rotated across legs stripe by stripe.
//!
//! The argument is the scheme, one character per leg (insane_striping's
//! syntax): a digit k is a data chunk of group k, `s` followed by a digit k
//! is group k's local parity, `g` a global parity, `e` a spare. The default,
//! "elegant", is `11111s122222s2ge`: 2 groups of 5, 2 local parities, one
//! global parity and one spare on 14 legs.
//!
//! Global parity m (m = 1, 2, ...) weighs data chunk k by g^(m k). Splitting
//! the m = 0 row of that Vandermonde code into local XORs keeps its distance
//! (Huang, Chen, Li), so the layout survives globals + 1 lost legs while a
//! single lost chunk is rebuilt from its group alone.

use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter, args, gf};

pub const ELEGANT: &str = "11111s122222s2ge";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    Data { group: u8, k: u32 },
    Local { group: u8 },
    Global { m: u32 },
    Spare { ordinal: u32 },
}

pub struct Pyramid {
    cells: Vec<Cell>,
    /// Group of each data chunk, in data order.
    group_of: Vec<u8>,
    globals: u32,
}

fn parse_scheme(scheme: &str) -> Result<Vec<Cell>, String> {
    let mut cells = Vec::new();
    let (mut k, mut m, mut spares) = (0u32, 0u32, 0u32);
    let mut chars = scheme.char_indices();
    while let Some((at, c)) = chars.next() {
        let cell = match c {
            '1'..='9' => {
                k += 1;
                Cell::Data { group: c as u8 - b'0', k: k - 1 }
            }
            's' => match chars.next() {
                Some((_, d @ '1'..='9')) => Cell::Local { group: d as u8 - b'0' },
                _ => return Err(format!("scheme '{scheme}': 's' at position {at} must be followed by a group digit 1-9")),
            },
            'g' => {
                m += 1;
                Cell::Global { m }
            }
            'e' => {
                spares += 1;
                Cell::Spare { ordinal: spares - 1 }
            }
            other => return Err(format!("scheme '{scheme}': unexpected '{other}' at position {at} (digits, sN, g, e)")),
        };
        cells.push(cell);
    }
    Ok(cells)
}

impl Pyramid {
    fn parity_count(&self) -> u32 {
        self.cells.iter().filter(|c| matches!(c, Cell::Local { .. } | Cell::Global { .. })).count() as u32
    }
}

impl Layout for Pyramid {
    const NAME: &'static str = "pyramid";

    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        let scheme = args::value(&g.args, "scheme").or_else(|| args::words(&g.args).find(|w| !w.contains('='))).unwrap_or(ELEGANT);
        args::only(&g.args, &[scheme], &["scheme"])?;
        let scheme = if scheme == "elegant" { ELEGANT } else { scheme };
        let cells = parse_scheme(scheme)?;
        if cells.len() != g.legs as usize {
            return Err(format!("scheme '{scheme}' has {} slots but the array has {} legs", cells.len(), g.legs));
        }
        let group_of: Vec<u8> = cells.iter().filter_map(|c| if let Cell::Data { group, .. } = c { Some(*group) } else { None }).collect();
        if group_of.is_empty() || group_of.len() > 255 {
            return Err(format!("scheme '{scheme}' must hold 1 to 255 data chunks, it holds {}", group_of.len()));
        }
        for group in 1..=9u8 {
            let has_data = group_of.contains(&group);
            let locals = cells.iter().filter(|c| **c == Cell::Local { group }).count();
            if locals > 1 || (locals == 1 && !has_data) {
                return Err(format!("scheme '{scheme}': group {group} needs exactly one local parity s{group} and data"));
            }
        }
        let globals = cells.iter().filter(|c| matches!(c, Cell::Global { .. })).count() as u32;
        let has_locals = cells.iter().any(|c| matches!(c, Cell::Local { .. }));
        let every_group_local = group_of.iter().all(|&gr| cells.contains(&Cell::Local { group: gr }));
        let fault_tolerance = globals + u32::from(has_locals && every_group_local);
        let layout = Pyramid { cells, group_of, globals };
        let d = Descriptor {
            data_chunks: layout.group_of.len() as u32,
            parity_chunks: layout.parity_count(),
            spare_chunks: layout.cells.iter().filter(|c| matches!(c, Cell::Spare { .. })).count() as u32,
            stripes: g.min_leg_chunks(),
            period: u64::from(g.legs),
            period_advance: u64::from(g.legs),
            fault_tolerance,
            ..Descriptor::default()
        };
        Ok((layout, d))
    }

    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        let n = self.cells.len() as u64;
        let mut ordinal = 0;
        for (i, cell) in self.cells.iter().enumerate() {
            let leg = ((i as u64 + s) % n) as u32;
            match *cell {
                Cell::Data { k, .. } => out.data(leg, s, k),
                Cell::Spare { ordinal } => out.spare(leg, s, ordinal),
                Cell::Local { group } => {
                    out.parity(leg, s, ordinal, |k| u8::from(self.group_of[k as usize] == group));
                    ordinal += 1;
                }
                Cell::Global { m } => {
                    debug_assert!(m <= self.globals);
                    out.parity(leg, s, ordinal, |k| gf::exp2(m * k));
                    ordinal += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{descriptor_of, stripes_of};
    use wasmraid_guest::{ROLE_PARITY, ROLE_SPARE};

    #[test]
    fn elegant_is_fourteen_legs_tolerating_two() {
        let g = Geometry::uniform(14, 28, "");
        let d = descriptor_of::<Pyramid>(&g);
        assert_eq!((d.data_chunks, d.parity_chunks, d.spare_chunks, d.fault_tolerance), (10, 3, 1, 2));
    }

    #[test]
    fn local_parity_covers_its_group_only() {
        let stripes = stripes_of::<Pyramid>(&Geometry::uniform(5, 10, "11s1ge"));
        let locals: Vec<_> = stripes[0].iter().filter(|s| s.kind == ROLE_PARITY).map(|s| s.coefficients.clone()).collect();
        assert_eq!(locals, [vec![1, 1], vec![1, 2]]);
    }

    #[test]
    fn spare_rotates_over_every_leg() {
        let stripes = stripes_of::<Pyramid>(&Geometry::uniform(14, 14, "elegant"));
        let mut legs: Vec<u32> = stripes.iter().map(|st| st.iter().find(|s| s.kind == ROLE_SPARE).unwrap().leg).collect();
        legs.sort();
        assert_eq!(legs, (0..14).collect::<Vec<_>>());
    }

    #[test]
    fn lrc_scheme_from_insane_striping() {
        let d = descriptor_of::<Pyramid>(&Geometry::uniform(14, 14, "scheme=111s1222s2333s3eg"));
        assert_eq!((d.data_chunks, d.parity_chunks, d.spare_chunks, d.fault_tolerance), (9, 4, 1, 2));
    }

    #[test]
    fn bad_schemes_are_named() {
        let err = |s: &str, legs| Pyramid::configure(&Geometry::uniform(legs, 8, s)).err().unwrap();
        assert!(err("11x1", 4).contains("'x' at position 2"));
        assert!(err("11s1g", 5).contains("4 slots"));
        assert!(err("11s1s1", 4).contains("group 1"));
        assert!(err("11s", 3).contains("group digit"));
    }
}
