//! A superblock read from a leg is untrusted input: a damaged disk, a bug
//! or someone who wrote the bytes on purpose can put any value in any
//! field, and a valid checksum proves only that the block was written
//! whole. So before a field sizes an allocation, bounds a loop or places
//! an I/O, it is checked against the other fields (`check`), against the
//! device that holds it (`check_on`) and, once the layout is proven,
//! against the layout (`check_layout`). Each refusal names the field; the
//! store adds the leg. `create` runs the same checks on what it writes, so
//! whatever it writes, assemble accepts.

use super::area::MAX_REGIONS;
use super::bitmap_copy::copy_bytes;
use super::superblock::{ARGS_MAX, BLOCK, MAX_LEGS, NAME_MAX, Superblock, SuperblockError};

/// Largest chunk (256 MiB): chunks are read, written and rebuilt whole.
pub const MAX_CHUNK_SECTORS: u32 = 1 << 19;
/// Largest layout component stored on a leg: it is read whole at
/// assemble (the largest layout built from another language is ~20 MB).
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;
/// The bitmap and the data start on 4 KiB boundaries (`area::plan`).
const ALIGN: u64 = 4096;
/// Metadata never starts inside the two superblock copies.
const AFTER_SUPERBLOCKS: u64 = 2 * BLOCK as u64;

fn invalid(field: &'static str, why: impl Into<String>) -> SuperblockError {
    SuperblockError::Invalid { field, why: why.into() }
}

impl Superblock {
    /// Every field consistent with the others.
    pub fn check(&self) -> Result<(), SuperblockError> {
        self.check_slots()?;
        self.check_text()?;
        self.check_geometry()?;
        self.check_bitmap()?;
        self.check_component()?;
        self.check_reshape()
    }

    /// `check`, and the device of `device_bytes` holds what the block
    /// claims: metadata, data offset and this slot's chunks.
    pub fn check_on(&self, device_bytes: u64) -> Result<(), SuperblockError> {
        self.check()?;
        if self.data_offset > device_bytes {
            return Err(invalid("data_offset", format!("{} is past the end of the device ({device_bytes} bytes)", self.data_offset)));
        }
        let slot = self.leg_index as usize;
        let chunks = self.leg_sizes[slot];
        // `check_geometry` proved this cannot overflow.
        let end = self.data_offset + chunks * self.chunk_bytes();
        if end > device_bytes {
            return Err(invalid(
                "leg_sizes",
                format!(
                    "slot {slot} claims {chunks} chunks of {} bytes after the data offset {}, {end} bytes in all, but the device holds {device_bytes}",
                    self.chunk_bytes(),
                    self.data_offset
                ),
            ));
        }
        Ok(())
    }

    /// The fields only a proven layout can bound: its `stripes` and
    /// `spare_chunks`.
    pub fn check_layout(&self, stripes: u64, spare_chunks: u32) -> Result<(), SuperblockError> {
        if stripes.div_ceil(self.region_stripes) != self.regions {
            return Err(invalid(
                "regions",
                format!(
                    "{} regions of {} stripes do not cover the layout's {stripes} stripes (the layout no longer matches the bitmap)",
                    self.regions, self.region_stripes
                ),
            ));
        }
        for (i, r) in self.recovering.iter().enumerate() {
            if let Some(r) = r.filter(|r| r.offset > stripes) {
                return Err(invalid("recovering", format!("slot {i} is rebuilt up to stripe {}, past the layout's {stripes}", r.offset)));
            }
        }
        if let Some(r) = self.replacement.filter(|r| r.offset > stripes) {
            return Err(invalid("replacement", format!("rebuilt up to stripe {}, past the layout's {stripes}", r.offset)));
        }
        for (i, o) in self.spared.iter().enumerate() {
            if let Some(o) = o.filter(|o| *o >= spare_chunks) {
                return Err(invalid("spared", format!("slot {i} was rebuilt into spare {o}, but the layout has {spare_chunks} spare slots")));
            }
        }
        Ok(())
    }

