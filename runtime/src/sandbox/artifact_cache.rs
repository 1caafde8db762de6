//! Compiled components on disk, keyed by the component's sha256 and the
//! engine's compatibility hash, so a second load is a deserialize.
//!
//! A cache entry is native code the daemon (often root) will run, so
//! whoever can write the cache could plant code. An entry is therefore
//! used only from a directory owned by this process's user, that is not a
//! symlink and that no one else can write, and only when it carries a MAC
//! made with this host's key (`key` in that directory, 32 random bytes
//! readable by its owner only): `MAGIC | format | component sha256 |
//! compatibility hash | HMAC-SHA256 | body length | body`, the MAC over
//! everything else. Anything that does not check out (another user's
//! directory, a missing or foreign key, a truncated, corrupted, forged or
//! misplaced entry) is reported and recompiled, never handed to wasmtime.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"WRAIDAOT";
/// Format 2: the body's sha256 became a keyed MAC.
const FORMAT: u32 = 2;
const HEADER: usize = 8 + 4 + 32 + 16 + 32 + 8;
const KEY_FILE: &str = "key";
const KEY_BYTES: usize = 32;

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

/// Why a cache entry was not used (or not written).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejected {
    #[error("cache entry {0} is truncated")]
    Truncated(PathBuf),
    #[error("cache entry {0} is not a wasmraid artifact")]
    Foreign(PathBuf),
    #[error("cache entry {0} belongs to another component or engine")]
    Mismatch(PathBuf),
    #[error("cache entry {0} is corrupted or forged (its MAC does not check out with this host's key)")]
    Corrupted(PathBuf),
    #[error("cannot read cache entry {0}: {1}")]
    Unreadable(PathBuf, String),
    #[error("the cache directory {0} cannot be trusted: {1}")]
    Untrusted(PathBuf, String),
}

pub struct ArtifactCache {
    dir: PathBuf,
}

type HmacSha256 = Hmac<Sha256>;

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
        if !self.dir.exists() {
            return Ok(None);
        }
        self.check_dir()?;
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        let key = self.key(false)?;
        let bytes = std::fs::read(&path).map_err(|e| Rejected::Unreadable(path.clone(), e.to_string()))?;
        parse(&bytes, component_sha, compat, &key).map(Some).map_err(|why| why(path))
    }

    /// Store a compiled body atomically (write a temporary file, rename),
    /// creating the directory (0700) and the key when missing.
    pub fn write(&self, component_sha: &[u8; 32], compat: &str, body: &[u8]) -> std::io::Result<PathBuf> {
        if !self.dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        }
        self.check_dir().map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string()))?;
        let key = self.key(true).map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string()))?;
        let path = self.path_for(component_sha, compat);
        let tmp = self.dir.join(format!(".{}.{}.tmp", hex::encode(&component_sha[..8]), std::process::id()));
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&encode(component_sha, compat, body, &key)?)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory is a real directory of ours that no one else may
    /// write.
    fn check_dir(&self) -> Result<(), Rejected> {
        let untrusted = |why: String| Rejected::Untrusted(self.dir.clone(), why);
        let meta = std::fs::symlink_metadata(&self.dir).map_err(|e| untrusted(e.to_string()))?;
        owned_and_private(&meta, "directory", 0o022).map_err(untrusted)
    }

    /// This host's key; with `create`, made when missing.
    fn key(&self, create: bool) -> Result<[u8; KEY_BYTES], Rejected> {
        let path = self.dir.join(KEY_FILE);
        let untrusted = |why: String| Rejected::Untrusted(self.dir.clone(), why);
        if create && std::fs::symlink_metadata(&path).is_err() {
            let key: [u8; KEY_BYTES] = rand::random();
            // O_EXCL: never write through a file someone put there first.
            match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(mut f) => {
                    f.write_all(&key).and_then(|()| f.sync_all()).map_err(|e| untrusted(format!("writing its key: {e}")))?;
                    return Ok(key);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(untrusted(format!("creating its key: {e}"))),
            }
        }
        let meta = std::fs::symlink_metadata(&path).map_err(|e| untrusted(format!("no key ({e})")))?;
        owned_and_private(&meta, "key file", 0o077).map_err(|why| untrusted(why))?;
        let bytes = std::fs::read(&path).map_err(|e| untrusted(format!("reading its key: {e}")))?;
        bytes.try_into().map_err(|_| untrusted("its key is not 32 bytes".into()))
    }
}

