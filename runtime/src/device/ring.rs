//! Several reads and writes on files at once, through this thread's own
//! io_uring: the array's leg I/O for one request (a parity write's old data
//! and old parity, then its new data and parity; a degraded read's sources)
//! goes out together and takes one round trip of the slowest leg, not one
//! round trip per leg after another. Measured in the VM bed before this
//! existed: a raid5 4k random write at depth 32 left the CPUs idle half
//! the time, waiting on four leg I/Os in a row per write.
//!
//! Safe to call: every buffer is borrowed for the call, and the call
//! returns only once the kernel has finished with every one of them.
//! Anything that goes wrong is reported per operation; callers then do
//! that operation the plain way (`read_at`/`write_at`), which is also
//! where leg failures are handled.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// The ring's size: at most this many operations are in flight at once
/// (more are run in rounds).
const ENTRIES: u32 = 64;

/// io_uring_enter's flag to wait for completions (the crate keeps its
/// copy private).
const IORING_ENTER_GETEVENTS: u32 = 1;

/// One read or write of a whole buffer at `offset` of `file`.
pub struct Op<'a> {
    pub file: &'a File,
    pub offset: u64,
    pub data: Data<'a>,
    /// The write is durable when it completes (RWF_DSYNC, for FUA).
    pub dsync: bool,
}

pub enum Data<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Data<'_> {
    fn len(&self) -> usize {
        match self {
            Data::Read(b) => b.len(),
            Data::Write(b) => b.len(),
        }
    }
}

thread_local! {
    /// None: not tried yet on this thread; Some(None): io_uring is not
    /// available here (or broke), so callers go one by one.
    static RING: RefCell<Option<Option<io_uring::IoUring>>> = const { RefCell::new(None) };
}

