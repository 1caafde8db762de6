#!/usr/bin/env bash
# Builds the layouts written in C, Zig, Python and JavaScript from source into
# components, in OUT (default target/polyglot):
#   c-raid5.wasm  zig-raid10.wasm  python-pyramid.wasm  javascript-draid.wasm
# Uses the toolchains of scripts/toolchains.sh (installed if missing) and the
# wasmraid binary ($WASMRAID_BIN, default target/release/wasmraid) for the C
# bindings and for wrapping core modules. tests/polyglot.rs runs this.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=$(mkdir -p "${1:-$root/target/polyglot}" && cd "${1:-$root/target/polyglot}" && pwd)
wasmraid=${WASMRAID_BIN:-$root/target/release/wasmraid}
[ -x "$wasmraid" ] || { echo "build-polyglot: $wasmraid is missing: cargo build --release -p wasmraid" >&2; exit 1; }
PATH="$("$root/scripts/toolchains.sh"):$PATH"
work="$out/work"
rm -rf "$work" && mkdir -p "$work"
# Shared: the contract and its C bindings (C and Zig both build on them).
"$wasmraid" algo wit --out "$work/wit" >/dev/null
"$wasmraid" algo bindings c --out "$work/c" >/dev/null

echo "build-polyglot: C raid5 (clang $(clang -dumpversion), wasi-libc)" >&2
clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -mexec-model=reactor -Wl,--strip-debug \
    -I"$work/c" -o "$work/c-raid5.core.wasm" "$here/c/raid5/raid5.c" "$work/c/layout.c" "$work/c/layout_component_type.o"
"$wasmraid" algo componentize "$work/c-raid5.core.wasm" -o "$out/c-raid5.wasm" >/dev/null

zig_version=$(zig version)
echo "build-polyglot: Zig raid10 (zig $zig_version)" >&2
mkdir -p "$work/zig"
cp "$here/zig/raid10/raid10.zig" "$work/zig/"
zig translate-c "$work/c/layout.h" -target wasm32-wasi -lc >"$work/zig/layout.zig"
(cd "$work/zig" && zig build-exe raid10.zig "$work/c/layout.c" "$work/c/layout_component_type.o" \
    -target wasm32-wasi -lc -fno-entry -rdynamic -O ReleaseSmall -mexec-model=reactor -femit-bin=raid10.core.wasm)
"$wasmraid" algo componentize "$work/zig/raid10.core.wasm" -o "$out/zig-raid10.wasm" --language "Zig=$zig_version" >/dev/null

py_version=$(componentize-py --version | awk '{print $2}')
echo "build-polyglot: Python pyramid (componentize-py $py_version)" >&2
# In a copy: the build leaves __pycache__ next to the sources.
mkdir -p "$work/python" && cp "$here/python/pyramid/app.py" "$work/python/"
(cd "$work/python" && componentize-py -d "$work/wit" -w layout componentize app -o "$work/python-pyramid.wasm" --stub-wasi >/dev/null)
"$wasmraid" algo componentize "$work/python-pyramid.wasm" -o "$out/python-pyramid.wasm" --language Python=3.14 --sdk "componentize-py=$py_version" >/dev/null

# The version of the componentize-qjs on PATH (wherever $WASMRAID_TOOLCHAINS put it).
qjs_package=$(dirname "$(dirname "$(readlink -f "$(command -v componentize-qjs)")")")/package.json
qjs_version=$(node -p 'require(process.argv[1]).version' "$qjs_package")
echo "build-polyglot: JavaScript draid (componentize-qjs $qjs_version)" >&2
componentize-qjs --wit "$work/wit" --js "$here/javascript/draid/draid.js" -o "$work/javascript-draid.wasm" --sync --stub-wasi >/dev/null
"$wasmraid" algo componentize "$work/javascript-draid.wasm" -o "$out/javascript-draid.wasm" --language JavaScript --sdk "componentize-qjs=$qjs_version" >/dev/null

ls -l "$out"/*.wasm >&2
