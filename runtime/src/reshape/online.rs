//! A reshape of an array while it is served.
//!
//! Off the data path, the new component is compiled and both layouts are
//! proven. Then the served device pauses (requests in flight finish, new
//! ones wait: `device::swappable`), the array stops cleanly, the reshape
//! is recorded on every leg (dirty: the writes that go on are tracked by
//! no bitmap), and a `Reshaping` of the two layouts replaces the array;
//! requests resume. A mover thread moves window after window at the rate
//! asked for. When all is moved, the device pauses again, the new layout
//! alone is recorded, and the array assembled from the legs replaces the
//! `Reshaping`: with its own superblocks and bitmap, and bigger if the
//! reshape added room (NBD clients see the size on their next connection;
//! a ublk device at its next start).
//!
//! kill -9 or a power loss at any point: the legs record the position and
//! that the array was served, so `assemble` resyncs the stripes the new
//! layout served, moves the rest and assembles (`create::assemble`). A
//! clean stop records the position as clean. A leg that fails meanwhile is
//! recorded failed before any request that skipped it is acknowledged,
//! and the move goes on degraded, as md's does.

use super::device::Reshaping;
use super::offline::{self, MAX_WINDOW, OfflineError, Prepared, Target};
use super::plan::Windows;
use crate::array::Array;
use crate::array::create::{AssembleOptions, assemble};
use crate::array::sync::SyncAction;
use crate::device::BlockDevice;
use crate::meta::superblock::uuid_text;
use crate::sandbox::Sandbox;
use crate::table::Table;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Most a swap waits for requests in flight to finish.
const PAUSE_LIMIT: Duration = Duration::from_secs(30);

/// Where a served reshape is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Moving,
    /// The new layout alone serves, as an assembled array.
    Finished,
    /// Stopped by a clean stop of the daemon: the legs record the position.
    Stopped,
    /// The move hit an error it cannot go past: the array is served from
    /// both layouts at the position reached; stop and assemble it to go on.
    Failed(String),
}

pub struct Online {
    prepared: Prepared,
    reshaping: Arc<Reshaping>,
    /// Bytes a second (0: as fast as the legs go): `tune --sync-rate`.
    pub rate: AtomicU64,
    state: Mutex<State>,
    stop: AtomicBool,
    mover: Mutex<Option<std::thread::JoinHandle<()>>>,
    started: Instant,
    /// Where the served device's size changes, when it grows.
    grows_at: Mutex<String>,
    ublk: Option<(u32, String)>,
}

fn refused(why: impl Into<String>) -> OfflineError {
    OfflineError::Refused(why.into())
}

/// How a served reshape runs.
pub struct Options {
    /// Bytes a second (0: as fast as the legs go).
    pub rate: u64,
    /// The ublk device serving the array, if any (id, path): resized live
    /// where the kernel can, else at its next start.
    pub ublk: Option<(u32, String)>,
    /// Most data one window moves (at most `MAX_WINDOW`).
    pub max_window: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { rate: 0, ublk: None, max_window: MAX_WINDOW }
    }
}

