//! The CLI side of the control socket.

use super::{Request, Response};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {path}: {error} (is `wasmraid serve` running for this device?)")]
    Connect { path: String, error: std::io::Error },
    #[error("talking to {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("unreadable answer from {path}: {error}")]
    Decode { path: String, error: serde_json::Error },
}

/// Send one request and wait for its answer (at most `timeout`).
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
    send(socket, request, timeout).map(|(response, _)| response)
}

/// Ask the server to stop, then wait (at most `timeout`) until it has: it
/// closes this connection only as it exits, after flushing. Returns the
/// answer and whether the server was seen to go.
pub fn stop(socket: &Path, timeout: Duration) -> Result<(Response, bool), ClientError> {
    let started = std::time::Instant::now();
    let (response, mut stream) = send(socket, &Request::Stop, timeout)?;
    if !response.ok {
        return Ok((response, false));
    }
    let mut rest = [0u8; 512];
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() || stream.get_ref().set_read_timeout(Some(left)).is_err() {
            return Ok((response, false));
        }
        match stream.read(&mut rest) {
            Ok(0) => return Ok((response, true)),
            Ok(_) => {}
            // A reset is the server going too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok((response, true)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Ok((response, false)),
        }
    }
}

/// Subscribe to the server's events: the stream to read them from, one
/// JSON line (`events::Event`) each, until the server goes.
pub fn subscribe(socket: &Path, test: bool) -> Result<(Response, BufReader<UnixStream>), ClientError> {
    let (response, reader) = send(socket, &Request::Subscribe { test }, Duration::from_secs(10))?;
    // Events come when they come.
    let _ = reader.get_ref().set_read_timeout(None);
    Ok((response, reader))
}

fn send(socket: &Path, request: &Request, timeout: Duration) -> Result<(Response, BufReader<UnixStream>), ClientError> {
    let path = socket.display().to_string();
    let io = |error| ClientError::Io { path: path.clone(), error };
    let mut stream = UnixStream::connect(socket).map_err(|error| ClientError::Connect { path: path.clone(), error })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_string(request).map_err(|error| ClientError::Decode { path: path.clone(), error })?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer).map_err(io)?;
    let response = serde_json::from_str(&answer).map_err(|error| ClientError::Decode { path, error })?;
    Ok((response, reader))
}
