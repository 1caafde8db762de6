//! Declares u64::MAX stripes, aperiodic: a count that would size the
//! proof's allocations (one fingerprint per 256 stripes) if the host
//! believed it. It once aborted `algo check` and, through `reload`, a
//! serving daemon.
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

struct Huge(u32);

impl Layout for Huge {
    const NAME: &'static str = "huge-stripes";
    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        Ok((Huge(g.legs), Descriptor { data_chunks: g.legs, stripes: u64::MAX, period: 0, period_advance: 0, ..Default::default() }))
    }
    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        for k in 0..self.0 {
            out.data(k, s, k);
        }
    }
}

wasmraid_guest::export_layout!(Huge);
