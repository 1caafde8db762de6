//! A leg held in memory: sparse 4 KiB blocks shared copy-on-write, so a
//! snapshot of a leg (an [`Image`]) costs a map clone, not a data copy.
//! The power-loss simulator builds every crash state from images.

use super::{BlockDevice, check_range};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;

/// Bytes per block of an image.
pub const BLOCK: usize = 4096;

/// The contents of a leg: blocks never written read as zeroes.
#[derive(Clone, Default)]
pub struct Image {
    pub size: u64,
    blocks: HashMap<u64, Arc<[u8]>>,
}

impl Image {
    pub fn new(size: u64) -> Image {
        Image { size, blocks: HashMap::new() }
    }

    /// Copy `buf.len()` bytes at `offset` out of the image.
    pub fn read(&self, buf: &mut [u8], offset: u64) {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let (b, within) = (at / BLOCK as u64, (at % BLOCK as u64) as usize);
            let n = (BLOCK - within).min(buf.len() - done);
            match self.blocks.get(&b) {
                Some(block) => buf[done..done + n].copy_from_slice(&block[within..within + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
    }

    /// Write `data` at `offset` (blocks are replaced, never changed in
    /// place, so clones of this image keep their contents).
    pub fn write(&mut self, data: &[u8], offset: u64) {
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let (b, within) = (at / BLOCK as u64, (at % BLOCK as u64) as usize);
            let n = (BLOCK - within).min(data.len() - done);
            let mut block = match self.blocks.get(&b) {
                Some(old) if n < BLOCK => old.to_vec(),
                _ => vec![0u8; BLOCK],
            };
            block[within..within + n].copy_from_slice(&data[done..done + n]);
            if block.iter().all(|&x| x == 0) {
                self.blocks.remove(&b);
            } else {
                self.blocks.insert(b, block.into());
            }
            done += n;
        }
    }

    /// Zero `len` bytes at `offset`.
    pub fn zero(&mut self, offset: u64, len: u64) {
        let mut done = 0u64;
        while done < len {
            let at = offset + done;
            let (b, within) = (at / BLOCK as u64, at % BLOCK as u64);
            let n = (BLOCK as u64 - within).min(len - done);
            if within == 0 && n == BLOCK as u64 {
                self.blocks.remove(&b);
            } else {
                self.write(&vec![0u8; n as usize], at);
            }
            done += n;
        }
    }

    /// Blocks holding anything but zeroes.
    /// Block `b` holds nothing but zeroes (none are stored).
    pub fn is_zero_block(&self, b: u64) -> bool {
        !self.blocks.contains_key(&b)
    }

    pub fn allocated_blocks(&self) -> usize {
        self.blocks.len()
    }
}

/// A leg in memory.
pub struct MemLeg {
    name: String,
    image: RwLock<Image>,
}

impl MemLeg {
    pub fn new(name: impl Into<String>, size: u64) -> MemLeg {
        MemLeg::from_image(name, Image::new(size))
    }

    pub fn from_image(name: impl Into<String>, image: Image) -> MemLeg {
        MemLeg { name: name.into(), image: RwLock::new(image) }
    }

    /// What the leg holds now.
    pub fn image(&self) -> Image {
        self.image.read().clone()
    }
}

impl BlockDevice for MemLeg {
    fn size(&self) -> u64 {
        self.image.read().size
    }
    /// Blocks of zeroes are not stored: they are holes, as on a sparse file.
    fn block_status(&self, offset: u64, len: u64, out: &mut Vec<super::status::StatusExtent>) -> io::Result<()> {
        use super::status::{HOLE, StatusExtent, ZERO, push};
        check_range(self, offset, len)?;
        let image = self.image.read();
        let mut done = 0u64;
        while done < len {
            let at = offset + done;
            let n = (BLOCK as u64 - at % BLOCK as u64).min(len - done);
            let allocation = if image.is_zero_block(at / BLOCK as u64) { HOLE | ZERO } else { 0 };
            push(out, StatusExtent { len: n, allocation, health: 0 });
            done += n;
        }
        Ok(())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self, offset, buf.len() as u64)?;
        self.image.read().read(buf, offset);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64, _fua: bool) -> io::Result<()> {
        check_range(self, offset, buf.len() as u64)?;
        self.image.write().write(buf, offset);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.write_zeroes(offset, len, false)
    }
    fn write_zeroes(&self, offset: u64, len: u64, _fua: bool) -> io::Result<()> {
        check_range(self, offset, len)?;
        self.image.write().zero(offset, len);
        Ok(())
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_written_across_blocks_and_snapshots_stay_put() {
        let leg = MemLeg::new("m", 5 * BLOCK as u64);
        let data: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8 + 1).collect();
        leg.write_at(&data, 3000, false).unwrap();
        let snap = leg.image();
        leg.write_zeroes(4096, 4096, false).unwrap();
        let mut back = vec![0u8; 6000];
        snap.read(&mut back, 3000);
        assert_eq!(back, data, "the snapshot kept the old contents");
        leg.read_at(&mut back, 3000).unwrap();
        assert_eq!(&back[..1096], &data[..1096]);
        assert!(back[1096..5192].iter().all(|&b| b == 0));
        assert_eq!(&back[5192..], &data[5192..]);
        assert!(leg.read_at(&mut back, 5 * BLOCK as u64 - 10).is_err(), "beyond the end");
    }
}
