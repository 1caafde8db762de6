//! Layouts written in C, Zig, Python and JavaScript, built from source by
//! `guest-algorithms/build-polyglot.sh`: each is proven, maps exactly like
//! the built-in Rust layout it ports over random geometries (the same words
//! from `map-stripes`, the same proven placement, the same refusals), and
//! serves data through NBD with fio verify clean while a leg fails.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use wasmraid::layout::Geometry;
use wasmraid::layout::compare;
use wasmraid::layout::proven::ProvenLayout;
use wasmraid::sandbox::{GuestInstance, LoadedComponent, Sandbox, component};
use wasmraid_tests::verify_with_failures;

/// The four components, built once per test binary.
static BUILT: LazyLock<PathBuf> = LazyLock::new(|| {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = root.join("target/polyglot");
    let status = std::process::Command::new(root.join("guest-algorithms/build-polyglot.sh"))
        .arg(&out)
        .env("WASMRAID_BIN", wasmraid_tests::wasmraid_bin())
        .status()
        .expect("run guest-algorithms/build-polyglot.sh");
    assert!(status.success(), "guest-algorithms/build-polyglot.sh failed ({status}): the C, Zig, Python and JavaScript layouts must build from source");
    out
});

// Python's guest is an interpreter: its first calls are slow on a loaded machine.
static SANDBOX: LazyLock<Arc<Sandbox>> = LazyLock::new(|| wasmraid_tests::sandbox_with_timeout(Duration::from_secs(20)));

fn port(file: &str) -> Arc<LoadedComponent> {
    let path = BUILT.join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Arc::new(component::load(&SANDBOX, &bytes).unwrap_or_else(|e| panic!("{file}: {e}")))
}

/// `port` and the Rust `reference` agree on `g`: both refuse it, or both
/// describe it alike, return the same words for every stripe probed, and
/// prove to the same placement.
fn agree(file: &str, port: &Arc<LoadedComponent>, reference: &Arc<LoadedComponent>, g: &Geometry, probes: &[u64]) -> Result<(), TestCaseError> {
    let (mut a, mut b) = (GuestInstance::new(port.clone()), GuestInstance::new(reference.clone()));
    let (da, db) = (a.configure(g), b.configure(g));
    match (&da, &db) {
        (Err(_), Err(_)) => return Ok(()),
        (Ok(da), Ok(db)) => prop_assert_eq!(da, db, "{} descriptor on {:?}", file, g),
        _ => prop_assert!(false, "{file} on {g:?}: port {da:?}, reference {db:?}"),
    }
    let d = db.map_err(|e| TestCaseError::fail(e.to_string()))?;
    if d.stripes == 0 {
        return Ok(());
    }
    // The first stripes (a period or more), the last ones, random ones.
    let mut windows = vec![(0, d.stripes.min(d.period.max(1) * 2 + 3)), (d.stripes.saturating_sub(3), d.stripes)];
    windows.extend(probes.iter().map(|p| (p % d.stripes, (p % d.stripes + 2).min(d.stripes))));
    for (first, end) in windows {
        let count = (end - first) as u32;
        let (wa, wb) = (a.map_stripes(first, count), b.map_stripes(first, count));
        let (wa, wb) = (wa.map_err(|e| TestCaseError::fail(format!("{file}: {e}")))?, wb.map_err(|e| TestCaseError::fail(e.to_string()))?);
        prop_assert!(wa == wb, "{} on {:?}: stripes {}..{} differ\n port      {:?}\n reference {:?}", file, g, first, end, wa, wb);
    }
    let pa = ProvenLayout::prove(port.clone(), g.clone()).map_err(|e| TestCaseError::fail(format!("{file} on {g:?}: {e}")))?;
    let pb = ProvenLayout::prove(reference.clone(), g.clone()).map_err(|e| TestCaseError::fail(format!("reference on {g:?}: {e}")))?;
    compare::identical(&pa, &pb).map_err(|e| TestCaseError::fail(format!("{file} on {g:?}: {e}")))?;
    Ok(())
}

