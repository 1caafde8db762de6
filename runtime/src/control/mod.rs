//! The control plane: a Unix socket (mode 0600) per served device speaking
//! one JSON object per line, for `status`, `leg fail`, `reload` and `stop`,
//! in a directory only its user can write (`run_dir.rs`).

pub mod client;
pub mod events;
pub mod run_dir;
pub mod server;
pub mod status;

use std::path::{Path, PathBuf};

/// A control request.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Status,
    LegFail {
        array: Option<String>,
        leg: usize,
    },
    Reload {
        array: Option<String>,
        component: String,
        args: Option<String>,
    },
    /// Start a background action: check, repair, resync.
    Sync {
        array: Option<String>,
        action: String,
    },
    /// Bytes per second for background actions (0: unlimited).
    SyncRate {
        array: Option<String>,
        bytes_per_second: u64,
    },
    ReadPolicy {
        array: Option<String>,
        policy: String,
    },
    LegRemove {
        array: Option<String>,
        leg: usize,
    },
    LegAdd {
        array: Option<String>,
        leg: Option<usize>,
        device: String,
    },
    LegReplace {
        array: Option<String>,
        leg: usize,
        device: String,
    },
    LegReadd {
        array: Option<String>,
        device: String,
    },
    /// Move the served array's data to another layout, in the background
    /// (`reshape::online`).
    Reshape {
        /// Leg devices to add, as new slots after the array's.
        #[serde(default)]
        add_legs: Vec<String>,
        /// A component file or built-in name; None keeps the array's.
        layout: Option<String>,
        #[serde(default)]
        args: String,
        chunk_sectors: Option<u32>,
        /// The array's last slots, to take out.
        #[serde(default)]
        remove_legs: Vec<usize>,
        /// Bytes a second (0: unlimited).
        #[serde(default)]
        rate: u64,
    },
    Stop,
    /// Stay connected and receive every event (`events.rs`) as a JSON
    /// line, after one `TestMessage` per array when `test` is set.
    Subscribe {
        #[serde(default)]
        test: bool,
    },
}

/// A control answer: `ok` with a result, or an error message.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub result: serde_json::Value,
}

/// Where control sockets live: `$WASMRAID_RUN_DIR`, else `/run/wasmraid`
/// for root, else `$XDG_RUNTIME_DIR/wasmraid`, else `/tmp/wasmraid-<uid>`.
pub fn default_run_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WASMRAID_RUN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        return PathBuf::from("/run/wasmraid");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("wasmraid"),
        None => PathBuf::from(format!("/tmp/wasmraid-{uid}")),
    }
}

/// The control socket of device `name`.
pub fn socket_path(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(format!("{name}.sock"))
}

/// Device names become file names: keep them tame.
pub fn valid_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && !name.starts_with('.');
    if ok { Ok(()) } else { Err(format!("device name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'")) }
}
