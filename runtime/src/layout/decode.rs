//! Decodes a guest's flat `map-stripes` answer (see `wit/layout.wit`) into
//! stripes, refusing anything malformed with the stripe and slot named.
//! Descriptor and words are the guest's: every allocation and loop here is
//! bounded by the words actually received (fuzzed: `fuzz/layout_decode`).

use super::{Descriptor, Role, Slot, Stripe};
use std::collections::HashMap;
use std::sync::Arc;

const KIND_DATA: u64 = 0;
const KIND_REPLICA: u64 = 1;
const KIND_PARITY: u64 = 2;
const KIND_SPARE: u64 = 3;

/// A malformed answer from a guest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("map-stripes({first}, {count}) returned {got} words, expected {expected} ({count} stripes of {per_stripe} words)")]
    Length { first: u64, count: u64, got: usize, expected: u64, per_stripe: u64 },
    #[error("stripe {stripe}, slot {slot}: {what}")]
    Slot { stripe: u64, slot: u64, what: String },
    #[error("the descriptor declares stripes of no slots")]
    NoSlots,
    #[error("map-stripes({first}, {count}): stripe numbers past 2^64")]
    Overflow { first: u64, count: u64 },
}

/// Decodes stripes, sharing identical coefficient rows between slots.
#[derive(Default)]
pub struct Decoder {
    rows: HashMap<Vec<u8>, Arc<[u8]>>,
}

impl Decoder {
    /// Decode `count` stripes starting at `first` from `words`.
    pub fn decode(&mut self, d: &Descriptor, first: u64, count: u64, words: &[u64]) -> Result<Vec<Stripe>, DecodeError> {
        let per_stripe = d.words_per_stripe();
        // With words per stripe, `count` is bounded by the answer's length;
        // without, nothing would bound the loop below.
        if per_stripe == 0 {
            return Err(DecodeError::NoSlots);
        }
        let expected = per_stripe.saturating_mul(count);
        if words.len() as u64 != expected {
            return Err(DecodeError::Length { first, count, got: words.len(), expected, per_stripe });
        }
        if count > 0 && first.checked_add(count - 1).is_none() {
            return Err(DecodeError::Overflow { first, count });
        }
        let mut stripes = Vec::with_capacity(count as usize);
        let mut at = 0usize;
        for s in 0..count {
            let stripe = first + s;
            let mut slots = Vec::with_capacity(d.slots() as usize);
            for slot in 0..d.slots() {
                let err = |what: String| DecodeError::Slot { stripe, slot, what };
                let Some(&[leg, chunk, role]) = words.get(at..at + 3) else {
                    return Err(err("the answer ends inside this slot (more parity slots than declared?)".into()));
                };
                at += 3;
                let leg = u32::try_from(leg).map_err(|_| err(format!("leg {leg} is not a leg number")))?;
                let index = u32::try_from(role >> 8).map_err(|_| err(format!("role word {role:#x} has an index beyond 32 bits")))?;
                let role = match role & 0xff {
                    KIND_DATA => Role::Data(index),
                    KIND_REPLICA => Role::Replica(index),
                    KIND_SPARE => Role::Spare(index),
                    KIND_PARITY => {
                        let n = d.data_chunks as usize;
                        let coefficient_words = n.div_ceil(4);
                        let Some(coefficient_slice) = words.get(at..at + coefficient_words) else {
                            return Err(err("the answer ends inside this slot's coefficients".into()));
                        };
                        let mut row = Vec::with_capacity(coefficient_words * 4);
                        for w in coefficient_slice {
                            if w >> 32 != 0 {
                                return Err(err(format!("coefficient word {w:#x} uses more than 32 bits")));
                            }
                            row.extend_from_slice(&(*w as u32).to_le_bytes());
                        }
                        at += coefficient_words;
                        if row[n..].iter().any(|&b| b != 0) {
                            return Err(err(format!("coefficients given beyond the {n} data chunks")));
                        }
                        row.truncate(n);
                        Role::Parity { ordinal: index, coefficients: self.intern(row) }
                    }
                    kind => return Err(err(format!("unknown role kind {kind} (0 data, 1 replica, 2 parity, 3 spare)"))),
                };
                slots.push(Slot { leg, chunk, role });
            }
            stripes.push(Stripe { slots });
            // A parity slot's words are counted in `per_stripe` only when the
            // guest declared as many parity slots as it wrote.
            if at as u64 != per_stripe * (s + 1) {
                return Err(DecodeError::Slot {
                    stripe,
                    slot: d.slots().saturating_sub(1),
                    what: format!("stripe does not hold exactly {} parity slots as declared", d.parity_chunks),
                });
            }
        }
        Ok(stripes)
    }