/// Random geometries from `geometry`, `cases` of them, each checked by `agree`.
fn ports_agree<S: Strategy<Value = Geometry>>(file: &str, reference: &str, cases: u32, geometry: S) {
    let (p, r) = (port(file), wasmraid_tests::builtin(&SANDBOX, reference));
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let strategy = (geometry, prop::collection::vec(any::<u64>(), 4));
    runner.run(&strategy, |(g, probes)| agree(file, &p, &r, &g, &probes)).unwrap_or_else(|e| panic!("{e}"));
}

fn legs_of(sizes: Vec<u64>, args: String) -> Geometry {
    Geometry { chunk_sectors: 128, leg_chunks: sizes, args }
}

#[test]
fn c_raid5_maps_like_rust() {
    let args = prop::sample::select(vec!["", "ls", "la", "rs", "ra", "left-symmetric", "right-asymmetric", "parity-0", "parity-n", "bogus", "ls,la"]);
    let g = (prop::collection::vec(1u64..5000, 1..18), args).prop_map(|(sizes, a)| legs_of(sizes, a.into()));
    ports_agree("c-raid5.wasm", "raid5", 64, g);
}

#[test]
fn zig_raid10_maps_like_rust() {
    let args = prop::sample::select(vec!["", "n2", "f2", "o2", "n3", "f3", "o3", "n1", "n0", "x2", "n2 f2", "f9"]);
    let g = (prop::collection::vec(1u64..5000, 1..12), args).prop_map(|(sizes, a)| legs_of(sizes, a.into()));
    ports_agree("zig-raid10.wasm", "raid10", 64, g);
}

#[test]
fn python_pyramid_maps_like_rust() {
    // Schemes of one to 16 legs: groups, their local parities, globals, spares.
    let cell = prop::sample::select(vec!["1", "1", "2", "2", "3", "s1", "s2", "s3", "g", "e"]);
    let scheme = prop::collection::vec(cell, 1..12).prop_map(|cells| cells.concat());
    let g = (scheme, 1u64..3000, prop::bool::ANY).prop_map(|(scheme, chunks, keyed)| {
        let legs = scheme.chars().filter(|c| *c != 's').count();
        legs_of(vec![chunks; legs], if keyed { format!("scheme={scheme}") } else { scheme })
    });
    ports_agree("python-pyramid.wasm", "pyramid", 48, g);
    // The default (elegant) scheme on 14 legs.
    ports_agree("python-pyramid.wasm", "pyramid", 2, (1u64..3000).prop_map(|c| legs_of(vec![c; 14], String::new())));
}

#[test]
fn javascript_draid_maps_like_rust() {
    let args = (0u32..5, 0u32..3, any::<u64>(), prop::bool::ANY).prop_map(|(p, s, seed, big)| {
        let seed = if big { seed } else { seed % 100 };
        format!("p={p},s={s},seed={seed}")
    });
    let g = (3usize..12, 1u64..600, args).prop_map(|(legs, chunks, a)| legs_of(vec![chunks; legs], a));
    ports_agree("javascript-draid.wasm", "draid", 32, g);
}

/// fio verify through NBD while `fail` is failed mid-run.
fn serves_with_a_failed_leg(file: &str, legs: usize, args: &str, fail: usize) {
    verify_with_failures(&BUILT.join(file).display().to_string(), legs, args, &[vec![fail]]);
}

#[test]
fn c_raid5_serves_through_nbd() {
    serves_with_a_failed_leg("c-raid5.wasm", 5, "left-asymmetric", 2);
}

#[test]
fn zig_raid10_serves_through_nbd() {
    serves_with_a_failed_leg("zig-raid10.wasm", 4, "f2", 1);
}

#[test]
fn python_pyramid_serves_through_nbd() {
    serves_with_a_failed_leg("python-pyramid.wasm", 10, "scheme=111s1222s2ge", 3);
}

#[test]
fn javascript_draid_serves_through_nbd() {
    serves_with_a_failed_leg("javascript-draid.wasm", 8, "p=2,s=1,seed=7", 5);
}
