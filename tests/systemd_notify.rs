//! systemd's readiness protocol on its own (the VM bed has no systemd): a
//! `wasmraid serve` started with `$NOTIFY_SOCKET` says READY=1 once its
//! export is there, pings WATCHDOG=1 at half `$WATCHDOG_USEC`, and says
//! STOPPING=1 when stopped.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use wasmraid_tests::Served;

/// The next datagram, or None after `limit`.
fn next(sock: &UnixDatagram, limit: Duration) -> Option<String> {
    sock.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    sock.recv(&mut buf).ok().map(|n| String::from_utf8_lossy(&buf[..n]).to_string())
}

#[test]
fn serve_says_ready_pings_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    // SAFETY: the only test in this binary; the variables are set before
    // any thread of ours reads the environment, and the child inherits them.
    unsafe {
        std::env::set_var("NOTIFY_SOCKET", &path);
        std::env::set_var("WATCHDOG_USEC", "200000");
    }
    let s = Served::layout("raid1", 2, "8M", "", "64K");
    let ready = next(&sock, Duration::from_secs(20)).expect("a READY=1 message");
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains("STATUS=serving dev"), "{ready}");
    assert!(s.socket.exists(), "ready only once the export is there");
    // Pings at half of 200 ms.
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(700) {
        if next(&sock, Duration::from_millis(500)).is_some_and(|m| m.contains("WATCHDOG=1")) {
            pings += 1;
        }
    }
    assert!(pings >= 3, "{pings} watchdog pings in 0.7 s");
    let out = s.ctl(&["stop", &s.name]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut said = Vec::new();
    while let Some(m) = next(&sock, Duration::from_secs(5)) {
        let stopping = m.contains("STOPPING=1");
        said.push(m);
        if stopping {
            return;
        }
    }
    panic!("no STOPPING=1 after stop: {said:?}");
}
