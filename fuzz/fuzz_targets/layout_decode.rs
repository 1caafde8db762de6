//! Any descriptor and any flat answer, as a hostile guest could return
//! them: the decoder returns stripes or an error, never panics, and never
//! allocates beyond what the answer's length bounds; what it returns has
//! the count asked for, the declared slots per stripe and one coefficient
//! per data chunk in every parity row.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[path = "common/bounded.rs"]
mod bounded;

#[global_allocator]
static ALLOCATOR: bounded::Bounded = bounded::Bounded;
use wasmraid::layout::decode::Decoder;
use wasmraid::layout::{Descriptor, Role};

#[derive(Arbitrary, Debug)]
struct Answer {
    /// Keep the counts small (the shapes real layouts have) rather than
    /// any u32, and make `count` fit the words, so decoding gets past the
    /// length check.
    shaped: bool,
    data_chunks: u32,
    replica_chunks: u32,
    parity_chunks: u32,
    spare_chunks: u32,
    stripes: u64,
    first: u64,
    count: u64,
    words: Vec<u64>,
}

fuzz_target!(|a: Answer| {
    let mut d = Descriptor {
        data_chunks: a.data_chunks,
        replica_chunks: a.replica_chunks,
        parity_chunks: a.parity_chunks,
        spare_chunks: a.spare_chunks,
        stripes: a.stripes,
        ..Default::default()
    };
    let mut count = a.count;
    let mut words = a.words;
    if a.shaped {
        d.data_chunks %= 17;
        d.replica_chunks %= 4;
        d.parity_chunks %= 4;
        d.spare_chunks %= 3;
        let per = d.words_per_stripe() as usize;
        if per > 0 {
            count = (words.len() / per) as u64;
            words.truncate(count as usize * per);
        }
    }
    let mut decoder = Decoder::default();
    for _ in 0..2 {
        // Twice through one decoder: shared coefficient rows are reused.
        if let Ok(stripes) = decoder.decode(&d, a.first, count, &words) {
            assert_eq!(stripes.len() as u64, count);
            for s in &stripes {
                assert_eq!(s.slots.len() as u64, d.slots());
                for slot in &s.slots {
                    if let Role::Parity { coefficients, .. } = &slot.role {
                        assert_eq!(coefficients.len(), d.data_chunks as usize);
                    }
                }
            }
        }
    }
});
