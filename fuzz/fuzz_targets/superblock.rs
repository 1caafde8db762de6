//! Any bytes as a leg's two superblock copies and its size: decode and
//! pick return a superblock or an error, never panic; what decodes encodes
//! back to itself; and a superblock that passes the checks against a
//! device describes metadata and data that lie inside that device.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/bounded.rs"]
mod bounded;

#[global_allocator]
static ALLOCATOR: bounded::Bounded = bounded::Bounded;
use wasmraid::meta::superblock::{BLOCK, MAGIC, Superblock};

/// One copy from `raw`. A checksum is beyond guessing, so when `fix` is
/// set the copy gets the magic, version 1 or 2 and a valid crc32c: the
/// fuzzer then reaches every field behind them.
fn copy(raw: &[u8], fix: bool) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    let n = raw.len().min(BLOCK);
    b[..n].copy_from_slice(&raw[..n]);
    if fix {
        b[..8].copy_from_slice(MAGIC);
        let version = 1 + u32::from(b[8] & 1);
        b[8..12].copy_from_slice(&version.to_le_bytes());
        let crc = crc32c::crc32c(&b[..BLOCK - 4]);
        b[BLOCK - 4..].copy_from_slice(&crc.to_le_bytes());
    }
    b
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Some((size, rest)) = rest.split_first_chunk::<8>() else { return };
    let device = u64::from_le_bytes(*size);
    let (a_raw, b_raw) = rest.split_at(rest.len().min(BLOCK));
    let (a, b) = (copy(a_raw, flags & 1 != 0), copy(b_raw, flags & 2 != 0));

    let decoded = [Superblock::decode(&a), Superblock::decode(&b)];
    for sb in decoded.iter().flatten() {
        assert_eq!(Superblock::decode(&sb.encode()).as_ref(), Ok(sb), "a decoded block encodes back to itself");
        assert_eq!(sb.geometry_differs(sb), None);
    }
    let Ok(sb) = Superblock::pick(&a, &b) else { return };
    for other in decoded.iter().flatten() {
        assert!(sb.generation >= other.generation, "pick takes the freshest valid copy");
    }
    if sb.check_on(device).is_ok() {
        let chunk = u64::from(sb.chunk_sectors) * 512;
        let end = sb.data_offset + sb.leg_sizes[sb.leg_index as usize] * chunk;
        assert!(end <= device && sb.data_offset <= device);
        assert!(sb.component_offset + sb.component_len <= sb.data_offset);
        assert!(sb.bitmap_offset + 2 * sb.bitmap_bytes <= sb.data_offset);
        for &n in &sb.leg_sizes {
            assert!(n.checked_mul(chunk).and_then(|b| b.checked_add(sb.data_offset)).is_some());
        }
        let stripes = u64::from_le_bytes(a[100..108].try_into().unwrap_or_default());
        let _ = sb.check_layout(stripes, u32::from(flags >> 4));
    }
});
