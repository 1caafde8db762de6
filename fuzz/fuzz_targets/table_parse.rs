//! Any text: the table parser returns a table or a located error, never
//! panics; a table it accepts covers its sectors contiguously from 0.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/bounded.rs"]
mod bounded;

#[global_allocator]
static ALLOCATOR: bounded::Bounded = bounded::Bounded;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match wasmraid::table::parse::parse(text) {
        Ok(spec) => {
            let mut next = 0u64;
            for line in &spec.lines {
                assert_eq!(line.start, next, "segments must be contiguous");
                assert!(line.length > 0);
                next = line.start + line.length;
            }
            assert_eq!(spec.sectors(), next);
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("line "), "unlocated error: {message}");
        }
    }
});
