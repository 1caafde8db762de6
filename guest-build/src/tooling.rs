//! What a guest author needs besides a compiler, behind `wasmraid algo wit`,
//! `algo bindings` and `algo componentize`: the contract, C bindings for it,
//! and wrapping a core module into a component that imports nothing, with
//! its language recorded where `algo check` will show it.

use std::path::{Path, PathBuf};

/// The layout contract, as the runtime was built against it.
pub const LAYOUT_WIT: &str = include_str!("../../wit/layout.wit");

/// The world a layout component implements.
pub const LAYOUT_WORLD: &str = "layout";

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("the layout contract does not parse: {0}")]
    Contract(String),
    #[error("generating C bindings: {0}")]
    Bindings(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("this is not a core module carrying the layout's component type (built with wit-bindgen's bindings?): {0}")]
    Componentize(String),
    #[error("recording the producers: {0}")]
    Metadata(String),
    #[error("no WebAssembly header (neither a core module nor a component)")]
    NotWasm,
}

/// Who made a component: `language` and `sdk` entries of the producers
/// section, each a name and a version (which may be empty).
#[derive(Debug, Default, Clone)]
pub struct Producers {
    pub language: Option<(String, String)>,
    pub sdk: Option<(String, String)>,
}

fn resolve_contract() -> Result<(wit_parser::Resolve, wit_parser::WorldId), ToolError> {
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("layout.wit", LAYOUT_WIT).map_err(|e| ToolError::Contract(format!("{e:#}")))?;
    let world = resolve.select_world(&[package], Some(LAYOUT_WORLD)).map_err(|e| ToolError::Contract(format!("{e:#}")))?;
    Ok((resolve, world))
}

/// Write `layout.h`, `layout.c` and `layout_component_type.o` (wit-bindgen's
/// C generator) into `out_dir`; returns the files written.
pub fn c_bindings(out_dir: &Path) -> Result<Vec<PathBuf>, ToolError> {
    let (mut resolve, world) = resolve_contract()?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default().build().generate(&mut resolve, world, &mut files).map_err(|e| ToolError::Bindings(format!("{e:#}")))?;
    std::fs::create_dir_all(out_dir).map_err(|source| ToolError::Io { path: out_dir.to_path_buf(), source })?;
    let mut written = Vec::new();
    for (name, contents) in files.iter() {
        let path = out_dir.join(name);
        std::fs::write(&path, contents).map_err(|source| ToolError::Io { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}

const COMPONENT_LAYER: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
const MODULE_LAYER: [u8; 4] = [0x01, 0x00, 0x00, 0x00];

/// A component from `wasm`: a core module is wrapped (no WASI adapter, so a
/// module that imports WASI is refused here, not at load time); a component
/// passes through. Either way the producers given are added.
pub fn componentize(wasm: &[u8], producers: &Producers) -> Result<Vec<u8>, ToolError> {
    let component = match wasm.get(..8) {
        Some(h) if h[..4] == *b"\0asm" && h[4..] == MODULE_LAYER => wit_component::ComponentEncoder::default()
            .module(wasm)
            .and_then(|e| e.validate(true).encode())
            .map_err(|e| ToolError::Componentize(format!("{e:#}")))?,
        Some(h) if h[..4] == *b"\0asm" && h[4..] == COMPONENT_LAYER => wasm.to_vec(),
        _ => return Err(ToolError::NotWasm),
    };
    let mut section = wasm_metadata::Producers::empty();
    if let Some((name, version)) = &producers.language {
        section.add("language", name, version);
    }
    if let Some((name, version)) = &producers.sdk {
        section.add("sdk", name, version);
    }
    if section.is_empty() {
        return Ok(component);
    }
    section.add_to_wasm(&component).map_err(|e| ToolError::Metadata(format!("{e:#}")))
}
