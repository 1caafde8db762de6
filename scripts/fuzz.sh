#!/usr/bin/env bash
# Fuzz every parser of untrusted bytes (fuzz/fuzz_targets/) for a bounded
# time each: superblocks and bitmap copies read from legs, a guest's flat
# layout answer, an NBD server's handshake and replies, dm tables and NBD
# requests. Ends with one line per target (runs, seconds, corpus size);
# exit 1 if any target found a crash, a panic, a hang (10 s) or an
# allocation no input justifies (fuzz_targets/common/bounded.rs). A crash
# is kept in fuzz/artifacts/TARGET/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --dev -s none TARGET fuzz/artifacts/TARGET/crash-...
#
#   scripts/fuzz.sh                     # 30 s per target
#   scripts/fuzz.sh 600                 # a longer campaign
#   scripts/fuzz.sh 60 superblock       # some targets
#
# cargo-fuzz drives libFuzzer through nightly-only rustc flags
# (-Zsanitizer, -Cpasses=sancov-module...); RUSTC_BOOTSTRAP=1 lets the
# stable toolchain take them. No sanitizer: the code under test is safe
# Rust, built with debug assertions and overflow checks (cargo-fuzz's
# default), so a panic, an overflow or an oversized allocation is what
# there is to find, and ASan would only slow the build and the runs.
# Unoptimized (--dev): the targets link the whole runtime, wasmtime and
# Cranelift included, and instrumenting and optimizing all of that takes
# most of an hour on two cores; unoptimized it builds in minutes, and the
# parsers under test are small enough that the runs stay in the millions.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=30
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
# The fuzz crate is its own workspace: start from the main lock file so it
# builds the same versions CI tests.
[[ -f fuzz/Cargo.lock ]] || cp Cargo.lock fuzz/Cargo.lock
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build --dev -s none
mkdir -p target/fuzz-logs
failed=()
summary=()
for t in "${targets[@]}"; do
    # A superblock target input holds two 4 KiB copies and a device size.
    max_len=4096
    [[ $t == superblock ]] && max_len=9000
    log=target/fuzz-logs/$t.log
    mkdir -p "fuzz/corpus/$t"
    echo "== fuzz $t for ${seconds}s"
    if cargo fuzz run --dev -s none "$t" -- -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
        took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo "$seconds")
        corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
        summary+=("$t: $runs runs in ${took}s, clean (corpus $corpus inputs)")
    else
        tail -n 40 "$log"
        summary+=("$t: FAILED (log $log; artifacts in fuzz/artifacts/$t/)")
        failed+=("$t")
    fi
done
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzzing found crashes in: ${failed[*]}"
    exit 1
fi
echo "fuzzing: ${#targets[@]} targets clean"
