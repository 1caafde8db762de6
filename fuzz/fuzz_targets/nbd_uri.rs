//! Any text as a leg's NBD URI (`nbd://`, `nbds+unix://...?tls-...`): the
//! parser returns a URI or an error naming why, never panics, and a URI it
//! accepts prints as text it parses back to the same URI.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/bounded.rs"]
mod bounded;

#[global_allocator]
static ALLOCATOR: bounded::Bounded = bounded::Bounded;
use wasmraid::device::nbd::NbdUri;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(uri) = NbdUri::parse(text) else { return };
    let again = NbdUri::parse(&uri.to_string());
    // Printing does not escape, so a name with '?', '&' or '%' may not
    // survive; everything else must.
    let plain = |s: &str| !s.contains(['?', '&', '%', '#', '=', '[', ']', '/']);
    let paths_plain = match &uri.tls {
        Some(t) => t.certificates.as_ref().is_none_or(|d| plain(&d.to_string_lossy())) && t.hostname.as_deref().is_none_or(plain),
        None => true,
    };
    let socket_plain = match &uri.endpoint {
        wasmraid::device::nbd::uri::Endpoint::Unix(p) => plain(&p.to_string_lossy()),
        wasmraid::device::nbd::uri::Endpoint::Tcp { host, .. } => plain(host),
    };
    if plain(&uri.export) && paths_plain && socket_plain {
        assert_eq!(again.as_ref().ok(), Some(&uri), "{text:?} printed as {uri} parses differently");
    }
});
