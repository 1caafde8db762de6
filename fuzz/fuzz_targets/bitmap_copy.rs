//! Any bytes as one on-leg bitmap copy, and any region count: decode
//! returns the states or an error, never panics or reads past the bytes;
//! what decodes has one state per region and encodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/bounded.rs"]
mod bounded;

#[global_allocator]
static ALLOCATOR: bounded::Bounded = bounded::Bounded;
use wasmraid::meta::bitmap_copy::{MAGIC, decode, encode};

const HEADER: usize = 32;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Some((count, copy)) = rest.split_first_chunk::<8>() else { return };
    let mut copy = copy.to_vec();
    let mut regions = u64::from_le_bytes(*count);
    if flags & 1 != 0 && copy.len() >= HEADER {
        // Agree with the copy's own count, as an honest superblock would.
        regions = u64::from_le_bytes(copy[8..16].try_into().unwrap_or_default());
    }
    if flags & 2 != 0 && copy.len() >= HEADER {
        // A valid magic and checksum, so the states behind them are read.
        copy[..8].copy_from_slice(MAGIC);
        if let Some(body) = usize::try_from(regions).ok().and_then(|n| copy.get(HEADER..HEADER.checked_add(n)?)) {
            let crc = crc32c::crc32c_append(crc32c::crc32c(&copy[..HEADER - 4]), body);
            copy[HEADER - 4..HEADER].copy_from_slice(&crc.to_le_bytes());
        }
    }
    if let Ok((serial, states)) = decode(&copy, regions) {
        assert_eq!(states.len() as u64, regions);
        let which = copy[16];
        assert_eq!(decode(&encode(&states, which, serial), regions), Ok((serial, states)));
    }
});
