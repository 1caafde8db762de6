//! `--metrics ADDR`: Prometheus text format over HTTP (GET /metrics), made
//! at each scrape from the very document `status --json` prints, so the two
//! never disagree. Encoded by prometheus-client; the HTTP side answers one
//! small request per connection, within bounds (request size, time, and
//! connections at once), like every other listener of the daemon.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Labels = Vec<(String, String)>;

/// The longest request head read, and how long a client has to send it.
const REQUEST_MAX: usize = 8 << 10;
const REQUEST_TIME: Duration = Duration::from_secs(5);
/// Scrapes served at once; more wait for their turn in the kernel's queue.
const CONNECTIONS: usize = 16;

/// A family of metrics by label, registered under `name`.
fn family<M: EncodeMetric + TypedMetric + Default + std::fmt::Debug + Send + Sync + 'static>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> Family<Labels, M> {
    let f = Family::<Labels, M>::default();
    registry.register(name, help, f.clone());
    f
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    family(registry, name, help)
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge<f64, AtomicU64>> {
    family(registry, name, help)
}

/// A histogram counted elsewhere (`latency.rs`) and read from the status
/// document: prometheus-client's own `Histogram` only takes observations
/// one by one, so this hands the crate's encoder the counts as they are.
#[derive(Debug, Default)]
struct Counted(std::sync::OnceLock<Buckets>);

#[derive(Debug)]
struct Buckets {
    sum_seconds: f64,
    count: u64,
    /// (upper bound in seconds, samples in this bucket alone); the last
    /// bound is `f64::MAX`, which the encoder writes as `+Inf`.
    buckets: Vec<(f64, u64)>,
}

impl Counted {
    /// From a `latency::Snapshot` as JSON; a malformed one stays empty.
    fn fill(&self, snapshot: &Value) {
        let (Some(le_us), Some(counts)) = (snapshot["le_us"].as_array(), snapshot["counts"].as_array()) else { return };
        if counts.len() != le_us.len() + 1 {
            return;
        }
        let bounds = le_us.iter().map(|b| num(b) as f64 / 1e6).chain(std::iter::once(f64::MAX));
        let buckets: Vec<(f64, u64)> = bounds.zip(counts.iter().map(num)).collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let _ = self.0.set(Buckets { sum_seconds: num(&snapshot["sum_ns"]) as f64 / 1e9, count, buckets });
    }
}

