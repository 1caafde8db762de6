//! `--metrics`: Prometheus text format that a real parser (the Python
//! prometheus_client's) reads, whose counters and histograms match
//! `status --json`.

use std::process::Command;
use std::sync::Arc;
use wasmraid_tests::{Served, require, run};

type Samples = Vec<(String, serde_json::Value, f64)>;

/// Serve `layout` over four legs with metrics on a port of its own.
fn serve(layout: &str) -> (Served, u16) {
    require("curl");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let legs: Vec<String> = (0..4).map(|i| dir.path().join(format!("leg{i}")).display().to_string()).collect();
    let extra = ["--layout", layout, "--legs", &legs.join(","), "--create-legs", "16M", "--chunk", "64K", "--metrics", &format!("127.0.0.1:{port}")];
    (Served::spawn(Arc::new(dir), "serve", "dev", extra.iter().map(|x| x.to_string()).collect()), port)
}

/// One scrape, and every sample in it as the parser read it.
fn scrape(port: u16) -> (String, Samples) {
    let (ok, body) = run(Command::new("curl").args(["-sf", &format!("http://127.0.0.1:{port}/metrics")]));
    assert!(ok, "curl: {body}");
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
    (body.clone(), serde_json::from_slice(&parsed.stdout).unwrap())
}

/// The one sample named `name` whose labels include all of `want`.
fn sample(samples: &Samples, body: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    samples.iter().find(|(n, l, _)| n == name && want.iter().all(|(k, v)| l[*k] == *v)).unwrap_or_else(|| panic!("no {name} {want:?} in\n{body}")).2
}

/// A histogram of the scrape against its `latency::Snapshot` in status:
/// the same count, sum and (cumulative) buckets.
fn histogram_matches(samples: &Samples, body: &str, name: &str, want: &[(&str, &str)], snapshot: &serde_json::Value) {
    let count = snapshot["count"].as_u64().unwrap();
    assert_eq!(sample(samples, body, &format!("{name}_count"), want), count as f64, "{name} {want:?}");
    let sum = snapshot["sum_ns"].as_u64().unwrap() as f64 / 1e9;
    let got = sample(samples, body, &format!("{name}_sum"), want);
    assert!((got - sum).abs() <= sum * 1e-9, "{name}_sum {want:?}: {got} against {sum}");
    let counts: Vec<u64> = snapshot["counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
    let bounds: Vec<f64> = snapshot["le_us"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as f64 / 1e6).collect();
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(n, l, _)| *n == format!("{name}_bucket") && want.iter().all(|(k, v)| l[*k] == *v))
        .map(|(_, l, v)| (l["le"].as_str().unwrap().parse::<f64>().unwrap(), *v))
        .collect();
    assert_eq!(buckets.len(), bounds.len() + 1, "{name} {want:?}: every bucket and +Inf");
    let mut cumulative = 0;
    for (i, (le, v)) in buckets.iter().enumerate() {
        cumulative += counts[i];
        match bounds.get(i) {
            Some(b) => assert!((le - b).abs() <= b * 1e-9, "{name} bucket {i}: le {le} against {b}"),
            None => assert!(le.is_infinite(), "{name}: the last bucket is +Inf"),
        }
        assert_eq!(*v, cumulative as f64, "{name} {want:?} bucket le={le}");
    }
}

#[test]
fn metrics_parse_and_match_status() {
    let (s, port) = serve("raid5");
    let (ok, text) = run(Command::new("qemu-io").args(["-f", "raw", "-c", "write -P 7 0 3M", "-c", "read -P 7 0 3M"]).arg(s.uri()));
    assert!(ok, "{text}");
    let out = s.ctl(&["leg", "fail", &s.name, "1"]);
    assert!(out.status.success());
    let (body, samples) = scrape(port);
    let status = s.status();
    let sample = |name: &str, leg: Option<&str>| -> f64 {
        let mut want = vec![("array", "dev")];
        want.extend(leg.map(|l| ("leg", l)));
        sample(&samples, &body, name, &want)
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
        for op in ["read", "write"] {
            let want = [("array", "dev"), ("leg", index.as_str()), ("op", op), ("remote", "false")];
            histogram_matches(&samples, &body, "wasmraid_leg_latency_seconds", &want, &leg["latency"][op]);
        }
    }
    // Every write of the array was timed (reads may have gone out as
    // extents, spliced, and are counted but not timed).
    assert_eq!(array["latency"]["write"]["count"], array["counters"]["writes"]);
    let leg_writes: u64 = array["legs"].as_array().unwrap().iter().map(|l| l["latency"]["write"]["count"].as_u64().unwrap()).sum();
    assert!(leg_writes > 0, "leg writes timed");
    for op in ["read", "write"] {
        histogram_matches(&samples, &body, "wasmraid_array_latency_seconds", &[("array", "dev"), ("op", op)], &array["latency"][op]);
    }
    // The proof's guest calls; raid5 is periodic: no map cache.
    let calls = array["guest_calls"].as_u64().unwrap();
    assert!(calls > 0, "the proof called the guest");
    assert_eq!(sample("wasmraid_array_guest_calls_total", None), calls as f64);
    assert!(array["map_cache"].is_null());
    assert!(!body.contains("wasmraid_array_map_cache_lookups_total{"), "{body}");
    assert_eq!(sample("wasmraid_array_legs_failed", None), 1.0);
    let (ok, text) = run(Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://127.0.0.1:{port}/other")]));
    assert!(ok && text.trim() == "404", "{text}");
}

#[test]
fn an_aperiodic_layouts_guest_calls_and_map_cache_match_status() {
    // linear places stripe by stripe (aperiodic): its map is a cache of
    // blocks of stripes refilled by guest calls.
    let (s, port) = serve("linear");
    let (ok, text) = run(Command::new("qemu-io").args(["-f", "raw", "-c", "write -P 5 0 40M", "-c", "read -P 5 0 40M"]).arg(s.uri()));
    assert!(ok, "{text}");
    let (body, samples) = scrape(port);
    let status = s.status();
    let array = &status["arrays"][0];
    let (hits, misses) = (array["map_cache"]["hits"].as_u64().unwrap(), array["map_cache"]["misses"].as_u64().unwrap());
    assert!(hits > 0 && misses > 0, "{}", array["map_cache"]);
    assert_eq!(sample(&samples, &body, "wasmraid_array_map_cache_lookups_total", &[("array", "dev"), ("result", "hit")]), hits as f64);
    assert_eq!(sample(&samples, &body, "wasmraid_array_map_cache_lookups_total", &[("array", "dev"), ("result", "miss")]), misses as f64);
    let calls = array["guest_calls"].as_u64().unwrap();
    assert!(calls >= misses, "a miss is a guest call: {calls} calls, {misses} misses");
    assert_eq!(sample(&samples, &body, "wasmraid_array_guest_calls_total", &[("array", "dev")]), calls as f64);
}
