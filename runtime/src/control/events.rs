//! What `wasmraid monitor` hears: md's monitor events (Fail,
//! DegradedArray, SpareActive, RebuildStarted, RebuildNN, RebuildFinished,
//! TestMessage; DeviceDisappeared is the monitor's own, when the daemon
//! goes) and this project's (LinkDown, LinkUp, LayoutReloaded,
//! ReloadRefused). The daemon watches its arrays every `WATCH_EVERY` and
//! publishes each change to every subscriber of its control socket
//! (`Request::Subscribe`); a subscriber that falls behind by `BACKLOG`
//! events is told how many it missed.
//!
//! A refused reload changes nothing the watcher could see, so the control
//! server publishes `ReloadRefused` itself when it answers the `reload`
//! (`refused_reload`), its detail the refusal in one line. A reload that
//! went through is seen as the layout's new hash: `LayoutReloaded` (none
//! when the very same component is reloaded: nothing changed).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

pub const WATCH_EVERY: Duration = Duration::from_millis(100);
pub const BACKLOG: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// md's name for it (`Fail`, `DegradedArray`, ...).
    pub event: String,
    /// The served device.
    pub device: String,
    /// The array inside it.
    pub array: String,
    /// The leg concerned (its device), when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Anything more: a percentage, the new layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What the watcher remembers of one array between two looks.
#[derive(Default, Clone)]
struct Seen {
    health: Vec<char>,
    links: Vec<Option<bool>>,
    action: String,
    decile: u64,
    layout: String,
}

/// Compares successive `status --json` documents and names the changes.
#[derive(Default)]
pub struct Watcher {
    seen: HashMap<String, Seen>,
}

impl Watcher {
    /// The events between the last document and this one (none the first
    /// time: the state at start is not news).
    pub fn changes(&mut self, status: &Value) -> Vec<Event> {
        let device = status["name"].as_str().unwrap_or("").to_string();
        let mut out = Vec::new();
        for a in status["arrays"].as_array().into_iter().flatten() {
            let array = a["name"].as_str().unwrap_or("").to_string();
            let legs = a["legs"].as_array().cloned().unwrap_or_default();
            let now = Seen {
                health: a["health"].as_str().unwrap_or("").chars().collect(),
                links: legs.iter().map(|l| l["link"]["connected"].as_bool()).collect(),
                action: a["sync_action"].as_str().unwrap_or("idle").to_string(),
                decile: progress(a) / 20,
                layout: format!("{} {}", a["layout"].as_str().unwrap_or(""), a["component_sha256"].as_str().unwrap_or("")),
            };
            let event = |name: &str, leg: Option<usize>, detail: Option<String>| Event {
                event: name.to_string(),
                device: device.clone(),
                array: array.clone(),
                component: leg.and_then(|i| legs.get(i)).and_then(|l| l["device"].as_str()).map(str::to_string),
                detail,
            };
            if let Some(before) = self.seen.get(&array) {
                for (i, (&was, &is)) in before.health.iter().zip(&now.health).enumerate() {
                    if was != 'D' && is == 'D' {
                        out.push(event("Fail", Some(i), None));
                    }
                    if was != 'A' && is == 'A' {
                        out.push(event("SpareActive", Some(i), None));
                    }
                }
                if !before.health.contains(&'D') && now.health.contains(&'D') {
                    out.push(event("DegradedArray", None, Some(now.health.iter().collect())));
                }
                for (i, (was, is)) in before.links.iter().zip(&now.links).enumerate() {
                    match (was, is) {
                        (Some(true), Some(false)) => out.push(event("LinkDown", Some(i), None)),
                        (Some(false), Some(true)) => out.push(event("LinkUp", Some(i), None)),
                        _ => {}
                    }
                }
                let rebuilding = |action: &str| action != "idle" && action != "frozen";
                if !rebuilding(&before.action) && rebuilding(&now.action) {
                    out.push(event("RebuildStarted", None, Some(now.action.clone())));
                } else if rebuilding(&before.action) && rebuilding(&now.action) && now.decile > before.decile && now.decile < 5 {
                    out.push(event(&format!("Rebuild{}", now.decile * 20), None, Some(now.action.clone())));
                } else if rebuilding(&before.action) && !rebuilding(&now.action) {
                    out.push(event("RebuildFinished", None, Some(before.action.clone())));
                }
                if before.layout != now.layout {
                    out.push(event("LayoutReloaded", None, Some(now.layout.clone())));
                }
            }
            self.seen.insert(array, now);
        }
        out
    }
}

