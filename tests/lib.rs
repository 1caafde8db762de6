//! Shared helpers for wasmraid's integration tests.

use std::sync::Arc;
use std::time::Duration;
use wasmraid::layout::Geometry;
use wasmraid::sandbox::{LoadedComponent, Sandbox, SandboxConfig, SandboxError, component};

/// A sandbox with a short guest deadline and no disk cache, so hostile
/// cases are quick and tests do not share state.
pub fn sandbox() -> Arc<Sandbox> {
    Sandbox::new(SandboxConfig { call_timeout: Duration::from_millis(300), cache_dir: None, ..SandboxConfig::default() })
        .expect("sandbox")
}

/// The bytes of hostile component `name` (built by build.rs).
pub fn hostile_bytes(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("WASMRAID_HOSTILE_DIR")).join(format!("hostile_{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Load hostile component `name`.
pub fn hostile(sandbox: &Arc<Sandbox>, name: &str) -> Result<Arc<LoadedComponent>, SandboxError> {
    component::load(sandbox, &hostile_bytes(name)).map(Arc::new)
}

/// Load a built-in layout.
pub fn builtin(sandbox: &Arc<Sandbox>, name: &str) -> Arc<LoadedComponent> {
    let bytes = wasmraid::builtins::find(name).unwrap_or_else(|| panic!("no built-in {name}"));
    Arc::new(component::load(sandbox, bytes).expect("built-in loads"))
}

/// `legs` equal legs of `leg_chunks` chunks of 64 KiB.
pub fn geometry(legs: usize, leg_chunks: u64, args: &str) -> Geometry {
    Geometry { chunk_sectors: 128, leg_chunks: vec![leg_chunks; legs], args: args.into() }
}
