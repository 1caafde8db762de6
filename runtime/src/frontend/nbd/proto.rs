//! The NBD wire format (the NBD protocol document): constants, the request
//! header decoder and reply encoders. Pure functions over bytes, so the
//! decoder is fuzzed on its own (`fuzz/fuzz_targets/nbd_request.rs`).

pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const EXTENDED_REQUEST_MAGIC: u32 = 0x21e4_1c71;
pub const EXTENDED_REPLY_MAGIC: u32 = 0x6e8a_278c;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1;
pub const FLAG_NO_ZEROES: u16 = 2;
pub const CLIENT_FIXED_NEWSTYLE: u32 = 1;
pub const CLIENT_NO_ZEROES: u32 = 2;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;
pub const OPT_EXTENDED_HEADERS: u32 = 11;

// Option replies.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_META_CONTEXT: u32 = 4;
pub const REP_ERR_UNSUP: u32 = 0x8000_0001;
pub const REP_ERR_POLICY: u32 = 0x8000_0002;
pub const REP_ERR_INVALID: u32 = 0x8000_0003;
pub const REP_ERR_TLS_REQD: u32 = 0x8000_0005;
pub const REP_ERR_EXT_HEADER_REQD: u32 = 0x8000_000a;
pub const REP_ERR_UNKNOWN: u32 = 0x8000_0006;

// Info types.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
pub const TFLAG_HAS_FLAGS: u16 = 1;
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;
pub const TFLAG_SEND_CACHE: u16 = 1 << 10;
pub const TFLAG_SEND_FAST_ZERO: u16 = 1 << 11;

// Commands and command flags.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_CACHE: u16 = 5;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;
pub const CMD_FLAG_FUA: u16 = 1;
pub const CMD_FLAG_NO_HOLE: u16 = 2;
/// WRITE_ZEROES only if faster than writing: else ENOTSUP at once.
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
/// Extended headers: the length is the payload's (a write's), not the
/// range's.
pub const CMD_FLAG_PAYLOAD_LEN: u16 = 1 << 5;

// Structured replies.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
pub const REPLY_FLAG_DONE: u16 = 1;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
pub const REPLY_TYPE_BLOCK_STATUS_EXT: u16 = 6;
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) + 1;
pub const REPLY_TYPE_ERROR_OFFSET: u16 = (1 << 15) + 2;

// Metadata contexts this server offers.
pub const CONTEXT_BASE_ALLOCATION: &str = "base:allocation";
pub const CONTEXT_HEALTH: &str = "wasmraid:health";
/// Most contexts a client may ask about in one option.
pub const MAX_META_QUERIES: usize = 64;

// Errors (errno values the protocol uses).
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const ENOTSUP: u32 = 95;
/// The server is shutting down: the request was not served (the protocol
/// document's NBD_ESHUTDOWN). A client treats it as a lost connection.
pub const ESHUTDOWN: u32 = 108;

/// The largest request this server accepts (and advertises).
pub const MAX_REQUEST: u32 = 32 << 20;

pub const REQUEST_HEADER: usize = 28;
pub const EXTENDED_REQUEST_HEADER: usize = 32;

/// A decoded request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub command: u16,
    pub cookie: u64,
    pub offset: u64,
    /// The range's length, or with extended headers and
    /// `CMD_FLAG_PAYLOAD_LEN` the payload's (64 bits only there).
    pub length: u64,
}

/// Why a request header cannot be served; the connection is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("bad request magic {0:#010x} (expected 0x25609513)")]
    Magic(u32),
    #[error("a {command} request of {length} bytes exceeds the {MAX_REQUEST}-byte limit")]
    TooLong { command: &'static str, length: u64 },
    #[error("bad extended request magic {0:#010x} (expected 0x21e41c71)")]
    ExtendedMagic(u32),
}

pub fn command_name(c: u16) -> &'static str {
    match c {
        CMD_READ => "READ",
        CMD_WRITE => "WRITE",
        CMD_DISC => "DISC",
        CMD_FLUSH => "FLUSH",
        CMD_TRIM => "TRIM",
        CMD_CACHE => "CACHE",
        CMD_WRITE_ZEROES => "WRITE_ZEROES",
        CMD_BLOCK_STATUS => "BLOCK_STATUS",
        _ => "unknown",
    }
}

