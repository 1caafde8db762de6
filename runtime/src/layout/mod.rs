//! Layouts as the host sees them: stripes of slots, decoded from a guest's
//! flat answer, proven, then cached so the guest is off the data path.

pub mod compare;
pub mod decode;
pub mod draw;
pub mod gf256;
pub mod map;
pub mod proven;
pub mod verify;

use std::sync::Arc;

/// What a slot of a stripe holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Data chunk `k` of the stripe, in logical order.
    Data(u32),
    /// A copy of data chunk `k`.
    Replica(u32),
    /// Parity `ordinal`: the sum over data chunks of coefficient x chunk in
    /// GF(2^8); `coefficients` has one entry per data chunk.
    Parity { ordinal: u32, coefficients: Arc<[u8]> },
    /// A distributed spare (holds nothing until a rebuild uses it).
    Spare(u32),
}

impl Role {
    /// The equation this slot satisfies over the stripe's data chunks, if
    /// it holds anything: a unit vector for data and replicas.
    pub fn equation(&self, data_chunks: usize) -> Option<Vec<u8>> {
        match self {
            Role::Data(k) | Role::Replica(k) => {
                let mut row = vec![0; data_chunks];
                *row.get_mut(*k as usize)? = 1;
                Some(row)
            }
            Role::Parity { coefficients, .. } => Some(coefficients.to_vec()),
            Role::Spare(_) => None,
        }
    }

    /// A short label for pictures: `D`, `D'`, `P`, `Q`, `R`, `P3`..., `S`.
    pub fn label(&self) -> String {
        match self {
            Role::Data(_) => "D".into(),
            Role::Replica(_) => "D'".into(),
            Role::Parity { ordinal, .. } => match ordinal {
                0 => "P".into(),
                1 => "Q".into(),
                2 => "R".into(),
                n => format!("P{n}"),
            },
            Role::Spare(_) => "S".into(),
        }
    }
}

/// One slot: a chunk on a leg with a role.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    pub leg: u32,
    /// Chunk offset on the leg (in chunks).
    pub chunk: u64,
    pub role: Role,
}

/// One stripe: its slots in the guest's order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stripe {
    pub slots: Vec<Slot>,
}

impl Stripe {
    /// This stripe with every chunk moved by `delta` periods' advance.
    pub fn advanced(&self, advance: u64) -> Option<Stripe> {
        let slots =
            self.slots.iter().map(|s| Some(Slot { leg: s.leg, chunk: s.chunk.checked_add(advance)?, role: s.role.clone() })).collect::<Option<Vec<_>>>()?;
        Some(Stripe { slots })
    }

    /// Index of the slot holding data chunk `k`.
    pub fn data_slot(&self, k: u32) -> Option<usize> {
        self.slots.iter().position(|s| s.role == Role::Data(k))
    }
}

/// What a configured layout promises (the WIT `descriptor`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Descriptor {
    pub data_chunks: u32,
    pub replica_chunks: u32,
    pub parity_chunks: u32,
    pub spare_chunks: u32,
    pub stripes: u64,
    /// Stripes per period; 0 when aperiodic.
    pub period: u64,
    pub period_advance: u64,
    pub fault_tolerance: u32,
}

impl Descriptor {
    /// Slots per stripe.
    pub fn slots(&self) -> u64 {
        u64::from(self.data_chunks) + u64::from(self.replica_chunks) + u64::from(self.parity_chunks) + u64::from(self.spare_chunks)
    }

    /// Words one stripe takes in the flat encoding (see `wit/layout.wit`).
    pub fn words_per_stripe(&self) -> u64 {
        self.slots() * 3 + u64::from(self.parity_chunks) * u64::from(self.data_chunks).div_ceil(4)
    }

    /// Whether the layout declares a period.
    pub fn is_periodic(&self) -> bool {
        self.period != 0
    }

    /// Logical size in chunks.
    pub fn data_chunk_count(&self) -> u64 {
        self.stripes.saturating_mul(u64::from(self.data_chunks))
    }
}

/// The array a layout is configured for (the WIT `geometry`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Geometry {
    /// Chunk size in 512-byte sectors.
    pub chunk_sectors: u32,
    /// Each leg's usable size, in chunks.
    pub leg_chunks: Vec<u64>,
    /// The algorithm's arguments.
    pub args: String,
}

impl Geometry {
    pub fn legs(&self) -> u32 {
        self.leg_chunks.len() as u32
    }

    /// Chunk size in bytes.
    pub fn chunk_bytes(&self) -> u64 {
        u64::from(self.chunk_sectors) * 512
    }
}
