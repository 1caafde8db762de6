//! On-disk metadata that makes an array self-describing and crash-safe:
//! per-leg superblocks (identity, generation, geometry, the component
//! itself) and the dual-copy write-intent bitmap. What is read from a leg
//! is untrusted: `validate` checks each superblock against itself and its
//! device, `agreement` the superblocks of one array against each other.

pub mod agreement;
pub mod area;
pub mod bitmap_copy;
pub mod bitmap_state;
pub mod store;
pub mod superblock;
pub mod validate;
