//! Scrubbing: does every stripe's parity and every replica agree with its
//! data? (md's `check`; `repair` rewrites what disagrees.)

use super::{Array, ArrayError};
use crate::layout::Role;
use crate::parity::{EncodeMatrix, encode};

impl Array {
    /// Slots of stripe `s` that disagree with its data (parity recomputed,
    /// replicas compared), reading only live legs. With `repair`, they are
    /// rewritten from the data.
    pub fn scrub_stripe(&self, s: u64, repair: bool) -> Result<u64, ArrayError> {
        let layout = self.layout.load();
        let _held = self.locks.lock(s);
        let view = self.view(&layout, s)?;
        let cb = self.chunk_bytes as usize;
        let d = layout.descriptor.data_chunks as usize;
        let mut data: Vec<Option<Vec<u8>>> = vec![None; d];
        for (i, slot) in view.shape.slots.iter().enumerate() {
            if let Role::Data(k) = slot.role {
                let mut buf = vec![0u8; cb];
                if self.leg_read_pub(slot.leg, view.place(i).chunk, &mut buf) {
                    data[k as usize] = Some(buf);
                }
            }
        }
        // A stripe whose data cannot all be read is not judged.
        if data.iter().any(Option::is_none) {
            return Ok(0);
        }
        let values: Vec<&[u8]> = data.iter().map(|b| b.as_deref().unwrap_or(&[])).collect();
        let mut mismatches = 0;
        for (i, slot) in view.shape.slots.iter().enumerate() {
            let expected = match &slot.role {
                Role::Replica(k) => values[*k as usize].to_vec(),
                Role::Parity { coefficients, .. } => {
                    let mut out = vec![0u8; cb];
                    encode(&EncodeMatrix::new(&[coefficients.to_vec()]), &values, &mut [&mut out]);
                    out
                }
                _ => continue,
            };
            let mut actual = vec![0u8; cb];
            if !self.leg_read_pub(slot.leg, view.place(i).chunk, &mut actual) {
                continue;
            }
            if actual != expected {
                mismatches += 1;
                if repair {
                    self.leg_write_pub(slot.leg, view.place(i).chunk, &expected);
                }
            }
        }
        Ok(mismatches)
    }
}
