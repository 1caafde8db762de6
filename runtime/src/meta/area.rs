//! Where metadata lives at the start of every leg:
//!
//! ```text
//! 0        superblock copy A (4 KiB)
//! 4 KiB    superblock copy B
//! 8 KiB    bitmap copy A, then bitmap copy B (each `bitmap_bytes`)
//! ...      the layout component's bytes
//! data     from `data_offset` (1 MiB aligned)
//! ```

use super::bitmap_copy::copy_bytes;

pub const BITMAP_OFFSET: u64 = 8192;
/// Data covered by one bitmap region unless told otherwise (md's internal
/// bitmaps use 64 MiB; `--bitmap-chunk` changes it, as mdadm's does).
pub const REGION_TARGET: u64 = 64 << 20;
/// The smallest bitmap region.
pub const REGION_MIN: u64 = 4096;
/// Most bitmap regions an array may have: one byte each per copy, read
/// whole at assemble and held in memory, so a superblock may not claim
/// more (64 Mi regions: 4 PiB at the default region size, 256 GiB at the
/// smallest; a larger array takes a larger `--bitmap-chunk`).
pub const MAX_REGIONS: u64 = 1 << 26;
const ALIGN: u64 = 1 << 20;

/// The metadata area planned for legs of these raw sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Area {
    pub bitmap_bytes: u64,
    pub max_regions: u64,
    pub component_offset: u64,
    pub component_len: u64,
    pub data_offset: u64,
}

/// Regions can never outnumber (raw bytes / region_bytes) + 1, whatever
/// the layout, so the bitmap is sized before the layout is proven.
pub fn plan(raw_leg_bytes: &[u64], component_len: u64, region_bytes: u64) -> Area {
    let raw: u64 = raw_leg_bytes.iter().sum();
    let max_regions = raw / region_bytes.max(REGION_MIN) + 2;
    let bitmap_bytes = copy_bytes(max_regions);
    let component_offset = BITMAP_OFFSET + 2 * bitmap_bytes;
    let data_offset = (component_offset + component_len).div_ceil(ALIGN) * ALIGN;
    Area { bitmap_bytes, max_regions, component_offset, component_len, data_offset }
}

/// Stripes per region of about `region_bytes` of data, for stripes
/// holding `stripe_data_bytes` of data.
pub fn region_stripes(stripe_data_bytes: u64, region_bytes: u64) -> u64 {
    region_bytes.max(REGION_MIN).div_ceil(stripe_data_bytes.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_fit_the_bitmap_whatever_the_layout() {
        let a = plan(&[1 << 30; 6], 30_000, REGION_TARGET);
        assert_eq!(a.data_offset % (1 << 20), 0);
        assert!(a.component_offset + a.component_len <= a.data_offset);
        // The worst case: every byte of every leg is data.
        let stripe_data = 4 * 65536;
        let stripes = (6u64 << 30) / stripe_data;
        assert!(stripes.div_ceil(region_stripes(stripe_data, REGION_TARGET)) <= a.max_regions);
        let small = plan(&[1 << 30; 6], 30_000, REGION_MIN);
        assert!(stripes.div_ceil(region_stripes(stripe_data, REGION_MIN)) <= small.max_regions);
    }
}
