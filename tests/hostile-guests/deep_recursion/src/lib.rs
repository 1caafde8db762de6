//! Recurses without bound while configuring: the stack cap must stop it.
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

struct Deep;

fn dive(n: u64) -> u64 {
    if n == u64::MAX { 0 } else { std::hint::black_box(dive(std::hint::black_box(n + 1))) + 1 }
}

impl Layout for Deep {
    const NAME: &'static str = "deep-recursion";
    fn configure(_g: &Geometry) -> Result<(Self, Descriptor), String> {
        Err(format!("depth {}", dive(0)))
    }
    fn stripe(&self, _s: u64, _out: &mut StripeWriter<'_>) {}
}

wasmraid_guest::export_layout!(Deep);
