#!/usr/bin/env bash
# Installs what wasmraid's build and tests need and is missing: the rustup
# wasm target and Debian packages. Safe to run again.
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "setup: adding the rustup target wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
fi

# Real peers the tests talk to.
packages=(${WASMRAID_APT_PACKAGES:-qemu-utils libnbd-bin nbdkit fio libisal-dev libclang-dev})
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
