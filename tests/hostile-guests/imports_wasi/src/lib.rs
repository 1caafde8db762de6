//! A layout that imports WASI (randomness): not a pure function, refused.
wit_bindgen::generate!({ path: "wit", world: "layout-with-wasi", generate_all });

use exports::wasmraid::layout::algorithm::{Descriptor, Geometry, Guest};

struct Impure;

impl Guest for Impure {
    fn name() -> String {
        "imports-wasi".into()
    }
    fn configure(g: Geometry) -> Result<Descriptor, String> {
        let seed = wasi::random::random::get_random_u64();
        Ok(Descriptor {
            data_chunks: g.legs,
            replica_chunks: 0,
            parity_chunks: 0,
            spare_chunks: 0,
            stripes: seed % 100 + 1,
            period: 1,
            period_advance: 1,
            fault_tolerance: 0,
        })
    }
    fn map_stripes(_first: u64, _count: u32) -> Vec<u64> {
        Vec::new()
    }
}

export!(Impure);
