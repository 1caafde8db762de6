//! Where and how the daemon and the commands log: tracing's events on
//! standard error, filtered by `WASMRAID_LOG` (default `warn`), as text or
//! as one JSON object per line (`--log-format`, or `WASMRAID_LOG_FORMAT`).
//!
//! Text to a terminal is coloured; text to anything else is not (escape
//! codes are noise in a file or the journal). Under systemd, with standard
//! error on the journal's stream, lines carry no time of their own:
//! journald stamps every line it receives, so a second stamp would only
//! repeat it. Levels stay tracing's names (ERROR, WARN, INFO, ...).

use std::io::IsTerminal;
use std::sync::OnceLock;

/// The format `init` installed, for the lines printed whatever the filter.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// tracing's human format.
    Text,
    /// One JSON object per line: timestamp, level, target, fields.
    Json,
}

/// `--log-format` if given, else `WASMRAID_LOG_FORMAT`, else text.
pub fn format(flag: Option<LogFormat>) -> anyhow::Result<LogFormat> {
    if let Some(f) = flag {
        return Ok(f);
    }
    match std::env::var("WASMRAID_LOG_FORMAT") {
        Ok(v) => <LogFormat as clap::ValueEnum>::from_str(&v, true).map_err(|_| anyhow::anyhow!("WASMRAID_LOG_FORMAT must be text or json, not {v:?}")),
        Err(_) => Ok(LogFormat::Text),
    }
}

/// Install the global subscriber (once, first thing in `main`).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASMRAID_LOG").unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = FORMAT.set(format);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text if on_journal() => builder.with_ansi(false).without_time().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// The error a command ends with: a plain line for a person, or in JSON
/// like every other line when JSON was asked for (a log shipper reading
/// a daemon that failed to start gets its reason too).
pub fn failed(format: LogFormat, e: &anyhow::Error) {
    match format {
        LogFormat::Text => eprintln!("wasmraid: {e:#}"),
        LogFormat::Json => eprintln!("{}", json_line("ERROR", &format!("{e:#}"))),
    }
}

/// A line printed whatever `WASMRAID_LOG` lets through (the daemon's
/// serving line), in the format of the rest.
pub fn say(line: &str) {
    match FORMAT.get() {
        Some(LogFormat::Json) => eprintln!("{}", json_line("INFO", line)),
        _ => eprintln!("wasmraid: {line}"),
    }
}

/// One line as tracing-subscriber's JSON formatter writes an event.
fn json_line(level: &str, message: &str) -> String {
    use tracing_subscriber::fmt::time::FormatTime;
    let mut timestamp = String::new();
    let _ = tracing_subscriber::fmt::time::SystemTime.format_time(&mut tracing_subscriber::fmt::format::Writer::new(&mut timestamp));
    serde_json::json!({"timestamp": timestamp, "level": level, "fields": {"message": message}, "target": "wasmraid"}).to_string()
}

/// Standard error is the journal's stream: `JOURNAL_STREAM` names its
/// device and inode, and they are standard error's (systemd's advice: a
/// child whose stderr was redirected inherits the variable, not the
/// stream).
fn on_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else { return false };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else { return false };
    dev.parse() == Ok(stderr.dev()) && ino.parse() == Ok(stderr.ino())
}
