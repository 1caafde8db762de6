//! Plain striping that claims to survive a failed leg.
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

struct Boast(u32);

impl Layout for Boast {
    const NAME: &'static str = "lying-fault-tolerance";
    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        let d = Descriptor { data_chunks: g.legs, stripes: g.min_leg_chunks(), period: 1, period_advance: 1, fault_tolerance: 1, ..Default::default() };
        Ok((Boast(g.legs), d))
    }
    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        for k in 0..self.0 {
            out.data(k, s, k);
        }
    }
}

wasmraid_guest::export_layout!(Boast);
