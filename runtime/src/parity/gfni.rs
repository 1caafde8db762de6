//! The GFNI parity path: multiplication by a constant as one affine
//! transform per 32 bytes (`vgf2p8affineqb`). Multiplying by c in md's
//! field (0x11d) is linear over GF(2), so it is an 8x8 bit matrix, and GFNI
//! applies any such matrix whatever its polynomial: one instruction where
//! the table path takes two lookups, two masks and a shift. Used when the
//! CPU has GFNI and AVX2 (recent Intel and AMD; qemu's TCG does not offer
//! it, the VM bed keeps the AVX2 path).

use super::EncodeMatrix;

/// Encode with GFNI if the CPU has it; false when it does not.
pub fn encode_group(matrix: &EncodeMatrix, first: usize, sources: &[&[u8]], outputs: &mut [&mut [u8]], accumulate: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("gfni") && std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports GFNI and AVX2 (checked just above).
            unsafe { x86::encode_group(matrix, first, sources, outputs, accumulate) };
            return true;
        }
    }
    let _ = (matrix, first, sources, outputs, accumulate);
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::{EncodeMatrix, portable};
    use std::arch::x86_64::*;

    /// `W` vectors at byte `at` of every output: each source loaded once
    /// into every output's accumulators.
    ///
    /// # Safety
    /// The CPU must support GFNI and AVX2; `at + 32 * W` must be within
    /// every buffer.
    #[inline]
    #[target_feature(enable = "gfni,avx2")]
    unsafe fn step<const W: usize>(matrices: &[(__m256i, u8)], groups: usize, at: usize, sources: &[&[u8]], outputs: &mut [&mut [u8]], accumulate: bool) {
        let k_count = sources.len();
        let mut acc = [[_mm256_setzero_si256(); W]; 4];
        if accumulate {
            for (p, out) in outputs.iter().enumerate() {
                for (h, a) in acc[p].iter_mut().enumerate() {
                    // SAFETY: at + 32 * W <= out.len() (the caller's promise).
                    *a = unsafe { _mm256_loadu_si256(out.as_ptr().add(at + 32 * h).cast()) };
                }
            }
        }
        for (k, src) in sources.iter().enumerate() {
            let mut s = [_mm256_setzero_si256(); W];
            for (h, s) in s.iter_mut().enumerate() {
                // SAFETY: at + 32 * W <= src.len() (the caller's promise).
                *s = unsafe { _mm256_loadu_si256(src.as_ptr().add(at + 32 * h).cast()) };
            }
            for (p, a) in acc.iter_mut().enumerate().take(groups) {
                let (m, c) = matrices[p * k_count + k];
                match c {
                    0 => {}
                    1 => a.iter_mut().zip(&s).for_each(|(a, s)| *a = _mm256_xor_si256(*a, *s)),
                    _ => a.iter_mut().zip(&s).for_each(|(a, s)| *a = _mm256_xor_si256(*a, _mm256_gf2p8affine_epi64_epi8::<0>(*s, m))),
                }
            }
        }
        for (p, out) in outputs.iter_mut().enumerate() {
            for (h, a) in acc[p].iter().enumerate() {
                // SAFETY: at + 32 * W <= out.len() (the caller's promise).
                unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(at + 32 * h).cast(), *a) };
            }
        }
    }

    /// # Safety
    /// The CPU must support GFNI and AVX2.
    #[target_feature(enable = "gfni,avx2")]
    pub unsafe fn encode_group(matrix: &EncodeMatrix, first: usize, sources: &[&[u8]], outputs: &mut [&mut [u8]], accumulate: bool) {
        let groups = outputs.len();
        let len = outputs.first().map_or(0, |o| o.len());
        let k_count = sources.len();
        let matrices: Vec<(__m256i, u8)> = (0..groups)
            .flat_map(|p| (0..k_count).map(move |k| (p, k)))
            .map(|(p, k)| {
                let t = matrix.table(first + p, k);
                (_mm256_set1_epi64x(t.affine() as i64), t.coefficient)
            })
            .collect();
        let vectors = len / 32;
        let mut v = 0;
        while v + 4 <= vectors {
            // SAFETY: (v + 4) * 32 <= len, every buffer's length.
            unsafe { step::<4>(&matrices, groups, v * 32, sources, outputs, accumulate) };
            v += 4;
        }
        while v < vectors {
            // SAFETY: (v + 1) * 32 <= len, every buffer's length.
            unsafe { step::<1>(&matrices, groups, v * 32, sources, outputs, accumulate) };
            v += 1;
        }
        // The tail shorter than one vector.
        portable::encode_tail(matrix, first, sources, outputs, accumulate, vectors * 32);
    }
}
