//! The client side of the NBD handshake: fixed newstyle, `NBD_OPT_STARTTLS`
//! and a TLS handshake for `nbds` URIs, then `NBD_OPT_GO` for one export,
//! its size and transmission flags from `NBD_INFO_EXPORT`. The server's
//! bytes are untrusted: the steps run over any stream so they can be fuzzed
//! (`fuzz/nbd_client`), and every read is bounded.

use super::chunks::Replies;
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
    /// What the connection speaks beyond simple replies.
    pub features: Features,
}

/// The protocol extensions the server accepted for this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    pub replies: Replies,
    /// The id the server gave `base:allocation` (block status needs it).
    pub base_allocation: Option<u32>,
}

impl Features {
    /// For status: "extended-headers, structured-replies, base:allocation".
    pub fn describe(&self) -> String {
        let mut out = match self.replies {
            Replies::Extended => vec!["extended-headers", "structured-replies"],
            Replies::Structured => vec!["structured-replies"],
            Replies::Simple => vec!["simple-replies"],
        };
        if self.base_allocation.is_some() {
            out.push(CONTEXT_BASE_ALLOCATION);
        }
        out.join(", ")
    }
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
    connect_asking(uri, timeout, Ask::Everything)
}

/// What to haggle for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Whatever the server offers (remote legs).
    Everything,
    /// Nothing: simple replies, 28-byte requests (tests that speak the
    /// plain protocol by hand over the connection).
    SimpleOnly,
}

