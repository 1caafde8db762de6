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
        let mut segments: Vec<Segment> = Vec::new();
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
                    match segments.last_mut() {
                        Some(Segment::Leg(r)) if r.leg == place.leg && r.health == health && r.at + r.len == at => r.len += n,
                        _ => segments.push(Segment::Leg(LegRun { leg: place.leg, at, len: n, health })),
                    }
                }
                // Copies that may disagree are read as they are, but
                // reported as data: a hole in one is no promise.
                Some(_) => segments.push(Segment::Known(StatusExtent { len: n, allocation: 0, health })),
                None => segments.push(Segment::Known(StatusExtent { len: n, allocation: 0, health: health | DEGRADED })),
            }
            done += n;
        }
        let answers = self.ask_legs(&segments)?;
        for segment in segments {
            match segment {
                Segment::Known(e) => status::push(out, e),
                Segment::Leg(r) => {
                    // The last answer of this leg starting at or before it.
                    let after = answers.partition_point(|a| (a.leg, a.start) <= (r.leg, r.at));
                    let asked = after.checked_sub(1).and_then(|i| answers.get(i)).filter(|a| a.leg == r.leg && r.at + r.len <= a.end);
                    let Some(answer) = asked else {
                        return Err(io::Error::other(format!("{}: leg {} was not asked for its block status", self.name, r.leg)));
                    };
                    answer.cut(r.at, r.len, r.health, out);
                }
            }
        }
        Ok(())
    }

    /// Each leg's block status over the span of its segments, asked once
    /// (a raid0's or raid5's chunks take turns between legs, so a leg's
    /// runs do not follow one another in the array's order but lie close
    /// on the leg: a raid5's span holds its parity chunks too). A leg
    /// whose segments lie far apart (more than `SPAN_SLACK` beyond twice
    /// what they cover) is asked segment by segment instead.
    fn ask_legs(&self, segments: &[Segment]) -> io::Result<Vec<Answer>> {
        // (leg, start, end, bytes covered)
        let mut spans: Vec<(u32, u64, u64, u64)> = Vec::new();
        for s in segments {
            let Segment::Leg(r) = s else { continue };
            match spans.iter_mut().find(|(leg, ..)| *leg == r.leg) {
                Some((_, start, end, covered)) => {
                    *start = (*start).min(r.at);
                    *end = (*end).max(r.at + r.len);
                    *covered += r.len;
                }
                None => spans.push((r.leg, r.at, r.at + r.len, r.len)),
            }
        }
        let mut asks: Vec<(u32, u64, u64)> = Vec::new();
        for (leg, start, end, covered) in spans {
            if end - start <= covered.saturating_mul(2).saturating_add(SPAN_SLACK) {
                asks.push((leg, start, end));
            } else {
                asks.extend(segments.iter().filter_map(|s| match s {
                    Segment::Leg(r) if r.leg == leg => Some((leg, r.at, r.at + r.len)),
                    _ => None,
                }));
            }
        }
        // In (leg, start) order, for the lookup in `status_of`; a leg's
        // answers never overlap.
        asks.sort_unstable();
        let mut answers = Vec::with_capacity(asks.len());
        for (leg, start, end) in asks {
            let mut extents = Vec::new();
            self.legs[leg as usize].device().block_status(start, end - start, &mut extents)?;
            let ends = extents
                .iter()
                .scan(start, |pos, e| {
                    *pos += e.len;
                    Some(*pos)
                })
                .collect();
            answers.push(Answer { leg, start, end, extents, ends });
        }
        Ok(answers)
    }
}

/// How far apart a leg's segments may lie and still be asked about in one
/// question.
const SPAN_SLACK: u64 = 1 << 20;

/// A leg's block status over `start..end`.
struct Answer {
    leg: u32,
    start: u64,
    end: u64,
    extents: Vec<StatusExtent>,
    /// Where each extent ends on the leg, to find a piece's first extent
    /// without walking the answer from its start for every piece.
    ends: Vec<u64>,
}

impl Answer {
    /// The part of the answer at `at..at + len`, pushed with `health`.
    fn cut(&self, at: u64, len: u64, health: u32, out: &mut Vec<StatusExtent>) {
        let end = at + len;
        let first = self.ends.partition_point(|&e| e <= at);
        for (e, &e_end) in self.extents.iter().zip(&self.ends).skip(first) {
            let (lo, hi) = ((e_end - e.len).max(at), e_end.min(end));
            if lo < hi {
                status::push(out, StatusExtent { len: hi - lo, allocation: e.allocation, health });
            }
            if e_end >= end {
                break;
            }
        }
    }
}

/// What the array knows of a piece of the range: from a leg, or already.
enum Segment {
    Leg(LegRun),
    Known(StatusExtent),
}

/// Bytes `at..at + len` of leg `leg`, all with the same health.
struct LegRun {
    leg: u32,
    at: u64,
    len: u64,
    health: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leg_whose_pieces_lie_far_apart_is_asked_piece_by_piece_and_each_found() {
        let dir = tempfile::tempdir().unwrap();
        // Two legs of 4,096 chunks of 4 KiB (16 MiB each).
        let a = crate::array::tests::array(dir.path(), "raid0", 2, 4096, "");
        let far = 8 << 20;
        let segments = vec![
            Segment::Leg(LegRun { leg: 0, at: 8192, len: 4096, health: 0 }),
            Segment::Leg(LegRun { leg: 1, at: 8192, len: 4096, health: 0 }),
            Segment::Leg(LegRun { leg: 0, at: far, len: 4096, health: 0 }),
            Segment::Leg(LegRun { leg: 1, at: 12_288, len: 4096, health: 0 }),
        ];
        let answers = a.ask_legs(&segments).unwrap();
        let asked: Vec<(u32, u64, u64)> = answers.iter().map(|x| (x.leg, x.start, x.end)).collect();
        // Leg 0's two pieces lie 8 MiB apart: asked one by one; leg 1's
        // follow one another: one span. In (leg, start) order.
        assert_eq!(asked, vec![(0, 8192, 12_288), (0, far, far + 4096), (1, 8192, 16_384)]);
        for x in &answers {
            assert_eq!(x.extents.iter().map(|e| e.len).sum::<u64>(), x.end - x.start);
        }
    }
}