impl TypedMetric for Counted {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Counted {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        match self.0.get() {
            Some(b) => encoder.encode_histogram::<NoLabelSet>(b.sum_seconds, b.count, &b.buckets, None),
            None => Ok(()),
        }
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

fn histogram(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counted> {
    family(registry, name, help)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The metrics of a served device's `status --json` document.
pub fn render(status: &Value) -> String {
    let mut r = Registry::with_prefix("wasmraid");
    let size = gauge(&mut r, "device_size_bytes", "Size of the served device");
    let nbd_clients = gauge(&mut r, "nbd_clients", "NBD clients connected");
    let gathered =
        counter(&mut r, "ublk_gathered_requests", "ublk requests served together with others, by op (write: in one stripe write; read: by one rebuild)");
    let gathers = counter(&mut r, "ublk_gathers", "Stripe writes and rebuilds that served two ublk requests or more, by op");
    let array_io = [
        ("reads", counter(&mut r, "array_reads", "Reads served by the array")),
        ("writes", counter(&mut r, "array_writes", "Writes served by the array")),
        ("read_bytes", counter(&mut r, "array_read_bytes", "Bytes read from the array")),
        ("written_bytes", counter(&mut r, "array_written_bytes", "Bytes written to the array")),
        ("degraded_reads", counter(&mut r, "array_degraded_reads", "Reads rebuilt from the other legs")),
        ("read_modify_writes", counter(&mut r, "array_read_modify_writes", "Parity updates by read-modify-write")),
        ("reconstruct_writes", counter(&mut r, "array_reconstruct_writes", "Parity updates by reconstruct-write")),
        ("full_stripe_writes", counter(&mut r, "array_full_stripe_writes", "Writes of whole stripes")),
        ("flushes", counter(&mut r, "array_flushes", "Flushes")),
        ("errors", counter(&mut r, "array_errors", "Requests that failed")),
    ];
    let array_latency =
        histogram(&mut r, "array_latency_seconds", "Requests' time from start to answer, by op (reads handed to the frontend as extents are not timed)");
    let guest_calls = counter(&mut r, "array_guest_calls", "Guest calls made on the running layout's component, its proof included");
    let map_cache = counter(&mut r, "array_map_cache_lookups", "Lookups of an aperiodic layout's map cache, by result (hit, miss)");
    let legs_failed = gauge(&mut r, "array_legs_failed", "Legs failed (dm-raid D)");
    let sync_progress = gauge(&mut r, "array_sync_progress_ratio", "Progress of the sync action in 0..1 (1 when idle)");
    let syncing = gauge(&mut r, "array_sync_action", "The sync action running (1 for the one named in the label)");
    let mismatches = gauge(&mut r, "array_mismatch_sectors", "Mismatches the last check or repair found (md's mismatch_cnt)");
    let bitmap = gauge(&mut r, "array_bitmap_regions", "Write-intent bitmap regions by state");
    let leg_up = gauge(&mut r, "leg_up", "1 when the leg is alive and in sync (dm-raid A)");
    let leg_io = [
        ("reads", counter(&mut r, "leg_reads", "Reads sent to the leg")),
        ("writes", counter(&mut r, "leg_writes", "Writes sent to the leg")),
        ("errors", counter(&mut r, "leg_errors", "Leg I/O errors")),
    ];
    let leg_latency = histogram(&mut r, "leg_latency_seconds", "Leg I/O time where the array waited for it, by op; remote legs' include their link");
    let link_up = gauge(&mut r, "leg_link_connected", "1 when a remote leg's link is up");
    let link_latency = gauge(&mut r, "leg_link_latency_seconds", "A remote leg's recent reply latency");
    let link_reconnects = counter(&mut r, "leg_link_reconnects", "Reconnections of a remote leg's link");

    let device = status["name"].as_str().unwrap_or("");
    size.get_or_create(&labels(&[("device", device)])).set(num(&status["size_bytes"]) as f64);
    if let Some(clients) = status["nbd"]["clients"].as_array() {
        nbd_clients.get_or_create(&labels(&[("device", device)])).set(clients.len() as f64);
    }
    let g = &status["ublk"]["gathered"];
    if g.is_object() {
        for (op, requests, groups) in [("write", "writes", "write_groups"), ("read", "reads", "rebuilds")] {
            let at = labels(&[("device", device), ("op", op)]);
            gathered.get_or_create(&at).inc_by(num(&g[requests]));
            gathers.get_or_create(&at).inc_by(num(&g[groups]));
        }
    }
    for a in status["arrays"].as_array().into_iter().flatten() {
        let array = a["name"].as_str().unwrap_or("");
        let at = labels(&[("device", device), ("array", array)]);
        for (key, family) in &array_io {
            family.get_or_create(&at).inc_by(num(&a["counters"][*key]));
        }
        for op in ["read", "write"] {
            array_latency.get_or_create(&labels(&[("device", device), ("array", array), ("op", op)])).fill(&a["latency"][op]);
        }
        guest_calls.get_or_create(&at).inc_by(num(&a["guest_calls"]));
        if a["map_cache"].is_object() {
            for result in ["hit", "miss"] {
                let key = if result == "hit" { "hits" } else { "misses" };
                map_cache.get_or_create(&labels(&[("device", device), ("array", array), ("result", result)])).inc_by(num(&a["map_cache"][key]));
            }
        }
        let health = a["health"].as_str().unwrap_or("");
        legs_failed.get_or_create(&at).set(health.matches('D').count() as f64);
        // "done/total" sectors, as dm-raid prints it.
        let ratio = a["sync_ratio"].as_str().and_then(|r| r.split_once('/')).and_then(|(d, t)| Some((d.parse::<f64>().ok()?, t.parse::<f64>().ok()?)));
        sync_progress.get_or_create(&at).set(ratio.map_or(1.0, |(d, t)| if t > 0.0 { d / t } else { 1.0 }));
        let action = a["sync_action"].as_str().unwrap_or("idle");
        syncing.get_or_create(&labels(&[("device", device), ("array", array), ("action", action)])).set(1.0);
        mismatches.get_or_create(&at).set(num(&a["mismatch_cnt"]) as f64);
        if let Some(states) = a["metadata"]["bitmap"].as_object() {
            for (state, n) in states {
                bitmap.get_or_create(&labels(&[("device", device), ("array", array), ("state", state)])).set(num(n) as f64);
            }
        }
        for l in a["legs"].as_array().into_iter().flatten() {
            let index = num(&l["index"]).to_string();
            let leg = labels(&[("device", device), ("array", array), ("leg", &index)]);
            leg_up.get_or_create(&leg).set(if l["health_char"] == "A" { 1.0 } else { 0.0 });
            for (key, family) in &leg_io {
                family.get_or_create(&leg).inc_by(num(&l[*key]));
            }
            let remote = if l["link"].is_object() { "true" } else { "false" };
            for op in ["read", "write"] {
                leg_latency
                    .get_or_create(&labels(&[("device", device), ("array", array), ("leg", &index), ("remote", remote), ("op", op)]))
                    .fill(&l["latency"][op]);
            }
            if l["link"].is_object() {
                link_up.get_or_create(&leg).set(if l["link"]["connected"] == true { 1.0 } else { 0.0 });
                link_latency.get_or_create(&leg).set(num(&l["link"]["latency_us"]) as f64 / 1e6);
                link_reconnects.get_or_create(&leg).inc_by(num(&l["link"]["reconnects"]));
            }
        }
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

/// Serve GET /metrics on `listener` until the task is dropped; `status`
/// gives the current `status --json` document.
pub async fn serve(listener: tokio::net::TcpListener, status: Arc<dyn Fn() -> Value + Send + Sync>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors: let some close before trying again.
                tracing::warn!("metrics listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let status = status.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REQUEST_TIME, answer(stream, status)).await;
        });
    }
}

/// What a request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Not all of the head yet (no blank line): read more.
    Incomplete,
    /// Over `REQUEST_MAX` without its end.
    TooLarge,
    Metrics,
    NotFound,
    NotAllowed,
}

/// Route the bytes of a request read so far (untrusted: any bytes).
pub fn route(head: &[u8]) -> Route {
    if !head.windows(4).any(|w| w == b"\r\n\r\n") {
        return if head.len() > REQUEST_MAX { Route::TooLarge } else { Route::Incomplete };
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or(&[]);
    let mut words = line.split(|&b| b == b' ');
    match (words.next(), words.next()) {
        (Some(b"GET"), Some(b"/metrics")) => Route::Metrics,
        (Some(b"GET"), Some(_)) => Route::NotFound,
        _ => Route::NotAllowed,
    }
}

/// One request: the head read (bounded), then one answer, then close.
async fn answer(mut stream: tokio::net::TcpStream, status: Arc<dyn Fn() -> Value + Send + Sync>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        match route(&head) {
            Route::Incomplete => {}
            Route::TooLarge => return reply(&mut stream, "431 Request Header Fields Too Large", "text/plain", "request head over 8 KiB\n").await,
            Route::Metrics => {
                // The status document may wait briefly on the array's
                // locks: build it off the runtime's threads.
                let body = tokio::task::spawn_blocking(move || render(&status())).await.unwrap_or_default();
                return reply(&mut stream, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &body).await;
            }
            Route::NotFound => return reply(&mut stream, "404 Not Found", "text/plain", "try /metrics\n").await,
            Route::NotAllowed => return reply(&mut stream, "405 Method Not Allowed", "text/plain", "GET /metrics only\n").await,
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
}

async fn reply(stream: &mut tokio::net::TcpStream, code: &str, kind: &str, body: &str) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_are_routed_and_bounded() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), Route::Incomplete);
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.0\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::NotAllowed);
        assert_eq!(route(&vec![b'a'; REQUEST_MAX + 1]), Route::TooLarge);
    }

