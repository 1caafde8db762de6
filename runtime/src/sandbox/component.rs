//! Loading a layout component: validate, compile ahead of time (or take the
//! cached artifact), refuse imports, pre-link against the contract.

use super::artifact_cache::ArtifactCache;
use super::{Sandbox, SandboxError};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "layout",
});

pub use exports::wasmraid::layout::algorithm as wit;

/// State every guest store carries: the memory limiter.
pub struct GuestState {
    pub(crate) limiter: MemoryLimiter,
}

/// Core instances, tables and memories one guest instance may create (a
/// component is several core modules; layouts built by componentize-py
/// use about a dozen instances).
pub const MAX_CORE_INSTANCES: usize = 100;
pub const MAX_TABLES: usize = 100;
pub const MAX_MEMORIES: usize = 16;

/// Caps the linear memory of a whole guest instance (every memory of every
/// core module in it together, so extra memories cannot multiply the cap),
/// remembering whether the cap was hit so a trap that follows can be
/// reported as what it is.
pub struct MemoryLimiter {
    pub(crate) cap: usize,
    /// Bytes of linear memory the instance holds now.
    pub(crate) total: usize,
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(cap: usize) -> MemoryLimiter {
        MemoryLimiter { cap, total: 0, hit: false }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.total.saturating_add(desired.saturating_sub(current));
        if total > self.cap {
            self.hit = true;
            return Ok(false);
        }
        self.total = total;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// How a component was obtained.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoadStats {
    /// Time to compile, or to read and deserialize the cached artifact.
    pub load_time: Duration,
    /// Whether the compiled artifact came from the disk cache.
    pub from_cache: bool,
    /// Why an existing cache entry was not used, if one was refused.
    pub cache_rejected: Option<String>,
    /// Why the artifact could not be written to the cache, if so.
    pub cache_write_failed: Option<String>,
}

/// A validated, compiled component, ready to instantiate.
pub struct LoadedComponent {
    pub sha256: [u8; 32],
    pub size: usize,
    pub stats: LoadStats,
    /// (field, name version) pairs from `producers` sections.
    pub producers: Vec<(String, String)>,
    /// The source language, as its producers record it (see `producers`).
    pub language: Option<String>,
    pub(crate) pre: LayoutPre<GuestState>,
    pub(crate) sandbox: Arc<Sandbox>,
    /// Guest calls made on any instance of this component (the proof's,
    /// the map cache's refills, a trap's replayed `configure`): shared with
    /// the layout proven from it, whose status shows it.
    pub calls: Arc<std::sync::atomic::AtomicU64>,
}

impl LoadedComponent {
    /// The component's sha256 as hex.
    pub fn hash(&self) -> String {
        hex::encode(self.sha256)
    }
}

const COMPONENT_HEADER: [u8; 8] = [0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00];
const MODULE_HEADER: [u8; 8] = [0, b'a', b's', b'm', 0x01, 0x00, 0x00, 0x00];

/// Validate and compile `bytes` (or deserialize its cached artifact).
pub fn load(sandbox: &Arc<Sandbox>, bytes: &[u8]) -> Result<LoadedComponent, SandboxError> {
    let most = sandbox.config.compile.max_component_bytes;
    if bytes.len() > most {
        return Err(SandboxError::CompileLimit(format!(
            "{} bytes, more than the {} allowed (--max-component-size)",
            bytes.len(),
            crate::units::format_size(most as u64)
        )));
    }
    match bytes.get(..8) {
        Some(h) if h == COMPONENT_HEADER => {}
        Some(h) if h == MODULE_HEADER => {
            return Err(SandboxError::Invalid("this is a core module, not a component (wrap it with wit-component or `wasm-tools component new`)".into()));
        }
        _ => return Err(SandboxError::Invalid("no WebAssembly component header".into())),
    }
    let sha256: [u8; 32] = Sha256::digest(bytes).into();
    let engine = &sandbox.engine;
    let compat = sandbox.compatibility_hash();
    let cache = sandbox.config.cache_dir.as_ref().map(ArtifactCache::new);
    let started = Instant::now();
    let mut stats = LoadStats { load_time: Duration::ZERO, from_cache: false, cache_rejected: None, cache_write_failed: None };

    let mut component = None;
    if let Some(cache) = &cache {
        match cache.read(&sha256, &compat) {
            Ok(Some(artifact)) => {
                // SAFETY: the artifact was written by this program for this
                // component and this engine (the entry's header says so) and
                // its sha256 matches, so it is the output of
                // `precompile_component` below; wasmtime checks its own
                // header and engine settings again.
                match unsafe { Component::deserialize(engine, &artifact) } {
                    Ok(c) => {
                        stats.from_cache = true;
                        component = Some(c);
                    }
                    Err(e) => stats.cache_rejected = Some(format!("wasmtime refused the cached artifact: {e:#}")),
                }
            }
            Ok(None) => {}
            Err(why) => stats.cache_rejected = Some(why.to_string()),
        }
    }
    if let Some(why) = &stats.cache_rejected {
        tracing::warn!("{why}; recompiling");
    }
    let component = match component {
        Some(c) => c,
        None => {
            let artifact = super::compile::compile(sandbox, bytes).map_err(|e| match e {
                SandboxError::Invalid(why) => SandboxError::Invalid(super::text::guest_text(&why)),
                other => other,
            })?;
            if let Some(cache) = &cache {
                if let Err(e) = cache.write(&sha256, &compat, &artifact) {
                    stats.cache_write_failed = Some(format!("cannot write to the cache in {}: {e}", cache.dir().display()));
                }
            }
            // SAFETY: `artifact` was just produced from these bytes by
            // `precompile_component` of this same program, in process or in
            // the compiler child it started with this engine's settings
            // (`compile.rs`); wasmtime checks its header and the engine's
            // settings again before using it.
            unsafe { Component::deserialize(engine, &artifact) }.map_err(|e| SandboxError::Invalid(super::text::guest_text(&format!("{e:#}"))))?
        }
    };
    stats.load_time = started.elapsed();

    let imports: Vec<String> = component.component_type().imports(engine).take(16).map(|(name, _)| super::text::guest_text(name)).collect();
    if !imports.is_empty() {
        return Err(SandboxError::Imports { names: imports });
    }
    let linker: Linker<GuestState> = Linker::new(engine);
    let pre = linker.instantiate_pre(&component).and_then(LayoutPre::new).map_err(|e| SandboxError::Contract(super::text::guest_text(&format!("{e:#}"))))?;
    let (producers, language) = producers(bytes);
    Ok(LoadedComponent { sha256, size: bytes.len(), stats, producers, language, pre, sandbox: sandbox.clone(), calls: Default::default() })
}

/// The `producers` custom sections of a component and its modules, and the
/// source language: the component's own `language` entry (a toolchain that
/// embeds an interpreter records the guest's language there, over the
/// interpreter's), else the first one of a module inside it.
fn producers(bytes: &[u8]) -> (Vec<(String, String)>, Option<String>) {
    let mut out: Vec<(String, String)> = Vec::new();
    let (mut own_language, mut inner_language) = (None, None);
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let custom = match payload {
            Ok(wasmparser::Payload::ModuleSection { .. } | wasmparser::Payload::ComponentSection { .. }) => {
                depth += 1;
                continue;
            }
            Ok(wasmparser::Payload::End(_)) => {
                depth = depth.saturating_sub(1);
                continue;
            }
            Ok(wasmparser::Payload::CustomSection(custom)) => custom,
            _ => continue,
        };
        let wasmparser::KnownCustom::Producers(reader) = custom.as_known() else { continue };
        for field in reader.into_iter().flatten() {
            for value in field.values.into_iter().flatten() {
                if out.len() >= 32 {
                    break;
                }
                let entry = (super::text::guest_text(field.name), super::text::guest_text(format!("{} {}", value.name, value.version).trim()));
                if field.name == "language" {
                    let slot = if depth == 0 { &mut own_language } else { &mut inner_language };
                    slot.get_or_insert_with(|| entry.1.clone());
                }
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
        }
    }
    (out, own_language.or(inner_language))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{Sandbox, SandboxConfig};

    /// A core module declaring `memories` memories of `pages` pages each.
    fn module_with_memories(memories: u8, pages: u16) -> Vec<u8> {
        let leb = |mut v: u32, out: &mut Vec<u8>| loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        };
        let mut body = Vec::new();
        leb(u32::from(memories), &mut body);
        for _ in 0..memories {
            body.push(0x00); // limits: minimum only
            leb(u32::from(pages), &mut body);
        }
        let mut m = MODULE_HEADER.to_vec();
        m.push(5); // memory section
        leb(body.len() as u32, &mut m);
        m.extend(body);
        m
    }

