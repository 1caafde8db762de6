#!/usr/bin/env bash
# Installs what wasmraid's build and tests need and is missing: the rustup
# wasm target and Debian packages. Safe to run again.
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "setup: adding the rustup target wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
fi

# Real peers the tests talk to; libclang-dev for libublk's bindgen; the VM
# test bed's tools (tests/vm/run.sh); clang, lld, wasi-libc and the wasm32
# compiler-rt for layouts written in C (scripts/toolchains.sh has the rest).
packages=(${WASMRAID_APT_PACKAGES:-qemu-utils libnbd-bin nbdkit fio openssl libisal-dev libclang-dev qemu-system-x86 busybox-static nbd-client mdadm e2fsprogs cpio kmod xz-utils iproute2 clang lld wasi-libc libclang-rt-14-dev-wasm32})
# Node for the JavaScript toolchain, from Debian unless one is installed.
command -v npm >/dev/null || packages+=(nodejs npm)
# A Python that can make virtual environments, for the Zig and Python toolchains.
python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# qemu-system-x86 and qemu-utils come from one source package and must be
# one version: a newer qemu-utils (from backports) makes apt remove it when
# qemu-system-x86 comes in, and the tests lose qemu-nbd. Pin both to
# qemu-system-x86's version.
system_version=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
utils_version=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
if [ -n "$system_version" ] && [ "$utils_version" != "$system_version" ]; then
    echo "setup: qemu-utils $utils_version -> $system_version (the version of qemu-system-x86)"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends --allow-downgrades "qemu-utils=$system_version"
fi