/// `connect`, haggling only for what `ask` says.
pub fn connect_asking(uri: &NbdUri, timeout: Duration, ask: Ask) -> io::Result<(Stream, Export, Option<Session>)> {
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
        let features = features(&mut stream, &uri.export, ask)?;
        let export = go(&mut stream, &uri.export, features)?;
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
    // Options chosen before STARTTLS would be forgotten: haggle now.
    let mut tls_stream = rustls::Stream::new(&mut session, &mut stream);
    let features = features(&mut tls_stream, &uri.export, ask)?;
    let export = go(&mut tls_stream, &uri.export, features)?;
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
pub fn negotiate<S: Read + Write>(s: &mut S, name: &str, ask: Ask) -> io::Result<Export> {
    greet(s)?;
    let features = features(s, name, ask)?;
    go(s, name, features)
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

/// One option reply to `option`: (type, data), bounded.
fn read_option_reply<S: Read>(s: &mut S, option: u32) -> io::Result<(u32, Vec<u8>)> {
    let mut head = [0u8; 20];
    s.read_exact(&mut head)?;
    if be64(&head[..8]) != REPLY_MAGIC {
        return Err(protocol("bad option reply magic"));
    }
    let answers = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    if answers != option {
        return Err(protocol(format!("a reply to option {answers} while option {option} was asked")));
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
    let (reply, data) = read_option_reply(s, OPT_STARTTLS)?;
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

/// `NBD_OPT_GO` for export `name`, on a connection that chose `features`.
pub fn go<S: Read + Write>(s: &mut S, name: &str, features: Features) -> io::Result<Export> {
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
        let (reply, data) = read_option_reply(s, OPT_GO)?;
        match reply {
            REP_ACK => {
                let export = export.ok_or_else(|| protocol("the server finished NBD_OPT_GO without describing the export"))?;
                return Ok(Export { block_sizes, features, ..export });
            }
            REP_INFO => {
                let be32 = |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
                match (data.len(), data.get(..2).map(|t| u16::from_be_bytes([t[0], t[1]]))) {
                    // The block sizes join at the ACK, whichever came first.
                    (12.., Some(INFO_EXPORT)) => {
                        export = Some(Export { size: be64(&data[2..10]), flags: u16::from_be_bytes([data[10], data[11]]), block_sizes: None, features });
                    }
                    (14.., Some(INFO_BLOCK_SIZE)) => {
                        block_sizes = sane_block_sizes(be32(2), be32(6), be32(10));
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

/// Whether an option reply is an error (`NBD_REP_ERR_*`): the option is
/// refused and the client goes on without it.
fn refused(reply: u32) -> bool {
    reply & 0x8000_0000 != 0
}

/// Ask for an option that takes no data (`NBD_OPT_EXTENDED_HEADERS`,
/// `NBD_OPT_STRUCTURED_REPLY`): true when acked, false when refused.
fn ask_for<S: Read + Write>(s: &mut S, option: u32, name: &str) -> io::Result<bool> {
    send_option(s, option, &[])?;
    match read_option_reply(s, option)? {
        (REP_ACK, _) => Ok(true),
        (r, _) if refused(r) => Ok(false),
        (r, _) => Err(protocol(format!("{name}: unexpected option reply {r:#x} (only an ack or an error is allowed)"))),
    }
}

/// Haggle for what the server offers, best first: extended headers, else
/// structured replies, else simple replies; then `base:allocation` for
/// block status when chunks are on. A refusal is no error: the
/// connection goes on with less.
pub fn features<S: Read + Write>(s: &mut S, export: &str, ask: Ask) -> io::Result<Features> {
    if ask == Ask::SimpleOnly {
        return Ok(Features::default());
    }
    let replies = if ask_for(s, OPT_EXTENDED_HEADERS, "NBD_OPT_EXTENDED_HEADERS")? {
        Replies::Extended
    } else if ask_for(s, OPT_STRUCTURED_REPLY, "NBD_OPT_STRUCTURED_REPLY")? {
        Replies::Structured
    } else {
        return Ok(Features::default());
    };
    Ok(Features { replies, base_allocation: set_meta_context(s, export)? })
}

/// `NBD_OPT_SET_META_CONTEXT` for `base:allocation`: the id the server
/// gave it, or None when it has no such context or refuses the option.
fn set_meta_context<S: Read + Write>(s: &mut S, export: &str) -> io::Result<Option<u32>> {
    let name_len = u32::try_from(export.len()).map_err(|_| protocol("export name too long"))?;
    let mut data = name_len.to_be_bytes().to_vec();
    data.extend_from_slice(export.as_bytes());
    data.extend_from_slice(&1u32.to_be_bytes());
    data.extend_from_slice(&(CONTEXT_BASE_ALLOCATION.len() as u32).to_be_bytes());
    data.extend_from_slice(CONTEXT_BASE_ALLOCATION.as_bytes());
    send_option(s, OPT_SET_META_CONTEXT, &data)?;
    let mut id = None;
    for _ in 0..MAX_OPTION_REPLIES {
        match read_option_reply(s, OPT_SET_META_CONTEXT)? {
            (REP_ACK, _) => return Ok(id),
            (r, _) if refused(r) => return Ok(None),
            // Only the context asked for counts; a server naming others
            // is ignored, as it would be by libnbd.
            (REP_META_CONTEXT, d) if d.len() >= 4 && &d[4..] == CONTEXT_BASE_ALLOCATION.as_bytes() => {
                id = Some(u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
            }
            (REP_META_CONTEXT, d) if d.len() >= 4 => {}
            (REP_META_CONTEXT, d) => return Err(protocol(format!("NBD_REP_META_CONTEXT of {} bytes (an id is 4)", d.len()))),
            _ => {} // other informational replies: ignore, as the protocol allows
        }
    }
    Err(protocol(format!("the server sent more than {MAX_OPTION_REPLIES} replies to NBD_OPT_SET_META_CONTEXT")))
}

/// `NBD_INFO_BLOCK_SIZE` as the client uses it: the minimum a power of
/// two up to 64 KiB, the preferred at least it, the maximum at least the
/// minimum, rounded down to a multiple of it so that pieces cut at the
/// maximum stay aligned. Nonsense is ignored (the defaults stand).
fn sane_block_sizes(minimum: u32, preferred: u32, maximum: u32) -> Option<(u32, u32, u32)> {
    if !minimum.is_power_of_two() || minimum > 64 << 10 || preferred < minimum || maximum < minimum {
        return None;
    }
    Some((minimum, preferred, maximum - maximum % minimum))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::nbd::proto::option_reply;

    /// A server that says `from` (all its answers, canned) and records
    /// what the client sends.
    struct Canned {
        from: std::io::Cursor<Vec<u8>>,
        heard: Vec<u8>,
    }
    impl Read for Canned {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.from.read(buf)
        }
    }
    impl Write for Canned {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.heard.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn greeting() -> Vec<u8> {
        [&NBDMAGIC.to_be_bytes()[..], &IHAVEOPT.to_be_bytes(), &(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes()].concat()
    }
    fn go_replies(sizes: (u32, u32, u32)) -> Vec<u8> {
        let mut info = INFO_EXPORT.to_be_bytes().to_vec();
        info.extend_from_slice(&(1u64 << 20).to_be_bytes());
        info.extend_from_slice(&(TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH).to_be_bytes());
        let mut bs = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
        for v in [sizes.0, sizes.1, sizes.2] {
            bs.extend_from_slice(&v.to_be_bytes());
        }
        [option_reply(OPT_GO, REP_INFO, &bs), option_reply(OPT_GO, REP_INFO, &info), option_reply(OPT_GO, REP_ACK, &[])].concat()
    }
    fn meta(id: u32, name: &str) -> Vec<u8> {
        [&id.to_be_bytes()[..], name.as_bytes()].concat()
    }
    fn run(server: Vec<u8>) -> (io::Result<Export>, Vec<u8>) {
        let mut c = Canned { from: std::io::Cursor::new(server), heard: Vec::new() };
        let e = negotiate(&mut c, "x", Ask::Everything);
        (e, c.heard)
    }
    /// The options the client sent, in order.
    fn options_sent(heard: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = 4; // client flags
        while at + 16 <= heard.len() {
            out.push(u32::from_be_bytes(heard[at + 8..at + 12].try_into().unwrap()));
            at += 16 + u32::from_be_bytes(heard[at + 12..at + 16].try_into().unwrap()) as usize;
        }
        out
    }

    #[test]
    fn extended_headers_then_base_allocation() {
        let server = [
            greeting(),
            option_reply(OPT_EXTENDED_HEADERS, REP_ACK, &[]),
            option_reply(OPT_SET_META_CONTEXT, REP_META_CONTEXT, &meta(9, "base:allocation")),
            option_reply(OPT_SET_META_CONTEXT, REP_ACK, &[]),
            go_replies((512, 4096, 1_000_000)),
        ]
        .concat();
        let (e, heard) = run(server);
        let e = e.unwrap();
        assert_eq!(options_sent(&heard), [OPT_EXTENDED_HEADERS, OPT_SET_META_CONTEXT, OPT_GO]);
        assert_eq!(e.features, Features { replies: Replies::Extended, base_allocation: Some(9) });
        assert_eq!(e.features.describe(), "extended-headers, structured-replies, base:allocation");
        // The maximum rounded down to a multiple of the minimum.
        assert_eq!(e.block_sizes, Some((512, 4096, 1_000_000 - 1_000_000 % 512)));
        assert_eq!(e.size, 1 << 20);
    }

    #[test]
    fn refusals_fall_back_to_structured_then_simple() {
        let server = [
            greeting(),
            option_reply(OPT_EXTENDED_HEADERS, REP_ERR_UNSUP, b"no"),
            option_reply(OPT_STRUCTURED_REPLY, REP_ACK, &[]),
            // Another context named is ignored; base:allocation is missing.
            option_reply(OPT_SET_META_CONTEXT, REP_META_CONTEXT, &meta(3, "qemu:dirty-bitmap:x")),
            option_reply(OPT_SET_META_CONTEXT, REP_ACK, &[]),
            go_replies((4096, 4096, 1 << 20)),
        ]
        .concat();
        let (e, heard) = run(server);
        assert_eq!(options_sent(&heard), [OPT_EXTENDED_HEADERS, OPT_STRUCTURED_REPLY, OPT_SET_META_CONTEXT, OPT_GO]);
        assert_eq!(e.unwrap().features, Features { replies: Replies::Structured, base_allocation: None });

        let server = [
            greeting(),
            option_reply(OPT_EXTENDED_HEADERS, REP_ERR_UNSUP, &[]),
            option_reply(OPT_STRUCTURED_REPLY, REP_ERR_POLICY, &[]),
            go_replies((1, 4096, 0xffff_ffff)),
        ]
        .concat();
        let (e, heard) = run(server);
        assert_eq!(options_sent(&heard), [OPT_EXTENDED_HEADERS, OPT_STRUCTURED_REPLY, OPT_GO], "no meta context without chunks");
        let e = e.unwrap();
        assert_eq!((e.features, e.features.describe()), (Features::default(), "simple-replies".to_string()));
    }

    #[test]
    fn hostile_option_replies_are_named() {
        let wrong_option = [greeting(), option_reply(OPT_GO, REP_ACK, &[])].concat();
        let e = run(wrong_option).0.unwrap_err();
        assert!(e.to_string().contains("a reply to option 7 while option 11 was asked"), "{e}");
        let info_to_extended = [greeting(), option_reply(OPT_EXTENDED_HEADERS, REP_INFO, &[])].concat();
        assert!(run(info_to_extended).0.unwrap_err().to_string().contains("only an ack or an error"));
        let mut huge = option_reply(OPT_EXTENDED_HEADERS, REP_ACK, &[]);
        huge[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(run([greeting(), huge].concat()).0.unwrap_err().to_string().contains("too long"));
        let short_id = [greeting(), option_reply(OPT_EXTENDED_HEADERS, REP_ACK, &[]), option_reply(OPT_SET_META_CONTEXT, REP_META_CONTEXT, &[1])].concat();
        assert!(run(short_id).0.unwrap_err().to_string().contains("an id is 4"));
        // Nonsense block sizes are dropped, never half-used.
        assert_eq!(sane_block_sizes(3, 4096, 1 << 20), None);
        assert_eq!(sane_block_sizes(4096, 512, 1 << 20), None);
        assert_eq!(sane_block_sizes(4096, 4096, 100), None);
        assert_eq!(sane_block_sizes(1, 1, 7), Some((1, 1, 7)));
    }
}
