//! The write-intent bitmap's per-region state machine, written down as an
//! explicit (state x action) table, md's llbitmap being the model.
//!
//! One byte per region. A region is marked Dirty on stable storage before
//! any data write to it reaches a leg; the daemon clears it lazily once no
//! write is pending. Written while degraded, it becomes NeedSync (seed 003's
//! MODIFIED): it must be recovered on the leg that missed the write. After a
//! crash, Dirty regions are reloaded as NeedSync and resynced.

/// A region's state, as stored (one byte). A region's parity (or copies)
/// is trusted only in Clean and Dirty: writes elsewhere reconstruct parity
/// from all the data, and the first write to an Unwritten region queues it
/// for a resync (its other stripes' parity was never computed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[repr(u8)]
pub enum State {
    /// Never written since creation (legs not initialised): nothing to keep.
    Unwritten = 0,
    /// In sync, no write pending.
    Clean = 1,
    /// Writes may be in flight: parity/copies may disagree until they end.
    Dirty = 2,
    /// Must be resynced (crash while dirty, or written while degraded).
    NeedSync = 3,
    /// Being resynced now.
    Syncing = 4,
}

impl State {
    pub fn from_byte(b: u8) -> Option<State> {
        Some(match b {
            0 => State::Unwritten,
            1 => State::Clean,
            2 => State::Dirty,
            3 => State::NeedSync,
            4 => State::Syncing,
            _ => return None,
        })
    }

    pub const ALL: [State; 5] = [State::Unwritten, State::Clean, State::Dirty, State::NeedSync, State::Syncing];
}

/// What happens to a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A write to the region is about to start (array healthy).
    StartWrite,
    /// A write to the region is about to start while a leg is dead.
    StartWriteDegraded,
    /// Resync of the region begins.
    StartSync,
    /// Resync of the region completed, no write in flight, every leg
    /// flushed.
    EndSync,
    /// Resync of the region completed while writes to it were in flight:
    /// they may leave it inconsistent until they end.
    EndSyncBusy,
    /// Resync of the region was interrupted.
    AbortSync,
    /// The bitmap was loaded at assembly (after a clean or unclean stop).
    Reload,
    /// The daemon found no pending write for a while (array healthy).
    Daemon,
    /// The whole region was discarded / zeroed.
    Discard,
    /// A leg was found stale: everything written must be recovered on it.
    Stale,
}

impl Action {
    pub const ALL: [Action; 10] = [
        Action::StartWrite,
        Action::StartWriteDegraded,
        Action::StartSync,
        Action::EndSync,
        Action::EndSyncBusy,
        Action::AbortSync,
        Action::Reload,
        Action::Daemon,
        Action::Discard,
        Action::Stale,
    ];
}

use Action as A;
use State::*;

/// The table: `TABLE[state][action]` is the next state, or None when the
/// action does not change the state (or does not apply).
#[rustfmt::skip]
const TABLE: [[Option<State>; 10]; 5] = [
    //                 StartWrite      StartWriteDeg    StartSync       EndSync      EndSyncBusy  AbortSync        Reload           Daemon       Discard          Stale
    /* Unwritten */ [Some(NeedSync), Some(NeedSync), None,           None,        None,        None,            None,            None,        None,            None],
    /* Clean     */ [Some(Dirty),    Some(NeedSync), None,           None,        None,        None,            None,            None,        Some(Unwritten), Some(NeedSync)],
    /* Dirty     */ [None,           Some(NeedSync), None,           None,        None,        None,            Some(NeedSync),  Some(Clean), Some(Unwritten), Some(NeedSync)],
    /* NeedSync  */ [None,           None,           Some(Syncing),  None,        None,        None,            None,            None,        Some(Unwritten), None],
    /* Syncing   */ [None,           Some(NeedSync), None,           Some(Clean), Some(Dirty), Some(NeedSync),  Some(NeedSync),  None,        Some(Unwritten), Some(NeedSync)],
];

fn action_index(a: Action) -> usize {
    match a {
        A::StartWrite => 0,
        A::StartWriteDegraded => 1,
        A::StartSync => 2,
        A::EndSync => 3,
        A::EndSyncBusy => 4,
        A::AbortSync => 5,
        A::Reload => 6,
        A::Daemon => 7,
        A::Discard => 8,
        A::Stale => 9,
    }
}

