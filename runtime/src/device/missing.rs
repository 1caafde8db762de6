//! The placeholder for a leg that is not there (removed, or absent at
//! assembly): every I/O fails, so the array treats it as dead.

use super::BlockDevice;
use std::io;

pub struct Missing {
    pub what: String,
}

impl Missing {
    fn fail(&self) -> io::Error {
        io::Error::new(io::ErrorKind::NotFound, format!("{}: the leg is missing", self.what))
    }
}

impl BlockDevice for Missing {
    fn size(&self) -> u64 {
        0
    }
    fn read_at(&self, _buf: &mut [u8], _offset: u64) -> io::Result<()> {
        Err(self.fail())
    }
    fn write_at(&self, _buf: &[u8], _offset: u64, _fua: bool) -> io::Result<()> {
        Err(self.fail())
    }
    fn flush(&self) -> io::Result<()> {
        Err(self.fail())
    }
    fn discard(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Err(self.fail())
    }
    fn write_zeroes(&self, _offset: u64, _len: u64, _fua: bool) -> io::Result<()> {
        Err(self.fail())
    }
    fn describe(&self) -> String {
        format!("(missing: {})", self.what)
    }
}
