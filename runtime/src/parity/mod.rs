//! Vectorized GF(2^8) multiply-accumulate: the parity engine.
//!
//! `encode` computes any set of linear parities over a stripe's data in one
//! pass (each source is loaded once per 32 bytes and multiplied into up to
//! four accumulators held in registers), the way ISA-L's `ec_encode_data`
//! does. Multiplication by a constant is one affine transform where the
//! CPU has GFNI (`gfni.rs`), else the split-nibble table method (two
//! PSHUFB lookups) with AVX2 (`avx2.rs`), else a portable table-driven
//! path; all give identical results.
//!
//! RAID-6's own rows (P: every coefficient 1; Q: 2^k for source k, md's
//! syndrome) take a shorter road when every row of a group is one of those
//! two (RAID-5's P alone included): P by XOR, Q by Horner's rule, one
//! multiply-by-2 (shift, compare, mask) per source and no table lookup, as
//! the kernel's `gen_syndrome` does. It is cheaper on any x86 without GFNI,
//! and several times cheaper where PSHUFB is emulated (qemu's TCG, the VM
//! bed): see `syndrome.rs`.

mod avx2;
mod gfni;
mod portable;
mod syndrome;

use crate::layout::gf256;

/// Per-coefficient nibble tables: `lo[x] = c * x`, `hi[x] = c * (x << 4)`.
#[derive(Clone, Copy)]
pub struct MulTable {
    pub lo: [u8; 16],
    pub hi: [u8; 16],
    pub coefficient: u8,
}

impl MulTable {
    pub fn new(c: u8) -> Self {
        let mut lo = [0u8; 16];
        let mut hi = [0u8; 16];
        for x in 0..16u8 {
            lo[x as usize] = gf256::mul(c, x);
            hi[x as usize] = gf256::mul(c, x << 4);
        }
        MulTable { lo, hi, coefficient: c }
    }

    /// The coefficient as GFNI's affine matrix (`gfni.rs`): byte 7 - i
    /// selects the input bits whose products have bit i set. The products
    /// of single bits are the tables' entries at 1, 2, 4 and 8.
    pub fn affine(&self) -> u64 {
        let products = [self.lo[1], self.lo[2], self.lo[4], self.lo[8], self.hi[1], self.hi[2], self.hi[4], self.hi[8]];
        let mut m = 0u64;
        for i in 0..8 {
            let row = products.iter().enumerate().fold(0u64, |row, (j, p)| row | (u64::from((p >> i) & 1) << j));
            m |= row << (8 * (7 - i));
        }
        m
    }
}

/// A parity matrix prepared for encoding: `rows[p][k]` is the coefficient
/// of source k in output p.
pub struct EncodeMatrix {
    rows: usize,
    cols: usize,
    tables: Vec<MulTable>,
    kinds: Vec<RowKind>,
}

/// What a row of coefficients is, for the syndrome path.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RowKind {
    /// Every coefficient 1 (RAID-5's and RAID-6's P).
    Ones,
    /// Coefficient 2^k for source k (RAID-6's Q).
    Powers,
    /// Anything else.
    Other,
}

impl RowKind {
    fn of(row: &[u8]) -> RowKind {
        if row.iter().all(|&c| c == 1) {
            RowKind::Ones
        } else if row.iter().enumerate().all(|(k, &c)| c == gf256::exp2(k as u32)) {
            RowKind::Powers
        } else {
            RowKind::Other
        }
    }
}

