//! Answers every map call with 16 million words (128 MiB).
use wasmraid_guest::bindings::exports::wasmraid::layout::algorithm::{Descriptor, Geometry, Guest};

struct Flood;

impl Guest for Flood {
    fn name() -> String {
        "enormous-result".into()
    }
    fn configure(g: Geometry) -> Result<Descriptor, String> {
        let stripes = g.leg_chunks.iter().copied().min().unwrap_or(0);
        Ok(Descriptor {
            data_chunks: g.legs,
            replica_chunks: 0,
            parity_chunks: 0,
            spare_chunks: 0,
            stripes,
            period: 1,
            period_advance: 1,
            fault_tolerance: 0,
        })
    }
    fn map_stripes(_first: u64, _count: u32) -> Vec<u64> {
        vec![0; 16 << 20]
    }
}

wasmraid_guest::bindings::export!(Flood with_types_in wasmraid_guest::bindings);
