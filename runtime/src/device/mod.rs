//! Block devices: the one trait every leg, target, table and array
//! implements, so an array or a table segment can be a leg of another array
//! and every frontend serves the same thing.

pub mod file;
pub mod log_writes;
pub mod mem;
pub mod missing;
pub mod nbd;
pub mod ring;
pub mod staged;
pub mod status;
pub mod swappable;

use std::io;
use std::sync::Arc;

/// Open a leg as a table or the command line names it: an NBD URI
/// (`nbd://host:port/export`, `nbd+unix:///export?socket=PATH`) or the
/// path of a file or block device.
pub fn open_leg(text: &str, flags: file::OpenFlags) -> io::Result<Arc<dyn BlockDevice>> {
    if nbd::NbdUri::looks_like(text) {
        let uri = nbd::NbdUri::parse(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        return Ok(Arc::new(nbd::NbdLeg::open(uri, flags.nbd)?));
    }
    Ok(Arc::new(file::FileLeg::open(std::path::Path::new(text), flags)?))
}

/// `bufs` one after another from `offset`, a `write_at` each.
pub fn write_each<D: BlockDevice + ?Sized>(device: &D, bufs: &[&[u8]], offset: u64, fua: bool) -> io::Result<()> {
    let mut at = offset;
    for buf in bufs {
        device.write_at(buf, at, fua)?;
        at += buf.len() as u64;
    }
    Ok(())
}

/// `bufs` filled one after another from `offset`, a `read_at` each.
pub fn read_each<D: BlockDevice + ?Sized>(device: &D, bufs: &mut [&mut [u8]], offset: u64) -> io::Result<()> {
    let mut at = offset;
    for buf in bufs {
        device.read_at(buf, at)?;
        at += buf.len() as u64;
    }
    Ok(())
}

/// A byte-addressed block device with synchronous I/O.
///
/// Offsets and lengths are in bytes; callers keep them within `size()`.
/// Implementations are shared between threads.
pub trait BlockDevice: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write `buf` at `offset`; with `fua` the data is durable on return.
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()>;
    /// Write `bufs` one after another from `offset`, as `write_at` of each
    /// in turn. A device with a round trip per request (a remote leg) sends
    /// them as one; `fua` covers every one of them.
    fn write_gathered(&self, bufs: &[&[u8]], offset: u64, fua: bool) -> io::Result<()> {
        write_each(self, bufs, offset, fua)
    }
    /// Fill `bufs` one after another from `offset`, as `read_at` of each in
    /// turn; a device with a round trip per request reads them as one.
    fn read_scattered(&self, bufs: &mut [&mut [u8]], offset: u64) -> io::Result<()> {
        read_each(self, bufs, offset)
    }
    /// Make every completed write durable.
    fn flush(&self) -> io::Result<()>;
    /// A hint that the range is unused; reads of it may return anything.
    fn discard(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Make the range read back as zeroes.
    fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> io::Result<()>;
    /// What this device is, for status and errors (a path, a target).
    fn describe(&self) -> String;
    /// For a device behind a network link: the link's state. Local devices
    /// have none.
    fn link(&self) -> Option<LinkState> {
        None
    }
    /// Where a plain read of `len` bytes at `offset` lives, appended to
    /// `out` (placed at `buf_offset` onwards of the caller's buffer), when
    /// it may be read from files directly: nothing to decode, every leg in
    /// sync. False when not (the caller then uses `read_at`). A frontend
    /// with its own asynchronous I/O reads these extents itself; on any
    /// failure it falls back to `read_at`, which handles errors and marks
    /// legs failed.
    fn read_extents(&self, _offset: u64, _len: u64, _buf_offset: usize, _out: &mut Vec<Extent>) -> bool {
        false
    }
    /// The file and offset holding the `len` bytes at `offset`, when a
    /// buffer at `buf` may read or write them there with one plain call
    /// (the alignment O_DIRECT needs): the array then runs a request's leg
    /// I/O together on its thread's ring (`ring.rs`), and falls back to
    /// `read_at`/`write_at`, which handle errors, for any that fails. None:
    /// use those.
    fn direct_file(&self, _offset: u64, _buf: *const u8, _len: usize) -> Option<(Arc<std::fs::File>, u64)> {
        None
    }
    /// A write of `len` bytes at `offset` that the caller may run in stages
    /// on its own asynchronous I/O (`staged.rs`), when nothing in it would
    /// block; None: use `write_at`.
    fn stage_write(&self, _offset: u64, _len: u64, _fua: bool) -> Option<Box<dyn staged::StagedWrite + '_>> {
        None
    }
    /// A read of `len` bytes at `offset` that `read_extents` cannot map
    /// (a chunk on a failed leg, rebuilt from its stripe) and the caller
    /// may run in stages on its own asynchronous I/O; None: `read_at`.
    fn stage_read(&self, _offset: u64, _len: u64) -> Option<Box<dyn staged::StagedRead + '_>> {
        None
    }
    /// The range around `offset` inside which requests in flight together
    /// are best served as one (`frontend::ublk::gather`): for writes, a
    /// parity array's full stripe, whose whole write reads nothing; for
    /// rebuilt reads, the chunk a degraded read solves, whose survivors are
    /// then read once for every reader. A hint only: the staged request
    /// checks everything again. None: serve each request alone.
    fn gather_unit(&self, _offset: u64, _kind: Gather) -> Option<std::ops::Range<u64>> {
        None
    }
    /// Whether `write_zeroes` of this range is faster than writing zeroes
    /// (it deallocates or zeroes in place): NBD's FAST_ZERO asks before
    /// zeroing, and a slow answer is refused at once.
    fn zeroes_fast(&self, _offset: u64, _len: u64) -> bool {
        false
    }
    /// The sizes requests should come in (NBD's `NBD_INFO_BLOCK_SIZE`).
    fn block_sizes(&self) -> BlockSizes {
        BlockSizes::default()
    }
    /// Block status of `len` bytes at `offset`, appended to `out` (merged
    /// with `status::push`): allocation and health flags that cover the
    /// whole range. By default: allocated and healthy.
    fn block_status(&self, _offset: u64, len: u64, out: &mut Vec<status::StatusExtent>) -> io::Result<()> {
        status::push(out, status::StatusExtent { len, allocation: 0, health: 0 });
        Ok(())
    }
    /// The arrays inside this device (a table used as a leg), so that
    /// status can show the tree.
    fn arrays(&self) -> Vec<Arc<crate::array::Array>> {
        Vec::new()
    }
}

