//! Legs behind a network link (seed 002's remote nodes): a leg whose link
//! stays down past its timeout is failed like any other, but remembered as
//! having lost its link; when the link returns, the daemon re-adds it, and
//! with a bitmap only the regions written meanwhile are rebuilt.

use super::Array;
use super::health::Health;
use super::sync::SyncAction;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Array {
    /// Fail leg `i` after an I/O error, noting whether the link was lost,
    /// and record it.
    pub(super) fn fail_leg_on(&self, i: usize, what: &str, e: &io::Error) {
        self.mark_dead_on(i, what, e);
        if let Err(e) = self.settle_failures() {
            tracing::error!(array = %self.name, "recording the failure of leg {i}: {e}");
        }
    }

    /// Mark leg `i` dead after an I/O error, noting whether the link was
    /// lost (a leg that timed out behind a link is re-added when it
    /// returns, whatever request it failed: data, bitmap or superblock).
    /// The caller records it (`settle_failures`).
    pub(super) fn mark_dead_on(&self, i: usize, what: &str, e: &io::Error) -> bool {
        if let Some(leg) = self.legs.get(i) {
            if e.kind() == io::ErrorKind::TimedOut && leg.device().link().is_some() {
                leg.lost_link.store(true, Ordering::Release);
            }
        }
        self.mark_dead(i, &format!("{what} error: {e}"))
    }

    /// `mark_dead_on` for a metadata write's error.
    pub(super) fn mark_dead_on_meta(&self, i: usize, what: &str, e: &crate::meta::store::MetaError) -> bool {
        match e {
            crate::meta::store::MetaError::Io { error, .. } => self.mark_dead_on(i, what, error),
            other => self.mark_dead(i, &format!("{what} failed: {other}")),
        }
    }

    /// Re-add every leg that failed for a lost link whose link is back.
    /// Returns the legs re-added. Called by the serving daemon.
    pub fn readd_reconnected_legs(self: &Arc<Self>) -> Vec<usize> {
        let mut readded = Vec::new();
        for (i, leg) in self.legs.iter().enumerate() {
            if leg.health() != Health::Dead || !leg.lost_link.load(Ordering::Acquire) {
                continue;
            }
            let device = leg.device();
            if !device.link().is_some_and(|l| l.connected) || self.sync.action() != SyncAction::Idle {
                continue;
            }
            leg.lost_link.store(false, Ordering::Release);
            if self.meta.is_none() {
                tracing::warn!(array = %self.name, leg = i, "{}: link back, but an array without metadata has no bitmap to resync from; the leg stays failed (add it back with `wasmraid leg add`)", device.describe());
                continue;
            }
            match self.leg_readd(device.clone()) {
                Ok((slot, scope)) => {
                    tracing::warn!(array = %self.name, leg = slot, "{}: link back; re-added, recovering ({scope:?})", device.describe());
                    readded.push(slot);
                }
                Err(e) => tracing::error!(array = %self.name, leg = i, "{}: link back but re-add refused: {e}", device.describe()),
            }
        }
        readded
    }
}