    #[test]
    fn a_status_document_becomes_labelled_metrics() {
        let status = serde_json::json!({
            "name": "data", "size_bytes": 4096,
            "nbd": {"clients": [{}, {}]},
            "ublk": {"gathered": {"writes": 30, "write_groups": 10, "reads": 4, "rebuilds": 2}},
            "arrays": [{
                "name": "data", "health": "AAD", "sync_ratio": "50/200", "sync_action": "recover", "mismatch_cnt": 3,
                "counters": {"reads": 7, "writes": 9, "read_bytes": 70, "written_bytes": 90},
                "latency": {"read": {"count": 3, "sum_ns": 1_500_000, "le_us": [16, 32], "counts": [1, 0, 2]}},
                "guest_calls": 11, "map_cache": {"hits": 40, "misses": 2},
                "metadata": {"bitmap": {"clean": 10, "dirty": 2}},
                "legs": [
                    {"index": 0, "health_char": "A", "reads": 4, "writes": 5, "errors": 0},
                    {"index": 2, "health_char": "D", "reads": 1, "writes": 0, "errors": 6,
                     "link": {"connected": false, "latency_us": 1500, "reconnects": 4}},
                ],
            }],
        });
        let text = render(&status);
        let value = |series: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' ')).unwrap_or_else(|| panic!("no {series} in\n{text}"));
            line[series.len()..].trim().parse().unwrap()
        };
        assert_eq!(value(r#"wasmraid_device_size_bytes{device="data"}"#), 4096.0);
        assert_eq!(value(r#"wasmraid_nbd_clients{device="data"}"#), 2.0);
        assert_eq!(value(r#"wasmraid_ublk_gathered_requests_total{device="data",op="write"}"#), 30.0);
        assert_eq!(value(r#"wasmraid_ublk_gathers_total{device="data",op="read"}"#), 2.0);
        assert_eq!(value(r#"wasmraid_array_reads_total{device="data",array="data"}"#), 7.0);
        assert_eq!(value(r#"wasmraid_array_legs_failed{device="data",array="data"}"#), 1.0);
        assert_eq!(value(r#"wasmraid_array_sync_progress_ratio{device="data",array="data"}"#), 0.25);
        assert_eq!(value(r#"wasmraid_array_sync_action{device="data",array="data",action="recover"}"#), 1.0);
        assert_eq!(value(r#"wasmraid_array_bitmap_regions{device="data",array="data",state="dirty"}"#), 2.0);
        assert_eq!(value(r#"wasmraid_leg_up{device="data",array="data",leg="2"}"#), 0.0);
        assert_eq!(value(r#"wasmraid_leg_errors_total{device="data",array="data",leg="2"}"#), 6.0);
        assert_eq!(value(r#"wasmraid_leg_link_latency_seconds{device="data",array="data",leg="2"}"#), 0.0015);
        // Cumulative buckets, bounds in seconds, the rest under +Inf.
        assert_eq!(value(r#"wasmraid_array_latency_seconds_bucket{le="0.000016",device="data",array="data",op="read"}"#), 1.0);
        assert_eq!(value(r#"wasmraid_array_latency_seconds_bucket{le="0.000032",device="data",array="data",op="read"}"#), 1.0);
        assert_eq!(value(r#"wasmraid_array_latency_seconds_bucket{le="+Inf",device="data",array="data",op="read"}"#), 3.0);
        assert_eq!(value(r#"wasmraid_array_latency_seconds_count{device="data",array="data",op="read"}"#), 3.0);
        assert_eq!(value(r#"wasmraid_array_latency_seconds_sum{device="data",array="data",op="read"}"#), 0.0015);
        assert!(!text.contains(r#"latency_seconds_count{device="data",array="data",op="write""#), "no histogram without its snapshot:\n{text}");
        assert_eq!(value(r#"wasmraid_array_guest_calls_total{device="data",array="data"}"#), 11.0);
        assert_eq!(value(r#"wasmraid_array_map_cache_lookups_total{device="data",array="data",result="miss"}"#), 2.0);
    }
}
