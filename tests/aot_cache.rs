//! The on-disk artifact cache: a second load is a deserialize; a damaged
//! entry is detected, reported and recompiled, never trusted.

use std::time::Duration;
use wasmraid::sandbox::{Sandbox, SandboxConfig, component};

#[test]
fn second_load_comes_from_the_cache_and_damage_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(SandboxConfig { cache_dir: Some(dir.path().into()), call_timeout: Duration::from_secs(2), ..SandboxConfig::default() }).unwrap();
    let bytes = wasmraid::builtins::find("raid6").unwrap();

    let first = component::load(&sandbox, bytes).unwrap();
    assert!(!first.stats.from_cache);
    let second = component::load(&sandbox, bytes).unwrap();
    assert!(second.stats.from_cache, "second load must deserialize");
    assert!(second.stats.load_time < first.stats.load_time, "{:?} vs {:?}", second.stats.load_time, first.stats.load_time);

    let entry = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "cwasm")).unwrap();
    let good = std::fs::read(&entry).unwrap();
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("corrupted", {
            let mut b = good.clone();
            let mid = b.len() / 2;
            b[mid] ^= 0xff;
            b
        }),
        ("not a wasmraid artifact", bytes.to_vec()),
    ];
    for (what, damaged) in damages {
        std::fs::write(&entry, damaged).unwrap();
        let loaded = component::load(&sandbox, bytes).unwrap();
        assert!(!loaded.stats.from_cache, "{what} entry was trusted");
        let why = loaded.stats.cache_rejected.clone().unwrap_or_default();
        assert!(why.contains(what), "{what}: {why}");
        // And it was rewritten: the next load is a clean deserialize.
        assert!(component::load(&sandbox, bytes).unwrap().stats.from_cache);
    }
}
