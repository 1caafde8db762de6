//! Test helpers: decode the flat encoding and draw layouts like md's docs.

use std::collections::BTreeMap;
use wasmraid_guest::{Descriptor, Geometry, Layout, ROLE_DATA, ROLE_PARITY, ROLE_REPLICA, ROLE_SPARE};

/// One decoded slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub leg: u32,
    pub chunk: u64,
    pub kind: u64,
    pub index: u32,
    pub coefficients: Vec<u8>,
}

/// Configure `L` and decode every stripe it maps.
pub fn stripes_of<L: Layout>(g: &Geometry) -> Vec<Vec<Slot>> {
    let (layout, d) = L::configure(g).expect("configure");
    decode(&wasmraid_guest::map_stripes(&layout, &d, 0, d.stripes as u32), &d)
}

/// The descriptor `L` declares for `g`.
pub fn descriptor_of<L: Layout>(g: &Geometry) -> Descriptor {
    L::configure(g).expect("configure").1
}

pub fn decode(flat: &[u64], d: &Descriptor) -> Vec<Vec<Slot>> {
    let mut stripes = Vec::new();
    let mut words = flat.iter().copied();
    while words.len() > 0 {
        let mut stripe = Vec::new();
        for _ in 0..d.slots() {
            let (leg, chunk, role) = (words.next().unwrap(), words.next().unwrap(), words.next().unwrap());
            let mut coefficients = Vec::new();
            if role & 0xff == ROLE_PARITY {
                for _ in 0..(d.data_chunks as usize).div_ceil(4) {
                    let w = words.next().unwrap();
                    coefficients.extend((0..4).map(|b| (w >> (8 * b)) as u8));
                }
                coefficients.truncate(d.data_chunks as usize);
            }
            stripe.push(Slot { leg: leg as u32, chunk, kind: role & 0xff, index: (role >> 8) as u32, coefficients });
        }
        stripes.push(stripe);
    }
    stripes
}

/// Draw rows `rows` of a layout over `legs` legs of `leg_chunks` chunks each:
/// data chunks by logical number, replicas as `n*`, parity ordinals 0, 1, 2
/// as P, Q, R, spares as S; rows separated by `|`.
pub fn grid_rows<L: Layout>(legs: u32, leg_chunks: u64, args: &str, rows: std::ops::Range<u64>) -> String {
    let g = Geometry::uniform(legs, leg_chunks, args);
    let d = descriptor_of::<L>(&g);
    let mut cells = BTreeMap::new();
    for (s, stripe) in stripes_of::<L>(&g).iter().enumerate() {
        for slot in stripe {
            let logical = s as u64 * u64::from(d.data_chunks) + u64::from(slot.index);
            let token = match slot.kind {
                ROLE_DATA => logical.to_string(),
                ROLE_REPLICA => format!("{logical}*"),
                ROLE_PARITY => ["P", "Q", "R"].get(slot.index as usize).unwrap_or(&"G").to_string(),
                ROLE_SPARE => "S".to_string(),
                other => panic!("unknown role kind {other}"),
            };
            assert!(cells.insert((slot.chunk, slot.leg), token).is_none(), "two slots on leg {} chunk {}", slot.leg, slot.chunk);
        }
    }
    rows.map(|r| (0..legs).map(|leg| cells.get(&(r, leg)).map_or(".", |t| t.as_str())).collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join(" | ")
}

/// The first `rows` rows over legs of 64 chunks.
pub fn grid<L: Layout>(legs: u32, args: &str, rows: u64) -> String {
    grid_rows::<L>(legs, 64, args, 0..rows)
}
