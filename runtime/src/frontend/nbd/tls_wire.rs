//! The transmission phase over TLS: a client socket wrapped in its rustls
//! session, readable and writable from the worker threads without blocking
//! (`transmission::Stream`), so TLS connections get the same leader/follower
//! workers, bounds and idle state as plaintext ones.
//!
//! Reads decrypt straight from the socket into rustls's buffer and out into
//! the caller's; a read that finds no whole record returns `WouldBlock`
//! only once the socket itself has (so waiting for readiness is right).
//! Writes encrypt into rustls's bounded buffer and push it to the socket;
//! what the socket did not take yet is pushed by the next write or by
//! `try_flush`, which a reply calls until its last record is out.

use super::transmission::Stream;
use parking_lot::Mutex;
use std::io::{self, IoSlice, Read, Write};

pub struct TlsWire<S: Stream> {
    socket: S,
    session: Mutex<rustls::ServerConnection>,
}

impl<S: Stream> TlsWire<S> {
    pub fn new(socket: S, session: rustls::ServerConnection) -> TlsWire<S> {
        TlsWire { socket, session: Mutex::new(session) }
    }

    /// Push encrypted bytes until rustls holds none or the socket is full.
    fn push(&self, session: &mut rustls::ServerConnection) -> io::Result<()> {
        while session.wants_write() {
            if session.write_tls(&mut SocketWriter(&self.socket))? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }
}

/// The socket as `io::Write` for rustls (`WouldBlock` passes through).
struct SocketWriter<'a, S: Stream>(&'a S);

impl<S: Stream> Write for SocketWriter<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write_vectored(&[IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct SocketReader<'a, S: Stream>(&'a S);

impl<S: Stream> Read for SocketReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

fn tls_failed(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl<S: Stream> Stream for TlsWire<S> {
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut session = self.session.lock();
        loop {
            match session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The client closed the socket without close_notify: to the
                // NBD layer, an end of stream like any other.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if session.read_tls(&mut SocketReader(&self.socket))? == 0 {
                return Ok(0);
            }
            session.process_new_packets().map_err(tls_failed)?;
            // Alerts or key updates rustls answers go out with the next
            // reply; a full socket here is no reason to fail the read.
            match self.push(&mut session) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut session = self.session.lock();
        // Older records first: their order on the wire is the protocol's.
        self.push(&mut session)?;
        let taken = session.writer().write_vectored(bufs)?;
        match self.push(&mut session) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(taken),
        }
    }

    fn try_flush(&self) -> io::Result<()> {
        self.push(&mut self.session.lock())
    }

    async fn ready(&self, interest: tokio::io::Interest) -> io::Result<tokio::io::Ready> {
        // Plaintext rustls already holds is ready now; the socket may have
        // nothing more to say.
        if interest.is_readable() {
            let buffered = self.session.lock().process_new_packets().map_err(tls_failed)?.plaintext_bytes_to_read() > 0;
            if buffered {
                return Ok(tokio::io::Ready::READABLE);
            }
        }
        self.socket.ready(interest).await
    }
}
