//! wasmraid over ublk against md over the same virtio legs, in one VM run
//! per kernel (Debian's kernels under qemu TCG; the host kernel has no
//! ublk): the scenarios `perf-raid0`, `perf-parity` and `perf-reshape` of
//! `tests/vm/`.
//!
//! - raid0, 4 legs: fio 4k random read at depth 32 and 1 MiB sequential
//!   read, alternating md and wasmraid, median of five.
//! - raid5 over 4 legs and raid6 over 6 (md's left-symmetric, 64 KiB chunks,
//!   1 MiB data offset, no bitmap on either; wasmraid with --direct
//!   --max-io 1M): 4k random write at depth 32, 1 MiB sequential write at
//!   depth 8, 64 KiB sequential write at depth 16 (less than a stripe per
//!   request: gathered into full stripes), 4k random read at depth 32 with
//!   leg 1 failed, alternating, median of three.
//! - reshape: raid5 over 4 legs grown to 5 (64 KiB chunks, the whole array
//!   written first) against `mdadm --grow` on the same legs, alternating,
//!   median of three: end to end (wasmraid's proving both layouts
//!   included), wasmraid's move alone, and the served array reshaped by
//!   its daemon (`reshape --wait`), as md's is (issue 18's bar).
//!
//! TCG makes absolute figures meaningless; the ratio wasmraid / md is the
//! figure. Bar: 1.0x md for every row (issue 15). A ratio below the bar is
//! printed as "BELOW the bar", not a panic; the benchmark panics only when a
//! scenario fails or prints no figures.
//!
//! `WASMRAID_VM_KERNEL=6.12` or `=7` measures on that kernel only; unset,
//! both kernels are measured, one VM after the other (the bars hold on both).
//! `WASMRAID_BIN` picks the binary (tests/vm/run.sh's default otherwise).
//! `PERF_SECONDS` (default 6 s per fio run) and `PERF_ROUNDS` (default 5 for
//! raid0, 3 for parity) reach the scenarios through tests/vm/run.sh.

use std::process::{Command, Stdio};

const BAR: f64 = 1.0;
const SCENARIOS: [&str; 3] = ["perf-raid0", "perf-parity", "perf-reshape"];
/// Every figure the two scenarios print (`<name> md=.. wasmraid=.. ratio=..`).
const ROWS: [(&str, &str); 13] = [
    ("randread-4k-iops", "raid0, 4 legs, 4k random read, depth 32 (IOPS)"),
    ("seqread-1m-mibs", "raid0, 4 legs, 1 MiB sequential read, depth 32 (MiB/s)"),
    ("raid5-randwrite-4k-iops", "raid5, 4 legs, 4k random write, depth 32 (IOPS)"),
    ("raid5-seqwrite-1m-mibs", "raid5, 4 legs, 1 MiB sequential write, depth 8 (MiB/s)"),
    ("raid5-seqwrite-64k-mibs", "raid5, 4 legs, 64 KiB sequential write, depth 16 (MiB/s)"),
    ("raid5-degraded-randread-4k-iops", "raid5, 4 legs, 4k random read, leg 1 failed, depth 32 (IOPS)"),
    ("raid6-randwrite-4k-iops", "raid6, 6 legs, 4k random write, depth 32 (IOPS)"),
    ("raid6-seqwrite-1m-mibs", "raid6, 6 legs, 1 MiB sequential write, depth 8 (MiB/s)"),
    ("raid6-seqwrite-64k-mibs", "raid6, 6 legs, 64 KiB sequential write, depth 16 (MiB/s)"),
    ("raid6-degraded-randread-4k-iops", "raid6, 6 legs, 4k random read, leg 1 failed, depth 32 (IOPS)"),
    ("reshape-raid5-4to5-mibs", "reshape raid5 4 to 5 legs, end to end (MiB/s of the old array)"),
    ("reshape-raid5-4to5-move-mibs", "reshape raid5 4 to 5 legs, the move alone (MiB/s of the old array)"),
    ("reshape-raid5-4to5-online-mibs", "reshape raid5 4 to 5 legs, served over ublk as md's is, end to end (MiB/s of the old array)"),
];

struct Figure {
    md: String,
    wasmraid: String,
    ratio: f64,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|t| t.strip_prefix(key))
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let kernels: Vec<String> = match std::env::var("WASMRAID_VM_KERNEL") {
        Ok(k) if !k.trim().is_empty() => vec![k.trim().to_string()],
        _ => vec!["6.12".into(), "7".into()],
    };
    let mut summary = Vec::new();
    for kernel in &kernels {
        eprintln!("ublk_vm: kernel {kernel}: tests/vm/run.sh {}", SCENARIOS.join(" "));
        // The parity scenario alone runs about ten minutes under TCG; give it room.
        let mut cmd = Command::new(root.join("tests/vm/run.sh"));
        cmd.args(SCENARIOS).env("WASMRAID_VM_KERNEL", kernel).current_dir(&root).stdout(Stdio::piped()).stderr(Stdio::inherit());
        if std::env::var_os("WASMRAID_VM_SCENARIO_TIMEOUT").is_none() {
            cmd.env("WASMRAID_VM_SCENARIO_TIMEOUT", "2400");
        }
        if std::env::var_os("WASMRAID_VM_TIMEOUT").is_none() {
            cmd.env("WASMRAID_VM_TIMEOUT", "4800");
        }
        let out = cmd.output().expect("run tests/vm/run.sh");
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            eprintln!("{text}");
            panic!("the VM perf scenarios failed on kernel {kernel} (console log: target/vm/last-run-{kernel}.log)");
        }
        let booted = text.lines().find_map(|l| l.strip_prefix("vm: kernel ")).and_then(|l| l.split(':').next()).unwrap_or("?").to_string();
        println!("\nkernel {kernel} ({booted}): wasmraid over ublk vs md, same VM, same virtio legs, 64 KiB chunks");
        println!("the scenarios' lines: every round, then the medians:");
        // run.sh prints each WASMRAID-VM RESULT line indented by two spaces.
        for line in text.lines().filter(|l| l.starts_with("  ")) {
            println!("  {}", line.trim());
        }
        let mut figures = Vec::new();
        for (name, what) in ROWS {
            let line = text.lines().map(str::trim).find(|l| l.split_whitespace().next() == Some(name) && l.contains("ratio="));
            let Some(line) = line else {
                eprintln!("{text}");
                panic!("kernel {kernel}: the scenarios printed no figure {name}");
            };
            let ratio = field(line, "ratio=").and_then(|r| r.parse::<f64>().ok());
            let (Some(md), Some(wasmraid), Some(ratio)) = (field(line, "md="), field(line, "wasmraid="), ratio) else {
                panic!("kernel {kernel}: cannot read the figure {name} in: {line}");
            };
            figures.push((what, Figure { md: md.into(), wasmraid: wasmraid.into(), ratio }));
        }
        println!("medians, against the bar ({BAR:.2}x md):");
        for (what, f) in &figures {
            let verdict = if f.ratio >= BAR { "meets the bar" } else { "BELOW the bar" };
            println!("  {what}: md {} wasmraid {}: {:.2}x md: {verdict}", f.md, f.wasmraid, f.ratio);
        }
        summary.push((kernel.clone(), booted, figures));
    }
    println!("\nsummary (bar {BAR:.2}x md on every row):");
    for (kernel, booted, figures) in &summary {
        let below = figures.iter().filter(|(_, f)| f.ratio < BAR).count();
        println!("  kernel {kernel} ({booted}): {} of {} rows meet the bar, {below} BELOW the bar", figures.len() - below, figures.len());
    }
}
