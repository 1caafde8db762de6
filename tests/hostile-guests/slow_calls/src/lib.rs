//! Every map call spins for about 0.3 s, under the 2 s per-call deadline:
//! the proof's hundreds of calls would take minutes without a deadline of
//! its own.
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

struct Slow(u32);

fn spin() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..150_000_000u64 {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    std::hint::black_box(x);
}

impl Layout for Slow {
    const NAME: &'static str = "slow-calls";
    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        Ok((Slow(g.legs), Descriptor { data_chunks: g.legs, stripes: g.min_leg_chunks(), period: 1, period_advance: 1, ..Default::default() }))
    }
    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        if s == 0 || s % 7 == 3 {
            spin();
        }
        for k in 0..self.0 {
            out.data(k, s, k);
        }
    }
}

wasmraid_guest::export_layout!(Slow);
