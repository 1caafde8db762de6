//! The per-leg superblock: who this leg is, which array it belongs to, how
//! fresh it is, and the layout (component bytes included) so an array can be
//! assembled where the `.wasm` file never was.
//!
//! Two copies of one 4 KiB block at the start of every leg (offsets 0 and
//! 4 KiB), little endian, crc32c over everything but the last 4 bytes. On
//! load the valid copy with the highest generation wins.
//!
//! Every slot records what its leg holds, as md records a role and a
//! `recovery_offset` per device: in sync, failed (and maybe rebuilt into a
//! distributed spare), or recovering with the stripes below its checkpoint
//! rebuilt; and one replacement being rebuilt beside a live leg, with its
//! own checkpoint. A leg is never read as in sync unless its slot says so.

/// Bytes of one superblock copy.
pub const BLOCK: usize = 4096;
pub const MAGIC: &[u8; 8] = b"WRAIDSB1";
/// Version 2 added member states, recovery checkpoints and the
/// replacement record; version 1 blocks are still read.
pub const VERSION: u32 = 2;
/// A version 2 block with a reshape record: written only while a reshape
/// is under way, so a wasmraid that cannot resume one refuses the array
/// rather than read it through one layout (md's RESHAPE_ACTIVE feature).
pub const VERSION_RESHAPE: u32 = 3;
/// Where the reshape record starts: past the largest slot table.
pub const RESHAPE_AT: usize = 2816;
/// Most legs an array records (their uuids fit one block).
pub const MAX_LEGS: usize = 64;
/// Longest `args` and names a block holds (bytes).
pub const ARGS_MAX: usize = 256;
pub const NAME_MAX: usize = 32;

/// A leg's metadata.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Superblock {
    pub array_uuid: [u8; 16],
    pub name: String,
    /// This leg's own uuid.
    pub leg_uuid: [u8; 16],
    /// This leg's position in the array.
    pub leg_index: u32,
    /// Every leg's uuid, in order (zero for an empty slot).
    pub legs: Vec<[u8; 16]>,
    /// Legs the array considered failed (or missing) at this generation.
    pub failed: Vec<bool>,
    /// For a failed leg: the spare ordinal its chunks were rebuilt into.
    pub spared: Vec<Option<u32>>,
    /// For a leg being rebuilt: where its recovery has reached.
    pub recovering: Vec<Option<Recovery>>,
    /// A new device being rebuilt to take a live leg's place.
    pub replacement: Option<Replacement>,
    /// Usable chunks of every leg (the layout's geometry).
    pub leg_sizes: Vec<u64>,
    /// Event counter: bumped on every change of the array's state.
    pub generation: u64,
    /// Writes may be in flight: set before the first write, cleared when
    /// the array is idle and flushed (md's safe mode) or cleanly stopped.
    pub dirty: bool,
    /// The array crashed dirty and the resync that follows has not
    /// finished: stripes may be torn (md's resync_offset short of the end).
    pub unsynced: bool,
    /// Generation at which the bitmap last forgot what a missing leg
    /// missed: a leg at least this fresh can be re-added with a
    /// bitmap-only recovery.
    pub events_cleared: u64,
    pub chunk_sectors: u32,
    /// Where data starts on every leg, in bytes.
    pub data_offset: u64,
    /// Usable chunks per leg.
    pub leg_chunks: u64,
    pub layout_name: String,
    pub args: String,
    pub component_sha256: [u8; 32],
    /// Where the component bytes are stored on the leg, and their length.
    pub component_offset: u64,
    pub component_len: u64,
    /// The write-intent bitmap: offset of copy A (copy B follows), the
    /// bytes reserved per copy, region size and count.
    pub bitmap_offset: u64,
    pub bitmap_bytes: u64,
    pub region_stripes: u64,
    pub regions: u64,
    /// Seconds since the epoch at creation and at the last update.
    pub created: u64,
    pub updated: u64,
    /// A reshape under way: the layout the data moves to, and how far.
    pub reshape: Option<Reshape>,
}

