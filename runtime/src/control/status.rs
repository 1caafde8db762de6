//! What `status` reports: dm-raid style health per array, the layout's name
//! and hash, I/O counters, latency histograms (`latency.rs`), the layout's
//! guest calls and map cache.

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
    /// The leg's reads and writes timed where the array waited for them
    /// (a remote leg's: its link's round trips included). Reads handed to
    /// a frontend as extents (splice, ublk's ring) are counted, not timed.
    pub latency: serde_json::Value,
    pub last_error: Option<String>,
    /// The distributed spare ordinal a dead leg's chunks were rebuilt into.
    pub spare: Option<u32>,
    /// A leg being rebuilt: the stripe its checkpointed rebuild has reached.
    pub recovery: Option<crate::meta::superblock::Recovery>,
    /// A replacement being rebuilt beside this leg: the stripe it reached.
    pub replacement_offset: Option<u64>,
    /// A remote leg's link: connected, reconnects, latency.
    pub link: Option<crate::device::LinkState>,
    /// A leg that is a table of its own: the arrays in it (the tree).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub arrays: Vec<ArrayStatus>,
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
    pub sync_last: Option<String>,
    pub mismatch_cnt: u64,
    pub read_policy: crate::array::ReadPolicy,
    /// Array uuid, generation and bitmap state counts, with metadata.
    pub metadata: Option<serde_json::Value>,
    /// The line `dmsetup status` would print for a dm-raid target.
    pub dm_status: String,
    pub legs: Vec<LegStatus>,
    pub counters: serde_json::Value,
    /// Requests' time from start to answer, reads and writes, as the array
    /// served them itself (reads handed out as extents are not timed).
    pub latency: serde_json::Value,
    /// Guest calls made on the running layout's component (its proof
    /// included): a reload starts a new count.
    pub guest_calls: u64,
    /// The aperiodic map cache's hits and misses (null for a periodic
    /// layout: it has no cache).
    pub map_cache: Option<crate::layout::map::CacheStats>,
}

/// The part of an array's status the event watcher compares
/// (`events.rs`), with the same keys as `array_status`: cheap enough to
/// take every 100 ms (no metadata lock, no bitmap count).
pub fn watched(a: &Array) -> serde_json::Value {
    let layout = a.layout();
    let (done, total) = a.sync.ratio();
    serde_json::json!({
        "name": a.name(),
        "health": a.health_chars(),
        "sync_action": a.sync.action().name(),
        "sync_ratio": format!("{done}/{total}"),
        "layout": layout.name,
        "component_sha256": layout.component_hash,
        "legs": a.legs().iter().map(|l| serde_json::json!({
            "device": l.device().describe(),
            "link": l.device().link().map(|k| serde_json::json!({"connected": k.connected})),
        })).collect::<Vec<_>>(),
    })
}

pub fn array_status(a: &Array) -> ArrayStatus {
    let layout = a.layout();
    let size = layout.capacity_bytes();
    let health = a.health_chars();
    let c = &a.counters;
    let get = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
    let sectors = size / 512;
    let action = a.sync.action();
    let (done, total) = a.sync.ratio();
    let sync_ratio = if action == crate::array::sync::SyncAction::Idle || total == 0 {
        format!("{sectors}/{sectors}")
    } else {
        let per_stripe = sectors / layout.descriptor.stripes.max(1);
        format!("{}/{sectors}", done * per_stripe)
    };
    let mismatches = a.sync.mismatches.load(Ordering::Relaxed);
    let metadata = a.meta.as_ref().map(|m| {
        // Superblock writes hold this lock while they reach every leg; a
        // leg whose link is down could keep status waiting, so do not.
        let t = m.template.try_lock_for(std::time::Duration::from_millis(200));
        let (uuid, generation, events_cleared, state) = match &t {
            Some(t) => (
                serde_json::json!(crate::meta::superblock::uuid_text(&t.array_uuid)),
                serde_json::json!(t.generation),
                serde_json::json!(t.events_cleared),
                serde_json::json!(match (t.dirty, t.unsynced) {
                    (_, true) => "active, resync pending after an unclean stop",
                    (true, false) => "active",
                    (false, false) => "clean",
                }),
            ),
            None => (serde_json::json!("(superblock write in progress)"), serde_json::Value::Null, serde_json::Value::Null, serde_json::Value::Null),
        };
        drop(t);
        let counts: serde_json::Map<String, serde_json::Value> =
            m.intent.counts().iter().map(|(st, n)| (format!("{st:?}").to_lowercase(), serde_json::json!(n))).collect();
        serde_json::json!({
            "uuid": uuid,
            "generation": generation,
            "events_cleared": events_cleared,
            "state": state,
            "regions": m.intent.regions(),
            "region_stripes": m.intent.region_stripes,
            "bitmap": counts,
            "bitmap_writes": m.intent.persisted.load(Ordering::Relaxed),
        })
    });
    ArrayStatus {
        name: a.name().into(),
        layout: layout.name.clone(),
        component_sha256: layout.component_hash.clone(),
        args: layout.geometry.args.clone(),
        chunk_bytes: layout.geometry.chunk_bytes(),
        size_bytes: size,
        fault_tolerance: layout.descriptor.fault_tolerance,
        dm_status: format!("0 {sectors} raid {} {} {health} {sync_ratio} {} {mismatches}", layout.name, a.legs().len(), action.name()),
        health,
        sync_action: action.name().into(),
        sync_ratio,
        sync_last: a.sync.last_result.lock().clone(),
        mismatch_cnt: mismatches,
        read_policy: a.read_policy(),
        metadata,
        legs: a
            .legs()
            .iter()
            .enumerate()
            .map(|(index, l)| LegStatus {
                index,
                device: match l.replacement() {
                    Some(r) => format!("{} (being replaced by {})", l.device().describe(), r.describe()),
                    None => l.device().describe(),
                },
                health: l.health(),
                health_char: l.health().char().to_string(),
                reads: get(&l.reads),
                writes: get(&l.writes),
                errors: get(&l.errors),
                latency: l.latency.snapshot(),
                last_error: l.last_error(),
                spare: a.spare_of(index),
                recovery: l.recovery(),
                replacement_offset: l.replacement().map(|_| l.replacement_offset.load(Ordering::Relaxed)),
                link: l.device().link(),
                arrays: l.device().arrays().iter().map(|a| array_status(a)).collect(),
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
        latency: a.latency.snapshot(),
        guest_calls: layout.guest_calls.load(Ordering::Relaxed),
        map_cache: layout.map_cache(),
    }
}
