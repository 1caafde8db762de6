//! Properties of every shipped layout: each proves valid over random
//! geometries, and the cached map equals a direct guest call.

use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use wasmraid::layout::Geometry;
use wasmraid::layout::decode::Decoder;
use wasmraid::layout::proven::ProvenLayout;
use wasmraid::sandbox::{GuestInstance, LoadedComponent, Sandbox};

static SANDBOX: LazyLock<Arc<Sandbox>> = LazyLock::new(wasmraid_tests::sandbox);
static LOADED: LazyLock<Mutex<HashMap<&'static str, Arc<LoadedComponent>>>> = LazyLock::new(Default::default);

fn component(name: &'static str) -> Arc<LoadedComponent> {
    LOADED.lock().unwrap().entry(name).or_insert_with(|| wasmraid_tests::builtin(&SANDBOX, name)).clone()
}

/// Prove `name` on `g`, then compare the cached map with the guest for
/// every stripe in `probes` (taken modulo the stripe count).
fn proves_and_matches(name: &'static str, g: Geometry, probes: &[u64]) -> Result<(), TestCaseError> {
    let c = component(name);
    let layout = ProvenLayout::prove(c.clone(), g.clone()).map_err(|e| TestCaseError::fail(format!("{name} {g:?}: {e}")))?;
    let d = layout.descriptor;
    prop_assert!(layout.capacity_bytes() > 0);
    let mut guest = GuestInstance::new(c);
    guest.configure(&g).unwrap();
    let mut decoder = Decoder::default();
    for &p in probes.iter().chain([0, d.stripes - 1].iter()) {
        let s = p % d.stripes;
        let direct = decoder.decode(&d, s, 1, &guest.map_stripes(s, 1).unwrap()).unwrap().remove(0);
        let cached = layout.stripe(s).unwrap();
        for (i, slot) in direct.slots.iter().enumerate() {
            let place = cached.place(i);
            prop_assert_eq!((place.leg, place.chunk), (slot.leg, slot.chunk), "{} stripe {} slot {}", name, s, i);
            prop_assert_eq!(&cached.shape.slots[i].role, &slot.role);
        }
        // locate() agrees with the stripe's data slots.
        for k in 0..d.data_chunks {
            let at = direct.data_slot(k).unwrap();
            let p = layout.locate(s * u64::from(d.data_chunks) + u64::from(k)).unwrap();
            prop_assert_eq!((p.leg, p.chunk), (direct.slots[at].leg, direct.slots[at].chunk));
        }
    }
    Ok(())
}

fn uniform(legs: u32, chunks: u64, args: &str) -> Geometry {
    wasmraid_tests::geometry(legs as usize, chunks, args)
}

fn probes() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(any::<u64>(), 8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn linear(sizes in prop::collection::vec(0u64..400, 1..6), extra in 1u64..400, p in probes()) {
        let mut sizes = sizes;
        sizes.push(extra);
        let g = Geometry { chunk_sectors: 8, leg_chunks: sizes, args: String::new() };
        proves_and_matches("linear", g, &p)?;
    }

    #[test]
    fn raid0(legs in 1u32..9, chunks in 1u64..3000, p in probes()) {
        proves_and_matches("raid0", uniform(legs, chunks, ""), &p)?;
    }

    #[test]
    fn raid1(legs in 1u32..6, chunks in 1u64..3000, p in probes()) {
        proves_and_matches("raid1", uniform(legs, chunks, ""), &p)?;
    }

    #[test]
    fn raid10(copies in 2u32..4, kind in prop::sample::select(vec!["n", "f", "o"]), extra in 0u32..5, chunks in 8u64..3000, p in probes()) {
        proves_and_matches("raid10", uniform(copies + extra, chunks, &format!("{kind}{copies}")), &p)?;
    }

    #[test]
    fn raid4(legs in 2u32..9, args in prop::sample::select(vec!["", "parity-0", "parity-n"]), chunks in 1u64..3000, p in probes()) {
        proves_and_matches("raid4", uniform(legs, chunks, args), &p)?;
    }

    #[test]
    fn raid5(legs in 2u32..11, args in prop::sample::select(vec!["la", "ra", "ls", "rs", "parity-0", "parity-n"]), sizes in prop::collection::vec(1u64..3000, 11), p in probes()) {
        // Unequal legs: the layout uses the smallest.
        let g = Geometry { chunk_sectors: 128, leg_chunks: sizes[..legs as usize].to_vec(), args: args.into() };
        proves_and_matches("raid5", g, &p)?;
    }

    #[test]
    fn raid6(legs in 4u32..12, args in prop::sample::select(vec!["la", "ra", "ls", "rs", "rotating-n-restart"]), chunks in 1u64..3000, p in probes()) {
        proves_and_matches("raid6", uniform(legs, chunks, args), &p)?;
    }

    #[test]
    fn raid7(legs in 4u32..12, chunks in 1u64..3000, p in probes()) {
        proves_and_matches("raid7", uniform(legs, chunks, ""), &p)?;
    }

    #[test]
    fn pyramid(scheme in prop::sample::select(vec![("elegant", 14u32), ("11s1ge", 5), ("scheme=111s1222s2333s3eg", 14), ("1s12s2gg", 6), ("1111s1e", 6)]), chunks in 1u64..3000, p in probes()) {
        proves_and_matches("pyramid", uniform(scheme.1, chunks, scheme.0), &p)?;
    }

    #[test]
    fn draid(parities in 1u32..4, spares in 0u32..3, data in 1u32..9, seed in any::<u32>(), chunks in 1u64..1500, p in probes()) {
        let args = format!("p={parities},s={spares},seed={seed}");
        proves_and_matches("draid", uniform(parities + spares + data, chunks, &args), &p)?;
    }
}

#[test]
fn fault_tolerances_are_what_each_layout_promises() {
    let cases: &[(&str, u32, &str, u32)] = &[
        ("raid0", 4, "", 0),
        ("raid1", 3, "", 2),
        ("raid10", 4, "n2", 1),
        ("raid10", 6, "f3", 2),
        ("raid5", 5, "", 1),
        ("raid6", 6, "la", 2),
        ("raid7", 7, "", 3),
        ("pyramid", 14, "", 2),
        ("draid", 10, "p=3,s=1", 3),
    ];
    for &(name, legs, args, ft) in cases {
        let layout = ProvenLayout::prove(component(name), uniform(legs, 64, args)).unwrap();
        assert_eq!(layout.report.fault_tolerance, ft, "{name} {args}");
    }
}
