//! Pictures of a layout: a grid of legs by rows like md's documentation
//! (`D0 D1 P Q S`), as terminal text or as an SVG file.

use super::Role;
use super::map::MapError;
use super::proven::ProvenLayout;
use std::collections::HashMap;
use std::fmt::Write as _;

/// The cells of rows `rows` of every leg.
pub struct Grid {
    pub legs: u32,
    pub rows: std::ops::Range<u64>,
    /// (leg, row) -> (label, role kind for colouring)
    cells: HashMap<(u32, u64), (String, Kind)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Data,
    Replica,
    Parity(u32),
    Spare,
}

impl Grid {
    /// Collect the cells of `rows`, scanning stripes until every leg's rows
    /// are filled or the stripes run out (at most `max_stripes`).
    pub fn of(layout: &ProvenLayout, rows: std::ops::Range<u64>, max_stripes: u64) -> Result<Grid, MapError> {
        let legs = layout.geometry.legs();
        let d = u64::from(layout.descriptor.data_chunks);
        let want = (rows.end - rows.start) * u64::from(legs);
        let mut cells = HashMap::new();
        for s in 0..layout.descriptor.stripes.min(max_stripes) {
            let view = layout.stripe(s)?;
            for (i, slot) in view.shape.slots.iter().enumerate() {
                let place = view.place(i);
                if !rows.contains(&place.chunk) {
                    continue;
                }
                let cell = match &slot.role {
                    Role::Data(k) => (format!("D{}", s * d + u64::from(*k)), Kind::Data),
                    Role::Replica(k) => (format!("D{}'", s * d + u64::from(*k)), Kind::Replica),
                    Role::Parity { ordinal, .. } => (parity_label(&view.shape.slots, &slot.role), Kind::Parity(*ordinal)),
                    Role::Spare(_) => ("S".into(), Kind::Spare),
                };
                cells.insert((place.leg, place.chunk), cell);
            }
            if cells.len() as u64 >= want {
                break;
            }
        }
        Ok(Grid { legs, rows, cells })
    }

    fn label(&self, leg: u32, row: u64) -> &str {
        self.cells.get(&(leg, row)).map_or(".", |(l, _)| l.as_str())
    }

    /// A terminal picture: one line per row, one column per leg.
    pub fn text(&self) -> String {
        let width = self.cells.values().map(|(l, _)| l.len()).max().unwrap_or(1).max(format!("leg{}", self.legs.saturating_sub(1)).len());
        let row_width = format!("{}", self.rows.end.saturating_sub(1)).len().max(3);
        let mut out = String::new();
        let _ = write!(out, "{:>row_width$} ", "row");
        for leg in 0..self.legs {
            let _ = write!(out, " {:>width$}", format!("leg{leg}"));
        }
        out.push('\n');
        for row in self.rows.clone() {
            let _ = write!(out, "{row:>row_width$} ");
            for leg in 0..self.legs {
                let _ = write!(out, " {:>width$}", self.label(leg, row));
            }
            out.push('\n');
        }
        out
    }

    /// An SVG picture with roles in colour.
    pub fn svg(&self, title: &str) -> String {
        let (cw, ch, left, top) = (56u64, 26u64, 60u64, 50u64);
        let width = left + cw * u64::from(self.legs) + 10;
        let height = top + ch * (self.rows.end - self.rows.start) + 10;
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"12\">\n<text x=\"{left}\" y=\"18\" font-size=\"14\">{}</text>\n",
            escape(title)
        );
        for leg in 0..self.legs {
            let x = left + cw * u64::from(leg) + cw / 2;
            let _ = writeln!(out, "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">leg{leg}</text>", top - 8);
        }
        for (i, row) in self.rows.clone().enumerate() {
            let y = top + ch * i as u64;
            let _ = writeln!(out, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{row}</text>", left - 8, y + ch / 2 + 4);
            for leg in 0..self.legs {
                let x = left + cw * u64::from(leg);
                let (label, colour) = match self.cells.get(&(leg, row)) {
                    Some((l, kind)) => (l.as_str(), colour(*kind)),
                    None => ("", "#ffffff"),
                };
                let _ = writeln!(
                    out,
                    "<rect x=\"{x}\" y=\"{y}\" width=\"{cw}\" height=\"{ch}\" fill=\"{colour}\" stroke=\"#555\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                    x + cw / 2,
                    y + ch / 2 + 4,
                    escape(label)
                );
            }
        }
        out.push_str("</svg>\n");
        out
    }
}

/// `P` for XOR over every data chunk, `L1`, `L2`... for XOR over a group
/// (local parities), `Q`, `R`, `G3`... for weighted parities in ordinal
/// order.
fn parity_label(slots: &[super::Slot], role: &Role) -> String {
    let Role::Parity { ordinal, coefficients } = role else { return role.label() };
    let binary = |c: &[u8]| c.iter().all(|&x| x <= 1);
    if coefficients.iter().all(|&c| c == 1) {
        return "P".into();
    }
    if binary(coefficients) {
        return format!("L{}", ordinal + 1);
    }
    let rank = slots.iter().filter(|s| matches!(&s.role, Role::Parity { ordinal: o, coefficients: c } if o < ordinal && !binary(c))).count();
    match rank {
        0 => "Q".into(),
        1 => "R".into(),
        n => format!("G{}", n + 1),
    }
}

fn colour(kind: Kind) -> &'static str {
    match kind {
        Kind::Data => "#cfe2ff",
        Kind::Replica => "#e7f1ff",
        Kind::Parity(0) => "#ffd8a8",
        Kind::Parity(1) => "#ffc9c9",
        Kind::Parity(_) => "#e5dbff",
        Kind::Spare => "#e9ecef",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;")
}
