//! `wasmraid status`, `leg fail`, `reload`, `stop`: clients of a serving
//! process's control socket.

use anyhow::bail;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use wasmraid::control::{Request, Response, client, socket_path};
use wasmraid::units::format_size;

pub fn call(run_dir: &Option<PathBuf>, name: &str, request: Request, timeout: Duration) -> anyhow::Result<Response> {
    let dir = run_dir.clone().unwrap_or_else(wasmraid::control::default_run_dir);
    let response = client::call(&socket_path(&dir, name), &request, timeout)?;
    if !response.ok {
        bail!("{name}: {}", response.error.unwrap_or_else(|| "request failed".into()));
    }
    Ok(response)
}

/// `wasmraid stop`: ask, then wait until the server has flushed and exited.
pub fn stop(run_dir: &Option<PathBuf>, name: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let dir = run_dir.clone().unwrap_or_else(wasmraid::control::default_run_dir);
    let (response, gone) = client::stop(&socket_path(&dir, name), timeout)?;
    if !response.ok {
        bail!("{name}: {}", response.error.unwrap_or_else(|| "request failed".into()));
    }
    if gone {
        println!("{name}: stopped");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{name}: stopping (still running after {} s)", timeout.as_secs());
        Ok(ExitCode::from(1))
    }
}

