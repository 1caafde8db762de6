//! Replies of the transmission phase read off the wire: simple replies,
//! structured reply chunks and extended ones, as the handshake settled
//! (`Replies`). The server's bytes are untrusted, so this runs over any
//! `Read` (fuzzed: `fuzz/nbd_client`): a reply must carry the magic its
//! mode allows and a cookie the client is waiting for; a chunk's header is
//! checked (`chunks.rs`) before its payload is read, and a read's data is
//! read into the buffer of the length the client asked for, never a length
//! the server names.

use super::chunks::{Asked, Assembly, ChunkHeader, Payload, Refusal, Replies};
use crate::frontend::nbd::proto::*;
use std::collections::HashMap;
use std::io::{self, Read};

/// A server's answer to the request sent with `cookie`.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub cookie: u64,
    pub answer: Result<Payload, Refusal>,
}

fn protocol(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

fn unknown(cookie: u64) -> io::Error {
    protocol(format!("reply to unknown cookie {cookie}"))
}

/// The replies of one connection, with the requests whose chunks have
/// begun to arrive but not ended.
pub struct Reader {
    replies: Replies,
    open: HashMap<u64, Assembly>,
}

impl Reader {
    pub fn new(replies: Replies) -> Reader {
        Reader { replies, open: HashMap::new() }
    }

    /// Read until one request's reply is complete. `asked(cookie)` says
    /// what the request with that cookie asked, or None when no request
    /// has it (which ends the connection: the stream can no longer be
    /// followed). It is asked once per request.
    pub fn next<R: Read>(&mut self, r: &mut R, mut asked: impl FnMut(u64) -> Option<Asked>) -> io::Result<Reply> {
        loop {
            let mut magic = [0u8; 4];
            r.read_exact(&mut magic)?;
            let header = match (u32::from_be_bytes(magic), self.replies) {
                (SIMPLE_REPLY_MAGIC, Replies::Simple | Replies::Structured) => return self.simple(r, &mut asked),
                (STRUCTURED_REPLY_MAGIC, Replies::Structured) => {
                    let mut h = [0u8; 16];
                    r.read_exact(&mut h)?;
                    ChunkHeader {
                        flags: u16::from_be_bytes([h[0], h[1]]),
                        kind: u16::from_be_bytes([h[2], h[3]]),
                        cookie: be64(&h[4..12]),
                        offset: None,
                        len: u64::from(u32::from_be_bytes([h[12], h[13], h[14], h[15]])),
                    }
                }
                (EXTENDED_REPLY_MAGIC, Replies::Extended) => {
                    let mut h = [0u8; 28];
                    r.read_exact(&mut h)?;
                    ChunkHeader {
                        flags: u16::from_be_bytes([h[0], h[1]]),
                        kind: u16::from_be_bytes([h[2], h[3]]),
                        cookie: be64(&h[4..12]),
                        offset: Some(be64(&h[12..20])),
                        len: be64(&h[20..28]),
                    }
                }
                (m, mode) => return Err(protocol(format!("bad reply magic {m:#010x} for {mode:?} replies"))),
            };
            if let Some(reply) = self.chunk(r, header, &mut asked)? {
                return Ok(reply);
            }
        }
    }

    /// A simple reply (its magic read): a read's data follows on success.
    fn simple<R: Read>(&mut self, r: &mut R, asked: &mut impl FnMut(u64) -> Option<Asked>) -> io::Result<Reply> {
        let mut h = [0u8; 12];
        r.read_exact(&mut h)?;
        let error = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let cookie = be64(&h[4..12]);
        if self.open.contains_key(&cookie) {
            return Err(protocol(format!("a simple reply to cookie {cookie}, whose structured reply has begun")));
        }
        let a = asked(cookie).ok_or_else(|| unknown(cookie))?;
        if error != 0 {
            return Ok(Reply { cookie, answer: Err(Refusal { errno: error, message: String::new() }) });
        }
        let payload = match a.command {
            // With structured replies, a read's data comes in chunks only.
            CMD_READ if self.replies == Replies::Structured => {
                return Err(protocol(format!("a successful simple reply to READ cookie {cookie} after structured replies were chosen")));
            }
            // `a.len` is our own request's length.
            CMD_READ => {
                let mut data = vec![0u8; a.len as usize];
                r.read_exact(&mut data)?;
                Payload::Data(data)
            }
            CMD_BLOCK_STATUS => return Err(protocol("a successful simple reply to BLOCK_STATUS carries no status")),
            _ => Payload::Done,
        };
        Ok(Reply { cookie, answer: Ok(payload) })
    }

    /// One chunk (its header read); the reply when it was the last.
    fn chunk<R: Read>(&mut self, r: &mut R, h: ChunkHeader, asked: &mut impl FnMut(u64) -> Option<Asked>) -> io::Result<Option<Reply>> {
        let a = match self.open.entry(h.cookie) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(Assembly::new(asked(h.cookie).ok_or_else(|| unknown(h.cookie))?)),
        };
        let context = |e: super::chunks::ChunkError| protocol(format!("cookie {}: {e}", h.cookie));
        a.check_header(&h).map_err(context)?;
        if h.kind == REPLY_TYPE_OFFSET_DATA {
            if h.len <= 8 {
                return Err(context(super::chunks::ChunkError::Malformed { kind: "OFFSET_DATA", len: h.len, why: "no data after the offset" }));
            }
            let mut offset = [0u8; 8];
            r.read_exact(&mut offset)?;
            r.read_exact(a.data_at(be64(&offset), h.len - 8).map_err(context)?)?;
        } else {
            // Capped by `check_header` (at most `MAX_STATUS_PAYLOAD`).
            let mut payload = vec![0u8; h.len as usize];
            r.read_exact(&mut payload)?;
            a.apply(&h, &payload).map_err(context)?;
        }
        if h.flags & REPLY_FLAG_DONE == 0 {
            return Ok(None);
        }
        let Some(done) = self.open.remove(&h.cookie) else { return Err(unknown(h.cookie)) };
        Ok(Some(Reply { cookie: h.cookie, answer: done.finish().map_err(context)? }))
    }
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(error: u32, cookie: u64) -> Vec<u8> {
        [&SIMPLE_REPLY_MAGIC.to_be_bytes()[..], &error.to_be_bytes(), &cookie.to_be_bytes()].concat()
    }
    fn read_of(len: u64) -> Asked {
        Asked { command: CMD_READ, offset: 0, len, context: None }
    }
    fn chunk(flags: u16, kind: u16, cookie: u64, payload: &[u8]) -> Vec<u8> {
        let h = [
            &STRUCTURED_REPLY_MAGIC.to_be_bytes()[..],
            &flags.to_be_bytes(),
            &kind.to_be_bytes(),
            &cookie.to_be_bytes(),
            &(payload.len() as u32).to_be_bytes(),
        ];
        [h.concat(), payload.to_vec()].concat()
    }
    fn ext_chunk(flags: u16, kind: u16, cookie: u64, offset: u64, payload: &[u8]) -> Vec<u8> {
        let h = [
            &EXTENDED_REPLY_MAGIC.to_be_bytes()[..],
            &flags.to_be_bytes(),
            &kind.to_be_bytes(),
            &cookie.to_be_bytes(),
            &offset.to_be_bytes(),
            &(payload.len() as u64).to_be_bytes(),
        ];
        [h.concat(), payload.to_vec()].concat()
    }

    #[test]
    fn data_is_the_length_asked_for() {
        let wire = [head(0, 7), vec![1, 2, 3, 4, 5]].concat();
        let reply = Reader::new(Replies::Simple).next(&mut &wire[..], |c| (c == 7).then_some(read_of(4))).unwrap();
        assert_eq!(reply, Reply { cookie: 7, answer: Ok(Payload::Data(vec![1, 2, 3, 4])) });
        let reply = Reader::new(Replies::Simple).next(&mut &head(5, 7)[..], |_| Some(read_of(4))).unwrap();
        assert_eq!(reply.answer.unwrap_err().errno, 5, "an error reply carries no data");
    }

    #[test]
    fn unknown_cookies_bad_magic_and_short_data_end_the_stream() {
        let e = Reader::new(Replies::Simple).next(&mut &head(0, 9)[..], |_| None).unwrap_err();
        assert!(e.to_string().contains("unknown cookie 9"), "{e}");
        let mut bad = head(0, 7);
        bad[0] ^= 1;
        assert_eq!(Reader::new(Replies::Simple).next(&mut &bad[..], |_| Some(read_of(0))).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let short = [head(0, 7), vec![1, 2]].concat();
        assert_eq!(Reader::new(Replies::Simple).next(&mut &short[..], |_| Some(read_of(4))).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        // Each mode takes only its own magics.
        let structured = chunk(REPLY_FLAG_DONE, REPLY_TYPE_NONE, 7, &[]);
        assert!(Reader::new(Replies::Simple).next(&mut &structured[..], |_| Some(read_of(0))).is_err());
        assert!(Reader::new(Replies::Extended).next(&mut &structured[..], |_| Some(read_of(0))).is_err());
        assert!(Reader::new(Replies::Extended).next(&mut &head(0, 7)[..], |_| Some(read_of(0))).is_err());
    }

    #[test]
    fn interleaved_chunks_of_two_reads_each_end_at_done() {
        let data = |at: u64, bytes: &[u8]| [&at.to_be_bytes()[..], bytes].concat();
        let hole = [&2u64.to_be_bytes()[..], &2u32.to_be_bytes()].concat();
        let wire = [
            chunk(0, REPLY_TYPE_OFFSET_DATA, 1, &data(0, &[1, 2])),
            chunk(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 2, &data(100, &[9, 9, 9])),
            chunk(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_HOLE, 1, &hole),
            head(0, 3), // a flush, answered simply
        ]
        .concat();
        let asked = |c: u64| match c {
            1 => Some(read_of(4)),
            2 => Some(Asked { command: CMD_READ, offset: 100, len: 3, context: None }),
            3 => Some(Asked { command: CMD_FLUSH, offset: 0, len: 0, context: None }),
            _ => None,
        };
        let mut reader = Reader::new(Replies::Structured);
        let mut wire = &wire[..];
        assert_eq!(reader.next(&mut wire, asked).unwrap(), Reply { cookie: 2, answer: Ok(Payload::Data(vec![9, 9, 9])) });
        assert_eq!(reader.next(&mut wire, asked).unwrap(), Reply { cookie: 1, answer: Ok(Payload::Data(vec![1, 2, 0, 0])) });
        assert_eq!(reader.next(&mut wire, asked).unwrap(), Reply { cookie: 3, answer: Ok(Payload::Done) });
    }

    #[test]
    fn hostile_chunks_end_the_stream() {
        let asked = |_| Some(read_of(4));
        let run = |mode, wire: Vec<u8>| Reader::new(mode).next(&mut &wire[..], asked);
        // A successful simple reply to a read once chunks were chosen.
        assert!(run(Replies::Structured, [head(0, 1), vec![0; 4]].concat()).is_err());
        // Data past the read's end, a huge length, an unknown type.
        let past = [&2u64.to_be_bytes()[..], &[0u8; 4]].concat();
        assert!(run(Replies::Structured, chunk(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 1, &past)).unwrap_err().to_string().contains("outside"));
        let mut huge = chunk(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, 1, &[]);
        huge[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(run(Replies::Structured, huge).unwrap_err().to_string().contains("cap"));
        assert!(run(Replies::Structured, chunk(REPLY_FLAG_DONE, 9, 1, &[])).unwrap_err().to_string().contains("unknown chunk type 9"));
        // A done read with a byte missing.
        let short = [&0u64.to_be_bytes()[..], &[1u8, 2, 3]].concat();
        assert!(run(Replies::Structured, chunk(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 1, &short)).unwrap_err().to_string().contains("3 of its 4"));
        // An extended chunk with a 2^64-1 length, and one naming another offset.
        let mut ext = ext_chunk(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 1, 0, &[]);
        ext[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(run(Replies::Extended, ext).is_err());
        assert!(run(Replies::Extended, ext_chunk(REPLY_FLAG_DONE, REPLY_TYPE_NONE, 1, 8, &[])).is_err());
    }

    #[test]
    fn extended_block_status_and_errors() {
        let mut p = 3u32.to_be_bytes().to_vec();
        p.extend_from_slice(&1u32.to_be_bytes());
        p.extend_from_slice(&(1u64 << 33).to_be_bytes());
        p.extend_from_slice(&3u64.to_be_bytes());
        let wire = ext_chunk(REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS_EXT, 5, 512, &p);
        let asked = |_| Some(Asked { command: CMD_BLOCK_STATUS, offset: 512, len: 1 << 34, context: Some(3) });
        let reply = Reader::new(Replies::Extended).next(&mut &wire[..], asked).unwrap();
        assert_eq!(reply.answer, Ok(Payload::Status(vec![(1 << 33, 3)])));
        let e = [&28u32.to_be_bytes()[..], &4u16.to_be_bytes(), b"full"].concat();
        let wire = ext_chunk(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, 6, 0, &e);
        let reply = Reader::new(Replies::Extended).next(&mut &wire[..], |_| Some(read_of(8))).unwrap();
        assert_eq!(reply.answer, Err(Refusal { errno: 28, message: "full".into() }));
    }
}
