//! On-disk metadata that makes an array self-describing and crash-safe:
//! per-leg superblocks (identity, generation, geometry, the component
//! itself) and the dual-copy write-intent bitmap.

pub mod area;
pub mod bitmap_copy;
pub mod bitmap_state;
pub mod store;
pub mod superblock;
