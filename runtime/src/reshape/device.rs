//! An array while it reshapes, as one device: below the recorded position
//! the new layout serves, from the end of the window being moved the old
//! one does, and a request touching the window waits until it is moved
//! (md's suspend window); a request across a boundary is split.
//!
//! The move (`step`): a window of whole new stripes is opened (once no
//! request in flight can still be writing it through the old layout), read
//! through the old layout, written through the new one as full stripes,
//! the legs are flushed, and only then is its end recorded and the window
//! closed. A crash anywhere leaves every byte at or beyond the recorded
//! position readable through the old layout (`plan.rs`: the new layout
//! never writes over the old one's unmoved chunks) and every byte below it
//! durable in the new one, so moving again from the recorded position
//! gives the same array. Past the old layout's capacity there is nothing
//! to read: those stripes are zeroed whole, so their parity is consistent
//! from the start, as md resyncs the space a grow adds.

use super::plan::{PlanError, Windows};
use crate::device::{BlockDevice, check_range};
use parking_lot::{Condvar, Mutex, RwLock};
use std::io;
use std::sync::Arc;

/// Window buffers start on this boundary, so O_DIRECT legs read into them
/// and write from them on the ring as they are.
const ALIGN: usize = 4096;

/// `len` bytes of `storage` (which holds `ALIGN - 1` more) from an aligned
/// address.
fn aligned(storage: &mut [u8], len: usize) -> &mut [u8] {
    let start = storage.as_ptr().align_offset(ALIGN).min(ALIGN - 1);
    &mut storage[start..start + len]
}

/// Why a step of the move failed.
#[derive(Debug, thiserror::Error)]
pub enum ReshapeError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("reshape at byte {position}: {what}: {source}")]
    Io { position: u64, what: &'static str, source: io::Error },
    #[error("reshape position {position} is not a multiple of the new layout's stripe ({stripe} bytes of data)")]
    Misaligned { position: u64, stripe: u64 },
}

/// Where the move is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    /// Below it, the new layout holds the data, durably.
    recorded: u64,
    /// The window being moved is `recorded..window_end` (empty when none).
    window_end: u64,
}

pub struct Reshaping {
    old: Arc<dyn BlockDevice>,
    new: Arc<dyn BlockDevice>,
    stripe_bytes: u64,
    /// Held shared by every request while it runs, so a window opens only
    /// when nothing routed by the position before it is still in flight.
    position: RwLock<Position>,
    /// Requests waiting for the window to close.
    closed: (Mutex<()>, Condvar),
    /// The move's buffer, kept from window to window: a new one each time
    /// would be faulted in page by page (or zeroed) again.
    buffer: Mutex<Vec<u8>>,
}

/// One part of a request: which side serves it (a range of bytes).
enum Part {
    New(u64, u64),
    Old(u64, u64),
    /// In the window: wait, then route again.
    Wait,
}

impl Reshaping {
    /// `old` and `new` are the two layouts' arrays over the same legs
    /// (the new one with any legs added), `recorded` the position the
    /// legs hold (0 for a reshape just begun), a multiple of
    /// `stripe_bytes` (the new layout's data per stripe).
    pub fn new(old: Arc<dyn BlockDevice>, new: Arc<dyn BlockDevice>, stripe_bytes: u64, recorded: u64) -> Result<Reshaping, ReshapeError> {
        if stripe_bytes == 0 || !recorded.is_multiple_of(stripe_bytes) {
            return Err(ReshapeError::Misaligned { position: recorded, stripe: stripe_bytes });
        }
        Ok(Reshaping {
            old,
            new,
            stripe_bytes,
            position: RwLock::new(Position { recorded, window_end: recorded }),
            closed: (Mutex::new(()), Condvar::new()),
            buffer: Mutex::new(Vec::new()),
        })
    }

    /// The position the legs hold.
    pub fn recorded(&self) -> u64 {
        self.position.read().recorded
    }

    /// Whether everything is moved: the new layout alone serves.
    pub fn finished(&self) -> bool {
        self.recorded() >= self.new.size()
    }

