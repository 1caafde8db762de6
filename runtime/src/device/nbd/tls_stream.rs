//! A remote leg's connection over TLS, shared by the leg's writers (one at
//! a time, under its writer lock) and its reply reader thread. The rustls
//! session is locked only to encrypt or decrypt, never across a socket call
//! that blocks: a writer stuck on a full socket must not stop the reader
//! from taking the replies the server is trying to send.

use super::handshake::Stream;
use parking_lot::Mutex;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

/// Ciphertext read from the socket at once.
const CIPHER_READ: usize = 64 << 10;

struct Shared {
    socket: Stream,
    session: Mutex<rustls::ClientConnection>,
    /// Held from encrypting records to their last byte on the socket, so
    /// records reach the wire in the order of their sequence numbers.
    sending: Mutex<()>,
}

pub struct TlsStream {
    shared: Arc<Shared>,
    /// Decrypted bytes not yet read (reader side).
    plain: Vec<u8>,
    taken: usize,
    /// Ciphertext in (reader side) or out (writer side).
    cipher: Vec<u8>,
    eof: bool,
}

fn tls_failed(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl TlsStream {
    /// `socket` must be plaintext (TCP or Unix) and `session` past its
    /// handshake.
    pub fn new(socket: Stream, session: rustls::ClientConnection) -> TlsStream {
        TlsStream {
            shared: Arc::new(Shared { socket, session: Mutex::new(session), sending: Mutex::new(()) }),
            plain: Vec::new(),
            taken: 0,
            cipher: Vec::new(),
            eof: false,
        }
    }

    pub fn try_clone(&self) -> TlsStream {
        TlsStream { shared: self.shared.clone(), plain: Vec::new(), taken: 0, cipher: Vec::new(), eof: false }
    }

    pub fn socket(&self) -> &Stream {
        &self.shared.socket
    }

    /// Say goodbye (TLS close_notify), so the server logs a clean close
    /// rather than a cut: only when no record is being sent (a goodbye
    /// overtaking one would read as an attack), and without waiting.
    pub fn close(&self) {
        let Some(_turn) = self.shared.sending.try_lock() else { return };
        let mut out = Vec::new();
        {
            let mut session = self.shared.session.lock();
            session.send_close_notify();
            while session.wants_write() {
                if session.write_tls(&mut out).is_err() {
                    break;
                }
            }
        }
        self.shared.socket.send_nowait(&out);
    }

    /// Move what rustls decrypted into `plain`; notes the peer's close.
    fn drain(&mut self, session: &mut rustls::ClientConnection) -> io::Result<()> {
        loop {
            let old = self.plain.len();
            self.plain.resize(old + (16 << 10), 0);
            let got = session.reader().read(&mut self.plain[old..]);
            self.plain.truncate(old + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.eof = true;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.taken < self.plain.len() {
                let n = (self.plain.len() - self.taken).min(buf.len());
                buf[..n].copy_from_slice(&self.plain[self.taken..self.taken + n]);
                self.taken += n;
                return Ok(n);
            }
            self.plain.clear();
            self.taken = 0;
            if self.eof {
                return Ok(0);
            }
            // Plaintext left from the handshake, or decrypted by an earlier
            // round, comes first.
            let shared = self.shared.clone();
            self.drain(&mut shared.session.lock())?;
            if !self.plain.is_empty() || self.eof {
                continue;
            }
            let mut cipher = std::mem::take(&mut self.cipher);
            cipher.resize(CIPHER_READ, 0);
            let n = shared.socket.read_shared(&mut cipher)?;
            let mut session = shared.session.lock();
            let mut fresh = &cipher[..n];
            if n == 0 {
                // The socket's end: rustls tells a clean close from a cut.
                session.read_tls(&mut fresh)?;
                session.process_new_packets().map_err(tls_failed)?;
                self.drain(&mut session)?;
                self.eof = true;
            }
            while !fresh.is_empty() && !self.eof {
                // After the peer's close_notify rustls takes nothing more
                // (0): whatever follows it is ignored, not spun on.
                let took = session.read_tls(&mut fresh)?;
                session.process_new_packets().map_err(tls_failed)?;
                self.drain(&mut session)?;
                if took == 0 {
                    break;
                }
            }
            self.cipher = cipher;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.cipher.clear();
        let _turn = self.shared.sending.lock();
        let taken = {
            let mut session = self.shared.session.lock();
            let taken = session.writer().write_vectored(bufs)?;
            // Also what the reader's decryption queued (alerts, key updates).
            while session.wants_write() {
                session.write_tls(&mut self.cipher)?;
            }
            taken
        };
        // Whole records or none: a record cut by a send timeout leaves the
        // session unusable, and the leg reconnects as after any lost link.
        self.shared.socket.write_all_shared(&self.cipher)?;
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
