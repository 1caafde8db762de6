//! Aperiodic, and its answer depends on how often it was asked: every
//! other batch of stripes swaps its first two legs. The proof records what
//! it was told; a later refill that differs must be refused, never used.
use std::sync::atomic::{AtomicU64, Ordering};
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

static CALLS: AtomicU64 = AtomicU64::new(0);

struct Fickle(u32);

impl Layout for Fickle {
    const NAME: &'static str = "nondeterministic";
    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        Ok((Fickle(g.legs), Descriptor { data_chunks: g.legs, stripes: g.min_leg_chunks(), period: 0, period_advance: 0, ..Default::default() }))
    }
    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        if s % 256 == 0 {
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
        let swap = CALLS.load(Ordering::Relaxed) % 2 == 0;
        for k in 0..self.0 {
            let leg = if swap && k < 2 { 1 - k } else { k };
            out.data(leg, s, k);
        }
    }
}

wasmraid_guest::export_layout!(Fickle);
