//! The CLI side of the control socket.

use super::{Request, Response};
use std::io::{BufRead, BufReader, Write};
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
    let path = socket.display().to_string();
    let io = |error| ClientError::Io { path: path.clone(), error };
    let mut stream = UnixStream::connect(socket).map_err(|error| ClientError::Connect { path: path.clone(), error })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_string(request).map_err(|error| ClientError::Decode { path: path.clone(), error })?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(&answer).map_err(|error| ClientError::Decode { path, error })
}