/// Which requests `BlockDevice::gather_unit` is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gather {
    Write,
    /// Reads that `stage_read` rebuilds.
    Rebuild,
}

/// Request sizes a device serves well: any request is served, but one
/// below `minimum` (or not aligned to it) costs a read-modify-write of the
/// storage's own blocks, and one of `preferred` (aligned) costs no extra
/// I/O at all (a full stripe: no parity read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    /// A power of two, at most 64 KiB.
    pub minimum: u32,
    /// A power of two, at least `minimum` and 512.
    pub preferred: u32,
}

impl Default for BlockSizes {
    fn default() -> Self {
        BlockSizes { minimum: 1, preferred: 4096 }
    }
}

impl BlockSizes {
    /// Sizes that satisfy the NBD rules from any hints: the minimum a power
    /// of two in 1..=64 KiB, the preferred the largest power of two dividing
    /// `preferred`, at least max(512, minimum), at most 32 MiB.
    pub fn normalized(minimum: u64, preferred: u64) -> BlockSizes {
        let pow2_floor = |x: u64| if x == 0 { 1 } else { 1u64 << (63 - x.leading_zeros()) };
        let minimum = pow2_floor(minimum.clamp(1, 64 << 10));
        // The largest power of two dividing `preferred`: aligned requests of
        // it tile stripes exactly (a 192 KiB stripe: 64 KiB).
        let dividing = if preferred == 0 { 4096 } else { 1u64 << preferred.trailing_zeros().min(25) };
        let preferred = dividing.max(512).max(minimum).min(32 << 20);
        BlockSizes { minimum: minimum as u32, preferred: preferred as u32 }
    }

    /// The stricter of two devices' sizes (a table, an array's legs).
    pub fn merge(self, other: BlockSizes) -> BlockSizes {
        BlockSizes { minimum: self.minimum.max(other.minimum), preferred: self.preferred.max(other.preferred) }
    }
}

/// A piece of a read that lives in a file, for `read_extents`.
#[derive(Debug, Clone)]
pub struct Extent {
    /// Kept open while the read is in flight, even if the leg is replaced.
    pub file: Arc<std::fs::File>,
    pub offset: u64,
    pub len: u32,
    pub buf_offset: usize,
    /// Kept while the read is in flight: a device that may be swapped
    /// (`swappable.rs`) counts the read as a request until it is dropped.
    pub hold: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// The state of a remote leg's link, for status and for the array's daemon.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkState {
    pub connected: bool,
    /// Seconds since the link went down (0 when connected).
    pub down_for_secs: u64,
    pub reconnects: u64,
    pub last_error: String,
    /// Recent reply latency (exponentially weighted), microseconds.
    pub latency_us: u64,
    /// The connection's TLS: protocol and the identity the server's
    /// certificate proved (None: plaintext).
    pub tls: Option<crate::tls::Session>,
    /// What the protocol haggling settled, e.g. "extended-headers,
    /// structured-replies, base:allocation" (NBD), so an operator sees
    /// whether block status and large requests are in use.
    pub features: String,
}

/// An I/O error naming the device and the range.
pub fn io_error(device: &str, what: &str, offset: u64, len: u64, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{device}: {what} of {len} bytes at {offset}: {e}"))
}

/// Refuse a request beyond the end of a device.
pub fn check_range(device: &dyn BlockDevice, offset: u64, len: u64) -> io::Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= device.size() => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: {len} bytes at {offset} go beyond the end ({} bytes)", device.describe(), device.size()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::BlockSizes;

    #[test]
    fn block_sizes_follow_the_nbd_rules() {
        // raid6 of 6 legs at 64 KiB: a 256 KiB stripe.
        assert_eq!(BlockSizes::normalized(1, 256 << 10), BlockSizes { minimum: 1, preferred: 256 << 10 });
        // raid5 of 4 legs: a 192 KiB stripe is no power of two; 64 KiB tiles it.
        assert_eq!(BlockSizes::normalized(512, 192 << 10), BlockSizes { minimum: 512, preferred: 64 << 10 });
        // A 4Kn leg under a mirror of 4 KiB chunks; silly hints are clamped.
        assert_eq!(BlockSizes::normalized(4096, 4096), BlockSizes { minimum: 4096, preferred: 4096 });
        assert_eq!(BlockSizes::normalized(3000, 0), BlockSizes { minimum: 2048, preferred: 4096 });
        assert_eq!(BlockSizes::normalized(1 << 20, 1 << 30), BlockSizes { minimum: 64 << 10, preferred: 32 << 20 });
        let merged = BlockSizes { minimum: 512, preferred: 4096 }.merge(BlockSizes { minimum: 4096, preferred: 65536 });
        assert_eq!(merged, BlockSizes { minimum: 4096, preferred: 65536 });
    }
}
