//! The chunks of a structured or extended reply, checked against the
//! request they answer and gathered into its answer. A server's chunks
//! are untrusted: each must lie inside its request, data chunks never
//! overlap, payloads are capped before anything is read, and a reply is
//! over only with the DONE flag. Any breach is a `ChunkError`, which ends
//! the connection (the leg reconnects and resends); nothing here panics.
//! Reading the bytes off the wire is `reply.rs`; this is pure bookkeeping
//! over what it read, so it is unit-tested and fuzzed (`fuzz/nbd_client`).

use crate::frontend::nbd::proto::*;
use std::collections::BTreeMap;

/// How the server answers, as the handshake settled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replies {
    /// 16-byte simple replies only.
    #[default]
    Simple,
    /// `NBD_OPT_STRUCTURED_REPLY`: 20-byte chunk headers; simple replies
    /// still allowed where no data is carried.
    Structured,
    /// `NBD_OPT_EXTENDED_HEADERS`: 32-byte requests and 32-byte chunk
    /// headers for every reply.
    Extended,
}

/// The longest payload of an error chunk: its message length is 16 bits.
pub const MAX_ERROR_PAYLOAD: u64 = 14 + u16::MAX as u64;
/// The longest block status payload: nbdkit's own limit of a million
/// extents (8 bytes each in compact form), so a real server never hits it.
pub const MAX_STATUS_PAYLOAD: u64 = 8 << 20;

/// What a request asked, to check its reply against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub command: u16,
    pub offset: u64,
    pub len: u64,
    /// The metadata context a block status request asks about.
    pub context: Option<u32>,
}

/// A chunk's header, as read off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    /// Extended chunks carry their request's offset.
    pub offset: Option<u64>,
    /// The payload's length.
    pub len: u64,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Commands that carry no data back.
    Done,
    /// A read's bytes, exactly the length asked.
    Data(Vec<u8>),
    /// Block status of the asked context: consecutive (length, flags) from
    /// the request's offset, covering at least one byte and no byte past
    /// the request.
    Status(Vec<(u64, u32)>),
}

/// The server failed the request: its error number and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub errno: u32,
    pub message: String,
}

/// A reply that breaks the protocol (the connection cannot be trusted on).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("a {kind} chunk of {len} payload bytes exceeds the {max}-byte cap")]
    TooLong { kind: &'static str, len: u64, max: u64 },
    #[error("a malformed {kind} chunk ({len} payload bytes): {why}")]
    Malformed { kind: &'static str, len: u64, why: &'static str },
    #[error("a {kind} chunk for {len} bytes at {offset} lies outside its request ({asked_len} bytes at {asked_offset})")]
    OutOfRange { kind: &'static str, offset: u64, len: u64, asked_offset: u64, asked_len: u64 },
    #[error("a {kind} chunk at {offset} overlaps an earlier chunk of the same read")]
    Overlap { kind: &'static str, offset: u64 },
    #[error("a {kind} chunk answers a {command} request")]
    WrongCommand { kind: &'static str, command: &'static str },
    #[error("unknown chunk type {0} (not an error type)")]
    UnknownType(u16),
    #[error("block status for metadata context {got}, which this request did not ask for")]
    WrongContext { got: u32 },
    #[error("a second block status chunk for the same context")]
    DuplicateStatus,
    #[error("an extended chunk names offset {got}, not its request's {asked}")]
    HeaderOffset { got: u64, asked: u64 },
    #[error("a read's reply ended with {covered} of its {len} bytes sent")]
    Incomplete { covered: u64, len: u64 },
    #[error("a block status reply ended without block status")]
    NoStatus,
    #[error("an error chunk with error number 0")]
    ZeroError,
    #[error("NBD_REPLY_TYPE_NONE {0}")]
    BadNone(&'static str),
}

pub fn kind_name(kind: u16) -> &'static str {
    match kind {
        REPLY_TYPE_NONE => "NONE",
        REPLY_TYPE_OFFSET_DATA => "OFFSET_DATA",
        REPLY_TYPE_OFFSET_HOLE => "OFFSET_HOLE",
        REPLY_TYPE_BLOCK_STATUS => "BLOCK_STATUS",
        REPLY_TYPE_BLOCK_STATUS_EXT => "BLOCK_STATUS_EXT",
        REPLY_TYPE_ERROR => "ERROR",
        REPLY_TYPE_ERROR_OFFSET => "ERROR_OFFSET",
        k if k & 0x8000 != 0 => "error",
        _ => "unknown",
    }
}

/// The longest payload a chunk of `kind` may carry for `asked` (checked
/// before any of it is read or allocated).
pub fn payload_cap(kind: u16, asked: &Asked) -> u64 {
    match kind {
        REPLY_TYPE_NONE => 0,
        REPLY_TYPE_OFFSET_DATA => asked.len.saturating_add(8),
        REPLY_TYPE_OFFSET_HOLE => 12,
        REPLY_TYPE_BLOCK_STATUS | REPLY_TYPE_BLOCK_STATUS_EXT => MAX_STATUS_PAYLOAD,
        _ => MAX_ERROR_PAYLOAD,
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5], b[at + 6], b[at + 7]])
}

