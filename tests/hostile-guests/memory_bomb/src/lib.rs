//! Allocates without bound while configuring: the memory cap must stop it.
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

struct Bomb;

impl Layout for Bomb {
    const NAME: &'static str = "memory-bomb";
    fn configure(_g: &Geometry) -> Result<(Self, Descriptor), String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 16 << 20]);
            std::hint::black_box(&hoard);
        }
    }
    fn stripe(&self, _s: u64, _out: &mut StripeWriter<'_>) {}
}

wasmraid_guest::export_layout!(Bomb);
