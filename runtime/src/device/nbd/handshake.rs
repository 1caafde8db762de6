//! The client side of the NBD handshake: fixed newstyle, `NBD_OPT_STARTTLS`
//! and a TLS handshake for `nbds` URIs, then `NBD_OPT_GO` for one export,
//! its size and transmission flags from `NBD_INFO_EXPORT`. The server's
//! bytes are untrusted: the steps run over any stream so they can be fuzzed
//! (`fuzz/nbd_client`), and every read is bounded.

use super::tls_stream::TlsStream;
use super::uri::{Endpoint, NbdUri};
use crate::frontend::nbd::proto::*;
use crate::tls::{CertDir, ClientTls, Session, client::Verify};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A connected transport, blocking.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// TLS over one of the others.
    Tls(TlsStream),
}

impl Stream {
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tls(s) => Stream::Tls(s.try_clone()),
        })
    }

    pub fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tls(s) => {
                s.close();
                s.socket().shutdown();
                Ok(())
            }
        };
    }

    /// Read through a shared reference (the plaintext socket under TLS).
    pub(super) fn read_shared(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
            Stream::Tls(s) => s.socket().read_shared(buf),
        }
    }

    /// Send what the socket takes at once (MSG_DONTWAIT), ignoring errors:
    /// a goodbye, never worth waiting for.
    pub(super) fn send_nowait(&self, buf: &[u8]) {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tls(s) => return s.socket().send_nowait(buf),
        };
        // SAFETY: `fd` is this stream's open socket and `buf` a valid slice
        // for its length; MSG_NOSIGNAL keeps a closed peer from raising
        // SIGPIPE.
        let _ = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    }

    pub(super) fn write_all_shared(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => (&*s).write_all(buf),
            Stream::Unix(s) => (&*s).write_all(buf),
            Stream::Tls(s) => s.socket().write_all_shared(buf),
        }
    }

    /// Bound each write (SO_SNDTIMEO): a write that makes no progress for
    /// `t` fails with WouldBlock instead of blocking for good.
    pub fn set_send_timeout(&self, t: Duration) -> io::Result<()> {
        let t = Some(t.max(Duration::from_millis(1)));
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tls(s) => s.socket().set_send_timeout(t.unwrap_or_default()),
        }
    }

    fn set_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t).and_then(|_| s.set_write_timeout(t)),
            Stream::Unix(s) => s.set_read_timeout(t).and_then(|_| s.set_write_timeout(t)),
            Stream::Tls(s) => s.socket().set_timeout(t),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::Tls(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the server said about the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Export {
    pub size: u64,
    pub flags: u16,
    /// `NBD_INFO_BLOCK_SIZE` (minimum, preferred, maximum), when the
    /// server sent it.
    pub block_sizes: Option<(u32, u32, u32)>,
}

/// Longest option reply read (an error message, an info block).
const MAX_OPTION_REPLY: u32 = 64 << 10;
/// Most replies to one `NBD_OPT_GO` (a server sends a few `NBD_REP_INFO`
/// and an ack): a server that streams informational replies for ever
/// would hold the handshake, whose timeout is per read.
const MAX_OPTION_REPLIES: usize = 256;

fn protocol(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// Connect and negotiate; the stream is left in transmission phase. For
/// an `nbds` URI: STARTTLS, the TLS handshake (the server's certificate
/// checked as `tls::client` says), and what the session proved.
pub fn connect(uri: &NbdUri, timeout: Duration) -> io::Result<(Stream, Export, Option<Session>)> {
    // Certificates are read on every connection: a reconnect picks up
    // renewed ones.
    let tls = uri.tls.as_ref().map(|t| client_tls(uri, t)).transpose()?;
    let mut stream = match &uri.endpoint {
        Endpoint::Tcp { host, port } => {
            let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} resolves to no address"));
            let mut connected = None;
            for addr in (host.as_str(), *port).to_socket_addrs()? {
                match TcpStream::connect_timeout(&addr, timeout) {
                    Ok(s) => {
                        connected = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let s = connected.ok_or(last)?;
            s.set_nodelay(true)?;
            Stream::Tcp(s)
        }
        Endpoint::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
    };
    // A server that accepts and then says nothing must not hang us.
    stream.set_timeout(Some(timeout))?;
    greet(&mut stream)?;
    let Some(tls) = tls else {
        let export = go(&mut stream, &uri.export)?;
        stream.set_timeout(None)?;
        return Ok((stream, export, None));
    };
    start_tls(&mut stream)?;
    // rustls encrypts at most 64 KiB per write: a send's deadline is
    // checked between them (`write_all_vectored`), as between plaintext
    // writes.
    let mut session = tls.session().map_err(|e| io::Error::other(e.to_string()))?;
    while session.is_handshaking() {
        session.complete_io(&mut stream).map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
    }
    let export = go(&mut rustls::Stream::new(&mut session, &mut stream), &uri.export)?;
    let mut proved = Session::of(&session);
    if uri.tls.as_ref().is_some_and(|t| !t.verify_peer) {
        proved.peer = proved.peer.map(|p| format!("{p}, NOT verified (tls-verify-peer=false)"));
    }
    stream.set_timeout(None)?;
    Ok((Stream::Tls(TlsStream::new(stream, session)), export, Some(proved)))
}

/// The TLS settings an `nbds` URI asks for, loaded: a leg that cannot set
/// up TLS says why in one sentence naming the file.
fn client_tls(uri: &NbdUri, t: &super::uri::UriTls) -> io::Result<ClientTls> {
    let dir = CertDir::new(t.certificates.clone().unwrap_or_else(|| crate::tls::default_dir("libnbd")));
    let (host, verify) = match (&uri.endpoint, &t.hostname) {
        (Endpoint::Tcp { host, .. }, _) if !t.verify_peer => (t.hostname.clone().unwrap_or_else(|| host.clone()), Verify::Nothing),
        (Endpoint::Unix(_), _) if !t.verify_peer => (t.hostname.clone().unwrap_or_else(|| "localhost".into()), Verify::Nothing),
        (_, Some(h)) => (h.clone(), Verify::ChainAndName),
        (Endpoint::Tcp { host, .. }, None) => (host.clone(), Verify::ChainAndName),
        (Endpoint::Unix(_), None) => ("localhost".into(), Verify::ChainOnly),
    };
    ClientTls::load(&dir, &host, verify).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("TLS: {e}")))
}

/// The handshake over `s`, asking for export `name` (plaintext).
pub fn negotiate<S: Read + Write>(s: &mut S, name: &str) -> io::Result<Export> {
    greet(s)?;
    go(s, name)
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Read the server's greeting and send our flags.
pub fn greet<S: Read + Write>(s: &mut S) -> io::Result<()> {
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello)?;
    if be64(&hello[..8]) != NBDMAGIC {
        return Err(protocol("not an NBD server (bad greeting magic)"));
    }
    if be64(&hello[8..16]) != IHAVEOPT {
        return Err(protocol("the server speaks oldstyle NBD only; newstyle is required"));
    }
    let server_flags = u16::from_be_bytes([hello[16], hello[17]]);
    if server_flags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(protocol("the server does not speak fixed newstyle NBD"));
    }
    let mut client_flags = CLIENT_FIXED_NEWSTYLE;
    if server_flags & FLAG_NO_ZEROES != 0 {
        client_flags |= CLIENT_NO_ZEROES;
    }
    s.write_all(&client_flags.to_be_bytes())
}

fn send_option<S: Write>(s: &mut S, option: u32, data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len()).map_err(|_| protocol("option too long"))?;
    let mut o = Vec::with_capacity(16 + data.len());
    o.extend_from_slice(&IHAVEOPT.to_be_bytes());
    o.extend_from_slice(&option.to_be_bytes());
    o.extend_from_slice(&len.to_be_bytes());
    o.extend_from_slice(data);
    s.write_all(&o)
}

