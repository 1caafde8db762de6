//! Compiled components on disk, keyed by the component's sha256 and the
//! engine's compatibility hash, so a second load is a deserialize.
//!
//! An entry is `MAGIC | format | component sha256 | compatibility hash |
//! body sha256 | body length | body`. Anything that does not check out
//! (truncated, corrupted, written for another component or engine) is
//! reported and recompiled, never handed to wasmtime.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"WRAIDAOT";
const FORMAT: u32 = 1;
const HEADER: usize = 8 + 4 + 32 + 16 + 32 + 8;

/// `$WASMRAID_CACHE_DIR`, else `$XDG_CACHE_HOME/wasmraid`, else
/// `~/.cache/wasmraid`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WASMRAID_CACHE_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(xdg).join("wasmraid"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("wasmraid"))
}

/// Why a cache entry was not used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejected {
    #[error("cache entry {0} is truncated")]
    Truncated(PathBuf),
    #[error("cache entry {0} is not a wasmraid artifact")]
    Foreign(PathBuf),
    #[error("cache entry {0} belongs to another component or engine")]
    Mismatch(PathBuf),
    #[error("cache entry {0} is corrupted (checksum mismatch)")]
    Corrupted(PathBuf),
    #[error("cannot read cache entry {0}: {1}")]
    Unreadable(PathBuf, String),
}

pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ArtifactCache { dir: dir.into() }
    }

    pub fn path_for(&self, component_sha: &[u8; 32], compat: &str) -> PathBuf {
        self.dir.join(format!("{}-{compat}.cwasm", hex::encode(component_sha)))
    }

    /// The compiled body for this component, Ok(None) when there is no
    /// entry, Err when an entry exists but cannot be trusted.
    pub fn read(&self, component_sha: &[u8; 32], compat: &str) -> Result<Option<Vec<u8>>, Rejected> {
        let path = self.path_for(component_sha, compat);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Rejected::Unreadable(path, e.to_string())),
        };
        parse(&bytes, component_sha, compat).map(Some).map_err(|why| why(path))
    }

    /// Store a compiled body atomically (write a temporary file, rename).
    pub fn write(&self, component_sha: &[u8; 32], compat: &str, body: &[u8]) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path_for(component_sha, compat);
        let tmp = self.dir.join(format!(".{}.{}.tmp", hex::encode(&component_sha[..8]), std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&encode(component_sha, compat, body))?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn compat_bytes(compat: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(compat.bytes()) {
        *o = b;
    }
    out
}

fn encode(component_sha: &[u8; 32], compat: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(component_sha);
    out.extend_from_slice(&compat_bytes(compat));
    out.extend_from_slice(&Sha256::digest(body));
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    out
}

type Why = fn(PathBuf) -> Rejected;

fn parse(bytes: &[u8], component_sha: &[u8; 32], compat: &str) -> Result<Vec<u8>, Why> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(if bytes.len() < 8 && MAGIC.starts_with(bytes) { Rejected::Truncated } else { Rejected::Foreign });
    }
    if bytes.len() < HEADER {
        return Err(Rejected::Truncated);
    }
    if bytes[8..12] != FORMAT.to_le_bytes() {
        return Err(Rejected::Foreign);
    }
    if bytes[12..44] != component_sha[..] || bytes[44..60] != compat_bytes(compat) {
        return Err(Rejected::Mismatch);
    }
    let len = u64::from_le_bytes(bytes[92..100].try_into().map_err(|_| Rejected::Truncated as Why)?) as usize;
    let body = &bytes[HEADER..];
    if body.len() < len {
        return Err(Rejected::Truncated);
    }
    if body.len() > len || Sha256::digest(body)[..] != bytes[60..92] {
        return Err(Rejected::Corrupted);
    }
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_kind_of_damage() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::new(dir.path());
        let sha = [7u8; 32];
        assert_eq!(cache.read(&sha, "abc"), Ok(None));
        let path = cache.write(&sha, "abc", b"compiled code").unwrap();
        assert_eq!(cache.read(&sha, "abc").unwrap().unwrap(), b"compiled code");

        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(matches!(cache.read(&sha, "abc"), Err(Rejected::Corrupted(_))));

        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        assert!(matches!(cache.read(&sha, "abc"), Err(Rejected::Truncated(_))));
        std::fs::write(&path, &good[..20]).unwrap();
        assert!(matches!(cache.read(&sha, "abc"), Err(Rejected::Truncated(_))));

        std::fs::write(&path, b"\0asm\x0d\0\x01\0 not ours at all").unwrap();
        assert!(matches!(cache.read(&sha, "abc"), Err(Rejected::Foreign(_))));

        // An entry copied over from another component's name.
        let other = cache.write(&[9u8; 32], "abc", b"other").unwrap();
        std::fs::copy(&other, &path).unwrap();
        assert!(matches!(cache.read(&sha, "abc"), Err(Rejected::Mismatch(_))));
    }
}
