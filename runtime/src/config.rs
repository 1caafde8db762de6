//! The config file, `/etc/wasmraid/wasmraid.conf`: mdadm.conf's DEVICE and
//! ARRAY lines as TOML. Top-level `devices` says where to look for legs;
//! each `[[array]]` names an array by uuid and says how it is served, with
//! keys spelled as `wasmraid assemble`'s own flags, so an entry means
//! exactly the command line it stands for (`serving_args`). `assemble
//! --scan` brings up what it names; `detail --scan` prints entries for the
//! arrays served now.
//!
//! ```toml
//! devices = ["partitions", "/srv/legs"]     # the default: ["partitions"]
//!
//! [[array]]
//! name = "data"
//! uuid = "6f1c2b9e-0d4a-4c1e-9a57-3b8e2f10c4d2"
//! ublk-id = 3                               # /dev/ublkb3
//! nbd-unix = ["/run/wasmraid/data.nbd"]
//! metrics = "127.0.0.1:9273"
//! direct = true
//! options = ["--max-io", "1M"]              # any other assemble flag
//! ```
//!
//! The file is the administrator's, but it is still parsed within bounds:
//! its size, the number of arrays, places and options, the length of each
//! string, and every refusal names the file, the array and the key.

use crate::tls::TlsMode;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/wasmraid/wasmraid.conf";
/// Largest config file read.
pub const MAX_BYTES: u64 = 1 << 20;
pub const MAX_ARRAYS: usize = 256;
/// Places (top-level or one array's) and options of one array.
const MAX_LIST: usize = 1024;
/// Candidate legs one scan may open (after globs and directories).
pub const MAX_CANDIDATES: usize = 4096;
const MAX_STRING: usize = 4096;
/// The highest ublk device id the kernel hands out (UBLK_MAX_UBLKS).
const MAX_UBLK_ID: u32 = (1 << 20) - 1;

/// The place meaning every block device the kernel lists in
/// /proc/partitions (mdadm's `DEVICE partitions`).
pub const PARTITIONS: &str = "partitions";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {bytes} bytes is more than a config file may hold ({MAX_BYTES})")]
    TooLarge { path: String, bytes: u64 },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {what}: {message}")]
    Invalid { path: String, what: String, message: String },
    #[error("{path} names no array {name:?} (it names: {known})")]
    NoSuchArray { path: String, name: String, known: String },
}

/// The whole file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Where to look for legs when an array does not say: files, block
    /// devices, directories (their files and block devices), globs, or
    /// `partitions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(default, rename = "array", skip_serializing_if = "Vec::is_empty")]
    pub arrays: Vec<ArrayEntry>,
}

