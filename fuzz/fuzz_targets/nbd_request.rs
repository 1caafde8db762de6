//! Any bytes: the NBD request decoders (compact and extended headers)
//! accept or refuse a header without panicking, and an accepted READ, WRITE
//! or payload never exceeds the size limit.
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
                assert!(r.length <= u64::from(MAX_REQUEST));
            }
            let reply = proto::simple_reply(0, r.cookie);
            assert_eq!(&reply[8..], &r.cookie.to_be_bytes());
        }
    }
    // The same bytes as extended headers: any payload stays bounded.
    for chunk in data.chunks_exact(proto::EXTENDED_REQUEST_HEADER) {
        let header: &[u8; proto::EXTENDED_REQUEST_HEADER] = chunk.try_into().expect("exact chunk");
        if let Ok(r) = proto::decode_extended_request(header) {
            assert!(proto::payload_len(&r, true) <= u64::from(MAX_REQUEST));
            if r.command == proto::CMD_READ {
                assert!(r.length <= u64::from(MAX_REQUEST));
            }
        }
    }
    let _ = proto::decode_info_request(data);
    if let Ok((_, queries)) = proto::decode_meta_request(data) {
        assert!(queries.len() <= proto::MAX_META_QUERIES);
    }
});
