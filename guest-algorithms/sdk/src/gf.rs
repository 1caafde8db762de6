//! Just enough GF(2^8) (polynomial 0x11d, generator 2) for guests to write
//! parity coefficients; the host does the heavy math.

/// Multiply by the generator: shift left, reduce by 0x11d on carry.
pub const fn mul2(a: u8) -> u8 {
    let shifted = (a as u16) << 1;
    if shifted & 0x100 != 0 { (shifted ^ 0x11d) as u8 } else { shifted as u8 }
}

/// g^e for the generator g = 2 (g has order 255).
pub const fn exp2(e: u32) -> u8 {
    let mut v = 1u8;
    let mut i = 0;
    while i < e % 255 {
        v = mul2(v);
        i += 1;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_powers() {
        assert_eq!(exp2(0), 1);
        assert_eq!(exp2(1), 2);
        assert_eq!(exp2(8), 0x1d);
        assert_eq!(exp2(255), 1);
        // g is primitive: its 255 powers are distinct.
        let mut seen = [false; 256];
        for e in 0..255 {
            assert!(!seen[exp2(e) as usize]);
            seen[exp2(e) as usize] = true;
        }
    }
}