/// One array: which (uuid), where its legs are, how it is served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArrayEntry {
    /// The served device's name (its control socket, NBD export).
    pub name: String,
    /// The array's uuid (`wasmraid examine`): only its legs are taken.
    pub uuid: String,
    /// Places to look for its legs instead of the top-level `devices`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Legs named outright, NBD URIs among them (a remote leg cannot be
    /// found by scanning).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legs: Vec<String>,
    /// Serve it as /dev/ublkbN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ublk_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nbd: Vec<SocketAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nbd_unix: Vec<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_certificates: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify_peer: bool,
    /// Open the legs with O_DIRECT.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct: bool,
    /// Any other `assemble` flags, one word each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Config {
    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let read = |error| ConfigError::Read { path: shown.clone(), error };
        let file = std::fs::File::open(path).map_err(read)?;
        let bytes = file.metadata().map_err(read)?.len();
        if bytes > MAX_BYTES {
            return Err(ConfigError::TooLarge { path: shown, bytes });
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_BYTES + 1), &mut text).map_err(read)?;
        Config::parse(&text, &shown)
    }

    /// Parse and check the text of a config file named `path` (for errors).
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        if text.len() as u64 > MAX_BYTES {
            return Err(ConfigError::TooLarge { path: path.into(), bytes: text.len() as u64 });
        }
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string().trim_end().to_string() })?;
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &str) -> Result<(), ConfigError> {
        let invalid = |what: String, message: String| ConfigError::Invalid { path: path.into(), what, message };
        if self.arrays.len() > MAX_ARRAYS {
            return Err(invalid("[[array]]".into(), format!("{} arrays; at most {MAX_ARRAYS}", self.arrays.len())));
        }
        bounded_list("devices", &self.devices).map_err(|m| invalid("devices".into(), m))?;
        let (mut names, mut uuids, mut ids) = (HashSet::new(), HashSet::new(), HashSet::new());
        for (i, a) in self.arrays.iter().enumerate() {
            let at = |key: &str| format!("array {} ({:?}), {key}", i + 1, a.name.chars().take(64).collect::<String>());
            crate::control::valid_name(&a.name).map_err(|m| invalid(at("name"), m))?;
            let uuid = parse_uuid(&a.uuid).map_err(|m| invalid(at("uuid"), m))?;
            if !names.insert(a.name.clone()) {
                return Err(invalid(at("name"), "another array has this name".into()));
            }
            if !uuids.insert(uuid) {
                return Err(invalid(at("uuid"), "another array has this uuid".into()));
            }
            if let Some(id) = a.ublk_id {
                if id > MAX_UBLK_ID {
                    return Err(invalid(at("ublk-id"), format!("{id} is above the kernel's highest ublk id, {MAX_UBLK_ID}")));
                }
                if !ids.insert(id) {
                    return Err(invalid(at("ublk-id"), format!("another array is served as /dev/ublkb{id}")));
                }
            }
            for (key, list) in [("devices", &a.devices), ("legs", &a.legs), ("options", &a.options)] {
                bounded_list(key, list).map_err(|m| invalid(at(key), m))?;
            }
            for p in a.nbd_unix.iter().chain(&a.tls_certificates) {
                if p.as_os_str().len() > MAX_STRING {
                    return Err(invalid(at("a path"), format!("longer than {MAX_STRING} bytes")));
                }
            }
            if a.tls.is_none_or(|t| t == TlsMode::Off) && (a.tls_certificates.is_some() || a.tls_verify_peer) {
                return Err(invalid(at("tls"), "tls-certificates and tls-verify-peer need tls = \"on\" or \"require\"".into()));
            }
            if a.ublk_id.is_none() && a.nbd.is_empty() && a.nbd_unix.is_empty() && !a.options.iter().any(|o| o == "--ublk") {
                return Err(invalid(at("serving"), "say how it is served: ublk-id, nbd or nbd-unix".into()));
            }
        }
        Ok(())
    }

    /// The entry named `name` (or with that uuid).
    pub fn array(&self, name: &str, path: &str) -> Result<&ArrayEntry, ConfigError> {
        let wanted = parse_uuid(name).ok();
        self.arrays.iter().find(|a| a.name == name || (wanted.is_some() && parse_uuid(&a.uuid).ok() == wanted)).ok_or_else(|| ConfigError::NoSuchArray {
            path: path.into(),
            name: name.chars().take(64).collect(),
            known: if self.arrays.is_empty() { "none".into() } else { self.arrays.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ") },
        })
    }

    /// Where `entry`'s legs are looked for.
    pub fn places<'a>(&'a self, entry: &'a ArrayEntry) -> Vec<String> {
        match (&entry.devices[..], &self.devices[..]) {
            ([], []) => vec![PARTITIONS.to_string()],
            ([], top) => top.to_vec(),
            (own, _) => own.to_vec(),
        }
    }

    /// The file's text, as `detail --scan` prints it.
    pub fn to_text(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot write these entries: {e}\n"))
    }
}

fn bounded_list(key: &str, list: &[String]) -> Result<(), String> {
    if list.len() > MAX_LIST {
        return Err(format!("{} entries in {key}; at most {MAX_LIST}", list.len()));
    }
    match list.iter().find(|s| s.len() > MAX_STRING || s.is_empty()) {
        Some(s) if s.is_empty() => Err(format!("an empty entry in {key}")),
        Some(_) => Err(format!("an entry of {key} is longer than {MAX_STRING} bytes")),
        None => Ok(()),
    }
}