    /// The first field of the array's geometry (fixed at `create`, the
    /// same on every leg of one array) where `other` differs, if any.
    pub fn geometry_differs(&self, other: &Superblock) -> Option<&'static str> {
        let fields: [(&'static str, bool); 14] = [
            ("chunk_sectors", self.chunk_sectors == other.chunk_sectors),
            ("data_offset", self.data_offset == other.data_offset),
            ("leg_sizes", self.leg_sizes == other.leg_sizes),
            ("layout_name", self.layout_name == other.layout_name),
            ("args", self.args == other.args),
            ("component_sha256", self.component_sha256 == other.component_sha256),
            ("component_offset", self.component_offset == other.component_offset),
            ("component_len", self.component_len == other.component_len),
            ("bitmap_offset", self.bitmap_offset == other.bitmap_offset),
            ("bitmap_bytes", self.bitmap_bytes == other.bitmap_bytes),
            ("region_stripes", self.region_stripes == other.region_stripes),
            ("regions", self.regions == other.regions),
            ("legs", self.legs.len() == other.legs.len()),
            // Where a reshape has reached differs between generations; what
            // it reshapes to does not.
            (
                "reshape",
                self.reshape.as_ref().map(|r| (&r.layout_name, &r.args, r.chunk_sectors, r.data_offset, r.component_sha256, r.old_slots, r.new_slots))
                    == other.reshape.as_ref().map(|r| (&r.layout_name, &r.args, r.chunk_sectors, r.data_offset, r.component_sha256, r.old_slots, r.new_slots)),
            ),
        ];
        fields.into_iter().find(|(_, same)| !same).map(|(name, _)| name)
    }

    pub(crate) fn chunk_bytes(&self) -> u64 {
        u64::from(self.chunk_sectors) * 512
    }

    /// The per-slot tables: one entry per slot, states that can coexist.
    fn check_slots(&self) -> Result<(), SuperblockError> {
        let n = self.legs.len();
        if n == 0 || n > MAX_LEGS {
            return Err(invalid("legs", format!("{n} slots (an array has 1 to {MAX_LEGS})")));
        }
        if [self.failed.len(), self.spared.len(), self.recovering.len(), self.leg_sizes.len()].iter().any(|&l| l != n) {
            return Err(invalid("legs", format!("the per-slot tables do not all hold {n} entries")));
        }
        if self.leg_index as usize >= n {
            return Err(invalid("leg_index", format!("slot {} of an array of {n}", self.leg_index)));
        }
        for i in 0..n {
            if self.failed[i] && self.recovering[i].is_some() {
                return Err(invalid("recovering", format!("slot {i} is both failed and recovering")));
            }
            if let Some(o) = self.spared[i] {
                if !self.failed[i] {
                    return Err(invalid("spared", format!("slot {i} lives in spare {o} but never failed")));
                }
                if let Some(j) = (0..i).find(|&j| self.spared[j] == Some(o)) {
                    return Err(invalid("spared", format!("slots {j} and {i} both live in spare {o}")));
                }
            }
        }
        if let Some(r) = self.replacement {
            let slot = r.slot as usize;
            if slot >= n {
                return Err(invalid("replacement", format!("slot {slot} of an array of {n}")));
            }
            if r.uuid == [0; 16] || r.uuid == self.legs[slot] {
                return Err(invalid("replacement", format!("slot {slot}'s replacement has no uuid of its own")));
            }
        }
        Ok(())
    }

    /// Names and arguments: bounded as the block holds them, and the
    /// array's name as `create` takes it (it reaches logs and status).
    fn check_text(&self) -> Result<(), SuperblockError> {
        if self.name.len() > NAME_MAX {
            return Err(invalid("name", format!("{} bytes (at most {NAME_MAX})", self.name.len())));
        }
        crate::control::valid_name(&self.name).map_err(|why| invalid("name", why))?;
        if self.layout_name.len() > NAME_MAX {
            return Err(invalid("layout_name", format!("{} bytes (at most {NAME_MAX})", self.layout_name.len())));
        }
        if self.args.len() > ARGS_MAX {
            return Err(invalid("args", format!("{} bytes (at most {ARGS_MAX})", self.args.len())));
        }
        Ok(())
    }