/// One request's reply while its chunks arrive.
#[derive(Debug)]
pub struct Assembly {
    asked: Asked,
    /// A read's buffer, zeroes until data lands (holes stay zero).
    data: Vec<u8>,
    /// The ranges of the read covered so far (start -> end, relative to
    /// the request): no chunk may overlap another.
    covered: BTreeMap<u64, u64>,
    covered_bytes: u64,
    status: Option<Vec<(u64, u32)>>,
    refusal: Option<Refusal>,
}

impl Assembly {
    /// `asked.len` of a read is our own request's (at most the leg's
    /// largest piece), never a server's number.
    pub fn new(asked: Asked) -> Assembly {
        let data = if asked.command == CMD_READ { vec![0u8; asked.len as usize] } else { Vec::new() };
        Assembly { asked, data, covered: BTreeMap::new(), covered_bytes: 0, status: None, refusal: None }
    }

    pub fn asked(&self) -> &Asked {
        &self.asked
    }

    /// Check a chunk's header against the request before its payload is
    /// read: its type fits the command, its length the cap.
    pub fn check_header(&self, h: &ChunkHeader) -> Result<(), ChunkError> {
        let kind = kind_name(h.kind);
        if let Some(got) = h.offset
            && got != self.asked.offset
        {
            return Err(ChunkError::HeaderOffset { got, asked: self.asked.offset });
        }
        let fits = match h.kind {
            REPLY_TYPE_OFFSET_DATA | REPLY_TYPE_OFFSET_HOLE => self.asked.command == CMD_READ,
            REPLY_TYPE_BLOCK_STATUS | REPLY_TYPE_BLOCK_STATUS_EXT => self.asked.command == CMD_BLOCK_STATUS,
            REPLY_TYPE_NONE => true,
            k if k & 0x8000 != 0 => true,
            k => return Err(ChunkError::UnknownType(k)),
        };
        if !fits {
            return Err(ChunkError::WrongCommand { kind, command: command_name(self.asked.command) });
        }
        if h.kind == REPLY_TYPE_NONE && h.flags & REPLY_FLAG_DONE == 0 {
            return Err(ChunkError::BadNone("without the DONE flag"));
        }
        let max = payload_cap(h.kind, &self.asked);
        if h.len > max {
            return Err(ChunkError::TooLong { kind, len: h.len, max });
        }
        Ok(())
    }

    /// Mark `[offset, offset + len)` (absolute) of the read as covered.
    fn cover(&mut self, kind: &'static str, offset: u64, len: u64) -> Result<std::ops::Range<usize>, ChunkError> {
        let out_of_range = ChunkError::OutOfRange { kind, offset, len, asked_offset: self.asked.offset, asked_len: self.asked.len };
        let start = offset.checked_sub(self.asked.offset).ok_or_else(|| out_of_range.clone())?;
        let end = start.checked_add(len).filter(|&e| e <= self.asked.len && len > 0).ok_or(out_of_range)?;
        // The nearest range starting at or before `start` must end by it,
        // and the next one must start at or after `end`.
        let before = self.covered.range(..=start).next_back().is_some_and(|(_, &e)| e > start);
        let after = self.covered.range(start..).next().is_some_and(|(&s, _)| s < end);
        if before || after {
            return Err(ChunkError::Overlap { kind, offset });
        }
        self.covered.insert(start, end);
        self.covered_bytes += len;
        // Both within `data`, whose length is `asked.len` (a usize).
        Ok(start as usize..end as usize)
    }

    /// Where an `OFFSET_DATA` chunk's `len` bytes at `offset` go: the
    /// caller reads them straight into this slice.
    pub fn data_at(&mut self, offset: u64, len: u64) -> Result<&mut [u8], ChunkError> {
        let range = self.cover("OFFSET_DATA", offset, len)?;
        self.data.get_mut(range).ok_or(ChunkError::Malformed { kind: "OFFSET_DATA", len, why: "beyond the read buffer" })
    }

