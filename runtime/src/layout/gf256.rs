//! Scalar GF(2^8) arithmetic (polynomial 0x11d, generator 2, md's field)
//! and the linear algebra the proof and the decoder need.

/// exp[i] = 2^i for i in 0..510 (doubled so a sum of two logs needs no mod).
static EXP: [u8; 512] = build_exp();
/// log[x] for x != 0; log[0] is unused.
static LOG: [u8; 256] = build_log();

const fn build_exp() -> [u8; 512] {
    let mut t = [0u8; 512];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 512 {
        t[i] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= 0x11d;
        }
        i += 1;
    }
    t
}

const fn build_log() -> [u8; 256] {
    let exp = build_exp();
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        t[exp[i] as usize] = i as u8;
        i += 1;
    }
    t
}

/// a x b.
#[inline]
pub fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 { 0 } else { EXP[LOG[a as usize] as usize + LOG[b as usize] as usize] }
}

/// 1 / a; None for 0.
pub fn inv(a: u8) -> Option<u8> {
    if a == 0 { None } else { Some(EXP[255 - LOG[a as usize] as usize]) }
}

/// 2^e.
pub fn exp2(e: u32) -> u8 {
    EXP[(e % 255) as usize]
}

/// Rank of a matrix given as rows (all of equal length).
pub fn rank(mut rows: Vec<Vec<u8>>) -> usize {
    let cols = rows.first().map_or(0, Vec::len);
    let mut rank = 0;
    for col in 0..cols {
        let Some(pivot) = (rank..rows.len()).find(|&r| rows[r][col] != 0) else { continue };
        rows.swap(rank, pivot);
        let scale = inv(rows[rank][col]).unwrap_or(0);
        for c in col..cols {
            rows[rank][c] = mul(rows[rank][c], scale);
        }
        for r in 0..rows.len() {
            if r != rank && rows[r][col] != 0 {
                let f = rows[r][col];
                for c in col..cols {
                    let v = mul(f, rows[rank][c]);
                    rows[r][c] ^= v;
                }
            }
        }
        rank += 1;
    }
    rank
}

/// Rank of the `rows` x `cols` matrix stored row-major in `m` (changed in
/// place): the allocation-free form for proofs that check thousands of
/// small matrices.
pub fn rank_flat(m: &mut [u8], rows: usize, cols: usize) -> usize {
    let mut rank = 0;
    for col in 0..cols {
        let Some(pivot) = (rank..rows).find(|&r| m[r * cols + col] != 0) else { continue };
        if pivot != rank {
            for c in 0..cols {
                m.swap(rank * cols + c, pivot * cols + c);
            }
        }
        let scale = inv(m[rank * cols + col]).unwrap_or(0);
        for c in col..cols {
            m[rank * cols + c] = mul(m[rank * cols + c], scale);
        }
        for r in 0..rows {
            let f = m[r * cols + col];
            if r != rank && f != 0 {
                for c in col..cols {
                    let v = mul(f, m[rank * cols + c]);
                    m[r * cols + c] ^= v;
                }
            }
        }
        rank += 1;
    }
    rank
}

/// Inverse of a square matrix, None when singular.
pub fn invert(matrix: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    let n = matrix.len();
    let mut a: Vec<Vec<u8>> = matrix.iter().map(|r| r.clone()).collect();
    let mut b: Vec<Vec<u8>> = (0..n).map(|i| (0..n).map(|j| u8::from(i == j)).collect()).collect();
    for col in 0..n {
        let pivot = (col..n).find(|&r| a[r][col] != 0)?;
        a.swap(col, pivot);
        b.swap(col, pivot);
        let scale = inv(a[col][col])?;
        for c in 0..n {
            a[col][c] = mul(a[col][c], scale);
            b[col][c] = mul(b[col][c], scale);
        }
        for r in 0..n {
            if r != col && a[r][col] != 0 {
                let f = a[r][col];
                for c in 0..n {
                    let (va, vb) = (mul(f, a[col][c]), mul(f, b[col][c]));
                    a[r][c] ^= va;
                    b[r][c] ^= vb;
                }
            }
        }
    }
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn field_basics() {
        assert_eq!(mul(2, 0x80), 0x1d);
        assert_eq!(exp2(8), 0x1d);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a).unwrap()), 1);
        }
        assert_eq!(inv(0), None);
    }

    #[test]
    fn raid6_pq_has_full_rank_on_any_two_losses() {
        // P and Q over 4 data chunks with md's coefficients 1 and 2^j.
        let p = vec![1u8; 4];
        let q: Vec<u8> = (0..4).map(exp2).collect();
        for a in 0..4 {
            for b in a + 1..4 {
                let unknowns = |row: &Vec<u8>| vec![row[a], row[b]];
                assert_eq!(rank(vec![unknowns(&p), unknowns(&q)]), 2);
            }
        }
    }

    proptest! {
        #[test]
        fn mul_is_distributive(a: u8, b: u8, c: u8) {
            prop_assert_eq!(mul(a, b ^ c), mul(a, b) ^ mul(a, c));
        }

        #[test]
        fn inverse_times_matrix_is_identity(seed: Vec<u8>) {
            let n = 3;
            let m: Vec<Vec<u8>> = (0..n).map(|i| (0..n).map(|j| *seed.get(i * n + j).unwrap_or(&((i * 7 + j * 3 + 1) as u8))).collect()).collect();
            if let Some(inv) = invert(&m) {
                for i in 0..n {
                    for j in 0..n {
                        let v = (0..n).fold(0u8, |acc, k| acc ^ mul(m[i][k], inv[k][j]));
                        prop_assert_eq!(v, u8::from(i == j));
                    }
                }
            } else {
                prop_assert!(rank(m) < n);
            }
        }
    }
}