/// Start reshaping the one array `table` serves to `target`, adding
/// `added`. Returns once the reshape is recorded and serving; the data
/// moves in the background.
pub fn start(table: &Arc<Table>, sandbox: &Arc<Sandbox>, added: &[Arc<dyn BlockDevice>], target: &Target, o: Options) -> Result<Arc<Online>, OfflineError> {
    let asked = Instant::now();
    let swappable = table.swappable().ok_or_else(|| refused("only a device serving one whole array reshapes online (this one serves a table)"))?;
    let array = match &table.arrays()[..] {
        [a] => a.clone(),
        _ => return Err(refused("only a device serving one array reshapes online")),
    };
    let meta =
        array.meta.as_ref().ok_or_else(|| refused(format!("{} has no superblocks to record a reshape in (create it with `wasmraid create`)", array.name())))?;
    check_quiet(&array)?;
    if swappable.swaps_left() < 2 {
        return Err(refused(format!("{} has been swapped too often in this daemon's life: stop it and start it again first", array.name())));
    }
    // Compile and prove off the data path, from the array as it is now.
    let planned = {
        let sb = meta.template.lock().clone();
        offline::plan_start(&sb, array.legs().len(), added, sandbox, &meta.component, target)?
    };
    let proved = asked.elapsed();
    let paused = swappable
        .pause_within(PAUSE_LIMIT)
        .ok_or_else(|| refused(format!("requests in flight on {} did not finish within {PAUSE_LIMIT:?}: nothing changed, try again", array.name())))?;
    if !table.arrays().iter().any(|a| Arc::ptr_eq(a, &array)) {
        return Err(refused(format!("{} started reshaping meanwhile", array.name())));
    }
    // Control requests no longer find the array (a sync or a leg change
    // must not start on it from here on); it is given back on a refusal.
    table.set_arrays(Vec::new());
    let give_back = |e: OfflineError| {
        table.set_arrays(vec![array.clone()]);
        e
    };
    // Nothing is in flight: stop the array cleanly (bitmap and
    // superblocks), then record the reshape over it.
    check_quiet(&array).map_err(give_back)?;
    array.shutdown().map_err(|e| give_back(refused(format!("stopping {} cleanly before the reshape: {e}", array.name()))))?;
    array.retire(true);
    let mut sb = meta.template.lock().clone();
    let mut slots: Vec<Arc<dyn BlockDevice>> = array.legs().iter().map(|l| l.device()).collect();
    let component = target.component.clone();
    if let Err(e) = offline::commit_start(&mut sb, &mut slots, added, &planned, &component, true) {
        // Nothing moved: the array takes its legs back, its superblocks
        // newer than any leg's that recorded the reshape (an abort).
        array.retire(false);
        meta.template.lock().generation += 2;
        array.write_superblocks(None).map_err(|e2| give_back(refused(format!("{e}; then taking the array back failed: {e2}"))))?;
        return Err(give_back(e));
    }
    let all_slots = slots.clone();
    let built = Prepared::new(sb, slots, planned.old, planned.new)
        .and_then(|p| Ok((Arc::new(Reshaping::new(p.old.clone(), p.new.clone(), p.stripe_bytes, 0)?), p)))
        .and_then(|(r, p)| paused.swap(r.clone()).map(|()| (r, p)).map_err(|e| refused(e.to_string())));
    let (reshaping, prepared) = match built {
        Ok(b) => b,
        Err(e) => {
            // Nothing moved: take the reshape back and the array with it.
            let undone = offline::abort(&all_slots).map_err(|e| e.to_string()).and_then(|_| {
                array.retire(false);
                meta.template.lock().generation += 2;
                array.write_superblocks(None).map_err(|e| e.to_string())
            });
            return Err(give_back(match undone {
                Ok(()) => e,
                Err(e2) => refused(format!("{e}; then taking the reshape back failed: {e2}")),
            }));
        }
    };
    let grows_at = "NBD clients see the new size on their next connection".to_string();
    let online = Arc::new(Online {
        prepared,
        reshaping,
        rate: AtomicU64::new(o.rate),
        state: Mutex::new(State::Moving),
        stop: AtomicBool::new(false),
        mover: Mutex::new(None),
        started: Instant::now(),
        grows_at: Mutex::new(grows_at),
        ublk: o.ublk.clone(),
    });
    drop(paused);
    tracing::info!(
        array = %online.prepared.name, from = %online.prepared.from, to = %online.prepared.to,
        proving_ms = proved.as_millis() as u64, paused_ms = (asked.elapsed() - proved).as_millis() as u64,
        "reshape started"
    );
    let daemon_sleep = meta.intent.daemon_sleep;
    let (o2, t, s, window) = (online.clone(), table.clone(), sandbox.clone(), o.max_window.min(MAX_WINDOW));
    match std::thread::Builder::new().name("wasmraid-reshape".into()).spawn(move || o2.run(&t, &s, daemon_sleep, window)) {
        Ok(mover) => *online.mover.lock() = Some(mover),
        // Both layouts serve at position 0; status says why nothing moves,
        // and a restart goes on with it.
        Err(e) => online.fail(format!("starting the reshape thread: {e}")),
    }
    Ok(online)
}

