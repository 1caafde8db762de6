//! Puts one slot of stripe 5 on a leg that does not exist.
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

struct BadLeg(u32);

impl Layout for BadLeg {
    const NAME: &'static str = "leg-out-of-range";
    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        Ok((BadLeg(g.legs), Descriptor { data_chunks: g.legs, stripes: g.min_leg_chunks(), ..Default::default() }))
    }
    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        for k in 0..self.0 {
            let leg = if s == 5 && k == 1 { self.0 } else { k };
            out.data(leg, s, k);
        }
    }
}

wasmraid_guest::export_layout!(BadLeg);
