//! One guest instance with its own store: the only way the host calls a
//! guest. A trap discards the instance (wasmtime poisons it) and the next
//! call re-instantiates and re-configures it.

use super::component::{GuestState, Layout, LoadedComponent, MemoryLimiter, wit};
use super::{SandboxError, TrapKind};
use crate::layout::{Descriptor, Geometry};
use std::sync::Arc;
use wasmtime::Store;

pub struct GuestInstance {
    component: Arc<LoadedComponent>,
    live: Option<(Store<GuestState>, Layout)>,
    /// The configuration to replay after re-instantiation, and its answer.
    configured: Option<(Geometry, Descriptor)>,
    /// Instances created so far (1 + re-instantiations after traps).
    pub instantiations: u64,
}

impl GuestInstance {
    pub fn new(component: Arc<LoadedComponent>) -> Self {
        GuestInstance { component, live: None, configured: None, instantiations: 0 }
    }

    pub fn component(&self) -> &Arc<LoadedComponent> {
        &self.component
    }

    fn instantiate(&mut self) -> Result<(), SandboxError> {
        let sandbox = &self.component.sandbox;
        let mut store = Store::new(&sandbox.engine, GuestState { limiter: MemoryLimiter::new(sandbox.config.memory_bytes) });
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(sandbox.deadline_ticks());
        self.instantiations += 1;
        let bindings = match self.component.pre.instantiate(&mut store) {
            Ok(b) => b,
            Err(e) => return Err(classify(&store, "instantiate", e)),
        };
        self.live = Some((store, bindings));
        if let Some((geometry, expected)) = self.configured.clone() {
            let again = self.call("configure", |b, s| b.wasmraid_layout_algorithm().call_configure(s, &to_wit(&geometry)))?;
            let again = again.map(from_wit).map_err(|why| SandboxError::Refused(super::text::guest_text(&why)))?;
            if again != expected {
                return Err(SandboxError::Inconsistent { call: "configure", detail: format!("first {expected:?}, now {again:?}") });
            }
        }
        Ok(())
    }

    /// Run one guest call under a fresh deadline; any failure discards the
    /// instance.
    fn call<R>(&mut self, what: &'static str, f: impl FnOnce(&Layout, &mut Store<GuestState>) -> wasmtime::Result<R>) -> Result<R, SandboxError> {
        if self.live.is_none() {
            self.instantiate()?;
        }
        let deadline = self.component.sandbox.deadline_ticks();
        let Some((store, bindings)) = self.live.as_mut() else {
            return Err(SandboxError::Setup("instance vanished".into()));
        };
        store.set_epoch_deadline(deadline);
        self.component.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match f(bindings, store) {
            Ok(r) => Ok(r),
            Err(e) => {
                let err = classify(store, what, e);
                self.live = None;
                Err(err)
            }
        }
    }

    /// The layout's name.
    pub fn name(&mut self) -> Result<String, SandboxError> {
        let name = self.call("name", |b, s| b.wasmraid_layout_algorithm().call_name(s))?;
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_graphic()) {
            return Err(SandboxError::Contract(format!(
                "its name ({} bytes: \"{}\") must be 1 to 64 printable ASCII characters",
                name.len(),
                super::text::guest_text(&name)
            )));
        }
        Ok(name)
    }

    /// Configure the instance; the answer is remembered and replayed after
    /// any re-instantiation.
    pub fn configure(&mut self, geometry: &Geometry) -> Result<Descriptor, SandboxError> {
        let answer = self.call("configure", |b, s| b.wasmraid_layout_algorithm().call_configure(s, &to_wit(geometry)))?;
        let descriptor = from_wit(answer.map_err(|why| SandboxError::Refused(super::text::guest_text(&why)))?);
        self.configured = Some((geometry.clone(), descriptor));
        Ok(descriptor)
    }

    /// The flat answer for `count` stripes from `first`.
    pub fn map_stripes(&mut self, first: u64, count: u32) -> Result<Vec<u64>, SandboxError> {
        if self.configured.is_none() {
            return Err(SandboxError::Setup("map-stripes called before configure".into()));
        }
        self.call("map-stripes", |b, s| b.wasmraid_layout_algorithm().call_map_stripes(s, first, count))
    }
}

fn to_wit(g: &Geometry) -> wit::Geometry {
    wit::Geometry { legs: g.legs(), chunk_sectors: g.chunk_sectors, leg_chunks: g.leg_chunks.clone(), args: g.args.clone() }
}

fn from_wit(d: wit::Descriptor) -> Descriptor {
    Descriptor {
        data_chunks: d.data_chunks,
        replica_chunks: d.replica_chunks,
        parity_chunks: d.parity_chunks,
        spare_chunks: d.spare_chunks,
        stripes: d.stripes,
        period: d.period,
        period_advance: d.period_advance,
        fault_tolerance: d.fault_tolerance,
    }
}

fn classify(store: &Store<GuestState>, call: &'static str, e: wasmtime::Error) -> SandboxError {
    let out_of_memory = store.data().limiter.hit;
    let kind = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => TrapKind::Timeout,
        Some(wasmtime::Trap::StackOverflow) => TrapKind::StackOverflow,
        _ if out_of_memory => TrapKind::OutOfMemory,
        Some(wasmtime::Trap::UnreachableCodeReached) => TrapKind::Unreachable,
        _ => TrapKind::Other,
    };
    // The first line only, cut and escaped: trap messages can carry names
    // the component chose (functions in its name section).
    let detail = format!("{e:#}");
    SandboxError::Trap { call, kind, detail: super::text::guest_text(detail.lines().next().unwrap_or_default()) }
}
