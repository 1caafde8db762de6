//! `wasmraid monitor`: a leg killed under load gives Fail and DegradedArray
//! within a second, on standard output and to `--program` with md's
//! argument order (EVENT DEVICE [COMPONENT]); `--test` starts with a
//! TestMessage; a stopped daemon gives DeviceDisappeared.

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
