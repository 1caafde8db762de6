//! `zero`: reads return zeroes, writes are discarded (dm's zero target).

use crate::device::BlockDevice;
use std::io;

pub struct ZeroTarget {
    pub len: u64,
}

impl BlockDevice for ZeroTarget {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, buf: &mut [u8], _offset: u64) -> io::Result<()> {
        buf.fill(0);
        Ok(())
    }
    fn write_at(&self, _buf: &[u8], _offset: u64, _fua: bool) -> io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn discard(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    fn write_zeroes(&self, _offset: u64, _len: u64, _fua: bool) -> io::Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "zero".into()
    }
    fn zeroes_fast(&self, _offset: u64, _len: u64) -> bool {
        true
    }
    fn block_status(&self, _offset: u64, len: u64, out: &mut Vec<crate::device::status::StatusExtent>) -> io::Result<()> {
        use crate::device::status::{HOLE, StatusExtent, ZERO, push};
        push(out, StatusExtent { len, allocation: HOLE | ZERO, health: 0 });
        Ok(())
    }
}
