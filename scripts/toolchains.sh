#!/usr/bin/env bash
# Installs the guest toolchains for layouts written in C, Zig, Python and
# JavaScript, pinned, into one folder (default target/toolchains), and prints
# that folder's bin/ (put it on PATH). Safe to run again: what is there is
# kept. C needs Debian's clang, lld, wasi-libc and the wasm32 compiler-rt
# (scripts/setup.sh installs them).
#   bin/zig                Zig, from PyPI's ziglang
#   bin/componentize-py    Python components, from PyPI
#   bin/componentize-qjs   JavaScript components (QuickJS), from npm
set -euo pipefail
cd "$(dirname "$0")/.."

ZIGLANG_VERSION=0.17.1
COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_QJS_VERSION=0.4.5

dir=${WASMRAID_TOOLCHAINS:-$PWD/target/toolchains}
mkdir -p "$dir/bin"

if [ ! -x "$dir/venv/bin/componentize-py" ] || [ ! -x "$dir/venv/bin/python" ] \
    || ! "$dir/venv/bin/pip" show ziglang 2>/dev/null | grep -x "Version: $ZIGLANG_VERSION" >/dev/null \
    || ! "$dir/venv/bin/pip" show componentize-py 2>/dev/null | grep -x "Version: $COMPONENTIZE_PY_VERSION" >/dev/null; then
    echo "toolchains: ziglang $ZIGLANG_VERSION and componentize-py $COMPONENTIZE_PY_VERSION from PyPI" >&2
    python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install -q --disable-pip-version-check "ziglang==$ZIGLANG_VERSION" "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
fi
zig=$("$dir/venv/bin/python" -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
ln -sf "$zig" "$dir/bin/zig"
ln -sf "$dir/venv/bin/componentize-py" "$dir/bin/componentize-py"

qjs="$dir/node/node_modules/.bin/componentize-qjs"
if [ ! -x "$qjs" ] || ! grep -q "\"version\": \"$COMPONENTIZE_QJS_VERSION\"" "$dir/node/node_modules/componentize-qjs/package.json"; then
    echo "toolchains: componentize-qjs $COMPONENTIZE_QJS_VERSION from npm" >&2
    mkdir -p "$dir/node"
    (cd "$dir/node" && npm install --silent --no-audit --no-fund "componentize-qjs@$COMPONENTIZE_QJS_VERSION" >&2)
fi
ln -sf "$qjs" "$dir/bin/componentize-qjs"

for tool in clang wasm-ld; do
    command -v "$tool" >/dev/null || { echo "toolchains: $tool is missing: run ./scripts/setup.sh (Debian's clang, lld, wasi-libc, libclang-rt-14-dev-wasm32)" >&2; exit 1; }
done
echo "$dir/bin"
