#!/usr/bin/env bash
# The README's second command: every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

echo "== guest algorithms: unit tests against md's vectors"
cargo test --release --manifest-path guest-algorithms/Cargo.toml

echo "== build everything once (lib, binary, tests, benches share one feature set)"
cargo build --release --workspace --all-targets

echo "== runtime, hostile components, layout properties, real clients, redundancy, rebuilds killed mid-way, remote legs (network namespaces: needs root), layouts in C, Zig, Python and JavaScript"
cargo test --release --workspace

echo "== the power-loss simulator: 20,000 crash states over raid1, raid5, raid6, raid10, pyramid and draid, every workload"
./scripts/crash.sh 20000 --jobs 2

echo "== the power-loss simulator over reshapes: 20,000 crash states of raid1, raid5 and raid6 written, stopped and reshaped offline to one more leg; mid-reshape states finished by assemble"
./scripts/crash.sh 20000 --workload reshape --jobs 2
echo "== the same, reshaped to one more leg while served, the writes going on across the moving position"
./scripts/crash.sh 20000 --workload reshape-online --jobs 2

echo "== fuzzing, 40 s per target: superblocks, bitmap copies, guest layout answers, the NBD client's handshake and replies, dm tables, NBD requests"
./scripts/fuzz.sh 40

echo "== the tutorials, run as written: a first layout in Rust, C, Zig, Python and JavaScript, proven and served"
./scripts/tutorials.sh

echo "== the VM suite on two kernels under qemu TCG, Debian's 6.12 and its newest 7.x (trixie-backports): every functional scenario (ublk, ext4, fio verify, kill -9 recovery, md interoperability); the perf ones run in cargo bench --bench ublk_vm"
vm_failed=""
for k in 6.12 7; do WASMRAID_VM_KERNEL=$k ./tests/vm/run.sh --functional || vm_failed="$vm_failed $k"; done
[ -z "$vm_failed" ] || { echo "the VM suite failed on kernel(s):$vm_failed"; exit 1; }

echo "== demo"
./target/release/wasmraid demo >/dev/null
echo "all tests passed"