    fn intern(&mut self, row: Vec<u8>) -> Arc<[u8]> {
        if let Some(shared) = self.rows.get(&row) {
            return shared.clone();
        }
        let shared: Arc<[u8]> = row.clone().into();
        if self.rows.len() < 4096 {
            self.rows.insert(row, shared.clone());
        }
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raid5_like() -> Descriptor {
        Descriptor { data_chunks: 2, parity_chunks: 1, stripes: 4, period: 1, period_advance: 1, fault_tolerance: 1, ..Default::default() }
    }

    #[test]
    fn decodes_a_stripe() {
        let words = [0, 7, 0, 1, 7, 1 << 8, 2, 7, 2, 0x0101];
        let stripes = Decoder::default().decode(&raid5_like(), 0, 1, &words).unwrap();
        assert_eq!(stripes[0].slots[1], Slot { leg: 1, chunk: 7, role: Role::Data(1) });
        assert_eq!(stripes[0].slots[2].role, Role::Parity { ordinal: 0, coefficients: Arc::from(vec![1, 1]) });
    }

    #[test]
    fn refuses_wrong_length_and_kinds() {
        let d = raid5_like();
        assert!(matches!(Decoder::default().decode(&d, 0, 1, &[0; 9]), Err(DecodeError::Length { got: 9, expected: 10, .. })));
        let words = [0, 7, 9, 1, 7, 1 << 8, 2, 7, 2, 0x0101];
        let e = Decoder::default().decode(&d, 5, 1, &words).unwrap_err().to_string();
        assert!(e.contains("stripe 5, slot 0") && e.contains("unknown role kind 9"), "{e}");
        let words = [0, 7, 0, 1, 7, 1 << 8, 2, 7, 2, 0x010101];
        assert!(Decoder::default().decode(&d, 0, 1, &words).unwrap_err().to_string().contains("beyond the 2 data chunks"));
    }

    #[test]
    fn refuses_parity_count_mismatch() {
        // Declares one parity slot but writes a data slot where parity goes,
        // leaving the coefficient word to be misread: the length check or
        // the parity-count check must catch it.
        let words = [0, 7, 0, 1, 7, 1 << 8, 2, 7, 0, 0x0101];
        assert!(Decoder::default().decode(&raid5_like(), 0, 1, &words).is_err());
    }

    #[test]
    fn refuses_counts_no_answer_bounds() {
        // No slots: zero words would "hold" any number of stripes.
        let empty = Descriptor { stripes: 4, ..Default::default() };
        assert_eq!(Decoder::default().decode(&empty, 0, u64::MAX, &[]).unwrap_err(), DecodeError::NoSlots);
        // Stripe numbers that would wrap.
        let words = [0, 7, 0, 1, 7, 1 << 8, 2, 7, 2, 0x0101];
        assert_eq!(Decoder::default().decode(&raid5_like(), u64::MAX, 1, &words).map(|s| s.len()), Ok(1));
        let twice = [words, words].concat();
        assert_eq!(Decoder::default().decode(&raid5_like(), u64::MAX, 2, &twice).unwrap_err(), DecodeError::Overflow { first: u64::MAX, count: 2 });
    }
}
