//! wasmraid raid0 over ublk against md raid0 over the same virtio legs, in
//! one VM run (Debian's 6.12 kernel under qemu TCG; the host kernel has no
//! ublk): fio 4k random read at depth 32 and 1 MiB sequential read,
//! alternating md and wasmraid, median of five each. TCG makes absolute
//! figures meaningless; the ratio is the figure. Bar: >= 0.7x md, both.
//!
//! This runs `tests/vm/run.sh perf-raid0` (the scenario holds the fio jobs)
//! and prints its figures. `PERF_SECONDS` is not passed into the VM; the
//! scenario's default (6 s per run) is used.

use std::process::Command;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("tests/vm/run.sh")).arg("perf-raid0").current_dir(&root).output().expect("run tests/vm/run.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
        panic!("the VM perf scenario failed");
    }
    println!("ublk raid0 vs md raid0, same VM, same 4 virtio legs (64 KiB chunks):");
    let mut bars = Vec::new();
    for line in text.lines().filter(|l| l.contains("md=") && l.contains("ratio=")) {
        let line = line.trim();
        println!("  {line}");
        if let Some(r) = line.rsplit("ratio=").next().and_then(|r| r.parse::<f64>().ok()) {
            bars.push((line.split_whitespace().next().unwrap_or("?").to_string(), r));
        }
    }
    assert_eq!(bars.len(), 2, "expected two figures from the scenario:\n{text}");
    for (what, ratio) in bars {
        println!("  {what}: {ratio:.2}x md raid0 (bar 0.70x): {}", if ratio >= 0.7 { "meets the bar" } else { "BELOW the bar" });
    }
}