/// `meta` is not a symlink, is owned by this process's user, and has none
/// of the `forbidden` mode bits.
fn owned_and_private(meta: &std::fs::Metadata, what: &str, forbidden: u32) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.file_type().is_symlink() {
        return Err(format!("its {what} is a symbolic link"));
    }
    if meta.uid() != me {
        return Err(format!("its {what} belongs to uid {}, not to this process's uid {me}", meta.uid()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & forbidden != 0 {
        return Err(format!("its {what} has mode {mode:04o}: others may write it"));
    }
    Ok(())
}

fn compat_bytes(compat: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(compat.bytes()) {
        *o = b;
    }
    out
}

/// The MAC of an entry (None only if the HMAC refused the key, which it
/// does for no length).
fn mac(key: &[u8; KEY_BYTES], header: &[u8], body: &[u8]) -> Option<HmacSha256> {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).ok()?;
    m.update(header);
    m.update(body);
    Some(m)
}

/// The header without its MAC field, which the MAC covers.
fn covered(component_sha: &[u8; 32], compat: &str, len: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER - 32);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&FORMAT.to_le_bytes());
    h.extend_from_slice(component_sha);
    h.extend_from_slice(&compat_bytes(compat));
    h.extend_from_slice(&len.to_le_bytes());
    h
}

fn encode(component_sha: &[u8; 32], compat: &str, body: &[u8], key: &[u8; KEY_BYTES]) -> std::io::Result<Vec<u8>> {
    let tag = mac(key, &covered(component_sha, compat, body.len() as u64), body)
        .ok_or_else(|| std::io::Error::other("the MAC refused the key"))?
        .finalize()
        .into_bytes();
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(component_sha);
    out.extend_from_slice(&compat_bytes(compat));
    out.extend_from_slice(&tag);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

type Why = fn(PathBuf) -> Rejected;

fn parse(bytes: &[u8], component_sha: &[u8; 32], compat: &str, key: &[u8; KEY_BYTES]) -> Result<Vec<u8>, Why> {
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
    let len = u64::from_le_bytes(bytes[92..100].try_into().map_err(|_| Rejected::Truncated as Why)?);
    let body = &bytes[HEADER..];
    if (body.len() as u64) < len {
        return Err(Rejected::Truncated);
    }
    let authentic = mac(key, &covered(component_sha, compat, len), body).is_some_and(|m| m.verify_slice(&bytes[60..92]).is_ok());
    if body.len() as u64 > len || !authentic {
        return Err(Rejected::Corrupted);
    }
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn round_trip_and_every_kind_of_damage() {
        let dir = private_dir();
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

    #[test]
    fn a_forged_entry_fails_its_mac() {
        let dir = private_dir();
        let cache = ArtifactCache::new(dir.path());
        let sha = [3u8; 32];
        cache.write(&sha, "abc", b"honest code").unwrap();
        // Whoever does not hold the key can compute everything but the MAC.
        let forged = encode(&sha, "abc", b"planted code", &[0u8; KEY_BYTES]).unwrap();
        std::fs::write(cache.path_for(&sha, "abc"), forged).unwrap();
        assert!(matches!(cache.read(&sha, "abc"), Err(Rejected::Corrupted(_))));
    }

    #[test]
    fn a_directory_others_can_write_or_a_readable_key_is_not_trusted() {
        let dir = private_dir();
        let cache = ArtifactCache::new(dir.path());
        let sha = [5u8; 32];
        cache.write(&sha, "abc", b"code").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = cache.read(&sha, "abc").unwrap_err();
        assert!(matches!(e, Rejected::Untrusted(..)) && e.to_string().contains("mode 0777"), "{e}");
        assert!(cache.write(&sha, "abc", b"code").is_err(), "nor written to");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(dir.path().join(KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = cache.read(&sha, "abc").unwrap_err();
        assert!(e.to_string().contains("key file has mode 0644"), "{e}");
    }
}