/// One option reply: (type, data), bounded.
fn read_option_reply<S: Read>(s: &mut S) -> io::Result<(u32, Vec<u8>)> {
    let mut head = [0u8; 20];
    s.read_exact(&mut head)?;
    if be64(&head[..8]) != REPLY_MAGIC {
        return Err(protocol("bad option reply magic"));
    }
    let reply = u32::from_be_bytes([head[12], head[13], head[14], head[15]]);
    let len = u32::from_be_bytes([head[16], head[17], head[18], head[19]]);
    if len > MAX_OPTION_REPLY {
        return Err(protocol(format!("option reply of {len} bytes is too long")));
    }
    let mut data = vec![0u8; len as usize];
    s.read_exact(&mut data)?;
    Ok((reply, data))
}

/// Ask for TLS; the server must ack before the TLS handshake starts.
pub fn start_tls<S: Read + Write>(s: &mut S) -> io::Result<()> {
    send_option(s, OPT_STARTTLS, &[])?;
    let (reply, data) = read_option_reply(s)?;
    match reply {
        REP_ACK => Ok(()),
        _ => {
            let message = String::from_utf8_lossy(&data);
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the server does not offer TLS (NBD_OPT_STARTTLS refused{}{message})", if message.is_empty() { "" } else { ": " }),
            ))
        }
    }
}

