//! Panics (traps) on stripe 3 only: the host must survive, discard the
//! poisoned instance and serve the next call from a fresh one.
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

struct Trap(u32);

impl Layout for Trap {
    const NAME: &'static str = "trap";
    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        Ok((Trap(g.legs), Descriptor { data_chunks: g.legs, stripes: g.min_leg_chunks(), period: 1, period_advance: 1, ..Default::default() }))
    }
    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        if s == 3 {
            panic!("stripe 3 is cursed");
        }
        for k in 0..self.0 {
            out.data(k, s, k);
        }
    }
}

wasmraid_guest::export_layout!(Trap);
