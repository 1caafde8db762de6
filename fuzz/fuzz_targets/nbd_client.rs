//! Any bytes from an NBD server: the client's handshake (plaintext, or up
//! to STARTTLS's answer) returns an export or an error, never panics or hangs, and the reply reader matches
//! replies only to requests it is waiting for, with exactly the data
//! length that request asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/bounded.rs"]
mod bounded;

#[global_allocator]
static ALLOCATOR: bounded::Bounded = bounded::Bounded;
use std::collections::HashMap;
use std::io::{self, Read, Write};
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
            let _ = handshake::negotiate(&mut server, "export");
        } else {
            // An nbds:// leg: the greeting, then STARTTLS's reply.
            let _ = handshake::greet(&mut server).and_then(|()| handshake::start_tls(&mut server));
        }
        assert!(server.heard < 1024, "the client's option is small");
        return;
    }
    // Requests in flight: up to 8 (cookie, read length) pairs, lengths
    // below 64 KiB; then the server's replies.
    let mut pending = HashMap::new();
    let mut rest = rest;
    for _ in 0..(mode >> 1) % 9 {
        let Some((entry, tail)) = rest.split_first_chunk::<10>() else { break };
        let cookie = u64::from_be_bytes(entry[..8].try_into().unwrap_or_default());
        pending.insert(cookie, usize::from(u16::from_be_bytes([entry[8], entry[9]])));
        rest = tail;
    }
    let mut wire = rest;
    loop {
        match reply::read(&mut wire, |cookie| pending.get(&cookie).copied()) {
            Ok(r) => {
                let asked = pending.remove(&r.cookie).expect("only waited-for cookies are answered");
                if let Ok(data) = r.answer {
                    assert_eq!(data.len(), asked);
                }
            }
            Err(_) => break,
        }
    }
});
