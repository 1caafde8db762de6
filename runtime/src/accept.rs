//! Accept loops that survive abuse. An accept error (out of file
//! descriptors, out of memory) used to end the NBD listener for good, and
//! the control listener retried it in a tight loop; both now log it and
//! wait, doubling the pause up to a second, so the descriptors can come
//! back and the listener goes on. What they log about refused clients is
//! rate-limited, so a flood of clients cannot flood the log.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// The pause after failed accepts.
pub struct AcceptBackoff {
    what: String,
    pause: Duration,
    failures: u64,
}

impl AcceptBackoff {
    pub fn new(what: impl Into<String>) -> AcceptBackoff {
        AcceptBackoff { what: what.into(), pause: FIRST_PAUSE, failures: 0 }
    }

    /// Log the error and wait before the next accept. At most about one
    /// line a second: the pause reaches a second after seven failures.
    pub async fn failed(&mut self, error: &std::io::Error) {
        self.failures += 1;
        tracing::warn!("{}: accept failed ({} in a row): {error}; retrying in {:?}", self.what, self.failures, self.pause);
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(LONGEST_PAUSE);
    }

    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::warn!("{}: accepting again after {} failed accept(s)", self.what, self.failures);
            self.failures = 0;
            self.pause = FIRST_PAUSE;
        }
    }
}

/// Lets a message through at most once per period, counting the others.
pub struct LogThrottle {
    period: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogThrottle {
    pub fn new(period: Duration) -> LogThrottle {
        LogThrottle { period, last: Mutex::new(None), suppressed: AtomicU64::new(0) }
    }

    /// Some(number of messages held back since the last one) when this one
    /// may be logged.
    pub fn allow(&self) -> Option<u64> {
        let mut last = self.last.lock();
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.period) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_counts_what_it_holds_back() {
        let t = LogThrottle::new(Duration::from_secs(3600));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        *t.last.lock() = Some(Instant::now() - Duration::from_secs(7200));
        assert_eq!(t.allow(), Some(2));
    }

    #[tokio::test]
    async fn the_pause_doubles_and_resets() {
        let mut b = AcceptBackoff::new("test");
        let e = std::io::Error::from_raw_os_error(libc::EMFILE);
        for _ in 0..3 {
            b.failed(&e).await;
        }
        assert_eq!(b.pause, FIRST_PAUSE * 8);
        b.succeeded();
        assert_eq!((b.pause, b.failures), (FIRST_PAUSE, 0));
    }
}
