//! The proof against hand-written layouts, good and bad.

use super::*;

/// A source built from a per-stripe encoder.
struct Table<F: FnMut(u64) -> Vec<u64>>(F);

impl<F: FnMut(u64) -> Vec<u64>> StripeSource for Table<F> {
    fn fetch(&mut self, first: u64, count: u32) -> Result<Vec<u64>, SandboxError> {
        Ok((first..first + u64::from(count)).flat_map(|s| (self.0)(s)).collect())
    }
}

fn data(leg: u64, chunk: u64, k: u64) -> [u64; 3] {
    [leg, chunk, k << 8]
}

fn xor(leg: u64, chunk: u64) -> [u64; 4] {
    [leg, chunk, 2, 0x0101_0101]
}

/// md left-symmetric RAID5 over 5 legs (4 data, one P).
fn raid5(s: u64) -> Vec<u64> {
    let n = 5;
    let p = 4 - s % n;
    let mut out = Vec::new();
    for k in 0..4 {
        out.extend(data((p + 1 + k) % n, s, k));
    }
    out.extend(xor(p, s));
    out
}

fn geometry(leg_chunks: u64) -> Geometry {
    Geometry { chunk_sectors: 128, leg_chunks: vec![leg_chunks; 5], args: String::new() }
}

fn raid5_descriptor(stripes: u64) -> Descriptor {
    Descriptor { data_chunks: 4, parity_chunks: 1, stripes, period: 5, period_advance: 5, fault_tolerance: 1, ..Default::default() }
}

fn run(f: impl FnMut(u64) -> Vec<u64>, g: &Geometry, d: &Descriptor) -> Result<(Proven, ProofReport), ProofError> {
    prove(&mut Table(f), g, d, &std::collections::hash_map::RandomState::new())
}

#[test]
fn raid5_is_proven() {
    let (proven, report) = run(raid5, &geometry(1000), &raid5_descriptor(1000)).unwrap();
    assert!(matches!(proven, Proven::Periodic { ref base } if base.len() == 5));
    assert_eq!(report.chunks, 5000);
    // Every rotation is the same shape once roles are grouped by leg.
    assert_eq!(report.shapes, 1);
}

#[test]
fn leg_out_of_range_is_named() {
    let e = run(
        |s| {
            let mut w = raid5(s);
            if s == 2 {
                w[0] = 9;
            }
            w
        },
        &geometry(100),
        &raid5_descriptor(100),
    )
    .unwrap_err();
    assert_eq!((e.rule, e.stripe, e.slot), (Rule::Bounds, Some(2), Some(0)));
    assert!(e.to_string().contains("leg 9 does not exist"), "{e}");
}

#[test]
fn chunk_beyond_the_leg_names_the_last_stripe() {
    // 100 stripes declared, one leg of 99 chunks (the others hold enough
    // in total): stripe 99 is out of bounds on it.
    let mut g = geometry(100);
    g.leg_chunks[4] = 99;
    g.leg_chunks[0] = 101;
    let e = run(raid5, &g, &raid5_descriptor(100)).unwrap_err();
    assert_eq!((e.rule, e.stripe), (Rule::Bounds, Some(99)));
}

#[test]
fn more_stripes_than_the_legs_hold_is_refused_before_anything_is_allocated() {
    for stripes in [101, 1 << 40, u64::MAX] {
        let d = Descriptor { period: 0, period_advance: 0, ..raid5_descriptor(stripes) };
        let e = run(|_| panic!("the guest must not be asked"), &geometry(100), &d).unwrap_err();
        assert_eq!(e.rule, Rule::Descriptor, "{e}");
        assert!(e.to_string().contains("the legs hold only 500 chunks"), "{e}");
    }
}

#[test]
fn a_slow_guest_runs_out_of_proof_time() {
    let d = Descriptor { period: 0, period_advance: 0, ..raid5_descriptor(100) };
    let slow = |s: u64| {
        std::thread::sleep(std::time::Duration::from_millis(30));
        raid5(s)
    };
    let e =
        prove_within(&mut Table(slow), &geometry(100), &d, &std::collections::hash_map::RandomState::new(), std::time::Duration::from_millis(200)).unwrap_err();
    assert_eq!(e.rule, Rule::Guest, "{e}");
    assert!(e.to_string().contains("--proof-timeout"), "{e}");
}