    /// A chunk whose payload is read whole (all but `OFFSET_DATA`).
    pub fn apply(&mut self, h: &ChunkHeader, p: &[u8]) -> Result<(), ChunkError> {
        let kind = kind_name(h.kind);
        let len = p.len() as u64;
        let malformed = |why| ChunkError::Malformed { kind, len, why };
        match h.kind {
            REPLY_TYPE_NONE if p.is_empty() => Ok(()),
            REPLY_TYPE_NONE => Err(ChunkError::BadNone("with a payload")),
            REPLY_TYPE_OFFSET_HOLE => {
                if p.len() != 12 {
                    return Err(malformed("a hole is 12 bytes: offset and size"));
                }
                let range = self.cover(kind, be64(p, 0), u64::from(be32(p, 8)))?;
                // Already zero unless this buffer is reused some day: a
                // hole reads as zeroes, say so.
                if let Some(d) = self.data.get_mut(range) {
                    d.fill(0);
                }
                Ok(())
            }
            REPLY_TYPE_BLOCK_STATUS | REPLY_TYPE_BLOCK_STATUS_EXT => self.block_status(h.kind == REPLY_TYPE_BLOCK_STATUS_EXT, p),
            k if k & 0x8000 != 0 => self.error(k, p),
            k => Err(ChunkError::UnknownType(k)),
        }
    }

    fn error(&mut self, k: u16, p: &[u8]) -> Result<(), ChunkError> {
        let kind = kind_name(k);
        let malformed = |why| ChunkError::Malformed { kind, len: p.len() as u64, why };
        if p.len() < 6 {
            return Err(malformed("shorter than an error number and a message length"));
        }
        let errno = be32(p, 0);
        let message_len = usize::from(be16(p, 4));
        let message = p.get(6..6 + message_len).ok_or_else(|| malformed("the message runs past the payload"))?;
        let rest = &p[6 + message_len..];
        match k {
            REPLY_TYPE_ERROR if !rest.is_empty() => return Err(malformed("bytes after the message")),
            REPLY_TYPE_ERROR_OFFSET => {
                if rest.len() != 8 {
                    return Err(malformed("an offset of 8 bytes must follow the message"));
                }
                let at = be64(rest, 0);
                let end = self.asked.offset.saturating_add(self.asked.len);
                if at < self.asked.offset || at >= end {
                    return Err(ChunkError::OutOfRange { kind, offset: at, len: 1, asked_offset: self.asked.offset, asked_len: self.asked.len });
                }
            }
            _ => {} // other error types: the protocol says treat as an error
        }
        if errno == 0 {
            return Err(ChunkError::ZeroError);
        }
        // The first error stands; later chunks may still arrive.
        if self.refusal.is_none() {
            self.refusal = Some(Refusal { errno, message: String::from_utf8_lossy(message).into_owned() });
        }
        Ok(())
    }

    /// `BLOCK_STATUS`: context id, then (u32 length, u32 flags) each;
    /// `BLOCK_STATUS_EXT`: context id, count, then (u64 length, u64 flags).
    fn block_status(&mut self, extended: bool, p: &[u8]) -> Result<(), ChunkError> {
        let kind = if extended { "BLOCK_STATUS_EXT" } else { "BLOCK_STATUS" };
        let malformed = |why| ChunkError::Malformed { kind, len: p.len() as u64, why };
        let (head, each) = if extended { (8, 16) } else { (4, 8) };
        if p.len() < head + each || !(p.len() - head).is_multiple_of(each) {
            return Err(malformed("not a context id and whole descriptors, at least one"));
        }
        let context = be32(p, 0);
        if Some(context) != self.asked.context {
            return Err(ChunkError::WrongContext { got: context });
        }
        if extended && be32(p, 4) as usize != (p.len() - head) / each {
            return Err(malformed("the descriptor count disagrees with the length"));
        }
        if self.status.is_some() {
            return Err(ChunkError::DuplicateStatus);
        }
        let mut extents = Vec::new();
        let mut at = 0u64;
        for d in p[head..].chunks_exact(each) {
            let (len, flags) = if extended { (be64(d, 0), be64(d, 8) as u32) } else { (u64::from(be32(d, 0)), be32(d, 4)) };
            if len == 0 {
                return Err(malformed("an extent of length 0"));
            }
            if at >= self.asked.len {
                // Only the last extent may reach past the request.
                return Err(ChunkError::OutOfRange {
                    kind,
                    offset: self.asked.offset.saturating_add(at),
                    len,
                    asked_offset: self.asked.offset,
                    asked_len: self.asked.len,
                });
            }
            let len = len.min(self.asked.len - at);
            at += len;
            match extents.last_mut() {
                Some((l, f)) if *f == flags => *l += len,
                _ => extents.push((len, flags)),
            }
        }
        self.status = Some(extents);
        Ok(())
    }

