//! The directory of control sockets, created safely. Whoever controls the
//! directory controls the sockets in it: they could put their own socket
//! where `wasmraid stop` or `leg fail` will connect, or remove ours. The
//! fallback `/tmp/wasmraid-<uid>` can be created first by anyone, so a
//! directory is used only if it is a real directory (not a symlink), owned
//! by this user, and writable by no one else; one we create is 0700.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("control directory {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("control directory {path} is not a directory (a symlink or a file): refusing it; remove it or choose another --run-dir")]
    NotDirectory { path: String },
    #[error(
        "control directory {path} belongs to uid {owner}, not to this user (uid {me}): another user could replace its sockets; remove it or choose another --run-dir"
    )]
    Owner { path: String, owner: u32, me: u32 },
    #[error("control directory {path} has mode {mode:04o}: others can write to it and replace its sockets; chmod 700 it or choose another --run-dir")]
    Writable { path: String, mode: u32 },
}

/// Create `dir` (mode 0700) if missing, and check it is safe to use.
pub fn prepare(dir: &Path) -> Result<(), RunDirError> {
    let path = dir.display().to_string();
    let io = |error| RunDirError::Io { path: path.clone(), error };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    check(dir)
}

/// A directory we may use as is: ours, and writable by no one else.
pub fn check(dir: &Path) -> Result<(), RunDirError> {
    let path = dir.display().to_string();
    let meta = std::fs::symlink_metadata(dir).map_err(|error| RunDirError::Io { path: path.clone(), error })?;
    if !meta.file_type().is_dir() {
        return Err(RunDirError::NotDirectory { path });
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(RunDirError::Owner { path, owner: meta.uid(), me });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(RunDirError::Writable { path, mode });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_0700_and_refused_when_others_can_write() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/run");
        prepare(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        prepare(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = prepare(&dir).unwrap_err();
        assert!(matches!(e, RunDirError::Writable { mode: 0o777, .. }), "{e}");
        assert!(e.to_string().contains(&dir.display().to_string()), "{e}");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        assert!(matches!(prepare(&link), Err(RunDirError::NotDirectory { .. })));
    }
}
