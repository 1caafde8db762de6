//! One on-disk copy of the write-intent bitmap: a header (magic, region
//! count, which copy, a 64-bit serial that never wraps, crc32c) and one
//! byte per region. Seed 003's layout, with its open question answered:
//! on load, the highest serial whose checksum is valid wins.

use super::bitmap_state::State;

pub const MAGIC: &[u8; 8] = b"WRAIDBM1";
const HEADER: usize = 32;

/// Bytes one copy takes for `regions` regions, rounded to 4 KiB.
pub fn copy_bytes(regions: u64) -> u64 {
    (HEADER as u64 + regions).div_ceil(4096) * 4096
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    #[error("no bitmap here (bad magic)")]
    Magic,
    #[error("bitmap checksum mismatch")]
    Checksum,
    #[error("bitmap holds {found} regions, the array has {expected}")]
    Size { found: u64, expected: u64 },
    #[error("region {region} holds the unknown state {byte}")]
    State { region: u64, byte: u8 },
}

/// Encode a copy: `which` is 0 for the primary (A), 1 for the secondary.
pub fn encode(states: &[State], which: u8, serial: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(copy_bytes(states.len() as u64) as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(states.len() as u64).to_le_bytes());
    out.extend_from_slice(&[which, 0, 0, 0]);
    out.extend_from_slice(&serial.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend(states.iter().map(|s| *s as u8));
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[..HEADER - 4]), &out[HEADER..]);
    out[HEADER - 4..HEADER].copy_from_slice(&crc.to_le_bytes());
    out.resize(copy_bytes(states.len() as u64) as usize, 0);
    out
}

/// Decode a copy: (serial, states).
pub fn decode(bytes: &[u8], regions: u64) -> Result<(u64, Vec<State>), CopyError> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(CopyError::Magic);
    }
    let found = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default());
    // `regions` comes from a superblock, `found` from the copy: neither
    // may index past the bytes actually read.
    let body = usize::try_from(regions).ok().and_then(|n| bytes[HEADER..].get(..n));
    let Some(body) = body.filter(|_| found == regions) else {
        return Err(CopyError::Size { found, expected: regions });
    };
    let serial = u64::from_le_bytes(bytes[20..28].try_into().unwrap_or_default());
    let stored = u32::from_le_bytes(bytes[28..32].try_into().unwrap_or_default());
    if crc32c::crc32c_append(crc32c::crc32c(&bytes[..HEADER - 4]), body) != stored {
        return Err(CopyError::Checksum);
    }
    let states = body.iter().enumerate().map(|(i, &b)| State::from_byte(b).ok_or(CopyError::State { region: i as u64, byte: b })).collect::<Result<_, _>>()?;
    Ok((serial, states))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let states = vec![State::Clean, State::Dirty, State::NeedSync, State::Unwritten];
        let bytes = encode(&states, 1, 7);
        assert_eq!(bytes.len(), 4096);
        assert_eq!(decode(&bytes, 4), Ok((7, states.clone())));
        let mut bad = bytes.clone();
        bad[HEADER + 1] = State::Clean as u8;
        assert_eq!(decode(&bad, 4), Err(CopyError::Checksum));
        assert_eq!(decode(&bytes, 5), Err(CopyError::Size { found: 4, expected: 5 }));
        assert_eq!(decode(&[0u8; 64], 4), Err(CopyError::Magic));
        assert_eq!(decode(&bytes[..HEADER + 3], 4), Err(CopyError::Size { found: 4, expected: 4 }), "a copy cut short");
        let mut serial = bytes.clone();
        serial[20] ^= 1;
        assert_eq!(decode(&serial, 4), Err(CopyError::Checksum), "the serial is covered by the checksum");
    }

    #[test]
    fn a_region_count_past_the_bytes_is_refused_not_indexed() {
        // Header and superblock agree on a count no copy could hold: the
        // sum HEADER + regions would overflow, and the body is not there.
        let mut bytes = encode(&[State::Clean], 0, 1);
        bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(decode(&bytes, u64::MAX), Err(CopyError::Size { found: u64::MAX, expected: u64::MAX }));
        bytes[8..16].copy_from_slice(&4096u64.to_le_bytes());
        assert_eq!(decode(&bytes, 4096), Err(CopyError::Size { found: 4096, expected: 4096 }));
    }
}
