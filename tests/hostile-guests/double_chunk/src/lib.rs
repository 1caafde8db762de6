//! Maps data chunks 0 and 1 of every stripe onto the same physical chunk.
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

struct Double(u32);

impl Layout for Double {
    const NAME: &'static str = "double-chunk";
    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        Ok((Double(g.legs), Descriptor { data_chunks: g.legs, stripes: g.min_leg_chunks(), period: 1, period_advance: 1, ..Default::default() }))
    }
    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        for k in 0..self.0 {
            out.data(if k == 1 { 0 } else { k }, s, k);
        }
    }
}

wasmraid_guest::export_layout!(Double);