pub fn status(run_dir: &Option<PathBuf>, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let r = call(run_dir, name, Request::Status, Duration::from_secs(10))?.result;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let listening: Vec<&str> = r["listening"].as_array().map(|v| v.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
    println!("{}: {}, {}", r["name"].as_str().unwrap_or(name), format_size(r["size_bytes"].as_u64().unwrap_or(0)), listening.join(", "));
    if let Some(n) = r["nbd"].as_object() {
        let clients = n["clients"].as_array().map(Vec::as_slice).unwrap_or_default();
        let tls = match n["tls"].as_str() {
            Some("off") | None => "plaintext".to_string(),
            Some(mode) => format!(
                "TLS {mode}{} ({})",
                if n["tls_verify_peer"].as_bool() == Some(true) { ", client certificates verified" } else { "" },
                n["tls_certificates"].as_str().unwrap_or("")
            ),
        };
        println!("nbd: {tls}; {} client(s)", clients.len());
        for c in clients {
            println!("  client {} on {}: {}", c["peer"].as_str().unwrap_or("?"), c["export"].as_str().unwrap_or("?"), tls_text(&c["tls"]));
        }
    }
    if let Some(u) = r["ublk"].as_object() {
        println!(
            "ublk {}: {}, {} queue(s) of depth {}, {}{}",
            u["device"].as_str().unwrap_or(""),
            u["state"].as_str().unwrap_or("state unknown"),
            u["queues"],
            u["depth"],
            if u["zero_copy"].as_bool() == Some(true) { "zero copy reads" } else { "user copy" },
            if u["recovered"].as_bool() == Some(true) { ", recovered" } else { "" }
        );
        let g = &u["gathered"];
        println!(
            "  gathered: {} writes written as {}, {} degraded reads served by {} rebuilds",
            g["writes"].as_u64().unwrap_or(0),
            g["write_groups"].as_u64().unwrap_or(0),
            g["reads"].as_u64().unwrap_or(0),
            g["rebuilds"].as_u64().unwrap_or(0)
        );
    }
    if let Some(x) = r["reshape"].as_object() {
        print_reshape(x);
    }
    for a in r["arrays"].as_array().into_iter().flatten() {
        print_array(a, "");
    }
    Ok(ExitCode::SUCCESS)
}

/// A served reshape, as /proc/mdstat shows one: where, how fast, and from
/// what to what.
fn print_reshape(x: &serde_json::Map<String, serde_json::Value>) {
    let n = |k: &str| x.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let s = |k: &str| x.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let rate = match n("rate") {
        0 => "unlimited".to_string(),
        r => format!("{}/s", format_size(r)),
    };
    println!(
        "reshape {} of {}: {} over {} legs -> {} over {} legs, {:.1}% ({} of {}), speed {}/s, rate {rate}, legs {}",
        s("state"),
        s("array"),
        s("from"),
        n("legs_before"),
        s("to"),
        n("legs_after"),
        x.get("progress").and_then(|v| v.as_f64()).unwrap_or(0.0) * 100.0,
        format_size(n("position")),
        format_size(n("size_after")),
        format_size(n("speed_bytes_per_second")),
        s("health")
    );
    if let Some(e) = x.get("error").and_then(|v| v.as_str()) {
        println!("  stopped: {e}");
    }
    if let Some(g) = x.get("grows").and_then(|v| v.as_str()) {
        println!("  grows {} -> {}: {g}", format_size(n("size_before")), format_size(n("size_after")));
    }
}

/// A connection's TLS session as `status --json` has it (`tls::Session`),
/// in words: "TLSv1.3 ... with CN=...", or plaintext.
fn tls_text(session: &serde_json::Value) -> String {
    match session.as_object() {
        Some(t) => format!("{} with {}", t["protocol"].as_str().unwrap_or("TLS"), t["peer"].as_str().unwrap_or("an unauthenticated peer")),
        None => "plaintext".to_string(),
    }
}

/// One array of `status`, with the arrays inside its legs below it.
fn print_array(a: &serde_json::Value, indent: &str) {
    let sha = a["component_sha256"].as_str().unwrap_or("");
    println!(
        "{indent}array {}: {} (sha256 {}), args {:?}, chunk {}, {} legs, survives {} failed leg(s)",
        a["name"].as_str().unwrap_or(""),
        a["layout"].as_str().unwrap_or(""),
        &sha[..sha.len().min(16)],
        a["args"].as_str().unwrap_or(""),
        format_size(a["chunk_bytes"].as_u64().unwrap_or(0)),
        a["legs"].as_array().map_or(0, Vec::len),
        a["fault_tolerance"]
    );
    println!("{indent}  dm: {}", a["dm_status"].as_str().unwrap_or(""));
    if let Some(m) = a["metadata"].as_object() {
        println!("{indent}  uuid {} generation {}; bitmap {} regions: {}", m["uuid"].as_str().unwrap_or(""), m["generation"], m["regions"], m["bitmap"]);
    }
    if let Some(last) = a["sync_last"].as_str() {
        println!("{indent}  last background action: {last}");
    }
    for l in a["legs"].as_array().into_iter().flatten() {
        let mut err = l["last_error"].as_str().map(|e| format!("  ({e})")).unwrap_or_default();
        if let Some(o) = l["spare"].as_u64() {
            err.push_str(&format!("  [rebuilt into distributed spare {o}]"));
        }
        if let Some(link) = l["link"].as_object() {
            if link["connected"].as_bool() == Some(true) {
                err.push_str(&format!(
                    "  [link up, {} ({}), {} us, {} reconnect(s)]",
                    tls_text(&link["tls"]),
                    link["features"].as_str().unwrap_or("?"),
                    link["latency_us"],
                    link["reconnects"]
                ));
            } else {
                err.push_str(&format!("  [link DOWN for {} s: {}]", link["down_for_secs"], link["last_error"].as_str().unwrap_or("")));
            }
        }
        println!(
            "{indent}  leg {} {} {}  reads {} writes {} errors {}{err}",
            l["index"],
            l["health_char"].as_str().unwrap_or("?"),
            l["device"].as_str().unwrap_or(""),
            l["reads"],
            l["writes"],
            l["errors"]
        );
        // A leg that is a table of its own: its arrays, one level in.
        for nested in l["arrays"].as_array().into_iter().flatten() {
            print_array(nested, &format!("{indent}    "));
        }
    }
    let c = &a["counters"];
    println!(
        "{indent}  io: {} reads ({}), {} writes ({}); degraded reads {}; rmw {}, rcw {}, full-stripe {}; flushes {}; errors {}",
        c["reads"],
        format_size(c["read_bytes"].as_u64().unwrap_or(0)),
        c["writes"],
        format_size(c["written_bytes"].as_u64().unwrap_or(0)),
        c["degraded_reads"],
        c["read_modify_writes"],
        c["reconstruct_writes"],
        c["full_stripe_writes"],
        c["flushes"],
        c["errors"]
    );
}

/// A path the server (another process, another directory) can open.
pub fn absolute(p: &std::path::Path) -> anyhow::Result<String> {
    Ok(std::fs::canonicalize(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?.display().to_string())
}

/// Wait for the array's background action to end, with a progress bar.
fn wait_for_sync(run_dir: &Option<PathBuf>, name: &str, array: Option<&str>) -> anyhow::Result<serde_json::Value> {
    let bar = indicatif::ProgressBar::new(1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {percent:>3}% {elapsed_precise} (eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        let status = call(run_dir, name, Request::Status, Duration::from_secs(10))?.result;
        let arrays = status["arrays"].as_array().cloned().unwrap_or_default();
        let a = arrays.iter().find(|a| array.is_none_or(|n| a["name"] == n)).cloned().unwrap_or_default();
        let action = a["sync_action"].as_str().unwrap_or("idle").to_string();
        if action == "idle" {
            bar.finish_and_clear();
            return Ok(a);
        }
        let ratio = a["sync_ratio"].as_str().unwrap_or("0/1");
        let (done, total) = ratio.split_once('/').map(|(d, t)| (d.parse::<f64>().unwrap_or(0.0), t.parse::<f64>().unwrap_or(1.0))).unwrap_or((0.0, 1.0));
        bar.set_message(action);
        bar.set_position((done / total.max(1.0) * 1000.0) as u64);
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn sync(run_dir: &Option<PathBuf>, name: &str, array: Option<String>, action: &str, wait: bool) -> anyhow::Result<ExitCode> {
    call(run_dir, name, Request::Sync { array: array.clone(), action: action.into() }, Duration::from_secs(10))?;
    if !wait {
        println!("{name}: {action} started (see `wasmraid status {name}`)");
        return Ok(ExitCode::SUCCESS);
    }
    let a = wait_for_sync(run_dir, name, array.as_deref())?;
    println!("{name}: {action} done: mismatch_cnt {}; {}", a["mismatch_cnt"], a["sync_last"].as_str().unwrap_or(""));
    Ok(ExitCode::SUCCESS)
}

pub fn leg(run_dir: &Option<PathBuf>, name: &str, request: Request, wait: bool) -> anyhow::Result<ExitCode> {
    let array = match &request {
        Request::LegAdd { array, .. } | Request::LegReplace { array, .. } | Request::LegReadd { array, .. } | Request::LegRemove { array, .. } => array.clone(),
        _ => None,
    };
    let r = call(run_dir, name, request, Duration::from_secs(60))?.result;
    println!("{name}: {}", serde_json::to_string(&r)?);
    if wait {
        let a = wait_for_sync(run_dir, name, array.as_deref())?;
        println!("{name}: health {}; {}", a["health"].as_str().unwrap_or("?"), a["sync_last"].as_str().unwrap_or(""));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tune(run_dir: &Option<PathBuf>, name: &str, array: Option<String>, rate: Option<String>, policy: Option<String>) -> anyhow::Result<ExitCode> {
    if let Some(rate) = rate {
        let bytes_per_second = wasmraid::units::parse_size(&rate)?;
        call(run_dir, name, Request::SyncRate { array: array.clone(), bytes_per_second }, Duration::from_secs(10))?;
        println!("{name}: sync rate {}", if bytes_per_second == 0 { "unlimited".into() } else { format!("{}/s", format_size(bytes_per_second)) });
    }
    if let Some(policy) = policy {
        call(run_dir, name, Request::ReadPolicy { array, policy: policy.clone() }, Duration::from_secs(10))?;
        println!("{name}: read policy {policy}");
    }
    Ok(ExitCode::SUCCESS)
}
