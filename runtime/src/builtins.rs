//! The layouts that ship inside the binary (built from `guest-algorithms/`
//! by the build script), and how a name or a path becomes component bytes.

use std::borrow::Cow;

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// A built-in layout component.
pub struct Builtin {
    pub name: &'static str,
    pub bytes: &'static [u8],
    pub summary: &'static str,
}

fn summary(name: &str) -> &'static str {
    match name {
        "linear" => "concatenation of legs of any size (dm linear); aperiodic",
        "raid0" => "striping, chunk c on leg c mod n (dm striped)",
        "raid1" => "n-way mirror",
        "raid10" => "md RAID10: n2 (default), f2, o2 or other copy counts",
        "raid4" => "dedicated XOR parity leg: parity-n (default) or parity-0",
        "raid5" => "md RAID5: left-symmetric (default), left-asymmetric, right-symmetric, right-asymmetric",
        "raid6" => "md RAID6 P+Q: left-symmetric (default), la, rs, ra, rotating-n-restart",
        "raid7" => "triple parity P+Q+R, rotated",
        "pyramid" => "local-parity groups + global parity + spare: scheme=11111s122222s2ge (default)",
        "draid" => "seeded per-stripe permutation of data/parity/spare (p=2,s=1,seed=0); aperiodic",
        _ => "",
    }
}

/// Every built-in, in name order.
pub fn all() -> Vec<Builtin> {
    let mut v: Vec<Builtin> = BUILTIN_COMPONENTS.iter().map(|(name, bytes)| Builtin { name, bytes, summary: summary(name) }).collect();
    v.sort_by_key(|b| b.name);
    v
}

/// The built-in called `name`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    BUILTIN_COMPONENTS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Where a component came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Builtin(String),
    File(std::path::PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Builtin(n) => write!(f, "{n} (built-in)"),
            Origin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A component named by the operator could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot read component {path}: {error}")]
    Unreadable { path: String, error: std::io::Error },
    #[error("'{0}' is neither a file nor a built-in layout (built-ins: {1})")]
    Unknown(String, String),
}

/// A path to a component file, or the name of a built-in.
pub fn resolve(spec: &str) -> Result<(Origin, Cow<'static, [u8]>), ResolveError> {
    let path = std::path::Path::new(spec);
    // A bare name is a built-in even when a folder of that name is here (a
    // crate called raid4 next to its component); a file of that name wins.
    let bare_builtin = !spec.contains('/') && !path.is_file() && find(spec).is_some();
    if !bare_builtin && (path.exists() || spec.contains('/') || spec.ends_with(".wasm")) {
        return std::fs::read(path)
            .map(|b| (Origin::File(path.to_path_buf()), Cow::Owned(b)))
            .map_err(|error| ResolveError::Unreadable { path: spec.into(), error });
    }
    match find(spec) {
        Some(bytes) => Ok((Origin::Builtin(spec.into()), Cow::Borrowed(bytes))),
        None => Err(ResolveError::Unknown(spec.into(), all().iter().map(|b| b.name).collect::<Vec<_>>().join(", "))),
    }
}
