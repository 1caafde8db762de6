#!/usr/bin/env bash
# Runs the tutorials in docs/tutorials/ exactly as written, so they cannot
# rot: each one starts in an empty folder, with the freshly built wasmraid on
# PATH, and must end with its array served and verified.
#   ./scripts/tutorials.sh              every tutorial
#   ./scripts/tutorials.sh c python     some
# In a tutorial, a ```sh block is run; a block whose info string says
# `file=NAME` (```c file=raid4.c) is written to NAME first; other blocks
# (```text: what you should see) are only read. Each tutorial builds
# raid4.wasm; it is kept as target/tutorials/raid4-<tutorial>.wasm (the
# language benchmark serves those).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${WASMRAID_TUTORIALS_DIR:-/tmp/wasmraid-tutorials}
keep="$root/target/tutorials"
mkdir -p "$keep"
[ -x "$root/target/release/wasmraid" ] || { echo "tutorials: build wasmraid first: cargo build --release -p wasmraid" >&2; exit 1; }

if [ $# -eq 0 ]; then
    set -- $(cd "$root/docs/tutorials" && ls *.md | sed 's/\.md$//' | grep -v '^README$')
fi

failed=()
for name in "$@"; do
    doc="$root/docs/tutorials/$name.md"
    [ -f "$doc" ] || { echo "tutorials: no $doc" >&2; exit 1; }
    dir="$work/$name"
    rm -rf "$dir" && mkdir -p "$dir"
    # The tutorial as one script: files written with quoted heredocs, shell
    # blocks as they are; background servers are stopped whatever happens.
    python3 - "$doc" >"$dir/.tutorial.sh" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
print("set -euo pipefail")
print("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT")
for info, body in re.findall(r"^```([^\n]*)\n(.*?)^```\s*$", text, re.S | re.M):
    words = info.split()
    target = next((w[5:] for w in words if w.startswith("file=")), None)
    if target:
        marker = "WASMRAID_TUTORIAL_EOF"
        assert marker not in body
        print(f"mkdir -p \"$(dirname '{target}')\"\ncat > '{target}' <<'{marker}'\n{body}{marker}")
    elif words[:1] == ["sh"]:
        print(body)
PY
    echo "== tutorial $name ($doc) in $dir" >&2
    started=$(date +%s)
    if (cd "$dir" && PATH="$root/target/release:$PATH" bash -x .tutorial.sh) >"$dir/.log" 2>&1; then
        cp "$dir/raid4.wasm" "$keep/raid4-$name.wasm"
        echo "   PASS in $(($(date +%s) - started)) s" >&2
    else
        echo "   FAIL after $(($(date +%s) - started)) s; the end of $dir/.log:" >&2
        tail -n 40 "$dir/.log" >&2
        failed+=("$name")
    fi
done
if ((${#failed[@]})); then
    echo "tutorials: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "tutorials: all passed: $*" >&2
