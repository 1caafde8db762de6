//! Finding the segment that holds a sector: the segment starts laid out as
//! an implicit search tree (Eytzinger order), the compact pointer-free tree
//! the device-mapper introduction describes, so a lookup walks one cache
//! line per level.

pub struct SegmentIndex {
    /// Starts in Eytzinger order, 1-based (slot 0 unused).
    tree: Vec<u64>,
    /// Segment number of each tree slot.
    segment: Vec<usize>,
}

impl SegmentIndex {
    /// `starts` must be ascending and begin at 0.
    pub fn new(starts: &[u64]) -> Self {
        let n = starts.len();
        let mut tree = vec![0u64; n + 1];
        let mut segment = vec![0usize; n + 1];
        let mut next = 0;
        fill(starts, &mut tree, &mut segment, &mut next, 1);
        SegmentIndex { tree, segment }
    }

    /// The segment containing `sector`: the last start <= sector.
    pub fn find(&self, sector: u64) -> usize {
        let n = self.tree.len() - 1;
        let mut k = 1;
        let mut best = 0;
        while k <= n {
            if self.tree[k] <= sector {
                best = k;
                k = 2 * k + 1;
            } else {
                k *= 2;
            }
        }
        self.segment[best]
    }
}

/// In-order traversal of the implicit tree assigns sorted starts.
fn fill(starts: &[u64], tree: &mut [u64], segment: &mut [usize], next: &mut usize, k: usize) {
    if k < tree.len() {
        fill(starts, tree, segment, next, 2 * k);
        tree[k] = starts[*next];
        segment[k] = *next;
        *next += 1;
        fill(starts, tree, segment, next, 2 * k + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn finds_what_a_binary_search_finds(lengths in prop::collection::vec(1u64..1000, 1..200), probe in any::<u64>()) {
            let mut starts = vec![0u64];
            for l in &lengths[..lengths.len() - 1] {
                starts.push(starts.last().unwrap() + l);
            }
            let end = starts.last().unwrap() + lengths.last().unwrap();
            let index = SegmentIndex::new(&starts);
            let sector = probe % end;
            let expected = starts.partition_point(|&s| s <= sector) - 1;
            prop_assert_eq!(index.find(sector), expected);
        }
    }
}
