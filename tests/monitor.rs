//! `wasmraid monitor`: a leg killed under load gives Fail and DegradedArray
//! within a second, on standard output and to `--program` with md's
//! argument order (EVENT DEVICE [COMPONENT]); `--test` starts with a
//! TestMessage; a stopped daemon gives DeviceDisappeared; a refused
//! reload gives ReloadRefused with its reason, a reload LayoutReloaded.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wasmraid_tests::{Served, wasmraid_bin};

#[test]
fn a_leg_killed_under_load_is_reported_within_a_second() {
    let s = Served::layout("raid5", 4, "32M", "", "64K");
    let heard = s.dir.path().join("program.log");
    let program = s.dir.path().join("program.sh");
    std::fs::write(&program, format!("#!/bin/sh\necho \"$@\" >> {}\n", heard.display())).unwrap();
    std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut monitor = Command::new(wasmraid_bin())
        .args(["monitor", &s.name, "--json", "--test", "--program"])
        .arg(&program)
        .arg("--run-dir")
        .arg(&s.run_dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("wasmraid monitor");
    let (tx, rx) = mpsc::channel::<(Instant, serde_json::Value)>();
    let stdout = monitor.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send((Instant::now(), v));
            }
        }
    });
    let (_, first) = rx.recv_timeout(Duration::from_secs(10)).expect("a TestMessage");
    assert_eq!(first["event"], "TestMessage");
    // Data, then load: reads over the whole array, round after round.
    let uri = s.uri();
    let wrote = Command::new("qemu-io").args(["-f", "raw", "-c", "write -P 3 0 90M"]).arg(&uri).output().unwrap();
    assert!(wrote.status.success());
    let load = std::thread::spawn(move || {
        for _ in 0..10 {
            let _ = Command::new("qemu-io").args(["-f", "raw", "-c", "read -P 3 0 90M"]).arg(&uri).output();
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    // Kill leg 2: its file loses everything behind the server's back, and
    // the next read of it fails.
    let leg = s.dir.path().join("leg2");
    std::fs::OpenOptions::new().write(true).open(&leg).unwrap().set_len(0).unwrap();
    let killed = Instant::now();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (at, e) = rx.recv_timeout(Duration::from_secs(10)).expect("Fail and DegradedArray");
        let name = e["event"].as_str().unwrap().to_string();
        if name == "Fail" || name == "DegradedArray" {
            assert!(at - killed < Duration::from_secs(1), "{name} came {:?} after the leg died", at - killed);
            if name == "Fail" {
                assert_eq!(e["component"].as_str(), Some(leg.display().to_string().as_str()));
            }
            seen.push(name);
        }
    }
    assert_eq!(seen, ["Fail", "DegradedArray"]);
    let out = s.ctl(&["stop", &s.name]);
    assert!(out.status.success());
    let disappeared = loop {
        let (_, e) = rx.recv_timeout(Duration::from_secs(20)).expect("DeviceDisappeared");
        if e["event"] == "DeviceDisappeared" {
            break e;
        }
    };
    assert_eq!(disappeared["device"], "dev");
    let _ = monitor.wait();
    let _ = load.join();
    // --program heard them too, with md's argument order.
    let lines = std::fs::read_to_string(&heard).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert!(lines.contains(&"TestMessage dev"), "{lines:?}");
    assert!(lines.contains(&format!("Fail dev {}", leg.display()).as_str()), "{lines:?}");
    assert!(lines.contains(&"DegradedArray dev"), "{lines:?}");
    assert!(lines.contains(&"DeviceDisappeared dev"), "{lines:?}");
}

#[test]
fn a_refused_reload_is_heard_and_a_reload_too() {
    // raid5 with parity-n places chunks as raid4 does; left-symmetric
    // does not (they differ from stripe 1).
    let s = Served::layout("raid5", 4, "16M", "parity-n", "64K");
    let mut monitor = Command::new(wasmraid_bin())
        .args(["monitor", &s.name, "--json", "--test", "--run-dir"])
        .arg(&s.run_dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("wasmraid monitor");
    let (tx, rx) = mpsc::channel::<serde_json::Value>();
    let stdout = monitor.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("a TestMessage");
    assert_eq!(first["event"], "TestMessage", "subscribed");
    let next = |name: &str| loop {
        let e = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("no {name}"));
        if e["event"] == name {
            break e;
        }
    };
    let out = s.ctl(&["reload", &s.name, "raid5", "--args", "left-symmetric"]);
    assert!(!out.status.success(), "a different layout is refused");
    let refused = next("ReloadRefused");
    assert_eq!(refused["device"], "dev");
    assert_eq!(refused["array"], "dev");
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("stripe 1 differs") && !detail.contains('\n') && detail.len() <= 400, "{detail}");
    let out = s.ctl(&["reload", &s.name, "raid4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reloaded = next("LayoutReloaded");
    assert!(reloaded["detail"].as_str().unwrap_or_default().starts_with("raid4 "), "{reloaded}");
    let _ = monitor.kill();
    let _ = monitor.wait();
}
