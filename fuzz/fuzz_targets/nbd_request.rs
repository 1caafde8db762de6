//! Any bytes: the NBD request decoder accepts or refuses a header without
//! panicking, and an accepted READ or WRITE never exceeds the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/bounded.rs"]
mod bounded;

#[global_allocator]
static ALLOCATOR: bounded::Bounded = bounded::Bounded;
use wasmraid::frontend::nbd::proto::{self, MAX_REQUEST, REQUEST_HEADER};

fuzz_target!(|data: &[u8]| {
    for chunk in data.chunks_exact(REQUEST_HEADER) {
        let header: &[u8; REQUEST_HEADER] = chunk.try_into().expect("exact chunk");
        if let Ok(r) = proto::decode_request(header) {
            if r.command == proto::CMD_READ || r.command == proto::CMD_WRITE {
                assert!(r.length <= MAX_REQUEST);
            }
            let reply = proto::simple_reply(0, r.cookie);
            assert_eq!(&reply[8..], &r.cookie.to_be_bytes());
        }
    }
    let _ = proto::decode_info_request(data);
    if let Ok((_, queries)) = proto::decode_meta_request(data) {
        assert!(queries.len() <= proto::MAX_META_QUERIES);
    }
});
