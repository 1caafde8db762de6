//! `linear <dev> <offset>`: the segment maps onto `dev` from sector
//! `offset` (dm's linear target).

use super::super::bind::BindContext;
use super::super::parse::{Field, Line, TableError, number};
use crate::device::{BlockDevice, check_range};
use std::io;
use std::sync::Arc;

pub fn check(line: usize, args: &[Field]) -> Result<(), TableError> {
    match args {
        [_dev, offset] => number(line, offset, "<offset>").map(|_| ()),
        _ => Err(TableError::at(line, 4, "<dev> <offset>", format!("linear takes <dev> <offset>, got {} argument(s)", args.len()))),
    }
}

pub fn build(line: &Line, ctx: &mut BindContext) -> Result<Arc<dyn BlockDevice>, TableError> {
    let (dev, offset) = (&line.args[0], number(line.number, &line.args[1], "<offset>")?);
    let device = ctx.open_leg(line.number, dev)?;
    let (start, len) = (offset * 512, line.length * 512);
    if start.checked_add(len).is_none_or(|end| end > device.size()) {
        return Err(TableError::at(
            line.number,
            2,
            "<length>",
            format!("{} sectors from sector {offset} go beyond {} ({} sectors)", line.length, dev.text, device.size() / 512),
        ));
    }
    Ok(Arc::new(Linear { device, start, len, name: format!("linear {} {offset}", dev.text) }))
}

pub struct Linear {
    device: Arc<dyn BlockDevice>,
    start: u64,
    len: u64,
    name: String,
}

impl BlockDevice for Linear {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self, offset, buf.len() as u64)?;
        self.device.read_at(buf, self.start + offset)
    }
    fn zeroes_fast(&self, offset: u64, len: u64) -> bool {
        self.device.zeroes_fast(self.start + offset, len)
    }
    fn block_sizes(&self) -> crate::device::BlockSizes {
        self.device.block_sizes()
    }
    fn block_status(&self, offset: u64, len: u64, out: &mut Vec<crate::device::status::StatusExtent>) -> io::Result<()> {
        check_range(self, offset, len)?;
        self.device.block_status(self.start + offset, len, out)
    }
    fn read_extents(&self, offset: u64, len: u64, buf_offset: usize, out: &mut Vec<crate::device::Extent>) -> bool {
        check_range(self, offset, len).is_ok() && self.device.read_extents(self.start + offset, len, buf_offset, out)
    }
    fn direct_file(&self, offset: u64, buf: *const u8, len: usize) -> Option<(std::sync::Arc<std::fs::File>, u64)> {
        check_range(self, offset, len as u64).ok()?;
        self.device.direct_file(self.start + offset, buf, len)
    }
    /// The inner device's unit, in this target's offsets and clipped to it.
    fn gather_unit(&self, offset: u64, kind: crate::device::Gather) -> Option<std::ops::Range<u64>> {
        check_range(self, offset, 1).ok()?;
        let unit = self.device.gather_unit(self.start.checked_add(offset)?, kind)?;
        let (start, end) = (unit.start.max(self.start) - self.start, unit.end.min(self.start.checked_add(self.size())?).checked_sub(self.start)?);
        (start < end).then_some(start..end)
    }
    fn stage_read(&self, offset: u64, len: u64) -> Option<Box<dyn crate::device::staged::StagedRead + '_>> {
        check_range(self, offset, len).ok()?;
        self.device.stage_read(self.start + offset, len)
    }
    fn stage_write(&self, offset: u64, len: u64, fua: bool) -> Option<Box<dyn crate::device::staged::StagedWrite + '_>> {
        check_range(self, offset, len).ok()?;
        self.device.stage_write(self.start + offset, len, fua)
    }
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        check_range(self, offset, buf.len() as u64)?;
        self.device.write_at(buf, self.start + offset, fua)
    }
    fn flush(&self) -> io::Result<()> {
        self.device.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self, offset, len)?;
        self.device.discard(self.start + offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> io::Result<()> {
        check_range(self, offset, len)?;
        self.device.write_zeroes(self.start + offset, len, fua)
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Gather;

    #[test]
    fn gather_units_are_the_inner_devices_moved_and_clipped_to_the_target() {
        let dir = tempfile::tempdir().unwrap();
        // raid5 over 5 legs of 4 KiB chunks: stripes of 16 KiB.
        let array: Arc<dyn BlockDevice> = Arc::new(crate::array::tests::array(dir.path(), "raid5", 5, 24, ""));
        let linear = Linear { device: array, start: 20_480, len: 20_480, name: "linear".into() };
        // The stripe 16..32 KiB, seen from 20 KiB on: 0..12 KiB.
        assert_eq!(linear.gather_unit(0, Gather::Write), Some(0..12_288));
        // The stripe 32..48 KiB, cut at the target's end (40 KiB): 12..20 KiB.
        assert_eq!(linear.gather_unit(16_000, Gather::Write), Some(12_288..20_480));
        assert_eq!(linear.gather_unit(20_480, Gather::Write), None);
    }
}