    /// Move one window, then `record` its end (which must make it durable
    /// before returning) and close it. Returns the new position, or None
    /// when the move is over.
    pub fn step(&self, windows: &mut Windows<'_>, record: &mut dyn FnMut(u64) -> io::Result<()>) -> Result<Option<u64>, ReshapeError> {
        let sb = self.stripe_bytes;
        let position = self.recorded();
        if position >= self.new.size() {
            return Ok(None);
        }
        let w = windows.next(position / sb)?;
        let end = (w.end * sb).min(self.new.size());
        self.position.write().window_end = end;
        let moved =
            self.move_window(position, end).and_then(|()| record(end).map_err(|source| ReshapeError::Io { position, what: "recording the position", source }));
        {
            let mut p = self.position.write();
            if moved.is_ok() {
                p.recorded = end;
            }
            p.window_end = p.recorded;
        }
        let _g = self.closed.0.lock();
        self.closed.1.notify_all();
        moved.map(|()| Some(end))
    }

    fn move_window(&self, position: u64, end: u64) -> Result<(), ReshapeError> {
        let io = |what: &'static str| move |source: io::Error| ReshapeError::Io { position, what, source };
        let old_end = self.old.size();
        if position < old_end {
            let mut storage = self.buffer.lock();
            let len = (end - position) as usize;
            if storage.len() < len + ALIGN - 1 {
                *storage = vec![0u8; len + ALIGN - 1];
            }
            let buf = aligned(&mut storage, len);
            let have = (old_end.min(end) - position) as usize;
            self.old.read_at(&mut buf[..have], position).map_err(io("reading the old layout"))?;
            // Past the old capacity: zeroes (the buffer holds an earlier
            // window there).
            buf[have..].fill(0);
            self.new.write_at(buf, position, false).map_err(io("writing the new layout"))?;
        } else {
            self.new.write_zeroes(position, end - position, false).map_err(io("zeroing the new layout's added space"))?;
        }
        self.new.flush().map_err(io("flushing the legs"))
    }

    /// Run `f` on each part of `offset..offset + len` with the side that
    /// serves it, waiting out the window. `f` gets (side, offset, start of
    /// the part within the request, length).
    fn route(&self, offset: u64, len: u64, mut f: impl FnMut(&dyn BlockDevice, u64, usize, u64) -> io::Result<()>) -> io::Result<()> {
        check_range(self, offset, len)?;
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let p = self.position.read();
            let part = if at < p.recorded {
                Part::New(at, end.min(p.recorded))
            } else if at < p.window_end {
                Part::Wait
            } else {
                Part::Old(at, end)
            };
            // The position stays read-locked while the part runs: a
            // window opens only once it is done.
            at = match part {
                Part::New(a, b) => f(&*self.new, a, (a - offset) as usize, b - a).map(|()| b)?,
                Part::Old(a, b) => f(&*self.old, a, (a - offset) as usize, b - a).map(|()| b)?,
                Part::Wait => {
                    drop(p);
                    let mut g = self.closed.0.lock();
                    // `step` closes the window before it takes this mutex
                    // to notify, so a close is either seen here or wakes
                    // the wait. Never lock this mutex holding the position.
                    let open = {
                        let q = self.position.read();
                        at >= q.recorded && at < q.window_end
                    };
                    if open {
                        self.closed.1.wait(&mut g);
                    }
                    at
                }
            };
        }
        Ok(())
    }
}

impl BlockDevice for Reshaping {
    /// The old layout's size until the move is over (added space appears
    /// at the end then).
    fn size(&self) -> u64 {
        if self.finished() { self.new.size() } else { self.old.size() }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let buf_len = buf.len() as u64;
        self.route(offset, buf_len, |side, at, from, n| side.read_at(&mut buf[from..from + n as usize], at))
    }

    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        self.route(offset, buf.len() as u64, |side, at, from, n| side.write_at(&buf[from..from + n as usize], at, fua))
    }

    fn flush(&self) -> io::Result<()> {
        self.old.flush()?;
        self.new.flush()
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.route(offset, len, |side, at, _, n| side.discard(at, n))
    }

    fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> io::Result<()> {
        self.route(offset, len, |side, at, _, n| side.write_zeroes(at, n, fua))
    }

    fn describe(&self) -> String {
        format!("{} reshaping to {} at byte {}", self.old.describe(), self.new.describe(), self.recorded())
    }
}
