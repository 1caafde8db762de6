#!/usr/bin/env bash
# Every benchmark; each prints ratios against a reference measured in the
# same run. Uses /dev/shm (tmpfs) for legs; WASMRAID_BENCH_DISK names a
# directory on a real disk for the O_DIRECT leg I/O comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -p wasmraid
for bench in layout parity legio array bitmap nbd reload languages; do
    cargo bench -q -p wasmraid-benches --bench "$bench"
    echo
done
