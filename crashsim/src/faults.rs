//! Faults a leg can be given (dm-flakey's, and a remote leg's lost link):
//! the wrapper sits above the write log, so a refused write never reaches
//! the medium.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use wasmraid::device::{BlockDevice, LinkState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Healthy = 0,
    /// Writes, flushes and discards fail with EIO; reads work.
    FailWrites = 1,
    /// Everything fails with EIO.
    FailAll = 2,
    /// A remote leg whose link is down: everything times out.
    LinkDown = 3,
}

pub struct FaultLeg {
    inner: Arc<dyn BlockDevice>,
    mode: AtomicU8,
    /// Writes left before `armed` takes effect (negative: disarmed).
    countdown: AtomicI64,
    armed: AtomicU8,
    /// Behaves as a leg behind a network link.
    remote: bool,
}

impl FaultLeg {
    pub fn new(inner: Arc<dyn BlockDevice>, remote: bool) -> FaultLeg {
        FaultLeg { inner, mode: AtomicU8::new(Mode::Healthy as u8), countdown: AtomicI64::new(-1), armed: AtomicU8::new(0), remote }
    }

    /// Switch to `mode` now (and forget an armed switch).
    pub fn set(&self, mode: Mode) {
        self.countdown.store(-1, Ordering::SeqCst);
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Switch to `mode` after `writes` more writes (mid-workload failures).
    pub fn arm(&self, mode: Mode, writes: i64) {
        self.armed.store(mode as u8, Ordering::SeqCst);
        self.countdown.store(writes, Ordering::SeqCst);
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            1 => Mode::FailWrites,
            2 => Mode::FailAll,
            3 => Mode::LinkDown,
            _ => Mode::Healthy,
        }
    }

    fn count_write(&self) {
        if self.countdown.load(Ordering::SeqCst) >= 0 && self.countdown.fetch_sub(1, Ordering::SeqCst) == 0 {
            self.mode.store(self.armed.load(Ordering::SeqCst), Ordering::SeqCst);
        }
    }

    fn check(&self, write: bool) -> io::Result<()> {
        if write {
            self.count_write();
        }
        match self.mode() {
            Mode::Healthy => Ok(()),
            Mode::FailWrites if !write => Ok(()),
            Mode::FailWrites | Mode::FailAll => Err(io::Error::from_raw_os_error(libc_eio())),
            Mode::LinkDown => Err(io::Error::new(io::ErrorKind::TimedOut, format!("{}: the link is down", self.inner.describe()))),
        }
    }
}

const fn libc_eio() -> i32 {
    5
}

impl BlockDevice for FaultLeg {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check(false)?;
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        self.check(true)?;
        self.inner.write_at(buf, offset, fua)
    }
    fn flush(&self) -> io::Result<()> {
        self.check(true)?;
        self.inner.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check(true)?;
        self.inner.discard(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> io::Result<()> {
        self.check(true)?;
        self.inner.write_zeroes(offset, len, fua)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn link(&self) -> Option<LinkState> {
        self.remote.then(|| LinkState {
            connected: self.mode() != Mode::LinkDown,
            down_for_secs: 0,
            reconnects: 0,
            last_error: String::new(),
            latency_us: 0,
            tls: None,
            features: String::new(),
        })
    }
}
