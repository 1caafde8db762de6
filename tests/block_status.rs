//! NBD block status against libnbd's nbdinfo: `base:allocation` from what
//! the array knows (never-written and discarded ranges are holes that read
//! as zeroes) and `wasmraid:health` (a failed leg's chunks are readable
//! only by decoding, the rest of their stripes have less redundancy).

use std::process::Command;
use wasmraid_tests::{Served, assert_one_failed_leg, flags_at, parse_map, require, run};

/// `nbdinfo --map[=CONTEXT]`: (offset, length, flags) per extent.
fn map(uri: &str, context: Option<&str>) -> Vec<(u64, u64, u32)> {
    let arg = context.map_or("--map".to_string(), |c| format!("--map={c}"));
    let (ok, out) = run(Command::new("nbdinfo").arg(arg).arg(uri));
    assert!(ok, "nbdinfo --map: {out}");
    parse_map(&out)
}

#[test]
fn nbdinfo_maps_allocation_and_health_of_a_raid6() {
    require("nbdinfo");
    require("nbdcopy");
    require("fio");
    // raid6 over 6 legs: 4 data chunks of 64 KiB per stripe.
    let s = Served::layout("raid6", 6, "32M", "", "64K");
    let uri = s.uri();
    let (ok, info) = run(Command::new("nbdinfo").arg(&uri));
    assert!(ok && info.contains("block_size_preferred: 262144"), "the preferred block size is the 256 KiB stripe: {info}");
    assert!(info.contains("using structured packets"), "{info}");
    let fresh = map(&uri, None);
    assert!(fresh.iter().all(|e| e.2 == 3), "a never-written array is all hole,zero: {fresh:?}");
    // 8 MiB of data, then 1 MiB of it discarded (whole stripes: 256 KiB each).
    let data = s.dir.path().join("data");
    std::fs::write(&data, (0..8u32 << 20).map(|i| (i % 251) as u8 | 1).collect::<Vec<u8>>()).expect("data");
    let (ok, out) = run(Command::new("nbdcopy").arg(&data).arg(&uri));
    assert!(ok, "{out}");
    let (ok, out) =
        run(Command::new("fio").args(["--name=trim", "--ioengine=nbd", &format!("--uri={uri}"), "--rw=trim", "--bs=1M", "--offset=1M", "--size=2M"]));
    assert!(ok, "trim: {out}");
    let m = map(&uri, None);
    assert_eq!(flags_at(&m, 0), Some(0), "written: data: {m:?}");
    assert_eq!(flags_at(&m, 2 << 20), Some(3), "discarded: hole,zero: {m:?}");
    assert_eq!(flags_at(&m, 3 << 20), Some(0), "written after the discard: data: {m:?}");
    assert_eq!(flags_at(&m, 16 << 20), Some(3), "never written: hole,zero: {m:?}");
    let health = map(&uri, Some("wasmraid:health"));
    assert!(health.iter().all(|e| e.2 == 0), "every leg in sync: {health:?}");
    // qemu reads base:allocation the same way (qemu-img map, qemu-io map).
    require("qemu-img");
    let (ok, out) = run(Command::new("qemu-img").args(["map", "-f", "raw", "--output=json", &uri]));
    assert!(ok, "qemu-img map: {out}");
    let extents: serde_json::Value = serde_json::from_str(&out).expect("qemu-img map json");
    let at = |offset: u64| {
        extents.as_array().into_iter().flatten().find(|e| {
            let (start, len) = (e["start"].as_u64().unwrap_or(0), e["length"].as_u64().unwrap_or(0));
            start <= offset && offset < start + len
        })
    };
    assert_eq!(at(0).map(|e| e["data"].clone()), Some(serde_json::json!(true)), "{out}");
    assert_eq!(at(2 << 20).map(|e| (e["data"].clone(), e["zero"].clone())), Some((serde_json::json!(false), serde_json::json!(true))), "{out}");

    let out = s.ctl(&["leg", "fail", "dev", "2"]);
    assert!(out.status.success());
    // The failed leg holds data in 4 of every 6 stripes' slots: a sixth of
    // the data chunks (leg 2 of 6, rotating), every stripe has less redundancy;
    // data decoded from the others is reported as data, never as a hole.
    assert_one_failed_leg(&map(&uri, Some("wasmraid:health")), &map(&uri, None));
}

#[test]
fn nbdcopy_of_a_mostly_empty_array_reads_a_small_part_of_it() {
    require("nbdcopy");
    // raid5 over 4 legs of 342 MiB: about 1 GiB, of which 24 MiB written.
    let s = Served::layout("raid5", 4, "342M", "", "64K");
    let uri = s.uri();
    let (ok, out) =
        run(Command::new("fio").args(["--name=fill", "--ioengine=nbd", &format!("--uri={uri}"), "--rw=write", "--bs=1M", "--offset=100M", "--size=24M"]));
    assert!(ok, "{out}");
    let size = s.status()["size_bytes"].as_u64().expect("size");
    let before = s.status()["arrays"][0]["counters"]["read_bytes"].as_u64().unwrap_or(0);
    let copy = s.dir.path().join("copy");
    let (ok, out) = run(Command::new("nbdcopy").arg(&uri).arg(&copy));
    assert!(ok, "{out}");
    // Every byte the array read came off its legs (no leg is failed).
    let read = s.status()["arrays"][0]["counters"]["read_bytes"].as_u64().unwrap_or(0) - before;
    println!("nbdcopy of a {size}-byte array with 24 MiB written read {read} bytes ({:.1}%)", read as f64 * 100.0 / size as f64);
    assert!(read * 10 < size, "nbdcopy must skip the holes block status reports: read {read} of {size} bytes");
    assert_eq!(std::fs::metadata(&copy).map(|m| m.len()).unwrap_or(0), size, "the copy has the array's size");
}
