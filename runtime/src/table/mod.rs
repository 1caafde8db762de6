//! Device-mapper style tables: segments of sectors mapped onto targets.

pub mod bind;
mod index;
pub mod parse;
pub mod targets;

use crate::array::Array;
use crate::device::swappable::Swappable;
use crate::device::{BlockDevice, check_range};
use bind::BindContext;
use parking_lot::RwLock;
use parse::{Line, TableError, TableSpec};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

struct Segment {
    start: u64,
    /// Grows only in a single-array table whose array reshapes bigger.
    len: AtomicU64,
    device: Arc<dyn BlockDevice>,
    line: Line,
}

/// A bound table: one block device made of segments.
pub struct Table {
    name: String,
    segments: Vec<Segment>,
    index: index::SegmentIndex,
    size: AtomicU64,
    /// The arrays status and the daemon see: none while a reshape moves
    /// the one array (`reshape::online` owns it then).
    arrays: RwLock<Vec<Arc<Array>>>,
    /// A single-array table's array, which a reshape swaps while served.
    swappable: Option<Arc<Swappable>>,
}

impl Table {
    /// Open every device and build every target of `spec`.
    pub fn bind(spec: &TableSpec, mut ctx: BindContext) -> Result<Table, TableError> {
        ctx.wasm_lines = spec.lines.iter().filter(|l| l.target == "wasm").map(|l| l.number).collect();
        let mut segments = Vec::with_capacity(spec.lines.len());
        for line in &spec.lines {
            let device = targets::build(line, &mut ctx)?;
            segments.push(Segment { start: line.start * 512, len: AtomicU64::new(line.length * 512), device, line: line.clone() });
        }
        let starts: Vec<u64> = segments.iter().map(|s| s.start / 512).collect();
        Ok(Table {
            name: ctx.name.clone(),
            size: AtomicU64::new(spec.sectors() * 512),
            index: index::SegmentIndex::new(&starts),
            segments,
            arrays: RwLock::new(ctx.arrays),
            swappable: None,
        })
    }

    /// A table of one segment: a whole array, which a reshape may swap
    /// for the same data laid out otherwise while it is served.
    pub fn single(name: &str, array: Arc<Array>) -> Table {
        let len = array.size();
        let line = Line { number: 1, start: 0, length: len / 512, target: "wasm".into(), args: Vec::new() };
        let swappable = Arc::new(Swappable::new(array.clone()));
        Table {
            name: name.into(),
            segments: vec![Segment { start: 0, len: AtomicU64::new(len), device: swappable.clone(), line }],
            index: index::SegmentIndex::new(&[0]),
            size: AtomicU64::new(len),
            arrays: RwLock::new(vec![array]),
            swappable: Some(swappable),
        }
    }

    /// The arrays it serves now.
    pub fn arrays(&self) -> Vec<Arc<Array>> {
        self.arrays.read().clone()
    }

    pub fn set_arrays(&self, arrays: Vec<Arc<Array>>) {
        *self.arrays.write() = arrays;
    }

    /// The swappable device of a single-array table.
    pub fn swappable(&self) -> Option<&Arc<Swappable>> {
        self.swappable.as_ref()
    }

    /// A single-array table grows to `bytes` (its array reshaped bigger).
    /// Never shrinks: a request already checked against the old size
    /// stays within the new one.
    pub fn grow_single(&self, bytes: u64) {
        if let [seg] = &self.segments[..] {
            seg.len.fetch_max(bytes, Ordering::AcqRel);
            self.size.fetch_max(bytes, Ordering::AcqRel);
        }
    }

