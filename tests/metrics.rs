//! `--metrics`: Prometheus text format that a real parser (the Python
//! prometheus_client's) reads, whose counters match `status --json`.

use std::process::Command;
use std::sync::Arc;
use wasmraid_tests::{Served, require, run};

#[test]
fn metrics_parse_and_match_status() {
    require("curl");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let legs: Vec<String> = (0..4).map(|i| dir.path().join(format!("leg{i}")).display().to_string()).collect();
    let extra = ["--layout", "raid5", "--legs", &legs.join(","), "--create-legs", "16M", "--chunk", "64K", "--metrics", &format!("127.0.0.1:{port}")];
    let s = Served::spawn(Arc::new(dir), "serve", "dev", extra.iter().map(|x| x.to_string()).collect());
    let (ok, text) = run(Command::new("qemu-io").args(["-f", "raw", "-c", "write -P 7 0 3M", "-c", "read -P 7 0 3M"]).arg(s.uri()));
    assert!(ok, "{text}");
    let out = s.ctl(&["leg", "fail", &s.name, "1"]);
    assert!(out.status.success());
    let (ok, body) = run(Command::new("curl").args(["-sf", &format!("http://127.0.0.1:{port}/metrics")]));
    assert!(ok, "curl: {body}");
    let status = s.status();
    // Debian's python3 has the parser (python3-prometheus-client); print
    // every sample as JSON.
    let script = "import sys, json\nfrom prometheus_client.parser import text_string_to_metric_families\nout = []\nfor f in text_string_to_metric_families(sys.stdin.read()):\n    for s in f.samples:\n        out.append([s.name, s.labels, s.value])\nprint(json.dumps(out))\n";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let parsed = child.wait_with_output().unwrap();
    assert!(parsed.status.success(), "the parser refused it: {}\n{body}", String::from_utf8_lossy(&parsed.stderr));
    let samples: Vec<(String, serde_json::Value, f64)> = serde_json::from_slice(&parsed.stdout).unwrap();
    let sample = |name: &str, leg: Option<&str>| -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l["array"] == "dev" && leg.is_none_or(|g| l["leg"] == g))
            .unwrap_or_else(|| panic!("no {name} {leg:?} in\n{body}"))
            .2
    };
    let array = &status["arrays"][0];
    for (metric, key) in
        [("wasmraid_array_reads_total", "reads"), ("wasmraid_array_writes_total", "writes"), ("wasmraid_array_written_bytes_total", "written_bytes")]
    {
        let want = array["counters"][key].as_u64().unwrap() as f64;
        assert!(want > 0.0, "{key} counted");
        // Status is read after the scrape: nothing ran in between.
        assert_eq!(sample(metric, None), want, "{metric} against status's {key}");
    }
    for leg in array["legs"].as_array().unwrap() {
        let index = leg["index"].to_string();
        assert_eq!(sample("wasmraid_leg_writes_total", Some(&index)), leg["writes"].as_u64().unwrap() as f64);
        let up = if leg["health_char"] == "A" { 1.0 } else { 0.0 };
        assert_eq!(sample("wasmraid_leg_up", Some(&index)), up, "leg {index}");
    }
    assert_eq!(sample("wasmraid_array_legs_failed", None), 1.0);
    let (ok, text) = run(Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://127.0.0.1:{port}/other")]));
    assert!(ok && text.trim() == "404", "{text}");
}
