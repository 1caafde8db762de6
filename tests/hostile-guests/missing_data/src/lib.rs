//! Writes data chunk 0 twice and never data chunk 1.
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

struct Missing(u32);

impl Layout for Missing {
    const NAME: &'static str = "missing-data";
    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        Ok((Missing(g.legs), Descriptor { data_chunks: g.legs, stripes: g.min_leg_chunks(), period: 1, period_advance: 1, ..Default::default() }))
    }
    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        for k in 0..self.0 {
            out.data(k, s, if k == 1 { 0 } else { k });
        }
    }
}

wasmraid_guest::export_layout!(Missing);
