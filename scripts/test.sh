#!/usr/bin/env bash
# The README's second command: every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

echo "== guest algorithms: unit tests against md's vectors"
cargo test --release --manifest-path guest-algorithms/Cargo.toml

echo "== build everything once (lib, binary, tests, benches share one feature set)"
cargo build --release --workspace --all-targets

echo "== runtime, hostile components, layout properties"
cargo test --release --workspace

echo "== demo"
./target/release/wasmraid demo >/dev/null
echo "all tests passed"