    /// Chunk size, data offset and every slot's size: each slot's end on
    /// its leg fits 64 bits, so later sums cannot overflow.
    fn check_geometry(&self) -> Result<(), SuperblockError> {
        if self.chunk_sectors == 0 || self.chunk_sectors > MAX_CHUNK_SECTORS {
            return Err(invalid("chunk_sectors", format!("{} sectors (1 to {MAX_CHUNK_SECTORS})", self.chunk_sectors)));
        }
        if self.region_stripes == 0 {
            return Err(invalid("region_stripes", "a region of no stripes"));
        }
        if self.data_offset < AFTER_SUPERBLOCKS || !self.data_offset.is_multiple_of(ALIGN) {
            return Err(invalid("data_offset", format!("{} is not a {ALIGN}-byte boundary after the superblocks", self.data_offset)));
        }
        for (i, &chunks) in self.leg_sizes.iter().enumerate() {
            if chunks.checked_mul(self.chunk_bytes()).and_then(|b| b.checked_add(self.data_offset)).is_none() {
                return Err(invalid("leg_sizes", format!("slot {i}: {chunks} chunks of {} bytes do not fit a device", self.chunk_bytes())));
            }
        }
        let largest = self.leg_sizes.iter().copied().max().unwrap_or(0);
        if self.leg_chunks > largest {
            return Err(invalid("leg_chunks", format!("{} chunks, more than any slot's ({largest})", self.leg_chunks)));
        }
        Ok(())
    }

    /// The two bitmap copies: sized for the regions, bounded, between the
    /// superblocks and the data.
    fn check_bitmap(&self) -> Result<(), SuperblockError> {
        if self.regions > MAX_REGIONS {
            return Err(invalid("regions", format!("{} regions (at most {MAX_REGIONS})", self.regions)));
        }
        if self.bitmap_offset < AFTER_SUPERBLOCKS || !self.bitmap_offset.is_multiple_of(ALIGN) {
            return Err(invalid("bitmap_offset", format!("{} is not a {ALIGN}-byte boundary after the superblocks", self.bitmap_offset)));
        }
        let (least, most) = (copy_bytes(self.regions), copy_bytes(MAX_REGIONS));
        if self.bitmap_bytes < least || self.bitmap_bytes > most || !self.bitmap_bytes.is_multiple_of(ALIGN) {
            return Err(invalid(
                "bitmap_bytes",
                format!("{} bytes per copy, for {} regions (a copy takes {least} to {most} bytes, in 4 KiB blocks)", self.bitmap_bytes, self.regions),
            ));
        }
        match self.bitmap_end() {
            Some(end) if end <= self.data_offset => Ok(()),
            _ => Err(invalid(
                "bitmap_bytes",
                format!("two copies of {} bytes from {} run past the data offset {}", self.bitmap_bytes, self.bitmap_offset, self.data_offset),
            )),
        }
    }

    /// The stored component: bounded, between the superblocks and the
    /// data, clear of the bitmap.
    fn check_component(&self) -> Result<(), SuperblockError> {
        if self.component_len == 0 || self.component_len > MAX_COMPONENT_BYTES {
            return Err(invalid("component_len", format!("{} bytes (1 to {MAX_COMPONENT_BYTES})", self.component_len)));
        }
        let end = self.component_offset.checked_add(self.component_len);
        if self.component_offset < AFTER_SUPERBLOCKS || end.is_none_or(|e| e > self.data_offset) {
            return Err(invalid(
                "component_offset",
                format!("{} bytes at {} are not between the superblocks and the data offset {}", self.component_len, self.component_offset, self.data_offset),
            ));
        }
        let (start, end) = (self.component_offset, self.component_offset + self.component_len);
        let bitmap_end = self.bitmap_end().unwrap_or(u64::MAX);
        if start < bitmap_end && self.bitmap_offset < end {
            return Err(invalid(
                "component_offset",
                format!("{} bytes at {start} overlap the bitmap copies ({} to {bitmap_end})", self.component_len, self.bitmap_offset),
            ));
        }
        Ok(())
    }

