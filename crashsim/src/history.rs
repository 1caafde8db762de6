//! What the workload asked of the array and when it was acknowledged, on
//! the write log's clock; and from that, what each block of the array may
//! hold after a crash at any point (the oracle's model).
//!
//! Every block written carries a pattern naming the write (fio verify's
//! idea), so a block read back tells which write it holds, or that it
//! holds none of them.

use parking_lot::Mutex;
use wasmraid::device::log_writes::splitmix64;

/// Bytes per block of the array, as the oracle sees it.
pub const BLOCK: usize = 4096;

/// The content of `block` as written by write `id` (0: never written, or
/// zeroed: all zeroes).
pub fn pattern(id: u64, block: u64, out: &mut [u8]) {
    if id == 0 {
        out.fill(0);
        return;
    }
    let mut state = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ block;
    for word in out.chunks_exact_mut(8) {
        word.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    out[..8].copy_from_slice(&id.to_le_bytes());
    out[8..16].copy_from_slice(&block.to_le_bytes());
}

/// Which write a block read back holds: Some(id), or None for anything
/// that no write put there.
pub fn identify(block: u64, data: &[u8]) -> Option<u64> {
    if data.iter().all(|&b| b == 0) {
        return Some(0);
    }
    let id = u64::from_le_bytes(data[..8].try_into().ok()?);
    let claimed = u64::from_le_bytes(data[8..16].try_into().ok()?);
    if claimed != block || id == 0 {
        return None;
    }
    let mut expected = vec![0u8; data.len()];
    pattern(id, block, &mut expected);
    (expected == data).then_some(id)
}

/// One request to the array.
#[derive(Clone, Debug)]
pub enum Request {
    /// Blocks `first..first + blocks` written with write `id`'s pattern.
    Write {
        first: u64,
        blocks: u64,
        id: u64,
        fua: bool,
    },
    /// Blocks zeroed (WRITE_ZEROES): they read as id 0.
    Zero {
        first: u64,
        blocks: u64,
        fua: bool,
    },
    Flush,
}

#[derive(Clone, Debug)]
pub struct Op {
    pub request: Request,
    pub issued: u64,
    /// When the array acknowledged it (None: it failed, or was in flight).
    pub acked: Option<u64>,
}

impl Op {
    fn touches(&self) -> Option<(std::ops::Range<u64>, u64, bool)> {
        match self.request {
            Request::Write { first, blocks, id, fua } => Some((first..first + blocks, id, fua)),
            Request::Zero { first, blocks, fua } => Some((first..first + blocks, 0, fua)),
            Request::Flush => None,
        }
    }
}

/// The requests of one workload run, shared by its threads.
#[derive(Default)]
pub struct History {
    ops: Mutex<Vec<Op>>,
}

impl History {
    /// Record a request issued at `issued`; returns its index.
    pub fn issue(&self, request: Request, issued: u64) -> usize {
        let mut ops = self.ops.lock();
        ops.push(Op { request, issued, acked: None });
        ops.len() - 1
    }

    pub fn ack(&self, index: usize, at: u64) {
        if let Some(op) = self.ops.lock().get_mut(index) {
            op.acked = Some(at);
        }
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().clone()
    }
}

/// What every block may hold after a crash at any point.
pub struct Oracle {
    ops: Vec<Op>,
    /// For each op: when it became durable (u64::MAX: never).
    durable_at: Vec<u64>,
    /// For each block: the ops writing it, in issue order.
    by_block: Vec<Vec<usize>>,
}

/// What a block may hold at a crash point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The write that a completed FLUSH or FUA made durable (0: none, the
    /// initial zeroes).
    pub durable: u64,
    /// Writes after it that may or may not have landed.
    pub maybe: Vec<u64>,
}

impl Allowed {
    pub fn contains(&self, id: u64) -> bool {
        id == self.durable || self.maybe.contains(&id)
    }
}

impl Oracle {
    pub fn new(ops: Vec<Op>, blocks: u64) -> Oracle {
        // A write is durable once a flush issued after its acknowledgement
        // has completed, or at its acknowledgement when it was FUA.
        let flushes: Vec<(u64, u64)> = ops.iter().filter(|o| matches!(o.request, Request::Flush)).filter_map(|o| o.acked.map(|a| (o.issued, a))).collect();
        let durable_at = ops
            .iter()
            .map(|o| match (o.touches(), o.acked) {
                (Some((_, _, true)), Some(acked)) => acked,
                (Some(_), Some(acked)) => flushes.iter().filter(|(issued, _)| *issued > acked).map(|(_, done)| *done).min().unwrap_or(u64::MAX),
                _ => u64::MAX,
            })
            .collect();
        let mut by_block = vec![Vec::new(); blocks as usize];
        for (i, o) in ops.iter().enumerate() {
            if let Some((range, _, _)) = o.touches() {
                for b in range {
                    if let Some(list) = by_block.get_mut(b as usize) {
                        list.push(i);
                    }
                }
            }
        }
        Oracle { ops, durable_at, by_block }
    }

    /// What block `b` may hold after a crash at `at`.
    pub fn allowed(&self, b: u64, at: u64) -> Allowed {
        let mut allowed = Allowed { durable: 0, maybe: Vec::new() };
        for &i in self.by_block.get(b as usize).map(Vec::as_slice).unwrap_or(&[]) {
            let op = &self.ops[i];
            if op.issued >= at {
                break;
            }
            let Some((_, id, _)) = op.touches() else { continue };
            if self.durable_at[i] < at {
                allowed = Allowed { durable: id, maybe: Vec::new() };
            } else if !allowed.contains(id) {
                allowed.maybe.push(id);
            }
        }
        allowed
    }

    /// Blocks written (or being written) but not durable at `at`: where a
    /// torn stripe can be.
    pub fn unsettled(&self, b: u64, at: u64) -> bool {
        !self.allowed(b, at).maybe.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_name_their_write() {
        let mut buf = vec![0u8; BLOCK];
        pattern(7, 3, &mut buf);
        assert_eq!(identify(3, &buf), Some(7));
        assert_eq!(identify(4, &buf), None, "a block in the wrong place");
        buf[100] ^= 1;
        assert_eq!(identify(3, &buf), None);
        assert_eq!(identify(3, &[0u8; BLOCK]), Some(0));
    }

    #[test]
    fn flushes_and_fua_decide_what_is_durable() {
        let h = History::default();
        let w1 = h.issue(Request::Write { first: 0, blocks: 2, id: 1, fua: false }, 1);
        h.ack(w1, 2);
        let f = h.issue(Request::Flush, 3);
        h.ack(f, 4);
        let w2 = h.issue(Request::Write { first: 1, blocks: 1, id: 2, fua: false }, 5);
        h.ack(w2, 6);
        let w3 = h.issue(Request::Write { first: 0, blocks: 1, id: 3, fua: true }, 7);
        h.ack(w3, 8);
        let o = Oracle::new(h.ops(), 4);
        assert_eq!(o.allowed(0, 4), Allowed { durable: 0, maybe: vec![1] }, "the flush has not completed");
        assert_eq!(o.allowed(0, 5), Allowed { durable: 1, maybe: vec![] });
        assert_eq!(o.allowed(1, 7), Allowed { durable: 1, maybe: vec![2] });
        assert_eq!(o.allowed(0, 8), Allowed { durable: 1, maybe: vec![3] }, "FUA not yet acknowledged");
        assert_eq!(o.allowed(0, 9), Allowed { durable: 3, maybe: vec![] });
        assert!(o.unsettled(1, 9) && !o.unsettled(0, 9));
    }
}
