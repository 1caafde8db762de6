//! Any bytes from an NBD server: the client's handshake (plaintext, or up
//! to STARTTLS's answer) returns an export or an error, never panics or
//! hangs, and the reply reader, in each form the handshake may settle
//! (simple, structured, extended), answers only requests it is waiting
//! for, a read with exactly the length asked, block status within the
//! range asked; hostile chunks (out of range, overlapping, oversized,
//! unknown) are errors.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/bounded.rs"]
mod bounded;

#[global_allocator]
static ALLOCATOR: bounded::Bounded = bounded::Bounded;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use wasmraid::device::nbd::chunks::{Asked, Payload, Replies};
use wasmraid::device::nbd::{handshake, reply};

/// A server that says `from` and hears whatever the client sends.
struct Server<'a> {
    from: &'a [u8],
    heard: usize,
}

impl Read for Server<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.from.read(buf)
    }
}

impl Write for Server<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.heard += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let mut server = Server { from: rest, heard: 0 };
        if mode & 2 == 0 {
            let _ = handshake::negotiate(&mut server, "export", handshake::Ask::Everything);
        } else {
            // An nbds:// leg: the greeting, then STARTTLS's reply.
            let _ = handshake::greet(&mut server).and_then(|()| handshake::start_tls(&mut server));
        }
        assert!(server.heard < 1024, "the client's option is small");
        return;
    }
    // The reply form, then requests in flight: up to 8 (cookie, command,
    // length, offset) entries, lengths below 64 KiB; then the server's
    // replies.
    let replies = [Replies::Simple, Replies::Structured, Replies::Extended][usize::from(mode >> 1) % 3];
    let mut pending = HashMap::new();
    let mut rest = rest;
    for _ in 0..(mode >> 3) % 9 {
        let Some((entry, tail)) = rest.split_first_chunk::<12>() else { break };
        let cookie = u64::from_be_bytes([entry[0], entry[1], entry[2], entry[3], entry[4], entry[5], entry[6], entry[7]]);
        let command = [0u16, 1, 3, 7][usize::from(entry[8]) % 4]; // READ, WRITE, FLUSH, BLOCK_STATUS
        let len = u64::from(u16::from_be_bytes([entry[9], entry[10]]));
        let asked = Asked { command, offset: u64::from(entry[11]) * 512, len, context: (command == 7).then_some(1) };
        pending.insert(cookie, asked);
        rest = tail;
    }
    let mut wire = rest;
    let mut reader = reply::Reader::new(replies);
    loop {
        // Each request is looked up once, as the leg's reader does.
        match reader.next(&mut wire, |cookie| pending.get(&cookie).copied()) {
            Ok(r) => {
                let asked = pending.remove(&r.cookie).expect("only waited-for cookies are answered");
                match r.answer {
                    Ok(Payload::Data(data)) => assert!(asked.command == 0 && data.len() as u64 == asked.len),
                    Ok(Payload::Status(extents)) => {
                        assert_eq!(asked.command, 7);
                        let covered: u64 = extents.iter().map(|e| e.0).sum();
                        assert!(covered > 0 && covered <= asked.len && extents.iter().all(|e| e.0 > 0));
                    }
                    Ok(Payload::Done) => assert!(asked.command != 0 && asked.command != 7),
                    Err(refusal) => assert_ne!(refusal.errno, 0),
                }
            }
            Err(_) => break,
        }
    }
});