/// Refuse while anything else changes the array's legs or redundancy.
fn check_quiet(array: &Array) -> Result<(), OfflineError> {
    let name = array.name();
    if array.sync.action() != SyncAction::Idle {
        return Err(refused(format!("{name} is busy with a {}: let it finish (or stop it) first", array.sync.action().name())));
    }
    if let Some(i) = array.legs().iter().position(|l| !l.is_alive() || l.replacement().is_some() || l.recovery().is_some()) {
        return Err(refused(format!("leg {i} of {name} is not in sync ({}): a reshape needs every leg in sync", array.health_chars())));
    }
    if let Some(i) = (0..array.legs().len()).find(|&i| array.spare_of(i).is_some()) {
        return Err(refused(format!("leg {i} of {name} lives in a distributed spare: replace it first")));
    }
    Ok(())
}

impl State {
    /// As `status` says it.
    pub fn name(&self) -> &'static str {
        match self {
            State::Moving => "moving",
            State::Finished => "finished",
            State::Stopped => "stopped",
            State::Failed(_) => "failed",
        }
    }
}

impl Online {
    fn set_state(&self, state: State) {
        *self.state.lock() = state;
    }

    /// The layout the data moves to.
    pub fn target_layout(&self) -> &str {
        &self.prepared.to
    }

    pub fn state(&self) -> State {
        self.state.lock().clone()
    }

    /// Whether the array is still being moved (membership changes, reloads
    /// and syncs wait).
    pub fn moving(&self) -> bool {
        matches!(self.state(), State::Moving | State::Failed(_))
    }

    fn run(&self, table: &Arc<Table>, sandbox: &Arc<Sandbox>, daemon_sleep: Duration, max_window: u64) {
        let swapped = Instant::now();
        let (la, lb) = (self.prepared.old.layout(), self.prepared.new.layout());
        let mut windows = match Windows::new(&la, &lb, self.prepared.shift, max_window) {
            Ok(w) => w,
            Err(e) => return self.fail(e.to_string()),
        };
        loop {
            if self.stop.load(Ordering::Acquire) {
                return self.set_state(State::Stopped);
            }
            let before = self.reshaping.recorded();
            let t = Instant::now();
            match self.reshaping.step(&mut windows, &mut |at| self.prepared.record(at)) {
                Ok(Some(at)) => self.pace(at - before, t),
                Ok(None) => break,
                Err(e) => return self.fail(e.to_string()),
            }
        }
        let moved = swapped.elapsed();
        match self.swap_in_new(table, sandbox, daemon_sleep) {
            Ok(size) => {
                tracing::info!(
                    array = %self.prepared.name, to = %self.prepared.to, size,
                    moving_ms = moved.as_millis() as u64, finishing_ms = (swapped.elapsed() - moved).as_millis() as u64,
                    "reshape finished"
                );
                if size > self.prepared.size_before {
                    self.resize_ublk(size);
                }
                self.set_state(State::Finished);
            }
            Err(e) => self.fail(format!("finishing: {e}")),
        }
    }

    fn fail(&self, why: String) {
        tracing::error!(array = %self.prepared.name, "reshape stopped: {why}");
        self.set_state(State::Failed(why));
    }

    /// At most `rate` bytes a second (md's speed_limit_max), waking to
    /// see a stop or a new rate.
    fn pace(&self, moved: u64, window_started: Instant) {
        loop {
            let rate = self.rate.load(Ordering::Relaxed);
            if rate == 0 || self.stop.load(Ordering::Acquire) {
                return;
            }
            let due = Duration::from_secs_f64(moved as f64 / rate as f64);
            let Some(wait) = due.checked_sub(window_started.elapsed()) else { return };
            std::thread::sleep(wait.min(Duration::from_millis(50)));
        }
    }

