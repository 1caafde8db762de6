//! `striped <#stripes> <chunk_sectors> <dev> <offset> ...` with dm's
//! semantics: chunk c of the segment is chunk c div n of stripe c mod n.

use super::super::bind::BindContext;
use super::super::parse::{Field, Line, TableError, number};
use crate::device::{BlockDevice, check_range};
use std::io;
use std::sync::Arc;

/// (stripes, chunk sectors, devices with offsets)
pub fn check(line: usize, args: &[Field]) -> Result<(u64, u64, Vec<(Field, u64)>), TableError> {
    let [n, chunk, rest @ ..] = args else {
        return Err(TableError::at(line, 4, "<#stripes>", "striped takes <#stripes> <chunk_sectors> <dev> <offset>..."));
    };
    let stripes = number(line, n, "<#stripes>")?;
    if stripes == 0 || stripes > 4096 {
        return Err(TableError::at(line, n.index, "<#stripes>", format!("{stripes} stripes (1 to 4096)")));
    }
    let chunk_sectors = number(line, chunk, "<chunk_sectors>")?;
    if chunk_sectors == 0 {
        return Err(TableError::at(line, chunk.index, "<chunk_sectors>", "the chunk size cannot be 0"));
    }
    let pairs = super::dev_offset_pairs(line, rest, stripes as usize, chunk)?;
    if rest.len() > pairs.len() * 2 {
        let extra = &rest[pairs.len() * 2];
        return Err(TableError::at(line, extra.index, "<args>", format!("unexpected '{}' after {stripes} <dev> <offset> pairs", extra.text)));
    }
    Ok((stripes, chunk_sectors, pairs))
}

pub fn build(line: &Line, ctx: &mut BindContext) -> Result<Arc<dyn BlockDevice>, TableError> {
    let (stripes, chunk_sectors, pairs) = check(line.number, &line.args)?;
    if line.length % (stripes * chunk_sectors) != 0 {
        return Err(TableError::at(
            line.number,
            2,
            "<length>",
            format!("{} sectors is not a multiple of {stripes} stripes x {chunk_sectors} sectors", line.length),
        ));
    }
    let per_leg = line.length / stripes * 512;
    let mut legs = Vec::with_capacity(pairs.len());
    for (dev, offset) in &pairs {
        let device = ctx.open_leg(line.number, dev)?;
        if (offset * 512).checked_add(per_leg).is_none_or(|end| end > device.size()) {
            return Err(TableError::at(
                line.number,
                dev.index,
                "<dev>",
                format!("{} is too small for {} sectors from sector {offset}", dev.text, per_leg / 512),
            ));
        }
        legs.push((device, offset * 512));
    }
    Ok(Arc::new(Striped { legs, chunk: chunk_sectors * 512, len: line.length * 512 }))
}

pub struct Striped {
    legs: Vec<(Arc<dyn BlockDevice>, u64)>,
    chunk: u64,
    len: u64,
}

impl Striped {
    /// Apply `f(leg, leg offset, range start within the request, len)` to
    /// each chunk piece of `offset..offset + len`.
    fn each(&self, offset: u64, len: u64, mut f: impl FnMut(&Arc<dyn BlockDevice>, u64, usize, usize) -> io::Result<()>) -> io::Result<()> {
        check_range(self, offset, len)?;
        let n = self.legs.len() as u64;
        let mut done = 0u64;
        while done < len {
            let at = offset + done;
            let (c, within) = (at / self.chunk, at % self.chunk);
            let piece = (self.chunk - within).min(len - done);
            let (dev, base) = &self.legs[(c % n) as usize];
            f(dev, base + (c / n) * self.chunk + within, done as usize, piece as usize)?;
            done += piece;
        }
        Ok(())
    }
}

impl BlockDevice for Striped {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.each(offset, buf.len() as u64, |d, at, from, n| d.read_at(&mut buf[from..from + n], at))
    }
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        self.each(offset, buf.len() as u64, |d, at, from, n| d.write_at(&buf[from..from + n], at, fua))
    }
    fn flush(&self) -> io::Result<()> {
        self.legs.iter().try_for_each(|(d, _)| d.flush())
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.each(offset, len, |d, at, _, n| d.discard(at, n as u64))
    }
    fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> io::Result<()> {
        self.each(offset, len, |d, at, _, n| d.write_zeroes(at, n as u64, fua))
    }
    fn describe(&self) -> String {
        format!("striped {} x {} KiB", self.legs.len(), self.chunk / 1024)
    }
}
