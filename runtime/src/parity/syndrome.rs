//! RAID-6's P and Q by Horner's rule, Q = (((s[n-1] x 2) + s[n-2]) x 2 ...)
//! x 2 + s[0], where each multiply-by-2 is a shift, a sign compare and a
//! masked XOR of the field's polynomial (0x1d), the way the kernel's
//! `gen_syndrome` computes md's Q. No table lookup: under an emulated CPU
//! (qemu's TCG) PSHUFB is a helper call per instruction, this is a handful
//! of inlined vector operations.

use super::RowKind;

/// Outputs of kinds `kinds` (Ones or Powers: RAID-6's P and Q, RAID-5's P) over
/// `sources`; false when the CPU lacks AVX2 (the caller takes the table
/// path).
pub fn encode_group(kinds: &[RowKind], sources: &[&[u8]], outputs: &mut [&mut [u8]], accumulate: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { x86::encode_group(kinds, sources, outputs, accumulate) };
            return true;
        }
    }
    let _ = (kinds, sources, outputs, accumulate);
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::RowKind;
    use std::arch::x86_64::*;

    /// x * 2 in GF(2^8) mod 0x11d, 32 bytes at a time.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn times2(x: __m256i, poly: __m256i) -> __m256i {
        // Bytes with their top bit set: 0xff (signed 0 > x), else 0.
        let carry = _mm256_cmpgt_epi8(_mm256_setzero_si256(), x);
        _mm256_xor_si256(_mm256_add_epi8(x, x), _mm256_and_si256(carry, poly))
    }

    /// Vectors carried together: four independent Horner chains hide the
    /// latency of each multiply-by-2 (the kernel's avx2x4 does the same).
    const WIDTH: usize = 4;

    /// P and Q of `width` vectors at byte `at` of every source.
    ///
    /// # Safety
    /// The CPU must support AVX2; `at + 32 * width` must be within every source.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn syndrome<const Q: bool>(sources: &[&[u8]], at: usize, width: usize, poly: __m256i) -> ([__m256i; WIDTH], [__m256i; WIDTH]) {
        let mut p = [_mm256_setzero_si256(); WIDTH];
        let mut q = [_mm256_setzero_si256(); WIDTH];
        for src in sources.iter().rev() {
            for h in 0..width {
                // SAFETY: at + 32 * width <= src.len() (the caller's promise).
                let s = unsafe { _mm256_loadu_si256(src.as_ptr().add(at + 32 * h).cast()) };
                p[h] = _mm256_xor_si256(p[h], s);
                if Q {
                    q[h] = _mm256_xor_si256(times2(q[h], poly), s);
                }
            }
        }
        (p, q)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn encode_group(kinds: &[RowKind], sources: &[&[u8]], outputs: &mut [&mut [u8]], accumulate: bool) {
        // RAID-5's P alone is XOR only: no Horner chain.
        if kinds.contains(&RowKind::Powers) {
            // SAFETY: as this function's.
            unsafe { encode_rows::<true>(kinds, sources, outputs, accumulate) }
        } else {
            // SAFETY: as this function's.
            unsafe { encode_rows::<false>(kinds, sources, outputs, accumulate) }
        }
    }

    /// # Safety
    /// The CPU must support AVX2; `Q` false only when no row is Powers.
    #[target_feature(enable = "avx2")]
    unsafe fn encode_rows<const Q: bool>(kinds: &[RowKind], sources: &[&[u8]], outputs: &mut [&mut [u8]], accumulate: bool) {
        let len = outputs.first().map_or(0, |o| o.len());
        let poly = _mm256_set1_epi8(0x1d);
        let vectors = len / 32;
        let mut v = 0;
        while v < vectors {
            let width = (vectors - v).min(WIDTH);
            let at = v * 32;
            // SAFETY: at + 32 * width <= len, every source's length.
            let (p, q) = unsafe { syndrome::<Q>(sources, at, width, poly) };
            for (kind, out) in kinds.iter().zip(outputs.iter_mut()) {
                let value = if *kind == RowKind::Ones { &p } else { &q };
                for (h, value) in value.iter().enumerate().take(width) {
                    // SAFETY: at + 32 * width <= len == out.len().
                    unsafe {
                        let dst = out.as_mut_ptr().add(at + 32 * h).cast::<__m256i>();
                        let r = if accumulate { _mm256_xor_si256(_mm256_loadu_si256(dst), *value) } else { *value };
                        _mm256_storeu_si256(dst, r);
                    }
                }
            }
            v += width;
        }
        // The tail shorter than one vector, byte by byte.
        for i in vectors * 32..len {
            let (mut pb, mut qb) = (0u8, 0u8);
            for src in sources.iter().rev() {
                pb ^= src[i];
                qb = (qb << 1) ^ if qb & 0x80 != 0 { 0x1d } else { 0 } ^ src[i];
            }
            for (kind, out) in kinds.iter().zip(outputs.iter_mut()) {
                let value = if *kind == RowKind::Ones { pb } else { qb };
                out[i] = if accumulate { out[i] ^ value } else { value };
            }
        }
    }
}
