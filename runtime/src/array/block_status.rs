//! Block status of an array, from what it really knows: per stripe, its
//! bitmap (a region to resync), its legs (a data chunk on a failed leg is
//! readable only by decoding; a failed leg anywhere in the stripe leaves
//! less redundancy), and for allocation, the holes of the leg each data
//! chunk is read from (a chunk that must be decoded counts as data).

use super::Array;
use crate::device::status::{self, DEGRADED, NEEDS_RESYNC, REDUCED, StatusExtent};
use crate::layout::Role;
use crate::layout::map::StripeView;
use std::io;

impl Array {
    pub(super) fn status_of(&self, offset: u64, len: u64, out: &mut Vec<StatusExtent>) -> io::Result<()> {
        let layout = self.layout.load();
        if offset.checked_add(len).is_none_or(|end| end > layout.capacity_bytes()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{}: block status of {len} bytes at {offset} is past the end", self.name)));
        }
        let cb = self.chunk_bytes;
        let d = u64::from(layout.descriptor.data_chunks.max(1));
        let alive = |leg: u32| self.legs.get(leg as usize).is_some_and(|l| l.is_alive());
        // The stripe being walked: its view and health, looked up once for
        // all its chunks.
        let mut stripe: Option<(u64, StripeView, u32)> = None;
        // Chunks that follow one another on the leg they are read from,
        // with the same health, asked about together: a remote leg answers
        // each question with a round trip (a 1 MiB read of a raid1 of NBD
        // legs asked 16 before it could start).
        let mut run: Option<LegRun> = None;
        let mut done = 0u64;
        while done < len {
            let at = offset + done;
            let (c, within) = (at / cb, at % cb);
            let n = (cb - within).min(len - done);
            let s = c / d;
            let k = (c % d) as u32;
            if stripe.as_ref().is_none_or(|(current, ..)| *current != s) {
                let view = self.view(&layout, s).map_err(|e| io::Error::other(e.to_string()))?;
                let mut health = if self.stripe_in_sync(s) { 0 } else { NEEDS_RESYNC };
                if view.shape.slots.iter().any(|sl| !matches!(sl.role, Role::Spare(_)) && !alive(sl.leg)) {
                    health |= REDUCED;
                }
                stripe = Some((s, view, health));
            }
            let Some((_, view, health)) = &stripe else { break };
            let health = *health;
            // The copy a read takes: a live slot holding data chunk k.
            let holder = view.shape.slots.iter().enumerate().find(|(_, sl)| matches!(sl.role, Role::Data(j) | Role::Replica(j) if j == k) && alive(sl.leg));
            match holder {
                Some((i, _)) if health & NEEDS_RESYNC == 0 => {
                    let place = view.place(i);
                    let at = self.legs[place.leg as usize].offset + place.chunk * cb + within;
                    match &mut run {
                        Some(r) if r.leg == place.leg && r.health == health && r.at + r.len == at => r.len += n,
                        _ => {
                            if let Some(r) = run.replace(LegRun { leg: place.leg, at, len: n, health }) {
                                self.leg_status(r, out)?;
                            }
                        }
                    }
                }
                // Copies that may disagree are read as they are, but
                // reported as data: a hole in one is no promise.
                Some(_) => {
                    if let Some(r) = run.take() {
                        self.leg_status(r, out)?;
                    }
                    status::push(out, StatusExtent { len: n, allocation: 0, health })
                }
                None => {
                    if let Some(r) = run.take() {
                        self.leg_status(r, out)?;
                    }
                    status::push(out, StatusExtent { len: n, allocation: 0, health: health | DEGRADED })
                }
            }
            done += n;
        }
        if let Some(r) = run.take() {
            self.leg_status(r, out)?;
        }
        Ok(())
    }

    /// The holes of `run` on its leg, as the array's.
    fn leg_status(&self, run: LegRun, out: &mut Vec<StatusExtent>) -> io::Result<()> {
        let mut leg_status = Vec::new();
        self.legs[run.leg as usize].device().block_status(run.at, run.len, &mut leg_status)?;
        for e in leg_status {
            status::push(out, StatusExtent { len: e.len, allocation: e.allocation, health: run.health });
        }
        Ok(())
    }
}

/// Bytes `at..at + len` of leg `leg`, all with the same health.
struct LegRun {
    leg: u32,
    at: u64,
    len: u64,
    health: u32,
}
