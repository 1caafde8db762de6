//! The AVX2 parity path: 32 bytes at a time, each source loaded once and
//! multiplied into up to four accumulators held in registers.

use super::EncodeMatrix;

/// Encode with AVX2 if the CPU has it; false when it does not (the caller
/// then takes the portable path).
pub fn encode_group(matrix: &EncodeMatrix, first: usize, sources: &[&[u8]], outputs: &mut [&mut [u8]], accumulate: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
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

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn encode_group(matrix: &EncodeMatrix, first: usize, sources: &[&[u8]], outputs: &mut [&mut [u8]], accumulate: bool) {
        let groups = outputs.len();
        let len = outputs.first().map_or(0, |o| o.len());
        let vectors = len / 32;
        let mask = _mm256_set1_epi8(0x0f);
        // Tables for every (output, source) pair, broadcast to both lanes.
        let mut tables: Vec<(__m256i, __m256i, u8)> = Vec::with_capacity(groups * sources.len());
        for p in 0..groups {
            for k in 0..sources.len() {
                let t = matrix.table(first + p, k);
                // SAFETY: lo and hi are 16 readable bytes each.
                let lo = unsafe { _mm_loadu_si128(t.lo.as_ptr().cast()) };
                let hi = unsafe { _mm_loadu_si128(t.hi.as_ptr().cast()) };
                tables.push((_mm256_broadcastsi128_si256(lo), _mm256_broadcastsi128_si256(hi), t.coefficient));
            }
        }
        let k_count = sources.len();
        // Two vectors (64 bytes) per step: twice the independent work per
        // table load, which keeps the shuffle units busy.
        let pairs = vectors / 2;
        for v in 0..pairs {
            let at = v * 64;
            let mut acc = [[_mm256_setzero_si256(); 2]; 4];
            if accumulate {
                for (p, out) in outputs.iter().enumerate() {
                    // SAFETY: at + 64 <= len == out.len().
                    acc[p] = unsafe { [_mm256_loadu_si256(out.as_ptr().add(at).cast()), _mm256_loadu_si256(out.as_ptr().add(at + 32).cast())] };
                }
            }
            for (k, src) in sources.iter().enumerate() {
                // SAFETY: at + 64 <= len == src.len().
                let s = unsafe { [_mm256_loadu_si256(src.as_ptr().add(at).cast()), _mm256_loadu_si256(src.as_ptr().add(at + 32).cast())] };
                let low = [_mm256_and_si256(s[0], mask), _mm256_and_si256(s[1], mask)];
                let high = [_mm256_and_si256(_mm256_srli_epi16(s[0], 4), mask), _mm256_and_si256(_mm256_srli_epi16(s[1], 4), mask)];
                for (p, a) in acc.iter_mut().enumerate().take(groups) {
                    let (lo, hi, c) = tables[p * k_count + k];
                    match c {
                        0 => {}
                        1 => {
                            a[0] = _mm256_xor_si256(a[0], s[0]);
                            a[1] = _mm256_xor_si256(a[1], s[1]);
                        }
                        _ => {
                            for h in 0..2 {
                                let product = _mm256_xor_si256(_mm256_shuffle_epi8(lo, low[h]), _mm256_shuffle_epi8(hi, high[h]));
                                a[h] = _mm256_xor_si256(a[h], product);
                            }
                        }
                    }
                }
            }
            for (p, out) in outputs.iter_mut().enumerate() {
                // SAFETY: at + 64 <= len == out.len().
                unsafe {
                    _mm256_storeu_si256(out.as_mut_ptr().add(at).cast(), acc[p][0]);
                    _mm256_storeu_si256(out.as_mut_ptr().add(at + 32).cast(), acc[p][1]);
                }
            }
        }
        for v in pairs * 2..vectors {
            let at = v * 32;
            let mut acc = [_mm256_setzero_si256(); 4];
            if accumulate {
                for (p, out) in outputs.iter().enumerate() {
                    // SAFETY: at + 32 <= len == out.len().
                    acc[p] = unsafe { _mm256_loadu_si256(out.as_ptr().add(at).cast()) };
                }
            }
            for (k, src) in sources.iter().enumerate() {
                // SAFETY: at + 32 <= len == src.len().
                let s = unsafe { _mm256_loadu_si256(src.as_ptr().add(at).cast()) };
                let low = _mm256_and_si256(s, mask);
                let high = _mm256_and_si256(_mm256_srli_epi16(s, 4), mask);
                for (p, a) in acc.iter_mut().enumerate().take(groups) {
                    let (lo, hi, c) = tables[p * k_count + k];
                    *a = match c {
                        0 => *a,
                        1 => _mm256_xor_si256(*a, s),
                        _ => _mm256_xor_si256(*a, _mm256_xor_si256(_mm256_shuffle_epi8(lo, low), _mm256_shuffle_epi8(hi, high))),
                    };
                }
            }
            for (p, out) in outputs.iter_mut().enumerate() {
                // SAFETY: at + 32 <= len == out.len().
                unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(at).cast(), acc[p]) };
            }
        }
        // The tail shorter than one vector.
        portable::encode_tail(matrix, first, sources, outputs, accumulate, vectors * 32);
    }
}
