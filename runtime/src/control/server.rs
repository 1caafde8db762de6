//! The serving side of the control socket.

use super::{Request, Response};
use crate::array::Array;
use crate::array::sync::SyncAction;
use crate::layout::proven::ProvenLayout;
use crate::serve::Served;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// Answer control connections until the listener is dropped.
pub async fn run(listener: UnixListener, served: Arc<Served>) {
    let mut backoff = crate::accept::AcceptBackoff::new("control socket");
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff.succeeded();
                stream
            }
            // Out of descriptors, say: log and wait rather than spin.
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        let served = served.clone();
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut lines = BufReader::new(rd).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let response = match serde_json::from_str::<Request>(&line) {
                    Ok(Request::Subscribe { test }) => {
                        subscribed(&served, &mut wr, test).await;
                        break;
                    }
                    Ok(request) => handle(&served, request).await,
                    Err(e) => failure(format!("cannot read the request: {e}")),
                };
                let mut out = serde_json::to_string(&response).unwrap_or_else(|_| "{\"ok\":false}".into());
                out.push('\n');
                if wr.write_all(out.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Hold a subscriber's connection: an answer, its test messages, then
/// every event as a JSON line, until it hangs up or the server stops.
async fn subscribed(served: &Arc<Served>, wr: &mut tokio::net::unix::OwnedWriteHalf, test: bool) {
    use super::events::{Event, test_messages};
    let mut events = served.events.subscribe();
    let mut first = Vec::new();
    if test {
        let s = served.clone();
        if let Ok(status) = tokio::task::spawn_blocking(move || s.watched()).await {
            first = test_messages(&status);
        }
    }
    if wr.write_all(line(&success(serde_json::json!({"subscribed": true}))).as_bytes()).await.is_err() {
        return;
    }
    for e in first {
        if wr.write_all(line(&e).as_bytes()).await.is_err() {
            return;
        }
    }
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => Event {
                event: "EventsMissed".into(),
                device: served.name.clone(),
                array: String::new(),
                component: None,
                detail: Some(format!("{n} events came faster than this subscriber read them")),
            },
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        if wr.write_all(line(&event).as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A JSON line of anything serializable.
fn line<T: serde::Serialize>(v: &T) -> String {
    let mut out = serde_json::to_string(v).unwrap_or_else(|_| "{}".into());
    out.push('\n');
    out
}

/// Open a leg device named by the operator.
fn open(path: &str) -> Result<Arc<dyn crate::device::BlockDevice>, String> {
    crate::device::file::FileLeg::open(std::path::Path::new(path), Default::default())
        .map(|l| Arc::new(l) as Arc<dyn crate::device::BlockDevice>)
        .map_err(|e| e.to_string())
}

/// Run `f` on the named array off the async threads.
async fn with_array(served: &Arc<Served>, array: Option<String>, f: impl FnOnce(Arc<Array>) -> Result<serde_json::Value, String> + Send + 'static) -> Response {
    let a = match find_array(served, array.as_deref()) {
        Ok(a) => a,
        Err(e) => return failure(e),
    };
    match tokio::task::spawn_blocking(move || f(a)).await {
        Ok(Ok(v)) => success(v),
        Ok(Err(e)) => failure(e),
        Err(e) => failure(format!("task failed: {e}")),
    }
}

/// Start reshaping the served array (`reshape::online`): returns once the
/// data moves in the background.
fn reshape(
    served: &Served,
    add_legs: Vec<String>,
    layout: Option<String>,
    mut target: crate::reshape::offline::Target,
    rate: u64,
) -> Result<serde_json::Value, String> {
    let array = find_array(served, None)?;
    // The component: the one named, or the array's own.
    target.component = match &layout {
        Some(l) => crate::builtins::resolve(l).map_err(|e| e.to_string())?.1.into_owned(),
        None => array.meta.as_ref().map(|m| m.component.clone()).ok_or_else(|| format!("{} has no superblocks to record a reshape in", array.name()))?,
    };
    // O_DIRECT where the file system has it: the move writes the added
    // legs whole, and through the page cache each byte would be copied
    // twice more (a third of the move's time under the VM bed's TCG).
    let direct = crate::device::file::OpenFlags { direct: true, ..Default::default() };
    let added = add_legs
        .iter()
        .map(|p| {
            crate::device::file::FileLeg::open(std::path::Path::new(p), direct)
                .map(|l| Arc::new(l) as Arc<dyn crate::device::BlockDevice>)
                .or_else(|_| open(p))
                .map_err(|e| format!("{p}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let o = crate::reshape::online::Options { rate, ublk: served.ublk.as_ref().map(|u| (u.id, u.path.clone())), ..Default::default() };
    let online = crate::reshape::online::start(&served.table, &served.sandbox, &added, &target, o).map_err(|e| e.to_string())?;
    *served.reshape.lock() = Some(online.clone());
    Ok(online.status())
}

/// Lowers this thread's scheduling priority while alive.
struct Niced {
    previous: libc::c_int,
}

impl Niced {
    fn new(nice: libc::c_int) -> Niced {
        // SAFETY: gettid and get/setpriority take plain integers and only
        // affect the calling thread.
        unsafe {
            let tid = libc::gettid() as libc::id_t;
            let previous = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, nice);
            Niced { previous }
        }
    }
}

impl Drop for Niced {
    fn drop(&mut self) {
        // SAFETY: as in `new`. Raising priority back may need privilege; a
        // failure leaves this pool thread niced, which is harmless.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, self.previous);
        }
    }
}

fn failure(message: String) -> Response {
    Response { ok: false, error: Some(message), result: serde_json::Value::Null }
}

fn success(result: serde_json::Value) -> Response {
    Response { ok: true, error: None, result }
}

/// The reshape of the served array, while it moves it.
fn moving_reshape(served: &Served) -> Option<Arc<crate::reshape::online::Online>> {
    served.reshape.lock().clone().filter(|r| r.moving())
}

/// The array a request names, or the only one.
fn find_array(served: &Served, name: Option<&str>) -> Result<Arc<Array>, String> {
    if let Some(r) = moving_reshape(served) {
        return Err(format!(
            "{} is reshaping (to {}): legs, layout and syncs change once it is over (`wasmraid status {}` shows how far it is)",
            served.name,
            r.target_layout(),
            served.name
        ));
    }
    let arrays = &served.table.arrays();
    let names = || arrays.iter().map(|a| a.name().to_string()).collect::<Vec<_>>().join(", ");
    match name {
        Some(n) => arrays.iter().find(|a| a.name() == n).cloned().ok_or_else(|| format!("no array named {n:?} (arrays: {})", names())),
        None => match arrays.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(format!("{} has no array (its table has no wasm target)", served.name)),
            _ => Err(format!("{} has several arrays ({}): name one", served.name, names())),
        },
    }
}

async fn handle(served: &Arc<Served>, request: Request) -> Response {
    match request {
        Request::Status => success(served.status()),
        // Kept by the connection loop, which holds the socket (`subscribed`).
        Request::Subscribe { .. } => failure("a subscription is its own connection".into()),
        Request::Stop => {
            served.stop.notify_one();
            success(serde_json::json!({"stopping": served.name}))
        }
        Request::LegFail { array, leg } => match find_array(served, array.as_deref()) {
            Err(e) => failure(e),
            Ok(a) if leg >= a.legs().len() => failure(format!("array {} has legs 0 to {}, not {leg}", a.name(), a.legs().len() - 1)),
            Ok(a) => {
                a.fail_leg(leg, "failed by the operator");
                success(serde_json::json!({"array": a.name(), "leg": leg, "health": a.health_chars()}))
            }
        },
        Request::Sync { array, action } => {
            with_array(served, array, move |a| {
                let action = match action.as_str() {
                    "check" => SyncAction::Check,
                    "repair" => SyncAction::Repair,
                    "resync" => SyncAction::Resync,
                    other => return Err(format!("unknown action '{other}' (check, repair, resync)")),
                };
                a.start_sync(action, None).map_err(|e| e.to_string())?;
                Ok(serde_json::json!({"array": a.name(), "started": action.name()}))
            })
            .await
        }
        Request::SyncRate { array: None, bytes_per_second } if moving_reshape(served).is_some() => {
            if let Some(r) = moving_reshape(served) {
                r.rate.store(bytes_per_second, std::sync::atomic::Ordering::Relaxed);
            }
            success(serde_json::json!({"reshape": served.name, "rate": bytes_per_second}))
        }
        Request::Reshape { add_legs, layout, args, chunk_sectors, remove_legs, rate } => {
            let served = served.clone();
            let target = crate::reshape::offline::Target { component: Vec::new(), args, chunk_sectors, remove_slots: remove_legs };
            match tokio::task::spawn_blocking(move || reshape(&served, add_legs, layout, target, rate)).await {
                Ok(Ok(v)) => success(v),
                Ok(Err(e)) => failure(e),
                Err(e) => failure(format!("reshape task failed: {e}")),
            }
        }
        Request::SyncRate { array, bytes_per_second } => {
            with_array(served, array, move |a| {
                a.sync.rate_limit.store(bytes_per_second, std::sync::atomic::Ordering::Relaxed);
                Ok(serde_json::json!({"array": a.name(), "rate": bytes_per_second}))
            })
            .await
        }
        Request::ReadPolicy { array, policy } => {
            with_array(served, array, move |a| {
                a.set_read_policy(policy.parse()?);
                Ok(serde_json::json!({"array": a.name(), "read_policy": a.read_policy()}))
            })
            .await
        }
        Request::LegRemove { array, leg } => {
            with_array(served, array, move |a| {
                a.leg_remove(leg).map_err(|e| e.to_string())?;
                Ok(serde_json::json!({"array": a.name(), "health": a.health_chars()}))
            })
            .await
        }
        Request::LegAdd { array, leg, device } => {
            with_array(served, array, move |a| {
                let slot = a.leg_add(leg, open(&device)?).map_err(|e| e.to_string())?;
                Ok(serde_json::json!({"array": a.name(), "slot": slot, "health": a.health_chars()}))
            })
            .await
        }
        Request::LegReplace { array, leg, device } => {
            with_array(served, array, move |a| {
                a.leg_replace(leg, open(&device)?).map_err(|e| e.to_string())?;
                Ok(serde_json::json!({"array": a.name(), "leg": leg, "health": a.health_chars()}))
            })
            .await
        }
        Request::LegReadd { array, device } => {
            with_array(served, array, move |a| {
                let (slot, scope) = a.leg_readd(open(&device)?).map_err(|e| e.to_string())?;
                Ok(serde_json::json!({"array": a.name(), "slot": slot, "recovery": format!("{scope:?}").to_lowercase(), "health": a.health_chars()}))
            })
            .await
        }
        Request::Reload { array, component, args } => {
            let array = match find_array(served, array.as_deref()) {
                Ok(a) => a,
                Err(e) => return failure(e),
            };
            let array_name = array.name().to_string();
            let sandbox = served.sandbox.clone();
            let served_name = served.name.clone();
            let outcome = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, String> {
                // Compiling and proving is background work: keep it from
                // competing with the data path (restored below).
                let _background = Niced::new(10);
                let (origin, bytes) = crate::builtins::resolve(&component).map_err(|e| e.to_string())?;
                let loaded = crate::sandbox::component::load(&sandbox, &bytes).map_err(|e| format!("{origin}: {e}"))?;
                let mut geometry = array.layout().geometry.clone();
                if let Some(a) = args {
                    geometry.args = a;
                }
                let proven = ProvenLayout::prove(Arc::new(loaded), geometry).map_err(|e| format!("{origin}: {e}"))?;
                // A reload keeps every chunk where it is; moving data to a
                // different layout is a reshape.
                let report = array
                    .reload(proven)
                    .map_err(|e| format!("{origin} refused: {e}; a reload only swaps in a layout identical to the running one: to move the data to a different layout while it is served, run `wasmraid reshape {}`", served_name))?;
                serde_json::to_value(report).map_err(|e| e.to_string())
            })
            .await;
            let refused = match outcome {
                Ok(Ok(report)) => return success(report),
                Ok(Err(e)) => e,
                Err(e) => format!("reload task failed: {e}"),
            };
            // Nothing changed for the watcher to see: say it here. No
            // subscriber is no error.
            tracing::warn!(array = %array_name, "reload refused: {refused}");
            let _ = served.events.send(super::events::refused_reload(&served.name, &array_name, &refused));
            failure(refused)
        }
    }
}
