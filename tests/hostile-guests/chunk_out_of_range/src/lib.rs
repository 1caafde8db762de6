//! Declares one stripe more than the legs hold.
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

struct TooLong(u32);

impl Layout for TooLong {
    const NAME: &'static str = "chunk-out-of-range";
    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        Ok((TooLong(g.legs), Descriptor { data_chunks: g.legs, stripes: g.min_leg_chunks() + 1, period: 1, period_advance: 1, ..Default::default() }))
    }
    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        for k in 0..self.0 {
            out.data(k, s, k);
        }
    }
}

wasmraid_guest::export_layout!(TooLong);
