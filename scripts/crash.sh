#!/usr/bin/env bash
# The power-loss simulator: workloads through the real array on logged
# memory legs, every crash state built from each leg's log (after every
# flush and FUA, and at random points between; per leg nothing, everything,
# a prefix or a random subset of what was not yet durable) and judged by an
# oracle. Ends with `N crash states, M violations`; exit 1 when M > 0.
#
#   scripts/crash.sh                       # 20,000 states, all layouts and workloads
#   scripts/crash.sh 1000000 --jobs 2      # a long campaign
#   scripts/crash.sh 2000 --layout raid5 --workload rebuild,re-add
#   scripts/crash.sh 20000 --workload reshape   # written, stopped, reshaped offline to one more leg
#   scripts/crash.sh 20000 --workload reshape-online   # the same reshape while served, writes going on across it
#   scripts/crash.sh --layout raid5 --workload rebuild --seed 17 --at 4211 --persist nothing,everything,prefix:3,nothing
#                                          # replay a reported violation (the run is re-made from its seed;
#                                          # its threads interleave anew, so a replay may need a few tries)
set -euo pipefail
cd "$(dirname "$0")/.."
states=20000
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    states=$1
    shift
fi
cargo build --release -q -p wasmraid-crashsim
exec ./target/release/wasmraid-crashsim --states "$states" "$@"