    /// A reshape under way: its layout's text and chunk bounded as the
    /// old ones are, slots for both layouts, its data offset a boundary at
    /// or before the old one's and after all metadata (the old component
    /// included: a crash resumes from it), its component bounded, clear of
    /// the bitmap and of the old component.
    fn check_reshape(&self) -> Result<(), SuperblockError> {
        let Some(r) = &self.reshape else { return Ok(()) };
        if r.layout_name.is_empty() || r.layout_name.len() > NAME_MAX {
            return Err(invalid("reshape.layout_name", format!("{} bytes (1 to {NAME_MAX})", r.layout_name.len())));
        }
        if r.args.len() > ARGS_MAX {
            return Err(invalid("reshape.args", format!("{} bytes (at most {ARGS_MAX})", r.args.len())));
        }
        if r.chunk_sectors == 0 || r.chunk_sectors > MAX_CHUNK_SECTORS {
            return Err(invalid("reshape.chunk_sectors", format!("{} sectors (1 to {MAX_CHUNK_SECTORS})", r.chunk_sectors)));
        }
        if r.old_slots == 0 || r.old_slots as usize > self.legs.len() {
            return Err(invalid("reshape.old_slots", format!("{} of the array's {} slots", r.old_slots, self.legs.len())));
        }
        // Legs are removed or added, not both.
        if r.new_slots != 0 && (r.new_slots as usize >= self.legs.len() || r.old_slots as usize != self.legs.len()) {
            return Err(invalid("reshape.new_slots", format!("{} of the array's {} slots ({} before the reshape)", r.new_slots, self.legs.len(), r.old_slots)));
        }
        if !r.data_offset.is_multiple_of(ALIGN) || r.data_offset > self.data_offset {
            return Err(invalid(
                "reshape.data_offset",
                format!("{} is not a {ALIGN}-byte boundary at or before the data offset {}", r.data_offset, self.data_offset),
            ));
        }
        if r.component_len == 0 || r.component_len > MAX_COMPONENT_BYTES {
            return Err(invalid("reshape.component_len", format!("{} bytes (1 to {MAX_COMPONENT_BYTES})", r.component_len)));
        }
        let metadata_end = self.bitmap_end().unwrap_or(u64::MAX).max(self.component_offset + self.component_len);
        if metadata_end > r.data_offset {
            return Err(invalid("reshape.data_offset", format!("{} is inside the metadata, which runs to {metadata_end}", r.data_offset)));
        }
        let (start, end) = (r.component_offset, r.component_offset.saturating_add(r.component_len));
        let clear = |from: u64, to: u64| end <= from || to <= start;
        if start < AFTER_SUPERBLOCKS
            || end > r.data_offset
            || !clear(self.bitmap_offset, self.bitmap_end().unwrap_or(u64::MAX))
            || !clear(self.component_offset, self.component_offset + self.component_len)
        {
            return Err(invalid(
                "reshape.component_offset",
                format!(
                    "{} bytes at {start} are not clear of the superblocks, the bitmap copies and the old component, before the new data offset {}",
                    r.component_len, r.data_offset
                ),
            ));
        }
        Ok(())
    }

    /// The reshape's position against the new layout once proven: a
    /// multiple of its stripe's data, within its capacity.
    pub fn check_reshape_position(&self, stripe_bytes: u64, capacity: u64) -> Result<(), SuperblockError> {
        let Some(r) = &self.reshape else { return Ok(()) };
        if stripe_bytes == 0 || !r.position.is_multiple_of(stripe_bytes) || r.position > capacity {
            return Err(invalid(
                "reshape.position",
                format!("byte {} is not a whole number of the new layout's {stripe_bytes}-byte stripes within its {capacity} bytes", r.position),
            ));
        }
        Ok(())
    }

    fn bitmap_end(&self) -> Option<u64> {
        self.bitmap_bytes.checked_mul(2).and_then(|b| b.checked_add(self.bitmap_offset))
    }
}

#[cfg(test)]
pub(crate) mod tests;