impl EncodeMatrix {
    pub fn new(rows: &[Vec<u8>]) -> Self {
        let cols = rows.first().map_or(0, Vec::len);
        let tables = rows.iter().flat_map(|r| r.iter().map(|&c| MulTable::new(c))).collect();
        let kinds = rows.iter().map(|r| RowKind::of(r)).collect();
        EncodeMatrix { rows: rows.len(), cols, tables, kinds }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    fn table(&self, p: usize, k: usize) -> &MulTable {
        &self.tables[p * self.cols + k]
    }
}

/// `outputs[p] = sum over k of matrix[p][k] * sources[k]`; every buffer has
/// the same length.
pub fn encode(matrix: &EncodeMatrix, sources: &[&[u8]], outputs: &mut [&mut [u8]]) {
    run(matrix, sources, outputs, false);
}

/// `outputs[p] += sum over k of matrix[p][k] * sources[k]` (a parity update
/// from data deltas, read-modify-write style).
pub fn encode_accumulate(matrix: &EncodeMatrix, sources: &[&[u8]], outputs: &mut [&mut [u8]]) {
    run(matrix, sources, outputs, true);
}

fn run(matrix: &EncodeMatrix, sources: &[&[u8]], outputs: &mut [&mut [u8]], accumulate: bool) {
    assert_eq!(sources.len(), matrix.cols, "one source per matrix column");
    assert_eq!(outputs.len(), matrix.rows, "one output per matrix row");
    let len = outputs.first().map_or(0, |o| o.len());
    assert!(sources.iter().all(|s| s.len() == len) && outputs.iter().all(|o| o.len() == len), "buffers of one length");
    let mut first = 0;
    while first < matrix.rows {
        let group = (matrix.rows - first).min(4);
        let (_, rest) = outputs.split_at_mut(first);
        let outs = &mut rest[..group];
        let kinds = &matrix.kinds[first..first + group];
        // GFNI first (one instruction per product), then RAID-6's syndrome
        // or RAID-5's XOR (no lookups: what an emulated CPU runs fastest),
        // then tables.
        let p_or_q = !kinds.contains(&RowKind::Other);
        let done = gfni::encode_group(matrix, first, sources, outs, accumulate)
            || (p_or_q && syndrome::encode_group(kinds, sources, outs, accumulate))
            || avx2::encode_group(matrix, first, sources, outs, accumulate);
        if !done {
            portable::encode_group(matrix, first, sources, outs, accumulate);
        }
        first += group;
    }
}

/// `dst ^= c * src`.
pub fn mul_add(c: u8, src: &[u8], dst: &mut [u8]) {
    encode_accumulate(&EncodeMatrix::new(&[vec![c]]), &[src], &mut [dst]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(rows: &[Vec<u8>], sources: &[Vec<u8>]) -> Vec<Vec<u8>> {
        rows.iter().map(|row| (0..sources[0].len()).map(|i| row.iter().zip(sources).fold(0u8, |acc, (&c, s)| acc ^ gf256::mul(c, s[i]))).collect()).collect()
    }

    proptest! {
        #[test]
        fn encode_matches_the_scalar_field(
            rows in prop::collection::vec(prop::collection::vec(any::<u8>(), 5), 1..7),
            seed in any::<u64>(),
            len in 0usize..300,
        ) {
            let sources: Vec<Vec<u8>> = (0..5).map(|k| (0..len).map(|i| (seed.wrapping_mul(31).wrapping_add((k * 1009 + i * 7) as u64) >> 3) as u8).collect()).collect();
            let m = EncodeMatrix::new(&rows);
            let mut outs: Vec<Vec<u8>> = vec![vec![0xAA; len]; rows.len()];
            {
                let srcs: Vec<&[u8]> = sources.iter().map(|s| s.as_slice()).collect();
                let mut o: Vec<&mut [u8]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
                encode(&m, &srcs, &mut o);
            }
            let want = reference(&rows, &sources);
            prop_assert_eq!(&outs, &want);
            // The table path, which a CPU with GFNI does not take above.
            if rows.len() <= 4 {
                let srcs: Vec<&[u8]> = sources.iter().map(|s| s.as_slice()).collect();
                let mut o: Vec<&mut [u8]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
                if avx2::encode_group(&m, 0, &srcs, &mut o, false) {
                    prop_assert_eq!(&outs, &want);
                }
            }
        }

        #[test]
        fn portable_and_avx2_agree(c in any::<u8>(), data in prop::collection::vec(any::<u8>(), 0..200)) {
            let m = EncodeMatrix::new(&[vec![c]]);
            let mut a = vec![0u8; data.len()];
            let mut b = vec![0u8; data.len()];
            portable::encode_group(&m, 0, &[&data], &mut [&mut a], false);
            if !avx2::encode_group(&m, 0, &[&data], &mut [&mut b], false) {
                portable::encode_group(&m, 0, &[&data], &mut [&mut b], false);
            }
            prop_assert_eq!(&a, &b);
            let mut g = vec![0u8; data.len()];
            if gfni::encode_group(&m, 0, &[&data], &mut [&mut g], false) {
                prop_assert_eq!(a, g);
            }
        }
    }

    proptest! {
        /// P and Q rows (in any order) by the syndrome path, and by
        /// whichever path `encode` takes here, equal the field's sums, also
        /// accumulated.
        #[test]
        fn syndrome_rows_match_the_scalar_field(
            kinds in prop::collection::vec(any::<bool>(), 1..5),
            count in 1usize..12,
            len in 0usize..700,
            seed in any::<u64>(),
            accumulate in any::<bool>(),
        ) {
            let rows: Vec<Vec<u8>> = kinds.iter().map(|q| (0..count).map(|i| if *q { gf256::exp2(i as u32) } else { 1 }).collect()).collect();
            let row_kinds: Vec<RowKind> = kinds.iter().map(|q| if *q { RowKind::Powers } else { RowKind::Ones }).collect();
            let sources: Vec<Vec<u8>> = (0..count).map(|k| (0..len).map(|i| (seed.wrapping_mul(2654435761).wrapping_add((k * 1009 + i * 7) as u64) >> 5) as u8).collect()).collect();
            let start: Vec<Vec<u8>> = (0..rows.len()).map(|p| (0..len).map(|i| (i * 3 + p) as u8).collect()).collect();
            let mut want = reference(&rows, &sources);
            if accumulate {
                for (w, s) in want.iter_mut().zip(&start) {
                    w.iter_mut().zip(s).for_each(|(w, s)| *w ^= s);
                }
            }
            let srcs: Vec<&[u8]> = sources.iter().map(|s| s.as_slice()).collect();
            let mut direct = start.clone();
            let mut o: Vec<&mut [u8]> = direct.iter_mut().map(|o| o.as_mut_slice()).collect();
            if syndrome::encode_group(&row_kinds, &srcs, &mut o, accumulate) {
                prop_assert_eq!(&direct, &want);
            }
            let mut outs = start.clone();
            let mut o: Vec<&mut [u8]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
            let m = EncodeMatrix::new(&rows);
            if accumulate { encode_accumulate(&m, &srcs, &mut o) } else { encode(&m, &srcs, &mut o) }
            prop_assert_eq!(outs, want);
        }
    }

    #[test]
    fn raid6_rows_take_the_syndrome_path() {
        let q: Vec<u8> = (0..6).map(gf256::exp2).collect();
        assert_eq!(RowKind::of(&q), RowKind::Powers);
        assert_eq!(RowKind::of(&[1; 6]), RowKind::Ones);
        assert_eq!(RowKind::of(&[1, 2, 4, 9]), RowKind::Other);
        assert_eq!(RowKind::of(&[2, 4]), RowKind::Other);
    }

    #[test]
    fn mul_add_accumulates() {
        let mut dst = vec![1u8, 2, 3];
        mul_add(2, &[1, 1, 0x80], &mut dst);
        assert_eq!(dst, [1 ^ 2, 2 ^ 2, 3 ^ 0x1d]);
    }
}
