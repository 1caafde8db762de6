#!/usr/bin/env bash
# The README's first command: install what is missing, build, run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -p wasmraid
exec ./target/release/wasmraid demo