/// Decode a 28-byte request header. Only the length of data-carrying
/// commands is limited here (a write's payload must be read to stay in
/// step); range checks against the export happen when serving.
pub fn decode_request(h: &[u8; REQUEST_HEADER]) -> Result<Request, RequestError> {
    let be32 = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let be16 = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    let be64 = |at: usize| u64::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3], h[at + 4], h[at + 5], h[at + 6], h[at + 7]]);
    let magic = be32(0);
    if magic != REQUEST_MAGIC {
        return Err(RequestError::Magic(magic));
    }
    let r = Request { flags: be16(4), command: be16(6), cookie: be64(8), offset: be64(16), length: u64::from(be32(24)) };
    bounded(r)
}

/// A request's length is bounded where it is data (a read's reply, a
/// write's or any payload).
fn bounded(r: Request) -> Result<Request, RequestError> {
    let data = matches!(r.command, CMD_READ | CMD_WRITE) || r.flags & CMD_FLAG_PAYLOAD_LEN != 0;
    if data && r.length > u64::from(MAX_REQUEST) {
        return Err(RequestError::TooLong { command: command_name(r.command), length: r.length });
    }
    Ok(r)
}

/// Decode a 32-byte extended request header (`NBD_OPT_EXTENDED_HEADERS`).
pub fn decode_extended_request(h: &[u8; EXTENDED_REQUEST_HEADER]) -> Result<Request, RequestError> {
    let be16 = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    let be64 = |at: usize| u64::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3], h[at + 4], h[at + 5], h[at + 6], h[at + 7]]);
    let magic = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    if magic != EXTENDED_REQUEST_MAGIC {
        return Err(RequestError::ExtendedMagic(magic));
    }
    let r = Request { flags: be16(4), command: be16(6), cookie: be64(8), offset: be64(16), length: be64(24) };
    bounded(r)
}

/// The bytes of payload that follow a request header. A write always
/// carries its length of data; with extended headers any command that
/// sets `CMD_FLAG_PAYLOAD_LEN` carries one too. A write need not set the
/// flag (its payload and effect lengths are the same): qemu 10, whose
/// author wrote the extension, sends its writes without it.
pub fn payload_len(r: &Request, extended: bool) -> u64 {
    if r.command == CMD_WRITE || (extended && r.flags & CMD_FLAG_PAYLOAD_LEN != 0) { r.length } else { 0 }
}

/// A simple reply header.
pub fn simple_reply(error: u32, cookie: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..].copy_from_slice(&cookie.to_be_bytes());
    out
}

/// A reply chunk's header, structured (20 bytes) or extended (32 bytes,
/// carrying the request's offset); `len` bytes of payload follow.
pub fn chunk_header(extended: bool, flags: u16, kind: u16, r: &Request, len: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&if extended { EXTENDED_REPLY_MAGIC } else { STRUCTURED_REPLY_MAGIC }.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&r.cookie.to_be_bytes());
    if extended {
        out.extend_from_slice(&r.offset.to_be_bytes());
        out.extend_from_slice(&u64::from(len).to_be_bytes());
    } else {
        out.extend_from_slice(&len.to_be_bytes());
    }
    out
}

