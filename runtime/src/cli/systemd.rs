//! systemd's readiness protocol (`Type=notify`): READY=1 once the device is
//! served, STOPPING=1 when it stops, and WATCHDOG=1 pings from the serving
//! runtime at half the unit's `WatchdogSec`, so a daemon whose runtime
//! stalls is restarted. Nothing happens without `$NOTIFY_SOCKET`.

use sd_notify::NotifyState;
use std::time::Duration;

/// The device is live: say so, with a status line for `systemctl status`.
pub fn ready(status: &str) {
    if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)]) {
        tracing::warn!("cannot tell systemd the device is ready: {e}");
    }
}

pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// The watchdog interval the unit asks for, as sd_watchdog_enabled(3)
/// reads it: `$WATCHDOG_USEC`, for this process unless `$WATCHDOG_PID`
/// names another (sd-notify's own reader also refuses an unset PID).
fn watchdog_usec() -> Option<u64> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok().filter(|&u| u > 0)?;
    match std::env::var("WATCHDOG_PID").ok().map(|p| p.parse::<u32>()) {
        Some(Ok(pid)) if pid != std::process::id() => None,
        Some(Err(_)) => None,
        _ => Some(usec),
    }
}

/// Ping the watchdog from the current tokio runtime while it runs, when
/// the unit asks for one.
pub fn start_watchdog() {
    let Some(usec) = watchdog_usec() else { return };
    let every = Duration::from_micros(usec / 2).max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
        }
    });
}
