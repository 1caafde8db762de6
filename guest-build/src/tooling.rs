//! What a guest author needs besides a compiler, behind `wasmraid algo wit`,
//! `algo bindings` and `algo componentize`: the contract, C bindings for it,
//! and wrapping a core module into a component that imports nothing, with
//! its language recorded where `algo check` will show it.

use std::path::{Path, PathBuf};

/// The layout contract, as the runtime was built against it.
pub const LAYOUT_WIT: &str = include_str!("../../wit/layout.wit");

/// The world a layout component implements.
pub const LAYOUT_WORLD: &str = "layout";

/// The interface a layout component exports.
pub const LAYOUT_INTERFACE: &str = "wasmraid:layout/algorithm@0.1.0";

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
    #[error("the component does not export {LAYOUT_INTERFACE} (it exports: {0}); was it built against `wasmraid algo wit`?")]
    NotALayout(String),
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
    exports_the_layout(&component)?;
    let section = producers_section(producers);
    if section.is_empty() {
        return Ok(component);
    }
    section.add_to_wasm(&component).map_err(|e| ToolError::Metadata(format!("{e:#}")))
}

fn producers_section(producers: &Producers) -> wasm_metadata::Producers {
    let mut section = wasm_metadata::Producers::empty();
    if let Some((name, version)) = &producers.language {
        section.add("language", name, version);
    }
    if let Some((name, version)) = &producers.sdk {
        section.add("sdk", name, version);
    }
    section
}

/// Refuse, here rather than at load time, a component that does not export
/// the layout interface.
fn exports_the_layout(component: &[u8]) -> Result<(), ToolError> {
    let decoded = wit_component::decode(component).map_err(|e| ToolError::Componentize(format!("{e:#}")))?;
    let (resolve, world) = match decoded {
        wit_component::DecodedWasm::Component(resolve, world) => (resolve, world),
        wit_component::DecodedWasm::WitPackage(..) => return Err(ToolError::NotALayout("nothing: it is a WIT package".into())),
    };
    let exports: Vec<String> = resolve.worlds[world].exports.keys().map(|key| resolve.name_world_key(key)).collect();
    if exports.iter().any(|e| e == LAYOUT_INTERFACE) {
        return Ok(());
    }
    Err(ToolError::NotALayout(if exports.is_empty() { "nothing".into() } else { exports.join(", ") }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_parses_and_c_bindings_are_written() {
        let dir = std::env::temp_dir().join(format!("wasmraid-tooling-{}", std::process::id()));
        let files = c_bindings(&dir).expect("bindings");
        let names: Vec<String> = files.iter().filter_map(|p| p.file_name()?.to_str().map(String::from)).collect();
        for want in ["layout.h", "layout.c", "layout_component_type.o"] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        let header = std::fs::read_to_string(dir.join("layout.h")).expect("header");
        assert!(header.contains("exports_wasmraid_layout_algorithm_map_stripes"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_what_is_not_wasm_and_modules_without_the_contract() {
        assert!(matches!(componentize(b"not wasm at all", &Producers::default()), Err(ToolError::NotWasm)));
        // A valid core module with no component type section wraps into a
        // component exporting nothing: refused, naming what is missing.
        let empty_module = [0, b'a', b's', b'm', 1, 0, 0, 0];
        let err = componentize(&empty_module, &Producers::default()).expect_err("refused");
        assert!(matches!(err, ToolError::NotALayout(_)), "{err}");
        assert!(err.to_string().contains(LAYOUT_INTERFACE), "{err}");
    }

    #[test]
    fn records_the_language_on_a_component() {
        let empty_component = [0, b'a', b's', b'm', 0x0d, 0, 1, 0];
        assert!(matches!(componentize(&empty_component, &Producers::default()), Err(ToolError::NotALayout(_))));
        let producers = Producers { language: Some(("Zig".into(), "0.17.1".into())), sdk: None };
        let stamped = producers_section(&producers).add_to_wasm(&empty_component).expect("stamped");
        let found = wasm_metadata::Producers::from_wasm(&stamped).expect("parse").expect("a producers section");
        assert_eq!(found.get("language").and_then(|f| f.get("Zig").cloned()), Some("0.17.1".to_string()));
    }
}
