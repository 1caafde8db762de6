//! Encodes slots into the contract's flat `list<u64>` (see `wit/layout.wit`).

use crate::Descriptor;

/// Role kinds, the low byte of a slot's role word.
pub const ROLE_DATA: u64 = 0;
pub const ROLE_REPLICA: u64 = 1;
pub const ROLE_PARITY: u64 = 2;
pub const ROLE_SPARE: u64 = 3;

/// Words one stripe takes in the flat encoding.
pub(crate) fn words_per_stripe(d: &Descriptor) -> usize {
    d.slots() as usize * 3 + d.parity_chunks as usize * coefficient_words(d.data_chunks)
}

fn coefficient_words(data_chunks: u32) -> usize {
    (data_chunks as usize).div_ceil(4)
}

/// Appends the slots of stripes to the output list.
pub struct StripeWriter<'a> {
    out: &'a mut Vec<u64>,
    data_chunks: u32,
}

impl<'a> StripeWriter<'a> {
    pub(crate) fn new(out: &'a mut Vec<u64>, data_chunks: u32) -> Self {
        StripeWriter { out, data_chunks }
    }

    fn slot(&mut self, leg: u32, chunk: u64, kind: u64, index: u32) {
        self.out.extend_from_slice(&[u64::from(leg), chunk, kind | u64::from(index) << 8]);
    }

    /// Data chunk `k` of the stripe (logical order) at `chunk` on `leg`.
    pub fn data(&mut self, leg: u32, chunk: u64, k: u32) {
        self.slot(leg, chunk, ROLE_DATA, k);
    }

    /// A copy of data chunk `k`.
    pub fn replica(&mut self, leg: u32, chunk: u64, k: u32) {
        self.slot(leg, chunk, ROLE_REPLICA, k);
    }

    /// A spare chunk (holds nothing until a rebuild uses it).
    pub fn spare(&mut self, leg: u32, chunk: u64, ordinal: u32) {
        self.slot(leg, chunk, ROLE_SPARE, ordinal);
    }

    /// Parity `ordinal` = sum over data chunks k of `coefficient(k)` x D_k in
    /// GF(2^8).
    pub fn parity(&mut self, leg: u32, chunk: u64, ordinal: u32, coefficient: impl Fn(u32) -> u8) {
        self.slot(leg, chunk, ROLE_PARITY, ordinal);
        let d = self.data_chunks;
        for w in 0..coefficient_words(d) as u32 {
            let mut word = 0u64;
            for b in 0..4 {
                let k = w * 4 + b;
                if k < d {
                    word |= u64::from(coefficient(k)) << (8 * b);
                }
            }
            self.out.push(word);
        }
    }

    /// XOR parity over every data chunk (RAID4/5's P).
    pub fn xor_parity(&mut self, leg: u32, chunk: u64, ordinal: u32) {
        self.parity(leg, chunk, ordinal, |_| 1);
    }
}
