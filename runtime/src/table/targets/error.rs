//! `error`: every I/O fails (dm's error target), for holes in a table.

use crate::device::BlockDevice;
use std::io;

pub struct ErrorTarget {
    pub len: u64,
}

fn fail(what: &str, offset: u64) -> io::Error {
    io::Error::other(format!("{what} at {offset}: the error target fails every I/O"))
}

impl BlockDevice for ErrorTarget {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, _buf: &mut [u8], offset: u64) -> io::Result<()> {
        Err(fail("read", offset))
    }
    fn write_at(&self, _buf: &[u8], offset: u64, _fua: bool) -> io::Result<()> {
        Err(fail("write", offset))
    }
    /// Nothing is ever written here, so nothing needs flushing; failing
    /// would fail every flush of the whole table.
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn discard(&self, offset: u64, _len: u64) -> io::Result<()> {
        Err(fail("discard", offset))
    }
    fn write_zeroes(&self, offset: u64, _len: u64, _fua: bool) -> io::Result<()> {
        Err(fail("write-zeroes", offset))
    }
    fn describe(&self) -> String {
        "error".into()
    }
}