/// `NBD_OPT_GO` for export `name`.
pub fn go<S: Read + Write>(s: &mut S, name: &str) -> io::Result<Export> {
    let name_len = u32::try_from(name.len()).map_err(|_| protocol("export name too long"))?;
    let mut go = Vec::with_capacity(6 + name.len());
    go.extend_from_slice(&name_len.to_be_bytes());
    go.extend_from_slice(name.as_bytes());
    // One info request: the block sizes the server wants.
    go.extend_from_slice(&1u16.to_be_bytes());
    go.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    send_option(s, OPT_GO, &go)?;

    let mut export = None;
    let mut block_sizes = None;
    for _ in 0..MAX_OPTION_REPLIES {
        let (reply, data) = read_option_reply(s)?;
        match reply {
            REP_ACK => {
                let export = export.ok_or_else(|| protocol("the server finished NBD_OPT_GO without describing the export"))?;
                return Ok(Export { block_sizes, ..export });
            }
            REP_INFO => {
                let be32 = |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
                match (data.len(), data.get(..2).map(|t| u16::from_be_bytes([t[0], t[1]]))) {
                    // The block sizes join at the ACK, whichever came first.
                    (12.., Some(INFO_EXPORT)) => {
                        export = Some(Export { size: be64(&data[2..10]), flags: u16::from_be_bytes([data[10], data[11]]), block_sizes: None });
                    }
                    (14.., Some(INFO_BLOCK_SIZE)) => {
                        let sizes = (be32(2), be32(6), be32(10));
                        // Nonsense sizes are ignored (the defaults stand).
                        let sane = sizes.0.is_power_of_two() && sizes.0 <= 64 << 10 && sizes.1 >= sizes.0 && sizes.2 >= sizes.0;
                        if sane {
                            block_sizes = Some(sizes);
                        }
                    }
                    _ => {}
                }
            }
            r if r & 0x8000_0000 != 0 => {
                let message = String::from_utf8_lossy(&data);
                let what = match r {
                    REP_ERR_UNKNOWN => "no such export",
                    REP_ERR_UNSUP => "NBD_OPT_GO is not supported",
                    REP_ERR_TLS_REQD => "the server requires TLS (write nbds:// with tls-certificates=DIR)",
                    _ => "the server refused the export",
                };
                return Err(io::Error::new(io::ErrorKind::NotFound, format!("export {name:?}: {what}{}{message}", if message.is_empty() { "" } else { ": " })));
            }
            _ => {} // other informational replies: ignore, as the protocol allows
        }
    }
    Err(protocol(format!("the server sent more than {MAX_OPTION_REPLIES} replies to NBD_OPT_GO")))
}