/// A final error chunk: the error number and a message (at most 4 KiB).
pub fn error_chunk(extended: bool, error: u32, r: &Request, message: &str) -> Vec<u8> {
    let mut cut = message.len().min(4096);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let message = &message.as_bytes()[..cut];
    let mut out = chunk_header(extended, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, r, 6 + message.len() as u32);
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// `NBD_OPT_LIST_META_CONTEXT` / `NBD_OPT_SET_META_CONTEXT` data:
/// `u32 name length, name, u32 query count, (u32 length, query)*`.
pub fn decode_meta_request(data: &[u8]) -> Result<(String, Vec<String>), String> {
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let name_len = data.get(..4).map(be32).ok_or("META_CONTEXT data too short")?;
    let name = data.get(4..4 + name_len).ok_or("export name runs past the option")?;
    let mut rest = &data[4 + name_len..];
    let count = rest.get(..4).map(be32).ok_or("missing query count")?;
    if count > MAX_META_QUERIES {
        return Err(format!("{count} queries (at most {MAX_META_QUERIES})"));
    }
    rest = &rest[4..];
    let mut queries = Vec::with_capacity(count);
    for _ in 0..count {
        let len = rest.get(..4).map(be32).ok_or("a query's length runs past the option")?;
        let q = rest.get(4..4 + len).ok_or("a query runs past the option")?;
        queries.push(String::from_utf8(q.to_vec()).map_err(|_| "a query is not UTF-8")?);
        rest = &rest[4 + len..];
    }
    if !rest.is_empty() {
        return Err("trailing bytes after the queries".into());
    }
    Ok((String::from_utf8_lossy(name).into_owned(), queries))
}

/// An option reply.
pub fn option_reply(option: u32, reply: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// `u32 name length, name, u16 count, u16 info types`.
pub fn decode_info_request(data: &[u8]) -> Result<(String, Vec<u16>), String> {
    let name_len = data.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).ok_or("INFO/GO data too short")?;
    let name = data.get(4..4 + name_len).ok_or("export name runs past the option")?;
    let rest = &data[4 + name_len..];
    let count = rest.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize).ok_or("missing info request count")?;
    let list = rest.get(2..2 + 2 * count).ok_or("info requests run past the option")?;
    if rest.len() != 2 + 2 * count {
        return Err("trailing bytes after the info requests".into());
    }
    let requests = list.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    Ok((String::from_utf8_lossy(name).into_owned(), requests))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, cmd: u16, len: u32) -> [u8; 28] {
        let mut h = [0u8; 28];
        h[..4].copy_from_slice(&magic.to_be_bytes());
        h[4..6].copy_from_slice(&CMD_FLAG_FUA.to_be_bytes());
        h[6..8].copy_from_slice(&cmd.to_be_bytes());
        h[8..16].copy_from_slice(&7u64.to_be_bytes());
        h[16..24].copy_from_slice(&4096u64.to_be_bytes());
        h[24..].copy_from_slice(&len.to_be_bytes());
        h
    }

    #[test]
    fn decodes_and_refuses() {
        let r = decode_request(&header(REQUEST_MAGIC, CMD_WRITE, 512)).unwrap();
        assert_eq!(r, Request { flags: CMD_FLAG_FUA, command: CMD_WRITE, cookie: 7, offset: 4096, length: 512 });
        assert_eq!(decode_request(&header(0xdeadbeef, CMD_READ, 1)), Err(RequestError::Magic(0xdeadbeef)));
        assert!(matches!(decode_request(&header(REQUEST_MAGIC, CMD_READ, MAX_REQUEST + 1)), Err(RequestError::TooLong { .. })));
        assert_eq!(payload_len(&r, false), 512);
        // A huge TRIM carries no payload: allowed through to range checks.
        assert!(decode_request(&header(REQUEST_MAGIC, CMD_TRIM, u32::MAX)).is_ok());
        assert_eq!(&simple_reply(5, 9)[..8], &[0x67, 0x44, 0x66, 0x98, 0, 0, 0, 5]);
    }

    fn extended(cmd: u16, flags: u16, len: u64) -> [u8; 32] {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&EXTENDED_REQUEST_MAGIC.to_be_bytes());
        h[4..6].copy_from_slice(&flags.to_be_bytes());
        h[6..8].copy_from_slice(&cmd.to_be_bytes());
        h[8..16].copy_from_slice(&7u64.to_be_bytes());
        h[16..24].copy_from_slice(&4096u64.to_be_bytes());
        h[24..].copy_from_slice(&len.to_be_bytes());
        h
    }

    #[test]
    fn decodes_extended_requests() {
        // A 64-bit effect length: fine for block status and trim.
        let r = decode_extended_request(&extended(CMD_BLOCK_STATUS, 0, 1 << 40)).unwrap();
        assert_eq!((r.length, payload_len(&r, true)), (1 << 40, 0));
        let w = decode_extended_request(&extended(CMD_WRITE, CMD_FLAG_PAYLOAD_LEN, 512)).unwrap();
        assert_eq!(payload_len(&w, true), 512);
        // A write without the flag carries its data all the same.
        let plain = decode_extended_request(&extended(CMD_WRITE, 0, 512)).unwrap();
        assert_eq!(payload_len(&plain, true), 512);
        assert!(matches!(decode_extended_request(&extended(CMD_READ, 0, 1 << 33)), Err(RequestError::TooLong { .. })));
        assert!(matches!(decode_extended_request(&extended(CMD_FLUSH, CMD_FLAG_PAYLOAD_LEN, 1 << 33)), Err(RequestError::TooLong { .. })));
        let h = chunk_header(true, REPLY_FLAG_DONE, REPLY_TYPE_NONE, &r, 0);
        assert_eq!((h.len(), &h[..4]), (32, &EXTENDED_REPLY_MAGIC.to_be_bytes()[..]));
        assert_eq!(&h[16..24], &4096u64.to_be_bytes());
    }
}