    /// Record the new layout alone and serve it as the array the legs
    /// now assemble into. Returns its size.
    fn swap_in_new(&self, table: &Arc<Table>, sandbox: &Arc<Sandbox>, daemon_sleep: Duration) -> Result<u64, String> {
        let swappable = table.swappable().ok_or("the table lost its array")?;
        // Everything is moved: the two layouts serve the new one alone
        // until the pause succeeds.
        let paused = loop {
            match swappable.pause_within(PAUSE_LIMIT) {
                Some(p) => break p,
                // A stop of the daemon: everything is moved, and the next
                // assemble finishes.
                None if self.stop.load(Ordering::Acquire) => return Err("the daemon stopped before the reshape's last step".into()),
                None => {
                    tracing::warn!(array = %self.prepared.name, "requests in flight did not finish within {PAUSE_LIMIT:?}; trying again to finish the reshape")
                }
            }
        };
        self.reshaping.flush().map_err(|e| e.to_string())?;
        self.prepared.finish().map_err(|e| e.to_string())?;
        let live: Vec<Arc<dyn BlockDevice>> =
            self.prepared.slots().iter().zip(self.prepared.new.legs()).filter(|(_, l)| l.is_alive()).map(|(d, _)| d.clone()).collect();
        let o = AssembleOptions { name: Some(uuid_text(&self.prepared.array_uuid())), force: false, daemon_sleep };
        let array = match assemble(live, sandbox, &o) {
            Ok(a) => a.array,
            Err(e) => {
                // Serving on through the two layouts would write what no
                // bitmap tracks while the superblocks say the array is
                // clean: fail every request instead, until a restart
                // assembles what the legs hold.
                let what = format!("{} (reshaped, not assembled: {e})", self.prepared.name);
                let _ = paused.swap(Arc::new(crate::device::missing::Missing { what }));
                return Err(format!(
                    "the reshape is finished on the legs, but assembling them failed: {e}; the device fails every request until the daemon is restarted"
                ));
            }
        };
        paused.swap(array.clone()).map_err(|e| e.to_string())?;
        table.set_arrays(vec![array.clone()]);
        table.grow_single(array.size());
        Ok(array.size())
    }

    /// Grow the ublk device serving the array, where the kernel can.
    fn resize_ublk(&self, size: u64) {
        let Some((id, path)) = &self.ublk else { return };
        let note = match crate::frontend::ublk::resize(*id, size) {
            Ok(true) => format!("{path} too, resized live (UBLK_F_UPDATE_SIZE)"),
            Ok(false) => format!("{path} at its next start (this kernel's ublk cannot resize a live device: UBLK_F_UPDATE_SIZE is 6.16+)"),
            Err(e) => {
                tracing::warn!("resizing {path}: {e}");
                format!("{path} at its next start (resizing it live failed: {e})")
            }
        };
        let mut g = self.grows_at.lock();
        *g = format!("{g}; {note}");
    }

    /// A clean stop of the daemon (after its frontends stopped): stop the
    /// mover and record the position reached as clean.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(m) = self.mover.lock().take() {
            let _ = m.join();
        }
        if self.state() == State::Finished {
            return;
        }
        let done = self.reshaping.flush().map_err(|e| e.to_string()).and_then(|()| self.prepared.set_dirty(false).map_err(|e| e.to_string()));
        match done {
            Ok(()) => {
                tracing::info!(array = %self.prepared.name, position = self.reshaping.recorded(), "reshape stopped cleanly: `wasmraid assemble` goes on with it")
            }
            Err(e) => tracing::error!(array = %self.prepared.name, "recording the reshape's stop: {e}"),
        }
    }

    /// What `status` shows, like md's sync_action and reshape_position.
    pub fn status(&self) -> serde_json::Value {
        let position = self.reshaping.recorded();
        let state = self.state();
        let elapsed = self.started.elapsed().as_secs_f64();
        serde_json::json!({
            "action": "reshape",
            "array": self.prepared.name,
            "state": state.name(),
            "error": match &state { State::Failed(e) => Some(e.clone()), _ => None },
            "position": position,
            "size_before": self.prepared.size_before,
            "size_after": self.prepared.size_after,
            "progress": if self.prepared.size_after == 0 { 1.0 } else { position as f64 / self.prepared.size_after as f64 },
            "rate": self.rate.load(Ordering::Relaxed),
            "speed_bytes_per_second": if elapsed > 0.0 { (position as f64 / elapsed) as u64 } else { 0 },
            "from": self.prepared.from,
            "to": self.prepared.to,
            "legs_before": self.prepared.legs_before,
            "legs_after": self.prepared.legs_after(),
            "health": self.prepared.new.health_chars(),
            "grows": if self.prepared.size_after > self.prepared.size_before { Some(self.grows_at.lock().clone()) } else { None },
        })
    }
}