/// A 20+4 systematic code whose parity rows form a Cauchy matrix (every
/// square submatrix invertible) with columns scaled per stripe (still
/// MDS), rotated over 24 legs: 1024 distinct stripe shapes, as the wide
/// code that once took 75 s to prove.
fn cauchy(s: u64) -> Vec<u64> {
    let (n, k, p) = (24u64, 20u64, 4u64);
    let mut out = Vec::new();
    for j in 0..k {
        out.extend(data((s + j) % n, s, j));
    }
    let variant = s % 1024;
    for i in 0..p {
        // x_i = i, y_j = p + j + (variant % 8) * 24: all distinct, below
        // 256; column j scaled by 2^((variant / 8) * (j + 1)), never 0.
        let coeff = |j: u64| {
            let c = gf256::inv((i as u8) ^ ((p + j + (variant % 8) * 24) as u8)).unwrap_or(0);
            let scale = (0..((variant / 8) * (j + 1)) % 255).fold(1u8, |a, _| gf256::mul(a, 2));
            gf256::mul(c, scale)
        };
        let mut words = vec![(s + k + i) % n, s, 2 | (i << 8)];
        for group in 0..k.div_ceil(4) {
            let mut w = 0u64;
            for b in 0..4 {
                let j = group * 4 + b;
                if j < k {
                    w |= u64::from(coeff(j)) << (8 * b);
                }
            }
            words.push(w);
        }
        out.extend(words);
    }
    out
}

#[test]
fn a_wide_cauchy_code_with_many_shapes_proves_in_seconds() {
    let g = Geometry { chunk_sectors: 128, leg_chunks: vec![1024; 24], args: String::new() };
    let d = Descriptor { data_chunks: 20, parity_chunks: 4, stripes: 1024, period: 0, period_advance: 0, fault_tolerance: 4, ..Default::default() };
    let started = std::time::Instant::now();
    let (_, report) = run(cauchy, &g, &d).expect("a Cauchy code survives any 4 failures");
    println!("20+4 Cauchy, {} distinct shapes: proven in {:?}", report.shapes, started.elapsed());
    assert_eq!(report.shapes, 1024);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    // The same code declaring 5 is refused, naming five legs.
    let e = run(cauchy, &g, &Descriptor { fault_tolerance: 5, ..d }).unwrap_err();
    assert_eq!(e.rule, Rule::FaultTolerance, "{e}");
}

#[test]
fn two_slots_on_one_chunk() {
    let e = run(
        |s| {
            let mut w = raid5(s);
            w[3] = w[0];
            w
        },
        &geometry(100),
        &raid5_descriptor(100),
    )
    .unwrap_err();
    assert_eq!(e.rule, Rule::Overlap, "{e}");
}

#[test]
fn overlap_across_periods() {
    // Advance 4 instead of 5: period 1's chunks land on period 0's row 4.
    let d = Descriptor { period_advance: 4, ..raid5_descriptor(100) };
    let e = run(
        |s| {
            let mut w = raid5(s);
            for i in [1, 4, 7, 10, 13] {
                w[i] = (s / 5) * 4 + s % 5;
            }
            w
        },
        &geometry(100),
        &d,
    )
    .unwrap_err();
    assert_eq!(e.rule, Rule::Overlap, "{e}");
    assert!(e.stripe.is_some());
}

#[test]
fn missing_data_index() {
    let e = run(
        |s| {
            let mut w = raid5(s);
            w[5] = 0;
            w
        },
        &geometry(100),
        &raid5_descriptor(100),
    )
    .unwrap_err();
    assert_eq!((e.rule, e.stripe, e.slot), (Rule::DataIndex, Some(0), Some(1)));
}

#[test]
fn lying_period() {
    let e = run(
        |s| {
            let mut w = raid5(s);
            if s == 7 {
                w.swap(0, 3);
            }
            w
        },
        &geometry(100),
        &raid5_descriptor(100),
    )
    .unwrap_err();
    assert_eq!((e.rule, e.stripe, e.slot), (Rule::Period, Some(7), Some(0)));
}

