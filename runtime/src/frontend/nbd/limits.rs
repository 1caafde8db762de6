//! What one NBD server may spend on its clients. Without bounds, idle or
//! stalled clients cost threads and slots until the daemon stalls; with
//! them, a client past a bound is refused or closed with a log line, and
//! the clients within them are served.

use std::time::Duration;

/// The bounds of an NBD server (`--nbd-max-connections`,
/// `--nbd-handshake-timeout`, `--nbd-threads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NbdLimits {
    /// Connections at once, in handshake or transmission; one more is
    /// accepted and closed at once (never queued).
    pub max_connections: u32,
    /// A client must finish its handshake within this, or is closed.
    pub handshake_timeout: Duration,
    /// Worker threads serving requests across every connection (an idle
    /// connection holds none; a busy one up to `requests_per_connection`).
    pub io_threads: usize,
    /// Requests one connection may have in flight; the next one is not read
    /// off its socket until one is answered.
    pub requests_per_connection: u32,
    /// A connection whose client takes no reply bytes for this long is
    /// closed (its replies would otherwise be held forever).
    pub reply_stall: Duration,
}

impl Default for NbdLimits {
    fn default() -> Self {
        NbdLimits {
            // An idle connection costs a task, no thread and no buffer.
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            io_threads: 64,
            // nbdkit serves 16 requests per connection at once.
            requests_per_connection: 16,
            reply_stall: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LimitsError {
    #[error("--nbd-max-connections must be between 1 and {max}, not {value}")]
    MaxConnections { value: u64, max: u32 },
    #[error("--nbd-handshake-timeout must be between 0.1 and 3600 seconds, not {0}")]
    HandshakeTimeout(f64),
    #[error("--nbd-threads must be between 1 and 1024, not {0}")]
    Threads(usize),
}

/// Highest connection limit: well under tokio's semaphore maximum.
const MAX_CONNECTIONS: u32 = 1 << 20;

impl NbdLimits {
    /// The limits the command line asks for, checked.
    pub fn new(max_connections: u64, handshake_timeout_secs: f64, io_threads: usize) -> Result<NbdLimits, LimitsError> {
        let max_connections = u32::try_from(max_connections)
            .ok()
            .filter(|n| (1..=MAX_CONNECTIONS).contains(n))
            .ok_or(LimitsError::MaxConnections { value: max_connections, max: MAX_CONNECTIONS })?;
        if !(0.1..=3600.0).contains(&handshake_timeout_secs) {
            return Err(LimitsError::HandshakeTimeout(handshake_timeout_secs));
        }
        if !(1..=1024).contains(&io_threads) {
            return Err(LimitsError::Threads(io_threads));
        }
        Ok(NbdLimits { max_connections, handshake_timeout: Duration::from_secs_f64(handshake_timeout_secs), io_threads, ..NbdLimits::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        assert!(NbdLimits::new(1, 0.5, 1).is_ok());
        assert_eq!(NbdLimits::new(0, 10.0, 4), Err(LimitsError::MaxConnections { value: 0, max: MAX_CONNECTIONS }));
        assert!(NbdLimits::new(u64::MAX, 10.0, 4).is_err());
        assert_eq!(NbdLimits::new(10, 0.0, 4), Err(LimitsError::HandshakeTimeout(0.0)));
        assert!(NbdLimits::new(10, f64::NAN, 4).is_err());
        assert_eq!(NbdLimits::new(10, 1.0, 0), Err(LimitsError::Threads(0)));
    }
}