    /// The table as dmsetup prints it.
    pub fn text(&self) -> String {
        self.segments
            .iter()
            .map(|s| {
                let args: Vec<&str> = s.line.args.iter().map(|f| f.text.as_str()).collect();
                format!("{} {} {} {}", s.start / 512, s.len.load(Ordering::Acquire) / 512, s.line.target, args.join(" ")).trim_end().to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The segment that holds `len` bytes from `offset` whole, and the
    /// offset within it; None when the range is outside the table or
    /// crosses segments.
    fn one_segment(&self, offset: u64, len: u64) -> Option<(&Segment, u64)> {
        check_range(self, offset, len).ok()?;
        let seg = self.segments.get(self.index.find(offset / 512))?;
        let within = offset.checked_sub(seg.start)?;
        (within.checked_add(len)? <= seg.len.load(Ordering::Acquire)).then_some((seg, within))
    }

    /// Apply `f(device, offset within the segment, range start, len)` to
    /// each segment piece of a request.
    fn each(&self, offset: u64, len: u64, mut f: impl FnMut(&dyn BlockDevice, u64, usize, usize) -> io::Result<()>) -> io::Result<()> {
        check_range(self, offset, len)?;
        let mut done = 0u64;
        while done < len {
            let at = offset + done;
            let seg = &self.segments[self.index.find(at / 512)];
            let within = at - seg.start;
            let piece = (seg.len.load(Ordering::Acquire).saturating_sub(within)).min(len - done).max(1);
            f(&*seg.device, within, done as usize, piece as usize)
                .map_err(|e| io::Error::new(e.kind(), format!("{} line {}: {e}", self.name, seg.line.number)))?;
            done += piece;
        }
        Ok(())
    }
}

impl BlockDevice for Table {
    fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.each(offset, buf.len() as u64, |d, at, from, n| d.read_at(&mut buf[from..from + n], at))
    }
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        self.each(offset, buf.len() as u64, |d, at, from, n| d.write_at(&buf[from..from + n], at, fua))
    }
    fn flush(&self) -> io::Result<()> {
        let mut seen: Vec<*const ()> = Vec::new();
        for s in &self.segments {
            let p = Arc::as_ptr(&s.device) as *const ();
            if !seen.contains(&p) {
                seen.push(p);
                s.device.flush()?;
            }
        }
        Ok(())
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.each(offset, len, |d, at, _, n| d.discard(at, n as u64))
    }
    fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> io::Result<()> {
        self.each(offset, len, |d, at, _, n| d.write_zeroes(at, n as u64, fua))
    }
    fn describe(&self) -> String {
        format!("{} ({} segment(s))", self.name, self.segments.len())
    }
    fn arrays(&self) -> Vec<Arc<Array>> {
        Table::arrays(self)
    }
    fn zeroes_fast(&self, offset: u64, len: u64) -> bool {
        let mut fast = true;
        let _ = self.each(offset, len, |d, at, _, n| {
            fast &= d.zeroes_fast(at, n as u64);
            Ok(())
        });
        fast && offset.checked_add(len).is_some_and(|end| end <= self.size())
    }
    fn block_sizes(&self) -> crate::device::BlockSizes {
        self.segments.iter().map(|s| s.device.block_sizes()).reduce(crate::device::BlockSizes::merge).unwrap_or_default()
    }
    fn block_status(&self, offset: u64, len: u64, out: &mut Vec<crate::device::status::StatusExtent>) -> io::Result<()> {
        self.each(offset, len, |d, at, _, n| d.block_status(at, n as u64, out))
    }
    /// Staged when the read lies within one segment.
    fn stage_read(&self, offset: u64, len: u64) -> Option<Box<dyn crate::device::staged::StagedRead + '_>> {
        let (seg, within) = self.one_segment(offset, len)?;
        seg.device.stage_read(within, len)
    }
    /// Staged when the write lies within one segment.
    fn stage_write(&self, offset: u64, len: u64, fua: bool) -> Option<Box<dyn crate::device::staged::StagedWrite + '_>> {
        let (seg, within) = self.one_segment(offset, len)?;
        seg.device.stage_write(within, len, fua)
    }
    /// The segment's unit, clipped to the segment.
    fn gather_unit(&self, offset: u64, kind: crate::device::Gather) -> Option<std::ops::Range<u64>> {
        let (seg, within) = self.one_segment(offset, 1)?;
        let unit = seg.device.gather_unit(within, kind)?;
        let end = unit.end.min(seg.len.load(Ordering::Acquire));
        (unit.start < end).then_some(seg.start.checked_add(unit.start)?..seg.start.checked_add(end)?)
    }
    fn read_extents(&self, offset: u64, len: u64, buf_offset: usize, out: &mut Vec<crate::device::Extent>) -> bool {
        let not_direct = || io::Error::other("");
        self.each(offset, len, |d, at, from, n| if d.read_extents(at, n as u64, buf_offset + from, out) { Ok(()) } else { Err(not_direct()) }).is_ok()
    }
}
