//! Builds a Rust guest workspace for `wasm32-unknown-unknown` and wraps each
//! `cdylib` it produces into a WebAssembly component that imports nothing.
//!
//! Used by build scripts (the runtime embeds the built-in layouts, the tests
//! build their hostile components), so errors are plain strings meant for a
//! human reading cargo's output.

pub mod tooling;

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";

/// One built component.
#[derive(Debug, Clone)]
pub struct Built {
    /// The cdylib's crate name with `-` for `_` and any `layout-` prefix kept.
    pub crate_name: String,
    /// The component file.
    pub path: PathBuf,
}

/// Build every cdylib of the workspace at `workspace` (release profile) into
/// `target_dir`, then write `<crate>.wasm` components into `out_dir`.
pub fn build_workspace(workspace: &Path, target_dir: &Path, out_dir: &Path) -> Result<Vec<Built>, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build").arg("--release").arg("--workspace").arg("--target").arg(TARGET).arg("--target-dir").arg(target_dir).current_dir(workspace);
    // The outer build's flags (sanitizers, coverage, a host target) must not
    // leak into the guest build.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo for {}: {e}", workspace.display()))?;
    if !status.success() {
        return Err(format!("building the guests in {} failed ({status}); is the target installed? run: rustup target add {TARGET}", workspace.display()));
    }
    let wasm_dir = target_dir.join(TARGET).join("release");
    std::fs::create_dir_all(out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let mut built = Vec::new();
    let entries = std::fs::read_dir(&wasm_dir).map_err(|e| format!("cannot list {}: {e}", wasm_dir.display()))?;
    let mut modules: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "wasm")).collect();
    modules.sort();
    for module in modules {
        let stem = module.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let bytes = std::fs::read(&module).map_err(|e| format!("cannot read {}: {e}", module.display()))?;
        let component = componentize(&bytes).map_err(|e| format!("wrapping {} as a component: {e}", module.display()))?;
        let path = out_dir.join(format!("{stem}.wasm"));
        std::fs::write(&path, component).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        built.push(Built { crate_name: stem, path });
    }
    Ok(built)
}

/// Wrap a core module carrying wit-bindgen's `component-type` section into a
/// component; no WASI adapter, so a module importing WASI fails here.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, String> {
    tooling::componentize(module, &tooling::Producers::default()).map_err(|e| e.to_string())
}

/// Tell cargo to rerun the build script when anything in `dir` changes
/// (skipping `target`).
pub fn rerun_if_changed(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            rerun_if_changed(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