/// Run `ops`, all in flight together. None when this thread has no
/// io_uring (the kernel refuses it, or it broke): nothing was done. Else
/// one result per op: Ok when its whole buffer moved.
pub fn run(ops: &mut [Op<'_>]) -> Option<Vec<io::Result<()>>> {
    RING.with(|cell| {
        let mut slot = cell.borrow_mut();
        let ring = slot.get_or_insert_with(|| io_uring::IoUring::new(ENTRIES).ok()).as_mut()?;
        let mut results: Vec<io::Result<()>> = Vec::with_capacity(ops.len());
        let mut broken = false;
        for round in ops.chunks_mut(ENTRIES as usize) {
            let base = results.len();
            results.extend(round.iter().map(|_| Err(io::Error::other("not run"))));
            if broken || !run_round(ring, round, &mut results[base..]) {
                broken = true;
            }
        }
        if broken {
            // Every op in flight has completed; the ring's state is unknown.
            *slot = Some(None);
        }
        Some(results)
    })
}

/// One round of at most `ENTRIES` ops. False when the ring can no longer
/// be trusted (every op it took has still completed before this returns).
fn run_round(ring: &mut io_uring::IoUring, ops: &mut [Op<'_>], results: &mut [io::Result<()>]) -> bool {
    let mut pushed = 0usize;
    // Submitted leg by leg, in file order: the kernel merges a request
    // into the one just before it in the plug when both are on the same
    // disk and adjacent, so a whole-stripe batch's chunks on one leg (one
    // after another on the leg, interleaved with every other leg's in the
    // caller's order) reach the disk as one write. Measured in the VM bed
    // (raid6, 6 legs, 1 MiB writes at depth 8, /sys/block/vdb/stat): 256 KiB
    // per leg request instead of 128 KiB, half as many requests for the
    // same bytes; an A/B in one VM (kernel 7, 3 rounds each, fresh array)
    // gave raid6 147 162 165 MiB/s sorted against 145 140 161 unsorted,
    // raid5 254 254 250 against 250 254 260: within the bed's noise.
    // A round holds at most ENTRIES ops (`run` cuts them so): the order
    // lives on the stack, no allocation per leg I/O round.
    let mut slots = [0usize; ENTRIES as usize];
    let Some(order) = slots.get_mut(..ops.len()) else {
        // Not reached; if it were, every op stays "not run" and is done
        // the plain way by its caller.
        return true;
    };
    for (i, slot) in order.iter_mut().enumerate() {
        *slot = i;
    }
    order.sort_unstable_by_key(|&i| (ops[i].file.as_raw_fd(), ops[i].offset));
    {
        let mut sq = ring.submission();
        for &i in order.iter() {
            let op = &mut ops[i];
            let Ok(len) = u32::try_from(op.data.len()) else {
                results[i] = Err(io::Error::new(io::ErrorKind::InvalidInput, "a ring operation over 4 GiB"));
                continue;
            };
            let fd = io_uring::types::Fd(op.file.as_raw_fd());
            let entry = match &mut op.data {
                Data::Read(b) => io_uring::opcode::Read::new(fd, b.as_mut_ptr(), len).offset(op.offset).build(),
                Data::Write(b) => {
                    let flags = if op.dsync { libc::RWF_DSYNC } else { 0 };
                    io_uring::opcode::Write::new(fd, b.as_ptr(), len).offset(op.offset).rw_flags(flags).build()
                }
            };
            // SAFETY: the entry points into `op.data`, a buffer borrowed
            // for this whole call, and at `op.file`'s descriptor, borrowed
            // likewise; this function waits below for every entry the
            // kernel took before it returns, so neither is released while
            // the kernel uses it.
            if unsafe { sq.push(&entry.user_data(i as u64)) }.is_err() {
                results[i] = Err(io::Error::other("the ring's submission queue is full"));
                continue;
            }
            pushed += 1;
        }
    }
    let mut taken = 0usize;
    let mut done = 0usize;
    let mut healthy = true;
    while done < taken || (healthy && taken < pushed) {
        let outcome = if healthy && taken < pushed {
            ring.submitter().submit_and_wait(1)
        } else {
            // SAFETY: enter with nothing to submit only waits for the
            // completions of entries already taken.
            unsafe { ring.submitter().enter::<libc::sigset_t>(0, 1, IORING_ENTER_GETEVENTS, None) }
        };
        match outcome {
            Ok(n) if healthy => taken += n.min(pushed - taken),
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)) => {}
            Err(e) => {
                // The entries not taken stay unsubmitted; the ring is
                // dropped once the taken ones are back.
                if healthy {
                    tracing::warn!("io_uring submission failed: {e}; this thread goes one I/O at a time");
                }
                healthy = false;
                if done >= taken {
                    break;
                }
            }
        }
        for cqe in ring.completion() {
            let i = cqe.user_data() as usize;
            let Some(op) = ops.get(i) else { continue };
            let res = cqe.result();
            results[i] = if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else if res as usize == op.data.len() {
                Ok(())
            } else {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{res} of {} bytes", op.data.len())))
            };
            done += 1;
        }
    }
    healthy && pushed == taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn reads_and_writes_go_out_together_and_each_has_its_result() {
        let dir = tempfile::tempdir().unwrap();
        let a = File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("a")).unwrap();
        let b = File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("b")).unwrap();
        a.write_all_at(&[1u8; 8192], 0).unwrap();
        let (new_a, new_b) = (vec![7u8; 4096], vec![9u8; 4096]);
        let Some(results) = run(&mut [
            Op { file: &a, offset: 4096, data: Data::Write(&new_a), dsync: false },
            Op { file: &b, offset: 0, data: Data::Write(&new_b), dsync: true },
        ]) else {
            return; // no io_uring on this machine: the callers' plain path
        };
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let (mut old, mut back, mut short) = (vec![0u8; 4096], vec![0u8; 4096], vec![0u8; 4096]);
        // 150 ops: more than one round.
        let mut many: Vec<Vec<u8>> = (0..150).map(|_| vec![0u8; 512]).collect();
        let mut ops = vec![
            Op { file: &a, offset: 0, data: Data::Read(&mut old), dsync: false },
            Op { file: &b, offset: 0, data: Data::Read(&mut back), dsync: false },
            // Past the end of b: a short read is an error, not a success.
            Op { file: &b, offset: 2048, data: Data::Read(&mut short), dsync: false },
        ];
        ops.extend(many.iter_mut().map(|m| Op { file: &a, offset: 4096, data: Data::Read(m), dsync: false }));
        let results = run(&mut ops).unwrap();
        assert!(results[0].is_ok() && results[1].is_ok());
        assert_eq!(results[2].as_ref().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert!(results[3..].iter().all(Result::is_ok));
        drop(ops);
        assert!(old.iter().all(|&x| x == 1) && back.iter().all(|&x| x == 9));
        assert!(many.iter().all(|m| m.iter().all(|&x| x == 7)));
    }
}
