//! `wasmraid assemble --scan` with no name (every array of the config
//! file, each in a daemon of its own, as mdadm --assemble --scan brings up
//! every ARRAY line) and `wasmraid detail --scan` (config entries for the
//! arrays served now, as mdadm --detail --scan prints ARRAY lines).

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use wasmraid::config::{ArrayEntry, Config};
use wasmraid::control::{Request, client, socket_path};

/// How long one array may take to come up (its proof, its legs' checks).
const COME_UP: Duration = Duration::from_secs(300);

/// The status of a served device, if a daemon answers for it.
fn served_status(run_dir: &Path, name: &str) -> Option<serde_json::Value> {
    let socket = socket_path(run_dir, name);
    if !socket.exists() {
        return None;
    }
    client::call(&socket, &Request::Status, Duration::from_secs(5)).ok().filter(|r| r.ok).map(|r| r.result)
}

fn listening(status: &serde_json::Value) -> String {
    status["listening"].as_array().map(|v| v.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

/// Start one daemon per array of `config` that is not served yet, with
/// this very command line plus the array's name, and wait for each to
/// answer on its control socket (or to fail, showing why from its log,
/// `<run dir>/<name>.log`).
pub fn assemble_all(config: &Config, path: &Path, run_dir: &Path) -> anyhow::Result<ExitCode> {
    if config.arrays.is_empty() {
        anyhow::bail!("{} names no array (add [[array]] entries; `wasmraid detail --scan` prints them for arrays served now)", path.display());
    }
    wasmraid::control::run_dir::prepare(run_dir)?;
    let exe = std::env::current_exe().context("cannot find this program to start the daemons")?;
    let mut started: Vec<(&ArrayEntry, std::process::Child, PathBuf)> = Vec::new();
    let mut failed = 0;
    for entry in &config.arrays {
        if let Some(status) = served_status(run_dir, &entry.name) {
            println!("{}: already served ({})", entry.name, listening(&status));
            continue;
        }
        let log = run_dir.join(format!("{}.log", entry.name));
        let spawn = || -> std::io::Result<std::process::Child> {
            let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
            let mut command = std::process::Command::new(&exe);
            // The same flags, global ones included, for one array: after
            // `--` the name is the positional one even behind `--scan`.
            command.args(std::env::args_os().skip(1)).arg("--").arg(&entry.name);
            command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(stderr);
            // A daemon outlives this command and its terminal.
            // SAFETY: setsid is async-signal-safe and touches no memory of
            // the parent; failing (already a leader) changes nothing.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                    libc::setsid();
                    Ok(())
                });
            }
            command.spawn()
        };
        match spawn() {
            Ok(child) => started.push((entry, child, log)),
            Err(e) => {
                println!("{}: FAILED to start: {e}", entry.name);
                failed += 1;
            }
        }
    }
    let deadline = Instant::now() + COME_UP;
    for (entry, mut child, log) in started {
        loop {
            if let Some(status) = served_status(run_dir, &entry.name) {
                println!("{}: served ({}); log {}", entry.name, listening(&status), log.display());
                break;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let why = match exited {
                    Some(code) => format!("the daemon exited ({code})"),
                    None => format!("not served after {} s", COME_UP.as_secs()),
                };
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let last: Vec<&str> = tail.lines().rev().take(5).collect();
                println!("{}: FAILED: {why}; from {}:", entry.name, log.display());
                for line in last.into_iter().rev() {
                    println!("  {line}");
                }
                failed += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The served devices of `run_dir` (their control sockets).
fn served_names(run_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".sock")).map(str::to_string))
        .collect();
    names.sort();
    names
}

/// `wasmraid detail --scan`: a config entry per array served now.
pub fn detail_scan(run_dir: &Path) -> anyhow::Result<ExitCode> {
    let mut config = Config::default();
    let mut notes = Vec::new();
    for name in served_names(run_dir) {
        let Some(status) = served_status(run_dir, &name) else {
            notes.push(format!("# {name}: its control socket does not answer (a daemon that died?)"));
            continue;
        };
        match entry(&name, &status) {
            Ok(e) => config.arrays.push(e),
            Err(why) => notes.push(format!("# {name}: {why}")),
        }
    }
    for n in &notes {
        println!("{n}");
    }
    print!("{}", config.to_text());
    Ok(ExitCode::SUCCESS)
}

/// The entry standing for a served device, from its status.
fn entry(name: &str, status: &serde_json::Value) -> Result<ArrayEntry, String> {
    let arrays = status["arrays"].as_array().map(Vec::as_slice).unwrap_or_default();
    let [array] = arrays else {
        return Err(format!("a table of {} arrays, served with --table: not assembled by --scan", arrays.len()));
    };
    let Some(uuid) = array["metadata"]["uuid"].as_str().filter(|u| wasmraid::config::parse_uuid(u).is_ok()) else {
        return Err("an array without superblocks (served with --layout or --table): `wasmraid create` makes one that assembles".into());
    };
    let mut e = ArrayEntry { name: name.to_string(), uuid: uuid.to_string(), ..Default::default() };
    e.ublk_id = status["ublk"]["id"].as_u64().and_then(|i| u32::try_from(i).ok());
    let strings = |v: &serde_json::Value| -> Vec<String> { v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_string)).collect() };
    let nbd = &status["nbd"];
    e.nbd = strings(&nbd["listen"]).iter().filter_map(|a| a.parse().ok()).collect();
    e.nbd_unix = strings(&nbd["listen_unix"]).into_iter().map(PathBuf::from).collect();
    e.metrics = status["metrics"].as_str().and_then(|a| a.parse().ok());
    e.tls = nbd["tls"].as_str().and_then(|t| serde_json::from_value(serde_json::json!(t)).ok()).filter(|t| *t != wasmraid::tls::TlsMode::Off);
    if e.tls.is_some() {
        e.tls_certificates = nbd["tls_certificates"].as_str().map(PathBuf::from);
        e.tls_verify_peer = nbd["tls_verify_peer"].as_bool() == Some(true);
    }
    // Block devices are found among the partitions (the default place);
    // files and remote legs are named, and then the block devices too,
    // since `devices` replaces the default.
    let partitions = wasmraid::config::partitions();
    let mut found = Vec::new();
    for leg in array["legs"].as_array().into_iter().flatten().filter_map(|l| l["device"].as_str()) {
        if wasmraid::device::nbd::NbdUri::looks_like(leg) {
            e.legs.push(leg.to_string());
        } else if partitions.iter().any(|p| p == Path::new(leg)) {
            found.push(leg.to_string());
        } else if Path::new(leg).exists() {
            e.devices.push(leg.to_string());
        }
    }
    if !e.devices.is_empty() {
        e.devices.extend(found);
    }
    Ok(e)
}
