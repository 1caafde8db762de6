//! NBD extended headers (`NBD_OPT_EXTENDED_HEADERS`), spoken byte by byte
//! as the protocol's extension document has it: libnbd 1.14 and nbdkit
//! 1.32 on this Debian 12 host predate it, so the client here is written
//! from the document, not from wasmraid's own code. A 6 GiB export lets a
//! block status request carry a 64-bit effect length.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use wasmraid_tests::Served;

const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const EXTENDED_REQUEST_MAGIC: u32 = 0x21e4_1c71;
const EXTENDED_REPLY_MAGIC: u32 = 0x6e8a_278c;

fn option(s: &mut UnixStream, opt: u32, data: &[u8]) {
    let mut o = IHAVEOPT.to_be_bytes().to_vec();
    o.extend_from_slice(&opt.to_be_bytes());
    o.extend_from_slice(&(data.len() as u32).to_be_bytes());
    o.extend_from_slice(data);
    s.write_all(&o).expect("send option");
}

/// One option reply: (type, data).
fn option_reply(s: &mut UnixStream, opt: u32) -> (u32, Vec<u8>) {
    let mut h = [0u8; 20];
    s.read_exact(&mut h).expect("option reply");
    assert_eq!(u64::from_be_bytes(h[..8].try_into().unwrap()), REPLY_MAGIC);
    assert_eq!(u32::from_be_bytes(h[8..12].try_into().unwrap()), opt);
    let mut data = vec![0u8; u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize];
    s.read_exact(&mut data).expect("option reply data");
    (u32::from_be_bytes(h[12..16].try_into().unwrap()), data)
}

fn request(s: &mut UnixStream, flags: u16, command: u16, cookie: u64, offset: u64, length: u64, payload: &[u8]) {
    let mut r = EXTENDED_REQUEST_MAGIC.to_be_bytes().to_vec();
    r.extend_from_slice(&flags.to_be_bytes());
    r.extend_from_slice(&command.to_be_bytes());
    r.extend_from_slice(&cookie.to_be_bytes());
    r.extend_from_slice(&offset.to_be_bytes());
    r.extend_from_slice(&length.to_be_bytes());
    r.extend_from_slice(payload);
    s.write_all(&r).expect("send request");
}

/// One extended reply chunk: (flags, type, cookie, offset, payload).
fn chunk(s: &mut UnixStream) -> (u16, u16, u64, u64, Vec<u8>) {
    let mut h = [0u8; 32];
    s.read_exact(&mut h).expect("reply chunk");
    assert_eq!(u32::from_be_bytes(h[..4].try_into().unwrap()), EXTENDED_REPLY_MAGIC, "every reply is an extended chunk");
    let len = u64::from_be_bytes(h[24..32].try_into().unwrap());
    assert!(len < 64 << 20);
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).expect("chunk payload");
    let be16 = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    let be64 = |at: usize| u64::from_be_bytes(h[at..at + 8].try_into().unwrap());
    (be16(4), be16(6), be64(8), be64(16), payload)
}

