//! Any text as /etc/wasmraid/wasmraid.conf: a config or an error naming
//! the file, never a panic; what it accepts prints (`detail --scan`'s
//! form) to text that parses back to the same arrays, and each entry's
//! flags start with its own name.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/bounded.rs"]
mod bounded;

#[global_allocator]
static ALLOCATOR: bounded::Bounded = bounded::Bounded;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match wasmraid::config::Config::parse(text, "fuzz.conf") {
        Ok(config) => {
            let again = wasmraid::config::Config::parse(&config.to_text(), "again").expect("printed config parses");
            assert_eq!(again.arrays, config.arrays);
            for a in &config.arrays {
                assert_eq!(a.serving_args().first(), Some(&a.name));
            }
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.conf"), "error without the file: {e}"),
    }
});
