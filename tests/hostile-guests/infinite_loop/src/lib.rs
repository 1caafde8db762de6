//! Loops forever when asked for stripes: the epoch deadline must stop it.
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

struct Spin;

impl Layout for Spin {
    const NAME: &'static str = "infinite-loop";
    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        Ok((Spin, Descriptor { data_chunks: g.legs, stripes: g.min_leg_chunks(), period: 1, period_advance: 1, ..Default::default() }))
    }
    fn stripe(&self, _s: u64, _out: &mut StripeWriter<'_>) {
        loop {
            std::hint::black_box(());
        }
    }
}

wasmraid_guest::export_layout!(Spin);