/// The state after `action`, and whether it changed (so the bitmap must be
/// written before the caller goes on).
pub fn transition(state: State, action: Action) -> (State, bool) {
    match TABLE[state as usize][action_index(action)] {
        Some(next) if next != state => (next, true),
        _ => (state, false),
    }
}

/// Does a region in this state need a resync?
pub fn needs_sync(state: State) -> bool {
    matches!(state, NeedSync | Syncing)
}

/// May writes in this region update parity from old parity (RMW)?
pub fn parity_trusted(state: State) -> bool {
    matches!(state, Clean | Dirty)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (state, action) pair, spelled out: the table above is the
    /// implementation, this list is the specification.
    #[test]
    fn every_transition() {
        let expected: &[(State, Action, State)] = &[
            (Unwritten, A::StartWrite, NeedSync),
            (Unwritten, A::StartWriteDegraded, NeedSync),
            (Unwritten, A::StartSync, Unwritten),
            (Unwritten, A::EndSync, Unwritten),
            (Unwritten, A::EndSyncBusy, Unwritten),
            (Unwritten, A::AbortSync, Unwritten),
            (Unwritten, A::Reload, Unwritten),
            (Unwritten, A::Daemon, Unwritten),
            (Unwritten, A::Discard, Unwritten),
            (Unwritten, A::Stale, Unwritten),
            (Clean, A::StartWrite, Dirty),
            (Clean, A::StartWriteDegraded, NeedSync),
            (Clean, A::StartSync, Clean),
            (Clean, A::EndSync, Clean),
            (Clean, A::EndSyncBusy, Clean),
            (Clean, A::AbortSync, Clean),
            (Clean, A::Reload, Clean),
            (Clean, A::Daemon, Clean),
            (Clean, A::Discard, Unwritten),
            (Clean, A::Stale, NeedSync),
            (Dirty, A::StartWrite, Dirty),
            (Dirty, A::StartWriteDegraded, NeedSync),
            (Dirty, A::StartSync, Dirty),
            (Dirty, A::EndSync, Dirty),
            (Dirty, A::EndSyncBusy, Dirty),
            (Dirty, A::AbortSync, Dirty),
            (Dirty, A::Reload, NeedSync),
            (Dirty, A::Daemon, Clean),
            (Dirty, A::Discard, Unwritten),
            (Dirty, A::Stale, NeedSync),
            (NeedSync, A::StartWrite, NeedSync),
            (NeedSync, A::StartWriteDegraded, NeedSync),
            (NeedSync, A::StartSync, Syncing),
            (NeedSync, A::EndSync, NeedSync),
            (NeedSync, A::EndSyncBusy, NeedSync),
            (NeedSync, A::AbortSync, NeedSync),
            (NeedSync, A::Reload, NeedSync),
            (NeedSync, A::Daemon, NeedSync),
            (NeedSync, A::Discard, Unwritten),
            (NeedSync, A::Stale, NeedSync),
            (Syncing, A::StartWrite, Syncing),
            (Syncing, A::StartWriteDegraded, NeedSync),
            (Syncing, A::StartSync, Syncing),
            (Syncing, A::EndSync, Clean),
            (Syncing, A::EndSyncBusy, Dirty),
            (Syncing, A::AbortSync, NeedSync),
            (Syncing, A::Reload, NeedSync),
            (Syncing, A::Daemon, Syncing),
            (Syncing, A::Discard, Unwritten),
            (Syncing, A::Stale, NeedSync),
        ];
        assert_eq!(expected.len(), State::ALL.len() * Action::ALL.len());
        for &(from, action, to) in expected {
            let (next, changed) = transition(from, action);
            assert_eq!(next, to, "{from:?} x {action:?}");
            assert_eq!(changed, from != to, "{from:?} x {action:?}");
        }
    }

    #[test]
    fn bytes_round_trip() {
        for s in State::ALL {
            assert_eq!(State::from_byte(s as u8), Some(s));
        }
        assert_eq!(State::from_byte(9), None);
    }
}
