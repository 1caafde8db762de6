//! Reading and writing a leg's metadata. What is read is checked (see
//! `validate.rs`) before any field sizes a read or an allocation.

use super::bitmap_copy;
use super::bitmap_state::State;
use super::superblock::{BLOCK, Superblock, SuperblockError};
use crate::device::BlockDevice;
use sha2::{Digest, Sha256};

/// What is wrong with a leg's metadata.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{leg}: {error}")]
    Io { leg: String, error: std::io::Error },
    #[error("{leg}: no usable superblock (copy A: {a}; copy B: {b})")]
    NoSuperblock { leg: String, a: SuperblockError, b: SuperblockError },
    #[error("{leg}: the stored component does not match its sha256 (stored {expected}, read {actual})")]
    Component { leg: String, expected: String, actual: String },
    #[error("{leg}: {what}")]
    Invalid { leg: String, what: String },
    /// A superblock that decodes but cannot be true of this leg.
    #[error("{leg}: {error}")]
    Superblock { leg: String, error: SuperblockError },
}

fn io(dev: &dyn BlockDevice, error: std::io::Error) -> MetaError {
    MetaError::Io { leg: dev.describe(), error }
}

fn field(dev: &dyn BlockDevice, error: SuperblockError) -> MetaError {
    MetaError::Superblock { leg: dev.describe(), error }
}

/// Both copies; the best valid one, checked against itself and against
/// the device it was read from.
pub fn read_superblock(dev: &dyn BlockDevice) -> Result<Superblock, MetaError> {
    let mut buf = vec![0u8; 2 * BLOCK];
    if dev.size() < 2 * BLOCK as u64 {
        return Err(MetaError::Invalid { leg: dev.describe(), what: "too small to hold a superblock".into() });
    }
    dev.read_at(&mut buf, 0).map_err(|e| io(dev, e))?;
    let sb = Superblock::pick(&buf[..BLOCK], &buf[BLOCK..]).map_err(|(a, b)| MetaError::NoSuperblock { leg: dev.describe(), a, b })?;
    sb.check_on(dev.size()).map_err(|e| field(dev, e))?;
    Ok(sb)
}

/// Copy A, flush, copy B, flush: a crash leaves at least one whole copy.
pub fn write_superblock(dev: &dyn BlockDevice, sb: &Superblock) -> Result<(), MetaError> {
    let block = sb.encode();
    for offset in [0, BLOCK as u64] {
        dev.write_at(&block, offset, false).map_err(|e| io(dev, e))?;
        dev.flush().map_err(|e| io(dev, e))?;
    }
    Ok(())
}

/// Destroy both superblock copies (a leg leaving wasmraid for good).
pub fn erase_superblock(dev: &dyn BlockDevice) -> Result<(), MetaError> {
    dev.write_at(&vec![0u8; 2 * BLOCK], 0, true).map_err(|e| io(dev, e))
}

pub fn write_component(dev: &dyn BlockDevice, sb: &Superblock, bytes: &[u8]) -> Result<(), MetaError> {
    dev.write_at(bytes, sb.component_offset, false).map_err(|e| io(dev, e))?;
    dev.flush().map_err(|e| io(dev, e))
}

/// The component stored on the leg, checked against its sha256.
pub fn read_component(dev: &dyn BlockDevice, sb: &Superblock) -> Result<Vec<u8>, MetaError> {
    // Bounds the allocation below (`read_superblock` did too; this stays
    // true of any superblock handed in).
    sb.check_on(dev.size()).map_err(|e| field(dev, e))?;
    read_checked(dev, sb.component_offset, sb.component_len, &sb.component_sha256)
}

/// `len` bytes at `offset` (bounded by the caller's `check_on`) that must
/// hash to `sha256`.
fn read_checked(dev: &dyn BlockDevice, offset: u64, len: u64, sha256: &[u8; 32]) -> Result<Vec<u8>, MetaError> {
    let mut bytes = vec![0u8; len as usize];
    dev.read_at(&mut bytes, offset).map_err(|e| io(dev, e))?;
    let actual: [u8; 32] = Sha256::digest(&bytes).into();
    if &actual != sha256 {
        return Err(MetaError::Component { leg: dev.describe(), expected: hex::encode(sha256), actual: hex::encode(actual) });
    }
    Ok(bytes)
}