    #[test]
    fn extra_memories_share_one_cap() {
        let sandbox = Sandbox::new(SandboxConfig { cache_dir: None, ..SandboxConfig::default() }).unwrap();
        let cap = sandbox.config.memory_bytes;
        // 15 memories of 250 MiB (fewer than MAX_MEMORIES, so the count
        // does not refuse them first): each fits the cap alone, together
        // they are 15 times over.
        let module = wasmtime::Module::new(&sandbox.engine, module_with_memories(15, 4000)).unwrap();
        let mut store = wasmtime::Store::new(&sandbox.engine, GuestState { limiter: MemoryLimiter::new(cap) });
        store.limiter(|s| &mut s.limiter);
        let refused = wasmtime::Linker::new(&sandbox.engine).instantiate(&mut store, &module).is_err();
        assert!(refused, "15 memories of 250 MiB instantiated under a {} MiB cap", cap >> 20);
        assert!(store.data().limiter.hit && store.data().limiter.total <= cap);
        // One memory under the cap is fine.
        let module = wasmtime::Module::new(&sandbox.engine, module_with_memories(1, 4000)).unwrap();
        let mut store = wasmtime::Store::new(&sandbox.engine, GuestState { limiter: MemoryLimiter::new(cap) });
        store.limiter(|s| &mut s.limiter);
        assert!(wasmtime::Linker::new(&sandbox.engine).instantiate(&mut store, &module).is_ok());
    }
}