/// The longest detail a `ReloadRefused` carries, in characters.
pub const REASON_MAX: usize = 300;

/// `ReloadRefused` for `array` of `device`: the refusal on one line (an
/// error may span several, a compiler's say) and cut to `REASON_MAX`.
pub fn refused_reload(device: &str, array: &str, reason: &str) -> Event {
    let line = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    let detail = match line.char_indices().nth(REASON_MAX) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    };
    Event { event: "ReloadRefused".into(), device: device.into(), array: array.into(), component: None, detail: Some(detail) }
}

/// The sync action's progress in percent (100 when idle).
fn progress(a: &Value) -> u64 {
    let Some((done, total)) = a["sync_ratio"].as_str().and_then(|r| r.split_once('/')) else { return 100 };
    match (done.parse::<u64>(), total.parse::<u64>()) {
        (Ok(d), Ok(t)) if t > 0 => d.saturating_mul(100) / t,
        _ => 100,
    }
}

/// One `TestMessage` per array (`monitor --test`, as md's `--test`).
pub fn test_messages(status: &Value) -> Vec<Event> {
    let device = status["name"].as_str().unwrap_or("").to_string();
    status["arrays"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| Event { event: "TestMessage".into(), device: device.clone(), array: a["name"].as_str().unwrap_or("").into(), component: None, detail: None })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(health: &str, action: &str, ratio: &str, connected: bool) -> Value {
        serde_json::json!({"name": "d", "arrays": [{
            "name": "d", "health": health, "sync_action": action, "sync_ratio": ratio, "layout": "raid5", "component_sha256": "x",
            "legs": health.chars().enumerate().map(|(i, _)| serde_json::json!({"device": format!("/leg{i}"), "link": {"connected": connected}})).collect::<Vec<_>>(),
        }]})
    }

    #[test]
    fn a_refusal_is_one_bounded_line() {
        let e = refused_reload("d", "a", "builtin:raid6 refused: the layouts differ\n  at stripe 3\tslot 1");
        assert_eq!(e.event, "ReloadRefused");
        assert_eq!(e.detail.as_deref(), Some("builtin:raid6 refused: the layouts differ at stripe 3 slot 1"));
        let long = "é".repeat(1000);
        let detail = refused_reload("d", "a", &long).detail.unwrap_or_default();
        assert_eq!(detail.chars().count(), REASON_MAX + 3);
    }

    #[test]
    fn a_failure_a_rebuild_and_a_link_make_mds_events_in_order() {
        let mut w = Watcher::default();
        assert!(w.changes(&doc("AAAA", "idle", "8/8", true)).is_empty(), "the start is not news");
        let names = |v: Vec<Event>| v.into_iter().map(|e| format!("{} {}", e.event, e.component.unwrap_or_default())).collect::<Vec<_>>();
        assert_eq!(names(w.changes(&doc("AADA", "idle", "8/8", true))), ["Fail /leg2", "DegradedArray "]);
        assert_eq!(names(w.changes(&doc("AAaA", "recover", "1/100", true))), ["RebuildStarted "]);
        assert_eq!(names(w.changes(&doc("AAaA", "recover", "45/100", true))), ["Rebuild40 "]);
        assert_eq!(
            names(w.changes(&doc("AAAA", "idle", "8/8", false))),
            ["SpareActive /leg2", "LinkDown /leg0", "LinkDown /leg1", "LinkDown /leg2", "LinkDown /leg3", "RebuildFinished "]
        );
    }
}
