//! `wasmraid monitor`: md's `mdadm --monitor` for a served device, from a
//! subscription on its control socket (the daemon publishes each change it
//! sees within 100 ms; nothing here polls).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use wasmraid::control::events::Event;
use wasmraid::control::{client, socket_path};

pub fn run(run_dir: &Option<PathBuf>, name: &str, program: Option<&str>, json: bool, test: bool) -> anyhow::Result<ExitCode> {
    let dir = run_dir.clone().unwrap_or_else(wasmraid::control::default_run_dir);
    let (response, reader) = client::subscribe(&socket_path(&dir, name), test)?;
    anyhow::ensure!(response.ok, "{name}: {}", response.error.unwrap_or_else(|| "subscription refused".into()));
    for line in reader.lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Event>(&line) {
            Ok(event) => report(&event, program, json),
            Err(e) => tracing::warn!("an event this monitor cannot read ({e}): {line}"),
        }
    }
    // The daemon is gone (stopped, or died): md says DeviceDisappeared.
    let gone = Event { event: "DeviceDisappeared".into(), device: name.to_string(), array: name.to_string(), component: None, detail: None };
    report(&gone, program, json);
    Ok(ExitCode::SUCCESS)
}

fn report(e: &Event, program: Option<&str>, json: bool) {
    if json {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
    } else {
        let component = e.component.as_deref().map(|c| format!(" component {c}")).unwrap_or_default();
        let detail = e.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
        println!("{}: {} event detected on {} array {}{component}{detail}", now(), e.event, e.device, e.array);
    }
    if let Some(program) = program {
        // md's order: the event, the array's device, then the component.
        let mut cmd = std::process::Command::new(program);
        cmd.arg(&e.event).arg(&e.device);
        if let Some(c) = &e.component {
            cmd.arg(c);
        }
        match cmd.status() {
            Ok(s) if !s.success() => tracing::warn!("{program} {} exited with {s}", e.event),
            Ok(_) => {}
            Err(err) => tracing::warn!("cannot run {program}: {err}"),
        }
    }
}

/// Seconds since the epoch, as a log line's stamp.
fn now() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}", t.as_secs(), t.subsec_millis())
}
