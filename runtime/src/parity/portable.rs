//! The portable parity path: split-nibble tables, one byte at a time.

use super::EncodeMatrix;

/// Outputs `first..first + outputs.len()` of `matrix` over `sources`.
pub fn encode_group(matrix: &EncodeMatrix, first: usize, sources: &[&[u8]], outputs: &mut [&mut [u8]], accumulate: bool) {
    for (p, out) in outputs.iter_mut().enumerate() {
        if !accumulate {
            out.fill(0);
        }
        for (k, src) in sources.iter().enumerate() {
            let t = matrix.table(first + p, k);
            match t.coefficient {
                0 => {}
                1 => out.iter_mut().zip(src.iter()).for_each(|(o, s)| *o ^= s),
                _ => out.iter_mut().zip(src.iter()).for_each(|(o, s)| *o ^= t.lo[(s & 15) as usize] ^ t.hi[(s >> 4) as usize]),
            }
        }
    }
}

/// The same from byte `done` of every buffer on: the tail a vector path
/// leaves.
pub fn encode_tail(matrix: &EncodeMatrix, first: usize, sources: &[&[u8]], outputs: &mut [&mut [u8]], accumulate: bool, done: usize) {
    if outputs.first().is_some_and(|o| done < o.len()) {
        let tails: Vec<&[u8]> = sources.iter().map(|s| &s[done..]).collect();
        let mut outs: Vec<&mut [u8]> = outputs.iter_mut().map(|o| &mut o[done..]).collect();
        encode_group(matrix, first, &tails, &mut outs, accumulate);
    }
}