impl ArrayEntry {
    /// The `assemble` flags this entry stands for (its legs aside: those
    /// are found by scanning its places).
    pub fn serving_args(&self) -> Vec<String> {
        let mut out = vec![self.name.clone(), "--uuid".into(), self.uuid.clone()];
        if let Some(id) = self.ublk_id {
            out.extend(["--ublk".into(), "--ublk-id".into(), id.to_string()]);
        }
        for a in &self.nbd {
            out.extend(["--nbd".into(), a.to_string()]);
        }
        for p in &self.nbd_unix {
            out.extend(["--nbd-unix".into(), p.display().to_string()]);
        }
        if let Some(a) = self.metrics {
            out.extend(["--metrics".into(), a.to_string()]);
        }
        if let Some(t) = self.tls {
            out.extend(["--tls".into(), t.to_string()]);
        }
        if let Some(d) = &self.tls_certificates {
            out.extend(["--tls-certificates".into(), d.display().to_string()]);
        }
        if self.tls_verify_peer {
            out.push("--tls-verify-peer".into());
        }
        if self.direct {
            out.push("--direct".into());
        }
        out.extend(self.options.iter().cloned());
        out
    }
}

/// A uuid as `wasmraid examine` prints it (dashes optional).
pub fn parse_uuid(text: &str) -> Result<[u8; 16], String> {
    let hex_digits: String = text.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    match hex::decode_to_slice(&hex_digits, &mut out) {
        Ok(()) => Ok(out),
        Err(_) => Err(format!("{:?} is not a uuid (32 hex digits, dashes optional)", text.chars().take(64).collect::<String>())),
    }
}

/// The candidate legs in `places`, in order, each once (two names of one
/// device would claim its slot twice), at most `MAX_CANDIDATES`.
pub fn candidates(places: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut take = |p: PathBuf| {
        let key = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        if out.len() < MAX_CANDIDATES && seen.insert(key) {
            out.push(p);
        }
    };
    for place in places {
        if place == PARTITIONS {
            partitions().into_iter().for_each(&mut take);
        } else if place.contains(['*', '?', '[']) {
            if let Ok(paths) = glob::glob(place) {
                paths.flatten().take(MAX_CANDIDATES).filter(|p| usable(p)).for_each(&mut take);
            }
        } else if Path::new(place).is_dir() {
            let mut entries: Vec<PathBuf> =
                std::fs::read_dir(place).into_iter().flatten().flatten().take(MAX_CANDIDATES).map(|e| e.path()).filter(|p| usable(p)).collect();
            entries.sort();
            entries.into_iter().for_each(&mut take);
        } else {
            take(PathBuf::from(place));
        }
    }
    out
}

/// A file or a block device (what a leg can be).
fn usable(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() || m.file_type().is_block_device())
}

/// The block devices in /proc/partitions, but those served by a user
/// space server (ublk, nbd): one whose server died would hold the scan
/// forever, and an array on them is named with `devices` or `legs`.
pub fn partitions() -> Vec<PathBuf> {
    let Ok(file) = std::fs::File::open("/proc/partitions") else { return Vec::new() };
    let mut text = String::new();
    if std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_BYTES), &mut text).is_err() {
        return Vec::new();
    }
    partition_names(&text).into_iter().map(|n| Path::new("/dev").join(n)).filter(|p| usable(p)).collect()
}

