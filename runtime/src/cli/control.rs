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

pub fn status(run_dir: &Option<PathBuf>, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let r = call(run_dir, name, Request::Status, Duration::from_secs(10))?.result;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let listening: Vec<&str> = r["listening"].as_array().map(|v| v.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
    println!("{}: {}, {}", r["name"].as_str().unwrap_or(name), format_size(r["size_bytes"].as_u64().unwrap_or(0)), listening.join(", "));
    for a in r["arrays"].as_array().into_iter().flatten() {
        let sha = a["component_sha256"].as_str().unwrap_or("");
        println!(
            "array {}: {} (sha256 {}), args {:?}, chunk {}, {} legs, survives {} failed leg(s)",
            a["name"].as_str().unwrap_or(""),
            a["layout"].as_str().unwrap_or(""),
            &sha[..sha.len().min(16)],
            a["args"].as_str().unwrap_or(""),
            format_size(a["chunk_bytes"].as_u64().unwrap_or(0)),
            a["legs"].as_array().map_or(0, Vec::len),
            a["fault_tolerance"]
        );
        println!("  dm: {}", a["dm_status"].as_str().unwrap_or(""));
        for l in a["legs"].as_array().into_iter().flatten() {
            let err = l["last_error"].as_str().map(|e| format!("  ({e})")).unwrap_or_default();
            println!(
                "  leg {} {} {}  reads {} writes {} errors {}{err}",
                l["index"], l["health_char"].as_str().unwrap_or("?"), l["device"].as_str().unwrap_or(""), l["reads"], l["writes"], l["errors"]
            );
        }
        let c = &a["counters"];
        println!(
            "  io: {} reads ({}), {} writes ({}); degraded reads {}; rmw {}, rcw {}, full-stripe {}; flushes {}; errors {}",
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
    Ok(ExitCode::SUCCESS)
}
