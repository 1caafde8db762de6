//! Declares period 1 but swaps its first two legs from stripe 2000 on.
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

struct Liar(u32);

impl Layout for Liar {
    const NAME: &'static str = "lying-period";
    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        Ok((Liar(g.legs), Descriptor { data_chunks: g.legs, stripes: g.min_leg_chunks(), period: 1, period_advance: 1, ..Default::default() }))
    }
    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        for k in 0..self.0 {
            let leg = if s >= 2000 && k < 2 { 1 - k } else { k };
            out.data(leg, s, k);
        }
    }
}

wasmraid_guest::export_layout!(Liar);
