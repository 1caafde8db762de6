#!/usr/bin/env bash
# The README's second command: every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

echo "== guest algorithms: unit tests against md's vectors"
cargo test --release --manifest-path guest-algorithms/Cargo.toml

echo "== runtime, hostile components, layout properties"
cargo test --release --workspace

echo "== demo"
cargo run --release -q -p wasmraid -- demo >/dev/null
echo "all tests passed"
