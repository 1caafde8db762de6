//! `--log-format json`: every line the daemon writes to standard error is
//! one JSON object with tracing's level and message.

use std::sync::Arc;
use wasmraid_tests::Served;

#[test]
fn json_logs_are_one_object_a_line() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let legs: Vec<String> = (0..3).map(|i| dir.path().join(format!("leg{i}")).display().to_string()).collect();
    let extra = ["--layout", "raid5", "--legs", &legs.join(","), "--create-legs", "8M", "--log-format", "json"];
    let s = Served::spawn(dir, "serve", "dev", extra.iter().map(|x| x.to_string()).collect());
    let out = s.ctl(&["stop", &s.name]);
    assert!(out.status.success());
    assert!(s.log_says("stop requested"), "{}", s.log());
    let log = s.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() >= 2, "the daemon logged at info: {log}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.is_object() && v["level"].is_string() && v["fields"]["message"].is_string(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("\"INFO\"")), "{log}");
}

#[test]
fn a_failing_command_says_why_in_json_too() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, env) in [(Some("json"), None), (None, Some("json"))] {
        let mut cmd = std::process::Command::new(wasmraid_tests::wasmraid_bin());
        if let Some(f) = flag {
            cmd.args(["--log-format", f]);
        }
        if let Some(e) = env {
            cmd.env("WASMRAID_LOG_FORMAT", e);
        }
        let out = cmd.args(["status", "nosuch", "--run-dir"]).arg(dir.path()).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert!(!lines.is_empty(), "the failure is said");
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert_eq!(v["level"], "ERROR", "{line}");
        }
    }
    let out = std::process::Command::new(wasmraid_tests::wasmraid_bin()).env("WASMRAID_LOG_FORMAT", "xml").arg("status").arg("x").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown format is refused");
}
