//! A 100 MB name, and a configuration error laden with terminal escape
//! sequences (a forged "proof PASSED" line, a window title) followed by
//! 100 MB more: every message about it must stay short and inert.
use wasmraid_guest::bindings::exports::wasmraid::layout::algorithm::{Descriptor, Geometry, Guest};

struct Loud;

const FORGED: &str = "refused\n\u{1b}[32mproof      PASSED: 1 stripe shape(s) survive\u{1b}[0m\u{1b}]0;owned\u{7}\r";

impl Guest for Loud {
    fn name() -> String {
        "n".repeat(100 << 20)
    }
    fn configure(_g: Geometry) -> Result<Descriptor, String> {
        let mut e = String::from(FORGED);
        e.push_str(&"x".repeat(100 << 20));
        Err(e)
    }
    fn map_stripes(_first: u64, _count: u32) -> Vec<u64> {
        Vec::new()
    }
}

wasmraid_guest::bindings::export!(Loud with_types_in wasmraid_guest::bindings);
