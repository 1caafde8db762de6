//! The wasmtime engine and its epoch ticker.

use super::SandboxError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Limits applied to every guest call.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// A call running longer than this is interrupted.
    pub call_timeout: Duration,
    /// Linear memory cap per instance.
    pub memory_bytes: usize,
    /// Wasm stack cap.
    pub stack_bytes: usize,
    /// Where compiled artifacts are kept; None disables the disk cache.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Bounds on compiling a component (size, time, memory).
    pub compile: super::CompileLimits,
    /// Where components are compiled (a child process bounds time and
    /// memory; see `compile.rs`).
    pub compiler: super::Compiler,
    /// The most time a proof may spend in guest calls and on checking
    /// fault tolerance (the host's own bitmap work grows with the array
    /// and is not counted).
    pub proof_timeout: Duration,
    /// Guest instances an aperiodic layout's map keeps to refill its cache
    /// (each may use up to `memory_bytes`).
    pub map_instances: usize,
    /// Compile a component's functions on every core. Off in a serving
    /// process (it would starve the data path while a component is
    /// (re)loaded under load); on in the compiler child, which runs at a
    /// lower priority than the daemon that asked.
    pub parallel_compilation: bool,
}

/// How often the epoch advances; deadlines are counted in these ticks.
pub const TICK: Duration = Duration::from_millis(10);

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            call_timeout: Duration::from_secs(2),
            memory_bytes: 256 << 20,
            stack_bytes: 512 << 10,
            cache_dir: super::artifact_cache::default_dir(),
            compile: super::CompileLimits::default(),
            compiler: super::Compiler::default(),
            proof_timeout: Duration::from_secs(12),
            map_instances: 2,
            parallel_compilation: false,
        }
    }
}

/// An engine configured for layouts, with its ticker thread.
pub struct Sandbox {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) config: SandboxConfig,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Result<Arc<Sandbox>, SandboxError> {
        let mut c = wasmtime::Config::new();
        c.wasm_component_model(true);
        c.epoch_interruption(true);
        c.max_wasm_stack(config.stack_bytes);
        // Features the layout contract does not need are off, so a
        // component using them is refused at validation: 64-bit memories,
        // GC, stack switching, shared everything (threads, exceptions and
        // async components are not even built in: see the workspace's
        // wasmtime features). Multi-memory stays on: the adapters wasmtime
        // fuses between a component's core modules (componentize-js makes
        // such components) hold two memories. Extra memories gain nothing:
        // MemoryLimiter caps the sum of every memory of an instance.
        c.wasm_multi_memory(true);
        c.wasm_memory64(false);
        c.wasm_gc(false);
        c.wasm_stack_switching(false);
        c.wasm_shared_everything_threads(false);
        c.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // Compiling on every core inside a serving process starves the data
        // path while a component is (re)loaded under load
        // (benches/reload.rs); the compiler child, niced, may.
        c.parallel_compilation(config.parallel_compilation);
        let engine = wasmtime::Engine::new(&c).map_err(|e| SandboxError::Setup(format!("{e:#}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| SandboxError::Setup(format!("cannot start the epoch ticker: {e}")))?
        };
        Ok(Arc::new(Sandbox { engine, config, stop, ticker: Some(ticker) }))
    }

    /// Deadline for one call, in epoch ticks (at least 2, so a call is
    /// never interrupted by a tick that was already due).
    pub(crate) fn deadline_ticks(&self) -> u64 {
        (self.config.call_timeout.as_millis() / TICK.as_millis()).max(2) as u64
    }

    /// A hash of everything that makes compiled code compatible with this
    /// engine (wasmtime's version and settings).
    pub fn compatibility_hash(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{:016x}", h.finish())
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}