/// The device names of a /proc/partitions text worth opening.
fn partition_names(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // major minor #blocks name
            let (blocks, name) = (f.get(2)?.parse::<u64>().ok()?, *f.get(3)?);
            (blocks > 0 && !name.contains('/') && !name.starts_with("ublkb") && !name.starts_with("nbd")).then_some(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
devices = ["/srv/legs"]
[[array]]
name = "data"
uuid = "6f1c2b9e-0d4a-4c1e-9a57-3b8e2f10c4d2"
ublk-id = 3
nbd-unix = ["/run/wasmraid/data.nbd"]
direct = true
options = ["--max-io", "1M"]
[[array]]
name = "logs"
uuid = "00112233445566778899aabbccddeeff"
nbd = ["127.0.0.1:10810"]
legs = ["nbd://10.0.0.2/logs0"]
"#;

    #[test]
    fn entries_stand_for_assembles_flags() {
        let c = Config::parse(GOOD, "t.conf").unwrap();
        let data = c.array("data", "t.conf").unwrap();
        assert_eq!(
            data.serving_args().join(" "),
            "data --uuid 6f1c2b9e-0d4a-4c1e-9a57-3b8e2f10c4d2 --ublk --ublk-id 3 --nbd-unix /run/wasmraid/data.nbd --direct --max-io 1M"
        );
        assert_eq!(c.places(data), ["/srv/legs"]);
        // by uuid, dashes or not
        assert_eq!(c.array("00112233-4455-6677-8899-aabbccddeeff", "t.conf").unwrap().name, "logs");
        assert!(c.array("nope", "t.conf").unwrap_err().to_string().contains("it names: data, logs"));
        // what detail --scan prints reads back the same
        let again = Config::parse(&c.to_text(), "again").unwrap();
        assert_eq!(again.arrays, c.arrays);
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let c = Config::parse(include_str!("../../docs/wasmraid.conf.example"), "wasmraid.conf.example").unwrap();
        assert_eq!(c.arrays.len(), 2);
        assert_eq!(c.places(c.array("backup", "").unwrap()), ["/dev/disk/by-id/wwn-*"]);
    }

    #[test]
    fn refusals_name_the_array_and_the_key() {
        let cases = [
            ("[[array]]\nname = \"a\"\nuuid = \"zz\"\nublk-id = 1", "array 1 (\"a\"), uuid"),
            ("[[array]]\nname = \"a/b\"\nuuid = \"00112233445566778899aabbccddeeff\"\nublk-id = 1", "array 1 (\"a/b\"), name"),
            ("[[array]]\nname = \"a\"\nuuid = \"00112233445566778899aabbccddeeff\"", "say how it is served"),
            ("[[array]]\nname = \"a\"\nuuid = \"00112233445566778899aabbccddeeff\"\nublk-id = 1\nsize = 3", "unknown field `size`"),
            (
                "[[array]]\nname = \"a\"\nuuid = \"00112233445566778899aabbccddeeff\"\nublk-id = 1\n[[array]]\nname = \"b\"\nuuid = \"00112233445566778899aabbccddeefe\"\nublk-id = 1",
                "array 2 (\"b\"), ublk-id: another array is served as /dev/ublkb1",
            ),
            ("[[array]]\nname = \"a\"\nuuid = \"00112233445566778899aabbccddeeff\"\nnbd = [\"x\"]", "invalid socket address"),
            ("[[array]]\nname = \"a\"\nuuid = \"00112233445566778899aabbccddeeff\"\nublk-id = 1\ntls-verify-peer = true", "need tls"),
        ];
        for (text, wanted) in cases {
            let e = Config::parse(text, "t.conf").unwrap_err().to_string();
            assert!(e.starts_with("t.conf:") && e.contains(wanted), "{text:?}: {e}");
        }
        let big = "#".repeat(MAX_BYTES as usize + 1);
        assert!(matches!(Config::parse(&big, "t"), Err(ConfigError::TooLarge { .. })));
    }

    #[test]
    fn partitions_skip_user_space_devices_and_empty_ones() {
        let text = "major minor  #blocks  name\n\n 254 0 131072 vda\n 254 1 130048 vda1\n 259 0 65536 ublkb3\n 43 0 0 nbd0\n 43 16 1024 nbd1\n 11 0 0 sr0\n";
        assert_eq!(partition_names(text), ["vda", "vda1"]);
    }

    #[test]
    fn candidates_take_each_device_once() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["a", "b"] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let d = dir.path().display().to_string();
        let found = candidates(&[d.clone(), format!("{d}/*"), format!("{d}/a")]);
        assert_eq!(found, [dir.path().join("a"), dir.path().join("b")]);
    }
}
