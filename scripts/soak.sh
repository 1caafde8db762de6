#!/usr/bin/env bash
# The crash soak: kill -9 of the server during fio verify writes, ROUNDS
# times (default 60; CI runs 6 as part of the test suite), ending every
# round with check = 0 and fio verify clean.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p wasmraid
WASMRAID_SOAK_ROUNDS="${1:-60}" cargo test --release -p wasmraid-tests --test soak -- --nocapture