/// Store the component a reshape moves to, where its record says, and flush.
pub fn write_reshape_component(dev: &dyn BlockDevice, sb: &Superblock, bytes: &[u8]) -> Result<(), MetaError> {
    let Some(r) = &sb.reshape else { return Err(MetaError::Invalid { leg: dev.describe(), what: "no reshape recorded".into() }) };
    dev.write_at(bytes, r.component_offset, false).map_err(|e| io(dev, e)).and_then(|()| dev.flush().map_err(|e| io(dev, e)))
}

/// The component a reshape moves to, checked against its sha256.
pub fn read_reshape_component(dev: &dyn BlockDevice, sb: &Superblock) -> Result<Vec<u8>, MetaError> {
    // Bounds the length too (`validate::check_reshape`).
    sb.check_on(dev.size()).map_err(|e| field(dev, e))?;
    let Some(r) = &sb.reshape else { return Err(MetaError::Invalid { leg: dev.describe(), what: "no reshape recorded".into() }) };
    read_checked(dev, r.component_offset, r.component_len, &r.component_sha256)
}

/// Write one bitmap copy (0 = A, 1 = B) and flush.
pub fn write_bitmap_copy(dev: &dyn BlockDevice, sb: &Superblock, which: u8, states: &[State], serial: u64) -> Result<(), MetaError> {
    let bytes = bitmap_copy::encode(states, which, serial);
    let offset = sb.bitmap_offset + u64::from(which) * sb.bitmap_bytes;
    if bytes.len() as u64 > sb.bitmap_bytes {
        return Err(MetaError::Invalid { leg: dev.describe(), what: "bitmap larger than its reserved space".into() });
    }
    dev.write_at(&bytes, offset, false).map_err(|e| io(dev, e))?;
    dev.flush().map_err(|e| io(dev, e))
}

/// Each copy of the leg's bitmap: (serial, states) or why it is unusable.
pub fn read_bitmap_copies(dev: &dyn BlockDevice, sb: &Superblock) -> [Result<(u64, Vec<State>), String>; 2] {
    // Bounds the allocation below.
    let checked = sb.check_on(dev.size()).map_err(|e| field(dev, e).to_string());
    [0u64, 1].map(|which| {
        checked.clone()?;
        let mut bytes = vec![0u8; sb.bitmap_bytes as usize];
        dev.read_at(&mut bytes, sb.bitmap_offset + which * sb.bitmap_bytes).map_err(|e| e.to_string())?;
        bitmap_copy::decode(&bytes, sb.regions).map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::mem::MemLeg;
    use crate::meta::validate::tests::{LEG, honest};

    #[test]
    fn a_superblock_claiming_more_than_its_device_holds_is_refused_naming_leg_and_field() {
        let small = MemLeg::new("leg-b", LEG - 4096);
        write_superblock(&small, &honest()).unwrap();
        let e = read_superblock(&small).unwrap_err().to_string();
        assert!(e.starts_with("leg-b: superblock field leg_sizes: slot 1 claims"), "{e}");
        let whole = MemLeg::new("leg-a", LEG);
        write_superblock(&whole, &honest()).unwrap();
        assert_eq!(read_superblock(&whole).unwrap(), honest());
    }

    #[test]
    fn component_and_bitmap_reads_are_bounded_by_the_checks() {
        let leg = MemLeg::new("leg-c", LEG);
        let huge = Superblock { component_len: u64::MAX, ..honest() };
        let e = read_component(&leg, &huge).unwrap_err().to_string();
        assert!(e.starts_with("leg-c: superblock field component_len"), "{e}");
        let huge = Superblock { bitmap_bytes: 128 << 20, data_offset: 512 << 20, ..honest() };
        for copy in read_bitmap_copies(&MemLeg::new("leg-c", 1 << 30), &huge) {
            let e = copy.unwrap_err();
            assert!(e.starts_with("leg-c: superblock field bitmap_bytes"), "{e}");
        }
    }
}
