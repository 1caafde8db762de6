//! Reading and writing a leg's metadata.

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
}

fn io(dev: &dyn BlockDevice, error: std::io::Error) -> MetaError {
    MetaError::Io { leg: dev.describe(), error }
}

/// Both copies; the best valid one.
pub fn read_superblock(dev: &dyn BlockDevice) -> Result<Superblock, MetaError> {
    let mut buf = vec![0u8; 2 * BLOCK];
    if dev.size() < 2 * BLOCK as u64 {
        return Err(MetaError::Invalid { leg: dev.describe(), what: "too small to hold a superblock".into() });
    }
    dev.read_at(&mut buf, 0).map_err(|e| io(dev, e))?;
    Superblock::pick(&buf[..BLOCK], &buf[BLOCK..]).map_err(|(a, b)| MetaError::NoSuperblock { leg: dev.describe(), a, b })
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
    if sb.component_len > 1 << 30 || sb.component_offset + sb.component_len > sb.data_offset {
        return Err(MetaError::Invalid {
            leg: dev.describe(),
            what: format!("component of {} bytes at {} overlaps the data", sb.component_len, sb.component_offset),
        });
    }
    let mut bytes = vec![0u8; sb.component_len as usize];
    dev.read_at(&mut bytes, sb.component_offset).map_err(|e| io(dev, e))?;
    let actual: [u8; 32] = Sha256::digest(&bytes).into();
    if actual != sb.component_sha256 {
        return Err(MetaError::Component { leg: dev.describe(), expected: hex::encode(sb.component_sha256), actual: hex::encode(actual) });
    }
    Ok(bytes)
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
    [0u64, 1].map(|which| {
        let mut bytes = vec![0u8; sb.bitmap_bytes as usize];
        dev.read_at(&mut bytes, sb.bitmap_offset + which * sb.bitmap_bytes).map_err(|e| e.to_string())?;
        bitmap_copy::decode(&bytes, sb.regions).map_err(|e| e.to_string())
    })
}