/// A reshape under way (md's `reshape_position` and new geometry). The
/// fields above describe the old layout over the first `old_slots` slots;
/// slots from `old_slots` on were added for the new layout, whose data
/// starts at `data_offset` on every leg, before the old layout's. The new
/// layout is over the first `new_slots` slots (0: all of them; fewer when
/// the last legs are being removed).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Reshape {
    pub layout_name: String,
    pub args: String,
    pub chunk_sectors: u32,
    pub data_offset: u64,
    /// The new layout's component, stored beside the old one's.
    pub component_sha256: [u8; 32],
    pub component_offset: u64,
    pub component_len: u64,
    pub old_slots: u32,
    pub new_slots: u32,
    /// Bytes of the array below which the new layout holds the data, on
    /// the legs, durably; the old layout holds the rest.
    pub position: u64,
}

/// A leg's rebuild, checkpointed: every stripe below `offset` holds what
/// the array holds (only the bitmap's regions when `bitmap_only`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Recovery {
    pub offset: u64,
    pub bitmap_only: bool,
}

/// A replacement (`leg replace`) under way for `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Replacement {
    pub slot: u32,
    pub uuid: [u8; 16],
    /// Stripes below this are rebuilt on the replacement.
    pub offset: u64,
}

/// A slot's state byte on disk (version 2).
const IN_SYNC: u8 = 0;
const FAILED: u8 = 1;
const RECOVERING_FULL: u8 = 2;
const RECOVERING_BITMAP: u8 = 3;

