//! Any bytes as the head of a request to `--metrics`: routed without a
//! panic, and once past the size bound always refused rather than read on.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/bounded.rs"]
mod bounded;

#[global_allocator]
static ALLOCATOR: bounded::Bounded = bounded::Bounded;
use wasmraid::metrics::{Route, route};

fuzz_target!(|data: &[u8]| {
    let r = route(data);
    if data.len() > 8 << 10 {
        assert_ne!(r, Route::Incomplete, "a head over the bound is never waited on");
    }
});