    /// The DONE flag came: the answer, or why the reply broke the protocol.
    pub fn finish(self) -> Result<Result<Payload, Refusal>, ChunkError> {
        if let Some(r) = self.refusal {
            return Ok(Err(r));
        }
        match self.asked.command {
            CMD_READ if self.covered_bytes != self.asked.len => Err(ChunkError::Incomplete { covered: self.covered_bytes, len: self.asked.len }),
            CMD_READ => Ok(Ok(Payload::Data(self.data))),
            CMD_BLOCK_STATUS => self.status.map(|s| Ok(Payload::Status(s))).ok_or(ChunkError::NoStatus),
            _ => Ok(Ok(Payload::Done)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(offset: u64, len: u64) -> Assembly {
        Assembly::new(Asked { command: CMD_READ, offset, len, context: None })
    }
    fn status(len: u64) -> Assembly {
        Assembly::new(Asked { command: CMD_BLOCK_STATUS, offset: 4096, len, context: Some(7) })
    }
    fn head(kind: u16, len: u64) -> ChunkHeader {
        ChunkHeader { flags: 0, kind, cookie: 1, offset: None, len }
    }
    fn hole(at: u64, len: u32) -> Vec<u8> {
        [&at.to_be_bytes()[..], &len.to_be_bytes()].concat()
    }

    #[test]
    fn data_and_holes_fill_a_read() {
        let mut a = read(1000, 10);
        a.data_at(1000, 4).unwrap().copy_from_slice(&[1, 2, 3, 4]);
        a.apply(&head(REPLY_TYPE_OFFSET_HOLE, 12), &hole(1004, 3)).unwrap();
        a.data_at(1007, 3).unwrap().copy_from_slice(&[8, 9, 10]);
        assert_eq!(a.finish().unwrap(), Ok(Payload::Data(vec![1, 2, 3, 4, 0, 0, 0, 8, 9, 10])));
    }

    #[test]
    fn chunks_outside_overlapping_or_short_are_refused() {
        let mut a = read(1000, 10);
        assert!(matches!(a.data_at(999, 2), Err(ChunkError::OutOfRange { .. })));
        assert!(matches!(a.data_at(1005, 6), Err(ChunkError::OutOfRange { .. })));
        assert!(matches!(a.data_at(u64::MAX, 2), Err(ChunkError::OutOfRange { .. })));
        assert!(matches!(a.data_at(1000, 0), Err(ChunkError::OutOfRange { .. })));
        a.data_at(1002, 4).unwrap();
        assert!(matches!(a.data_at(1005, 1), Err(ChunkError::Overlap { .. })));
        assert!(matches!(a.data_at(1000, 3), Err(ChunkError::Overlap { .. })));
        assert!(matches!(a.apply(&head(REPLY_TYPE_OFFSET_HOLE, 12), &hole(1001, 9)), Err(ChunkError::Overlap { .. })));
        assert!(matches!(a.apply(&head(REPLY_TYPE_OFFSET_HOLE, 11), &hole(1001, 9)[..11]), Err(ChunkError::Malformed { .. })));
        assert!(matches!(read(0, 8).finish(), Err(ChunkError::Incomplete { covered: 0, len: 8 })));
    }

    #[test]
    fn headers_are_checked_before_payloads() {
        let a = read(0, 100);
        assert!(a.check_header(&head(REPLY_TYPE_OFFSET_DATA, 108)).is_ok());
        assert!(matches!(a.check_header(&head(REPLY_TYPE_OFFSET_DATA, 109)), Err(ChunkError::TooLong { .. })));
        assert!(matches!(a.check_header(&head(REPLY_TYPE_BLOCK_STATUS, 12)), Err(ChunkError::WrongCommand { .. })));
        assert!(matches!(a.check_header(&head(REPLY_TYPE_ERROR, MAX_ERROR_PAYLOAD + 1)), Err(ChunkError::TooLong { .. })));
        assert_eq!(a.check_header(&head(42, 0)), Err(ChunkError::UnknownType(42)));
        assert_eq!(a.check_header(&head(REPLY_TYPE_NONE, 0)), Err(ChunkError::BadNone("without the DONE flag")));
        let extended = ChunkHeader { offset: Some(5), ..head(REPLY_TYPE_OFFSET_DATA, 10) };
        assert_eq!(a.check_header(&extended), Err(ChunkError::HeaderOffset { got: 5, asked: 0 }));
        let s = status(10);
        assert!(matches!(s.check_header(&head(REPLY_TYPE_OFFSET_HOLE, 12)), Err(ChunkError::WrongCommand { .. })));
    }

    #[test]
    fn errors_carry_their_message_and_the_first_stands() {
        let mut a = read(0, 100);
        let e = [&5u32.to_be_bytes()[..], &3u16.to_be_bytes(), b"bad"].concat();
        a.apply(&head(REPLY_TYPE_ERROR, e.len() as u64), &e).unwrap();
        let e2 = [&28u32.to_be_bytes()[..], &0u16.to_be_bytes(), &50u64.to_be_bytes()].concat();
        a.apply(&head(REPLY_TYPE_ERROR_OFFSET, e2.len() as u64), &e2).unwrap();
        assert_eq!(a.finish().unwrap(), Err(Refusal { errno: 5, message: "bad".into() }));
        let mut a = read(0, 100);
        let outside = [&28u32.to_be_bytes()[..], &0u16.to_be_bytes(), &100u64.to_be_bytes()].concat();
        assert!(matches!(a.apply(&head(REPLY_TYPE_ERROR_OFFSET, 14), &outside), Err(ChunkError::OutOfRange { .. })));
        let zero = [&0u32.to_be_bytes()[..], &0u16.to_be_bytes()].concat();
        assert_eq!(a.apply(&head(REPLY_TYPE_ERROR, 6), &zero), Err(ChunkError::ZeroError));
        let runs_past = [&5u32.to_be_bytes()[..], &9u16.to_be_bytes(), b"ab"].concat();
        assert!(matches!(a.apply(&head(REPLY_TYPE_ERROR, 8), &runs_past), Err(ChunkError::Malformed { .. })));
        // An unknown error type is an error, not a protocol breach.
        let mut a = read(0, 100);
        a.apply(&head(0x8000 | 77, 6), &[0, 0, 0, 5, 0, 0]).unwrap();
        assert_eq!(a.finish().unwrap().unwrap_err().errno, 5);
    }

    fn descriptors(context: u32, extents: &[(u32, u32)]) -> Vec<u8> {
        let mut p = context.to_be_bytes().to_vec();
        for &(l, f) in extents {
            p.extend_from_slice(&l.to_be_bytes());
            p.extend_from_slice(&f.to_be_bytes());
        }
        p
    }

    #[test]
    fn block_status_is_clipped_merged_and_checked() {
        let mut s = status(10_000);
        let p = descriptors(7, &[(4096, 3), (4096, 3), (8192, 0)]);
        s.apply(&head(REPLY_TYPE_BLOCK_STATUS, p.len() as u64), &p).unwrap();
        assert_eq!(s.finish().unwrap(), Ok(Payload::Status(vec![(8192, 3), (10_000 - 8192, 0)])));
        // Extended: a count, 64-bit lengths.
        let mut s = status(1 << 40);
        let mut p = 7u32.to_be_bytes().to_vec();
        p.extend_from_slice(&1u32.to_be_bytes());
        p.extend_from_slice(&(1u64 << 36).to_be_bytes());
        p.extend_from_slice(&2u64.to_be_bytes());
        s.apply(&head(REPLY_TYPE_BLOCK_STATUS_EXT, p.len() as u64), &p).unwrap();
        assert_eq!(s.finish().unwrap(), Ok(Payload::Status(vec![(1 << 36, 2)])));
        let bad = |p: &[u8]| status(100).apply(&head(REPLY_TYPE_BLOCK_STATUS, p.len() as u64), p).unwrap_err();
        assert_eq!(bad(&descriptors(8, &[(1, 0)])), ChunkError::WrongContext { got: 8 });
        assert!(matches!(bad(&descriptors(7, &[(0, 0)])), ChunkError::Malformed { .. }));
        assert!(matches!(bad(&descriptors(7, &[(100, 0), (1, 0)])), ChunkError::OutOfRange { .. }));
        assert!(matches!(bad(&descriptors(7, &[])), ChunkError::Malformed { .. }));
        assert!(matches!(bad(&descriptors(7, &[(1, 0)])[..11]), ChunkError::Malformed { .. }));
        let mut s = status(100);
        let p = descriptors(7, &[(1, 0)]);
        s.apply(&head(REPLY_TYPE_BLOCK_STATUS, 12), &p).unwrap();
        assert_eq!(s.apply(&head(REPLY_TYPE_BLOCK_STATUS, 12), &p), Err(ChunkError::DuplicateStatus));
        assert_eq!(status(100).finish(), Err(ChunkError::NoStatus));
    }
}