/// Why a superblock copy could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuperblockError {
    #[error("no wasmraid superblock (magic {0:?})")]
    Magic(String),
    #[error("superblock checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("superblock version {0} is not supported (this wasmraid reads versions 1 to {VERSION_RESHAPE})")]
    Version(u32),
    #[error("superblock field {0} is out of range")]
    Field(&'static str),
    /// A field that decodes but cannot be true of this leg or of the
    /// other fields (see `validate.rs`).
    #[error("superblock field {field}: {why}")]
    Invalid { field: &'static str, why: String },
    #[error("the block is shorter than {BLOCK} bytes")]
    Short,
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// A string in a fixed field: u16 length then the bytes, zero padded.
    fn text(&mut self, s: &str, max: usize) {
        let b = &s.as_bytes()[..s.len().min(max)];
        self.buf.extend_from_slice(&(b.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(b);
        self.buf.extend(std::iter::repeat_n(0, max - b.len()));
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        s
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap_or_default())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap_or_default())
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        self.take(N).try_into().unwrap_or([0; N])
    }
    fn text(&mut self, max: usize, field: &'static str) -> Result<String, SuperblockError> {
        let len = u16::from_le_bytes(self.array::<2>()) as usize;
        let raw = self.take(max);
        if len > max {
            return Err(SuperblockError::Field(field));
        }
        String::from_utf8(raw[..len].to_vec()).map_err(|_| SuperblockError::Field(field))
    }
}

impl Superblock {
    /// The block slot `i`'s own leg carries: the array's fields with that
    /// slot's index, uuid and size (what `create` and a reshape write).
    pub fn for_slot(&self, i: usize) -> Superblock {
        Superblock {
            leg_index: i as u32,
            leg_uuid: self.legs.get(i).copied().unwrap_or_default(),
            leg_chunks: self.leg_sizes.get(i).copied().unwrap_or(0),
            ..self.clone()
        }
    }

    /// The block as written to disk.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer { buf: Vec::with_capacity(BLOCK) };
        w.bytes(MAGIC);
        w.u32(if self.reshape.is_some() { VERSION_RESHAPE } else { VERSION });
        w.bytes(&self.array_uuid);
        w.text(&self.name, NAME_MAX);
        w.bytes(&self.leg_uuid);
        w.u32(self.leg_index);
        w.u64(self.generation);
        w.u32(u32::from(self.dirty) | (u32::from(self.unsynced) << 1));
        w.u64(self.events_cleared);
        w.u32(self.chunk_sectors);
        w.u64(self.data_offset);
        w.u64(self.leg_chunks);
        w.text(&self.layout_name, NAME_MAX);
        w.text(&self.args, ARGS_MAX);
        w.bytes(&self.component_sha256);
        w.u64(self.component_offset);
        w.u64(self.component_len);
        w.u64(self.bitmap_offset);
        w.u64(self.bitmap_bytes);
        w.u64(self.region_stripes);
        w.u64(self.regions);
        w.u64(self.created);
        w.u64(self.updated);
        let replacement = self.replacement.unwrap_or(Replacement { slot: u32::MAX, uuid: [0; 16], offset: 0 });
        w.u32(replacement.slot);
        w.bytes(&replacement.uuid);
        w.u64(replacement.offset);
        w.u32(self.legs.len() as u32);
        for (i, uuid) in self.legs.iter().enumerate().take(MAX_LEGS) {
            w.bytes(uuid);
            let failed = self.failed.get(i).copied().unwrap_or(false);
            let recovery = self.recovering.get(i).copied().flatten();
            let state = match recovery {
                _ if failed => FAILED,
                Some(r) if r.bitmap_only => RECOVERING_BITMAP,
                Some(_) => RECOVERING_FULL,
                None => IN_SYNC,
            };
            let spare = match self.spared.get(i).copied().flatten() {
                Some(o) if failed => 1 + o.min(254) as u8,
                _ => 0,
            };
            w.bytes(&[state, spare]);
            w.u64(self.leg_sizes.get(i).copied().unwrap_or(0));
            w.u64(recovery.map_or(0, |r| r.offset));
        }
        if let Some(r) = &self.reshape {
            w.buf.resize(RESHAPE_AT, 0);
            w.text(&r.layout_name, NAME_MAX);
            w.text(&r.args, ARGS_MAX);
            w.u32(r.chunk_sectors);
            w.u64(r.data_offset);
            w.bytes(&r.component_sha256);
            w.u64(r.component_offset);
            w.u64(r.component_len);
            w.u32(r.old_slots);
            w.u64(r.position);
            // After the position: records written before legs could be
            // removed hold 0 here, which means every slot.
            w.u32(r.new_slots);
        }
        w.buf.resize(BLOCK - 4, 0);
        let crc = crc32c::crc32c(&w.buf);
        w.u32(crc);
        w.buf
    }

    /// Read one copy, checking magic, version and checksum.
    pub fn decode(block: &[u8]) -> Result<Superblock, SuperblockError> {
        if block.len() < BLOCK {
            return Err(SuperblockError::Short);
        }
        let block = &block[..BLOCK];
        if &block[..8] != MAGIC {
            return Err(SuperblockError::Magic(String::from_utf8_lossy(&block[..8]).into_owned()));
        }
        let stored = u32::from_le_bytes(block[BLOCK - 4..].try_into().unwrap_or_default());
        let computed = crc32c::crc32c(&block[..BLOCK - 4]);
        if stored != computed {
            return Err(SuperblockError::Checksum { stored, computed });
        }
        let mut r = Reader { buf: block, at: 8 };
        let version = r.u32();
        if !(1..=VERSION_RESHAPE).contains(&version) {
            return Err(SuperblockError::Version(version));
        }
        let array_uuid = r.array();
        let name = r.text(NAME_MAX, "name")?;
        let leg_uuid = r.array();
        let leg_index = r.u32();
        let generation = r.u64();
        let flags = r.u32();
        let (dirty, unsynced) = (flags & 1 != 0, flags & 2 != 0);
        let events_cleared = r.u64();
        let chunk_sectors = r.u32();
        let data_offset = r.u64();
        let leg_chunks = r.u64();
        let layout_name = r.text(NAME_MAX, "layout name")?;
        let args = r.text(ARGS_MAX, "args")?;
        let component_sha256 = r.array();
        let (component_offset, component_len) = (r.u64(), r.u64());
        let (bitmap_offset, bitmap_bytes, region_stripes, regions) = (r.u64(), r.u64(), r.u64(), r.u64());
        let (created, updated) = (r.u64(), r.u64());
        let replacement = if version >= 2 {
            let (slot, uuid, offset) = (r.u32(), r.array(), r.u64());
            (slot != u32::MAX).then_some(Replacement { slot, uuid, offset })
        } else {
            None
        };
        let count = r.u32() as usize;
        if count == 0 || count > MAX_LEGS || leg_index as usize >= count {
            return Err(SuperblockError::Field("leg count"));
        }
        if replacement.is_some_and(|x| x.slot as usize >= count) {
            return Err(SuperblockError::Field("replacement slot"));
        }
        let mut legs = Vec::with_capacity(count);
        let mut failed = Vec::with_capacity(count);
        let mut spared = Vec::with_capacity(count);
        let mut recovering = Vec::with_capacity(count);
        let mut leg_sizes = Vec::with_capacity(count);
        for _ in 0..count {
            legs.push(r.array());
            if version == 1 {
                // Version 1: one byte, 0 in sync, 1 failed, 2 + o spared.
                let state = r.array::<1>()[0];
                failed.push(state != 0);
                spared.push((state >= 2).then(|| u32::from(state) - 2));
                recovering.push(None);
                leg_sizes.push(r.u64());
                continue;
            }
            let [state, spare] = r.array::<2>();
            let size = r.u64();
            let offset = r.u64();
            let (is_failed, recovery) = match state {
                IN_SYNC => (false, None),
                FAILED => (true, None),
                RECOVERING_FULL => (false, Some(Recovery { offset, bitmap_only: false })),
                RECOVERING_BITMAP => (false, Some(Recovery { offset, bitmap_only: true })),
                _ => return Err(SuperblockError::Field("member state")),
            };
            failed.push(is_failed);
            spared.push((spare > 0 && is_failed).then(|| u32::from(spare) - 1));
            recovering.push(recovery);
            leg_sizes.push(size);
        }
        if chunk_sectors == 0 || region_stripes == 0 {
            return Err(SuperblockError::Field("geometry"));
        }
        let reshape = if version == VERSION_RESHAPE {
            r.at = RESHAPE_AT;
            Some(Reshape {
                layout_name: r.text(NAME_MAX, "reshape layout name")?,
                args: r.text(ARGS_MAX, "reshape args")?,
                chunk_sectors: r.u32(),
                data_offset: r.u64(),
                component_sha256: r.array(),
                component_offset: r.u64(),
                component_len: r.u64(),
                old_slots: r.u32(),
                position: r.u64(),
                new_slots: r.u32(),
            })
        } else {
            None
        };
        Ok(Superblock {
            array_uuid,
            name,
            leg_uuid,
            leg_index,
            legs,
            failed,
            spared,
            recovering,
            replacement,
            leg_sizes,
            generation,
            dirty,
            unsynced,
            events_cleared,
            chunk_sectors,
            data_offset,
            leg_chunks,
            layout_name,
            args,
            component_sha256,
            component_offset,
            component_len,
            bitmap_offset,
            bitmap_bytes,
            region_stripes,
            regions,
            created,
            updated,
            reshape,
        })
    }

    /// Of two copies, the valid one with the highest generation; the errors
    /// of both when neither is valid.
    pub fn pick(a: &[u8], b: &[u8]) -> Result<Superblock, (SuperblockError, SuperblockError)> {
        match (Superblock::decode(a), Superblock::decode(b)) {
            (Ok(x), Ok(y)) => Ok(if y.generation > x.generation { y } else { x }),
            (Ok(x), Err(_)) | (Err(_), Ok(x)) => Ok(x),
            (Err(e1), Err(e2)) => Err((e1, e2)),
        }
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A uuid as 8-4-4-4-12 hex.
pub fn uuid_text(u: &[u8; 16]) -> String {
    let h = hex::encode(u);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// A fresh random (version 4) uuid.
pub fn new_uuid() -> [u8; 16] {
    let mut u: [u8; 16] = rand::random();
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Superblock {
        Superblock {
            array_uuid: [1; 16],
            name: "tank".into(),
            leg_uuid: [2; 16],
            leg_index: 1,
            legs: vec![[3; 16], [2; 16], [4; 16]],
            failed: vec![false, false, true],
            spared: vec![None, None, Some(0)],
            recovering: vec![Some(Recovery { offset: 17, bitmap_only: true }), None, None],
            replacement: Some(Replacement { slot: 1, uuid: [5; 16], offset: 9 }),
            leg_sizes: vec![1000, 1000, 1000],
            generation: 42,
            dirty: true,
            unsynced: true,
            events_cleared: 40,
            chunk_sectors: 128,
            data_offset: 1 << 20,
            leg_chunks: 1000,
            layout_name: "raid5".into(),
            args: "left-symmetric".into(),
            component_sha256: [9; 32],
            component_offset: 8192,
            component_len: 25000,
            bitmap_offset: 40960,
            bitmap_bytes: 8192,
            region_stripes: 64,
            regions: 16,
            created: 1,
            updated: 2,
            reshape: None,
        }
    }

    #[test]
    fn a_reshape_record_round_trips_and_marks_the_block() {
        use crate::meta::validate::tests::reshaping;
        let sb = reshaping();
        let block = sb.encode();
        assert_eq!(u32::from_le_bytes(block[8..12].try_into().unwrap()), VERSION_RESHAPE);
        assert_eq!(Superblock::decode(&block).unwrap(), sb);
        // Without one, the block stays version 2, as older wasmraids read it.
        let plain = sample().encode();
        assert_eq!(u32::from_le_bytes(plain[8..12].try_into().unwrap()), VERSION);
        // The largest slot table ends before the record begins.
        let mut full = sample();
        full.legs = vec![[1; 16]; MAX_LEGS];
        full.failed = vec![false; MAX_LEGS];
        full.spared = vec![None; MAX_LEGS];
        full.recovering = vec![None; MAX_LEGS];
        full.leg_sizes = vec![7; MAX_LEGS];
        full.reshape = reshaping().reshape;
        assert_eq!(Superblock::decode(&full.encode()).unwrap(), full);
    }

    #[test]
    fn round_trip_and_damage() {
        let sb = sample();
        let block = sb.encode();
        assert_eq!(block.len(), BLOCK);
        assert_eq!(Superblock::decode(&block).unwrap(), sb);
        let mut bad = block.clone();
        bad[100] ^= 1;
        assert!(matches!(Superblock::decode(&bad), Err(SuperblockError::Checksum { .. })));
        assert!(matches!(Superblock::decode(&[0u8; BLOCK]), Err(SuperblockError::Magic(_))));
        assert_eq!(Superblock::decode(&block[..100]), Err(SuperblockError::Short));
    }

    #[test]
    fn newest_valid_copy_wins() {
        let old = sample();
        let new = Superblock { generation: 43, ..sample() };
        assert_eq!(Superblock::pick(&old.encode(), &new.encode()).unwrap().generation, 43);
        let mut torn = new.encode();
        torn[200] ^= 0xff;
        assert_eq!(Superblock::pick(&old.encode(), &torn).unwrap().generation, 42);
        assert!(Superblock::pick(&torn, &[0u8; BLOCK]).is_err());
    }

    #[test]
    fn uuids_look_like_uuids() {
        let u = new_uuid();
        let t = uuid_text(&u);
        assert_eq!(t.len(), 36);
        assert_eq!(&t[14..15], "4");
    }
}