#[test]
fn lying_fault_tolerance() {
    let d = Descriptor { fault_tolerance: 2, ..raid5_descriptor(100) };
    let e = run(raid5, &geometry(100), &d).unwrap_err();
    assert_eq!((e.rule, e.stripe), (Rule::FaultTolerance, Some(0)));
    assert!(e.to_string().contains("losing legs"), "{e}");
}

#[test]
fn parity_covering_nothing() {
    let e = run(
        |s| {
            let mut w = raid5(s);
            w[15] = 0;
            w
        },
        &geometry(100),
        &raid5_descriptor(100),
    )
    .unwrap_err();
    assert_eq!(e.rule, Rule::Parity);
}

#[test]
fn aperiodic_layout_is_streamed_and_fingerprinted() {
    let d = Descriptor { period: 0, period_advance: 0, ..raid5_descriptor(1000) };
    let (proven, report) = run(raid5, &geometry(1000), &d).unwrap();
    let Proven::Aperiodic { fingerprints } = proven else { panic!("aperiodic expected") };
    assert_eq!(fingerprints.len(), 4);
    assert!(!report.periodic);
    let e = run(
        |s| {
            let mut w = raid5(s);
            if s == 600 {
                w[1] = 3;
            }
            w
        },
        &geometry(1000),
        &d,
    )
    .unwrap_err();
    assert_eq!((e.rule, e.stripe), (Rule::Overlap, Some(600)));
}

#[test]
fn combinations_enumerate_in_order() {
    let mut c = vec![0, 1];
    let mut all = vec![c.clone()];
    while next_combination(&mut c, 4) {
        all.push(c.clone());
    }
    assert_eq!(all, [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]);
}

proptest::proptest! {
    /// The fast fault-tolerance check for systematic stripes agrees with
    /// ranking every failure combination, on random codes (zeros and
    /// singular submatrices included).
    #[test]
    fn the_systematic_shortcut_agrees_with_every_combination(
        data in 1usize..7,
        parities in 0usize..4,
        spares in 0usize..2,
        extra in 0usize..2,
        seed in proptest::prelude::any::<u64>(),
    ) {
        let mut state = seed;
        let mut next = || wasmraid_rng(&mut state);
        let mut slots = Vec::new();
        for k in 0..data {
            slots.push(crate::layout::Slot { leg: k as u32, chunk: 0, role: Role::Data(k as u32) });
        }
        for i in 0..parities {
            // Coefficients with many zeros and repeats: often singular.
            let row: Vec<u8> = (0..data).map(|_| match next() % 4 { 0 => 0, 1 => 1, _ => (next() % 256) as u8 }).collect();
            let row = if row.iter().all(|&c| c == 0) { vec![1; data] } else { row };
            slots.push(crate::layout::Slot { leg: (data + i) as u32, chunk: 0, role: Role::Parity { ordinal: i as u32, coefficients: row.into() } });
        }
        for o in 0..spares {
            slots.push(crate::layout::Slot { leg: (data + parities + o) as u32, chunk: 0, role: Role::Spare(o as u32) });
        }
        let stripe = Stripe { slots };
        let legs: Vec<u32> = (0..(data + parities + spares) as u32).collect();
        let f = (parities + extra).min(legs.len());
        let d = Descriptor { data_chunks: data as u32, parity_chunks: parities as u32, spare_chunks: spares as u32, stripes: 1, fault_tolerance: f as u32, ..Default::default() };
        let started = std::time::Instant::now();
        let fast = systematic_tolerance(0, &stripe, &d, f, &mut |_| Ok(()), started).expect("systematic");
        let slow = exhaustive_tolerance(0, &stripe, &d, &legs, f, &mut |_| Ok(()), started);
        proptest::prop_assert_eq!(fast.is_ok(), slow.is_ok(), "fast {:?} slow {:?}", fast.err().map(|e| e.to_string()), slow.err().map(|e| e.to_string()));
    }
}

fn wasmraid_rng(state: &mut u64) -> u64 {
    crate::device::log_writes::splitmix64(state)
}
