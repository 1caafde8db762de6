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
