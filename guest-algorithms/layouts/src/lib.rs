//! wasmraid's built-in placement algorithms, one file each, on the guest SDK.
//!
//! Every layout here is plain Rust implementing [`wasmraid_guest::Layout`];
//! the `components/*` crates export each one as a WebAssembly component.

pub mod draid;
pub mod linear;
pub mod pyramid;
pub mod raid0;
pub mod raid1;
pub mod raid10;
pub mod raid4;
pub mod raid5;
pub mod raid6;
pub mod raid7;

#[cfg(test)]
pub(crate) mod testing;

use wasmraid_guest::Geometry;

/// Refuse fewer legs than a layout needs, in the words an operator expects.
pub(crate) fn need_legs(name: &str, geometry: &Geometry, min: u32) -> Result<(), String> {
    if geometry.legs < min {
        return Err(format!("{name} needs at least {min} legs, got {}", geometry.legs));
    }
    Ok(())
}
