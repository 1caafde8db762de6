//! What `status` reports: dm-raid style health per array, the layout's name
//! and hash, I/O counters.

use crate::array::Array;
use crate::array::health::Health;
use serde::Serialize;
use std::sync::atomic::Ordering;

#[derive(Serialize)]
pub struct LegStatus {
    pub index: usize,
    pub device: String,
    pub health: Health,
    pub health_char: String,
    pub reads: u64,
    pub writes: u64,
    pub errors: u64,
    pub last_error: Option<String>,
}

#[derive(Serialize)]
pub struct ArrayStatus {
    pub name: String,
    pub layout: String,
    pub component_sha256: String,
    pub args: String,
    pub chunk_bytes: u64,
    pub size_bytes: u64,
    pub fault_tolerance: u32,
    pub health: String,
    pub sync_action: String,
    pub sync_ratio: String,
    pub mismatch_cnt: u64,
    /// The line `dmsetup status` would print for a dm-raid target.
    pub dm_status: String,
    pub legs: Vec<LegStatus>,
    pub counters: serde_json::Value,
}

pub fn array_status(a: &Array) -> ArrayStatus {
    let layout = a.layout();
    let size = layout.capacity_bytes();
    let health = a.health_chars();
    let c = &a.counters;
    let get = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
    let sectors = size / 512;
    let sync_ratio = format!("{sectors}/{sectors}");
    ArrayStatus {
        name: a.name().into(),
        layout: layout.name.clone(),
        component_sha256: layout.component_hash.clone(),
        args: layout.geometry.args.clone(),
        chunk_bytes: layout.geometry.chunk_bytes(),
        size_bytes: size,
        fault_tolerance: layout.descriptor.fault_tolerance,
        dm_status: format!("0 {sectors} raid {} {} {health} {sync_ratio} idle 0", layout.name, a.legs().len()),
        health,
        sync_action: "idle".into(),
        sync_ratio,
        mismatch_cnt: 0,
        legs: a
            .legs()
            .iter()
            .enumerate()
            .map(|(index, l)| LegStatus {
                index,
                device: l.device.describe(),
                health: l.health(),
                health_char: l.health().char().to_string(),
                reads: get(&l.reads),
                writes: get(&l.writes),
                errors: get(&l.errors),
                last_error: l.last_error(),
            })
            .collect(),
        counters: serde_json::json!({
            "reads": get(&c.reads),
            "writes": get(&c.writes),
            "read_bytes": get(&c.read_bytes),
            "written_bytes": get(&c.written_bytes),
            "degraded_reads": get(&c.degraded_reads),
            "read_modify_writes": get(&c.rmw),
            "reconstruct_writes": get(&c.rcw),
            "full_stripe_writes": get(&c.full_stripe),
            "flushes": get(&c.flushes),
            "errors": get(&c.errors),
        }),
    }
}
