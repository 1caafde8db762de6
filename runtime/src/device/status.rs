//! What a device knows of a range beyond its bytes, for NBD block status:
//! whether it is allocated (`base:allocation`, the protocol's own context)
//! and how safe it is (`wasmraid:health`, this project's context, which no
//! other server has). Devices answer from what they really know: a file's
//! holes, a zero target, an array's bitmap and legs.

/// `base:allocation`: the range is not allocated (reads may be served
/// without touching storage).
pub const HOLE: u32 = 1;
/// `base:allocation`: the range reads as zeroes.
pub const ZERO: u32 = 2;

/// `wasmraid:health`: the array must resync this range (after a crash or
/// an interrupted sync, its redundancy is not known to agree with its data).
pub const NEEDS_RESYNC: u32 = 1;
/// `wasmraid:health`: data here lives on a failed leg; reads rebuild it
/// from the others (decoding).
pub const DEGRADED: u32 = 2;
/// `wasmraid:health`: readable directly, but with less redundancy than the
/// layout gives (a leg of its stripe is failed).
pub const REDUCED: u32 = 4;

/// One extent of a block status answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusExtent {
    pub len: u64,
    pub allocation: u32,
    pub health: u32,
}

/// Append `e`, merged into the last extent when their flags agree.
pub fn push(out: &mut Vec<StatusExtent>, e: StatusExtent) {
    if e.len == 0 {
        return;
    }
    match out.last_mut() {
        Some(last) if last.allocation == e.allocation && last.health == e.health => last.len += e.len,
        _ => out.push(e),
    }
}

/// One flag set of `extents` (`pick`: the allocation or the health flags),
/// as (length, flags) with neighbours that agree merged.
pub fn project(extents: &[StatusExtent], pick: impl Fn(&StatusExtent) -> u32) -> Vec<(u64, u32)> {
    let mut out: Vec<(u64, u32)> = Vec::new();
    for e in extents {
        let flags = pick(e);
        match out.last_mut() {
            Some((len, last)) if *last == flags => *len += e.len,
            _ => out.push((e.len, flags)),
        }
    }
    out
}