#[test]
fn extended_headers_carry_64_bit_lengths_and_every_reply_is_extended() {
    // raid0 over two sparse 3 GiB legs: a 6 GiB export.
    let s = Served::layout("raid0", 2, "3G", "", "64K");
    let mut c = UnixStream::connect(&s.socket).expect("connect");
    let mut hello = [0u8; 18];
    c.read_exact(&mut hello).expect("greeting");
    c.write_all(&3u32.to_be_bytes()).expect("client flags"); // FIXED_NEWSTYLE | NO_ZEROES
    option(&mut c, 11, &[]); // NBD_OPT_EXTENDED_HEADERS
    assert_eq!(option_reply(&mut c, 11).0, 1, "ACK");
    option(&mut c, 8, &[]); // NBD_OPT_STRUCTURED_REPLY: extended headers take precedence
    assert_eq!(option_reply(&mut c, 8).0, 0x8000_000a, "NBD_REP_ERR_EXT_HEADER_REQD");
    let mut meta = 3u32.to_be_bytes().to_vec();
    meta.extend_from_slice(b"dev");
    meta.extend_from_slice(&1u32.to_be_bytes());
    meta.extend_from_slice(&15u32.to_be_bytes());
    meta.extend_from_slice(b"base:allocation");
    option(&mut c, 10, &meta); // NBD_OPT_SET_META_CONTEXT
    let (kind, data) = option_reply(&mut c, 10);
    assert_eq!((kind, &data[4..]), (4, &b"base:allocation"[..]), "NBD_REP_META_CONTEXT");
    let context = u32::from_be_bytes(data[..4].try_into().unwrap());
    assert_eq!(option_reply(&mut c, 10).0, 1);
    let mut go = 3u32.to_be_bytes().to_vec();
    go.extend_from_slice(b"dev");
    go.extend_from_slice(&0u16.to_be_bytes());
    option(&mut c, 7, &go); // NBD_OPT_GO
    loop {
        let (kind, _) = option_reply(&mut c, 7);
        if kind == 1 {
            break;
        }
        assert_eq!(kind, 3, "INFO until the ACK");
    }

    // A write carries its payload length (NBD_CMD_FLAG_PAYLOAD_LEN).
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
    request(&mut c, 1 << 5, 1, 11, 1 << 32, data.len() as u64, &data);
    let (flags, kind, cookie, offset, payload) = chunk(&mut c);
    assert_eq!((flags & 1, kind, cookie, offset, payload.len()), (1, 0, 11, 1 << 32, 0), "a done NBD_REPLY_TYPE_NONE");
    // The read comes back as an OFFSET_DATA chunk, the request's offset in the header.
    request(&mut c, 0, 0, 12, 1 << 32, data.len() as u64, &[]);
    let (flags, kind, cookie, offset, payload) = chunk(&mut c);
    assert_eq!((flags & 1, kind, cookie, offset), (1, 1, 12, 1 << 32));
    assert_eq!(u64::from_be_bytes(payload[..8].try_into().unwrap()), 1 << 32);
    assert!(payload[8..] == data[..], "what was written reads back");
    // Block status of 5 GiB from 0: more than 32 bits of effect length.
    request(&mut c, 0, 7, 13, 0, 5 << 30, &[]);
    let (flags, kind, cookie, _, payload) = chunk(&mut c);
    assert_eq!((flags & 1, kind, cookie), (1, 6, 13), "a done NBD_REPLY_TYPE_BLOCK_STATUS_EXT");
    assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), context);
    let count = u32::from_be_bytes(payload[4..8].try_into().unwrap()) as usize;
    assert_eq!(payload.len(), 8 + 16 * count);
    let first = (u64::from_be_bytes(payload[8..16].try_into().unwrap()), u64::from_be_bytes(payload[16..24].try_into().unwrap()));
    assert_eq!(first.1, 3, "the array's start was never written: hole,zero ({first:?})");
    // FAST_ZERO: whole stripes (2 x 64 KiB) are zeroed in place; part of
    // a stripe would be written, so it is refused at once (ENOTSUP).
    request(&mut c, 1 << 4, 6, 15, 1 << 32, 128 << 10, &[]);
    let (flags, kind, cookie, _, _) = chunk(&mut c);
    assert_eq!((flags & 1, kind, cookie), (1, 0, 15), "whole stripes zero fast");
    request(&mut c, 1 << 4, 6, 16, (1 << 32) + 4096, 4096, &[]);
    let (flags, kind, cookie, _, payload) = chunk(&mut c);
    assert_eq!((flags & 1, kind, cookie), (1, 0x8001, 16), "an error chunk");
    assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), 95, "NBD_ENOTSUP");
    request(&mut c, 0, 0, 17, 1 << 32, 4096, &[]);
    let (_, _, _, _, payload) = chunk(&mut c);
    assert!(payload[8..].iter().all(|&b| b == 0), "the fast zeroes read back as zeroes");
    // A large read of a range never written: one OFFSET_HOLE chunk, no data.
    request(&mut c, 0, 0, 18, 2 << 30, 256 << 10, &[]);
    let (flags, kind, cookie, _, payload) = chunk(&mut c);
    assert_eq!((flags & 1, kind, cookie, payload.len()), (1, 2, 18, 12), "a done NBD_REPLY_TYPE_OFFSET_HOLE");
    assert_eq!(u64::from_be_bytes(payload[..8].try_into().unwrap()), 2 << 30);
    assert_eq!(u32::from_be_bytes(payload[8..12].try_into().unwrap()), 256 << 10);
    // Data between holes: the chunks put together are the bytes.
    let middle: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8 | 1).collect();
    request(&mut c, 1 << 5, 1, 19, 3 << 30, middle.len() as u64, &middle);
    assert_eq!(chunk(&mut c).1, 0);
    let from = (3u64 << 30) - (64 << 10);
    request(&mut c, 0, 0, 20, from, 256 << 10, &[]);
    let mut got = vec![0xeeu8; 256 << 10];
    let mut holes = 0;
    loop {
        let (flags, kind, cookie, _, payload) = chunk(&mut c);
        assert_eq!(cookie, 20);
        let at = (u64::from_be_bytes(payload[..8].try_into().unwrap()) - from) as usize;
        match kind {
            1 => got[at..at + payload.len() - 8].copy_from_slice(&payload[8..]),
            2 => {
                let n = u32::from_be_bytes(payload[8..12].try_into().unwrap()) as usize;
                got[at..at + n].fill(0);
                holes += 1;
            }
            other => panic!("unexpected chunk type {other}"),
        }
        if flags & 1 != 0 {
            break;
        }
    }
    let mut expected = vec![0u8; 256 << 10];
    expected[64 << 10..128 << 10].copy_from_slice(&middle);
    assert!(got == expected, "holes and data chunks together are the range's bytes");
    assert!(holes > 0, "the unwritten parts come as holes");
    // A write without NBD_CMD_FLAG_PAYLOAD_LEN still carries its data (its
    // payload and effect lengths are the same; qemu 10 sends writes so).
    let unflagged: Vec<u8> = (0..512u32).map(|i| (i % 249) as u8 | 2).collect();
    request(&mut c, 0, 1, 14, 0, 512, &unflagged);
    assert_eq!(chunk(&mut c).1, 0, "the unflagged write is done");
    request(&mut c, 0, 0, 21, 0, 512, &[]);
    let (_, kind, _, _, payload) = chunk(&mut c);
    assert!(kind == 1 && payload[8..] == unflagged[..], "the unflagged write reads back");
    // A compact request's magic where an extended header belongs breaks
    // the protocol: the connection ends.
    let mut compact = 0x2560_9513u32.to_be_bytes().to_vec();
    compact.extend_from_slice(&[0u8; 28]);
    c.write_all(&compact).expect("send");
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no reply to a malformed request: {} bytes", rest.len());
}
